//! The checks of one request, as the gateway makes them, for `mcp-edge-auth explain`.
//!
//! [`crate::Gateway::explain`] runs the very decision a host runs (same code, same order)
//! with a [`Trace`] that records each check; hosts decide with a trace that records nothing
//! and compiles away. Details name what was compared (claims, normalised audiences, scopes,
//! key ids), never the token itself.

use alloc::string::String;
use alloc::vec::Vec;

/// One check of the decision, in the order the gateway makes them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    /// Which configured resource covers the request.
    Resource,
    /// The `Authorization: Bearer` header (RFC 6750).
    Credentials,
    /// The JSON-RPC body the MCP rules read (and the `Mcp-*` headers that must match it).
    Body,
    /// The token is a compact JWS with a readable header and claims.
    Format,
    /// `iss` is one of the resource's issuers.
    Issuer,
    /// The header's `alg` is one the issuer allows.
    Algorithm,
    /// The header's `typ` (RFC 9068 `at+jwt`) as the issuer's policy wants.
    Typ,
    /// `exp`, `nbf` and `iat` against the clock, with the issuer's skew.
    Lifetime,
    /// `aud` names this resource (RFC 8707), compared in normalised form.
    Audience,
    /// `scope` / `scp` is readable.
    ScopeClaim,
    /// The issuer's keys are loaded.
    Keys,
    /// A key matches the header's `kid` and `alg`.
    Key,
    /// The signature verifies with that key.
    Signature,
    /// The token grants the resource's scopes and those the MCP rules ask for.
    Scopes,
}

impl Check {
    /// A short name for output.
    pub fn name(self) -> &'static str {
        match self {
            Check::Resource => "resource",
            Check::Credentials => "credentials",
            Check::Body => "mcp body",
            Check::Format => "format",
            Check::Issuer => "issuer",
            Check::Algorithm => "algorithm",
            Check::Typ => "typ",
            Check::Lifetime => "exp/nbf",
            Check::Audience => "audience",
            Check::ScopeClaim => "scope claim",
            Check::Keys => "keys",
            Check::Key => "key",
            Check::Signature => "signature",
            Check::Scopes => "scopes",
        }
    }
}

/// One recorded check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    /// What was checked.
    pub check: Check,
    /// Whether it passed.
    pub passed: bool,
    /// What was compared.
    pub detail: String,
}

/// Observes the checks of a decision. `detail` is only called by a trace that records.
pub trait Trace {
    /// Whether this trace records (lets the gateway skip work only a record needs).
    fn enabled(&self) -> bool;
    /// One check and its outcome.
    fn step(&mut self, check: Check, passed: bool, detail: impl FnOnce() -> String);
}

/// The trace of every host request: records nothing.
pub(crate) struct NoTrace;

impl Trace for NoTrace {
    #[inline(always)]
    fn enabled(&self) -> bool {
        false
    }
    #[inline(always)]
    fn step(&mut self, _: Check, _: bool, _: impl FnOnce() -> String) {}
}

impl Trace for Vec<Step> {
    fn enabled(&self) -> bool {
        true
    }
    fn step(&mut self, check: Check, passed: bool, detail: impl FnOnce() -> String) {
        self.push(Step {
            check,
            passed,
            detail: detail(),
        });
    }
}
