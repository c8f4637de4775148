//! # mcp-edge-auth-core
//!
//! The validation core of mcp-edge-auth: everything an MCP server owes as an OAuth 2.1
//! *resource server* (RFC 9728 metadata, RFC 6750 challenges, RFC 8707 audience binding,
//! RFC 9068 JWT access tokens), decided once, here, for every host.
//!
//! The core is **sans-IO**, in the spirit of `rustls` and `quinn-proto`: a host (the Envoy
//! proxy-wasm filter, the Cloudflare Worker) hands it the parts of a request, the current
//! time and key material, and gets back a [`Verdict`] it can carry out without thinking:
//!
//! * [`Verdict::Respond`]: answer locally (metadata, preflight, 400/401/403/405/503 with the
//!   exact `WWW-Authenticate` shape);
//! * [`Verdict::Forward`]: send upstream with these header changes;
//! * [`Verdict::AwaitKeys`]: "issuer X needs (fresh) keys": hand it to the
//!   [`KeySchedule`], which pauses the request until a fetch it schedules finishes (or says
//!   what to answer instead); the host carries out the schedule's fetches and wake-ups;
//! * [`Verdict::VerifySignature`]: the host's crypto is asynchronous (WebCrypto): verify this
//!   signature and hand the answer back to [`Gateway::resume`];
//! * [`Verdict::Exchange`]: the resource gives the upstream a token of its own (RFC 8693):
//!   hand it to [`Exchanges`], which forwards with a cached token or pauses the request until
//!   an exchange it schedules finishes.
//!
//! The core never does IO, never reads a clock and never logs. Signature verification sits
//! behind a small provider interface ([`crypto::CryptoProvider`]), so that each host brings the
//! fastest correct crypto it has; the default provider (feature `jwt-simple`) uses
//! `jwt-simple`. Without default features the crate is `#![no_std]` + `alloc`.
//!
//! Where things live:
//!
//! | concern | module |
//! |---|---|
//! | the one JSON config format, validated at load | [`config`] |
//! | request → verdict pipeline | [`gateway`] |
//! | `Authorization` header extraction | [`bearer`] |
//! | JWS parsing (segments, base64url, header) | [`jws`] |
//! | strict base64 and base64url (one spelling per byte string) | [`b64`] |
//! | claim checks (`iss`, `exp`/`nbf`, `typ`, scope) | [`claims`] |
//! | the audience rule (RFC 8707) | [`audience`] |
//! | URI parsing and canonical forms | [`uri`] |
//! | JWKS parsing, key binding | [`jwks`] |
//! | key freshness, `Cache-Control`, staleness | [`keys`] |
//! | when JWKS are fetched, who waits, cooldown, retries | [`keys::schedule`] |
//! | verified-token cache | [`cache`] |
//! | token exchange toward the upstream (RFC 8693): when, who waits, cache | [`exchange`] |
//! | metadata document and well-known paths | [`metadata`] |
//! | `WWW-Authenticate` challenges and error bodies | [`challenge`] |
//! | MCP-aware rules: scopes per JSON-RPC method and tool | [`mcp`] |
//! | per-caller discovery: list answers keep what the token may use | [`lists`] |
//! | signature provider interface and default provider | [`crypto`] |
#![cfg_attr(not(feature = "std"), no_std)]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;

pub mod audience;
pub mod b64;
pub mod bearer;
pub mod cache;
pub mod challenge;
pub mod claims;
pub mod config;
pub mod crypto;
pub mod exchange;
pub mod explain;
pub mod gateway;
pub mod http;
pub mod jwks;
pub mod jws;
pub mod keys;
pub mod lists;
pub mod mcp;
pub mod metadata;
pub mod uri;

mod form;
mod json;

pub use cache::TokenCache;
pub use config::{Config, ConfigError};
pub use exchange::{Begin, ExchangeNeed, ExchangeWait, Exchanges};
pub use gateway::{Decision, Gateway, HeadersVerdict, IntrospectionJob, SignatureJob, Verdict};
pub use http::{
    Body, Forward, Identity, OwnedBody, OwnedRequest, Reason, Request, Response, READ_HEADERS,
};
pub use keys::schedule::{KeySchedule, KeyWait, Wait, WaitId};
pub use keys::{IssuerId, KeyStore};
