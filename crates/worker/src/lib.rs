//! # mcp-edge-auth-worker
//!
//! The mcp-edge-auth core as a Cloudflare Worker module (wasm-bindgen, `--target web`).
//!
//! Rust keeps the whole policy (metadata, challenges, audience, claims, key freshness, the
//! key schedule — when to fetch, who waits, cooldown, retries — and the verified-token
//! cache); JavaScript does the IO: it fetches JWKS
//! documents, verifies signatures with WebCrypto (`crypto.subtle.verify`, native and several
//! times faster in a Worker than pure-Rust crypto) and forwards requests. The key store is
//! built with [`DeferredProvider`], so [`Gateway::decide`] answers
//! [`Verdict::VerifySignature`] with a [`SignatureJob`] that JavaScript carries out and hands
//! back through [`Engine::resume`].
//!
//! Verdicts cross the boundary as small JSON documents (serde_json is already part of the
//! core, so this costs no code size), except the two every allowed request makes: a forward
//! crosses as one string of fields (see `forward_text`; JSON when a part holds a control
//! character), and a signature job as a number and a binary record that JavaScript reads
//! where it lies in Wasm memory. Other byte strings (JWKS bodies, response bodies) cross as
//! `Uint8Array`s. Every method is total: no input makes it panic.
//!
//! The JSON shapes (`kind` tells which):
//!
//! * `{"kind":"respond","status":401,"headers":[["www-authenticate","…"],…],"body":"…","reason":"missing"}`
//! * `{"kind":"forward","remove_headers":[…],"add_headers":[[name,value],…],"new_path":null|"/p?q",
//!   "response_headers":[[name,value],…],"identity":null|{…},"reason":"allowed","cache_hit":false,
//!   "lists":0}` (the same fields, in `forward_text`'s field form, unless a part holds a
//!   control character), with `"keep":{"slot":5,"n":9}` when JavaScript is to keep it: the same
//!   forward again (a verified-token cache hit) is then `{"kind":"again","slot":5,"n":9}`
//!   (see `Recent` in the source), which [`Engine::decide`] returns as one number, without
//!   any JSON.
//! * `{"kind":"wait","wait":3}`: the request is paused by the core's key schedule; decide it
//!   again (passing `3` as `previous`) when [`Engine::poll_wake`] names `3`. The fetches the
//!   schedule wants come from [`Engine::poll_fetch`] (`{"id":…,"issuer":…,"trigger":…,
//!   "uri":…,"timeout_ms":…,"max_body_bytes":…,"accept":…}`), and their answers go back
//!   through [`Engine::handle_fetch`].
//! * `{"kind":"verify","job":7,"issuer":0,"generation":2,"alg":"ES256","candidates":[0,3],"input_len":612}`
//!   (the signed bytes and the signature come together from [`Engine::job_at`]; what
//!   [`Engine::decide`] answers is only `-2 - job`, and the record holds the rest)
//! * `{"kind":"introspect","job":8,"issuer":0,"uri":"https://…","timeout_ms":3000,"headers":[…]}`
//!   (the form body, which holds the token, is fetched separately with
//!   [`Engine::introspection_body`] so that the verdict itself never carries a token)
//!
//! A request reaches the engine as bytes JavaScript writes into Wasm memory ([`Engine::io`]):
//! its head, then its body. The body is read only when [`Engine::body_limit`] asks for it
//! (MCP rules that look at JSON-RPC methods), and handed to [`Engine::decide`] with
//! `body_state` 1 (bytes) or 2 (larger than the limit: 413).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use serde::Serialize;
use serde_json::{json, Value};
use wasm_bindgen::prelude::*;

use mcp_edge_auth_core::b64;
use mcp_edge_auth_core::config::{self, Loaded};
use mcp_edge_auth_core::crypto::{Algorithm, Curve, DeferredProvider, PublicKey};
use mcp_edge_auth_core::exchange::{ExchangeCall, ExchangeOutcome, ExchangeReport};
use mcp_edge_auth_core::gateway::IntrospectionJob;
use mcp_edge_auth_core::http::{Body, Forward, Identity, Request, Response};
use mcp_edge_auth_core::keys::schedule::{
    Failure, FetchId, FetchOutcome, FetchReport, JWKS_ACCEPT,
};
use mcp_edge_auth_core::lists::{ListBody, ListFilter, Shape};
use mcp_edge_auth_core::{
    Begin, Decision, ExchangeNeed, ExchangeWait, Exchanges, Gateway, IssuerId, KeySchedule,
    KeyStore, SignatureJob, TokenCache, Verdict, Wait, WaitId,
};

/// The bit that marks a `wait` number as a token exchange's (else the key schedule's): one
/// number space for JavaScript, exact in an f64.
const EXCHANGE_WAIT: u64 = 1 << 52;

/// Jobs (signatures, introspections) kept waiting for JavaScript at most. A job is normally
/// resumed or cancelled within one request; the bound only matters if a host drops jobs, and
/// then the oldest go.
const MAX_PENDING_JOBS: usize = 4096;

/// Longest header block (all names and values) the core looks at. Workers' own limit is far
/// lower; the JavaScript side answers 431 before this is reached.
const MAX_HEADER_BLOCK: usize = 1024 * 1024;

/// Milliseconds since the Unix epoch from a JavaScript number (`Date.now()`).
fn millis(now: f64) -> u64 {
    if now.is_finite() && now > 0.0 {
        // Saturating float-to-int conversion; fractions are dropped.
        now as u64
    } else {
        0
    }
}

fn to_json(v: &Value) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| String::from(r#"{"kind":"error"}"#))
}

fn pairs<K: AsRef<str>, V: AsRef<str>>(items: &[(K, V)]) -> Value {
    Value::Array(
        items
            .iter()
            .map(|(k, v)| json!([k.as_ref(), v.as_ref()]))
            .collect(),
    )
}

/// The identity of a forward verdict.
#[derive(Serialize)]
struct IdentityOut<'a> {
    issuer: &'a str,
    subject: &'a Option<String>,
    client_id: &'a Option<String>,
    scopes: &'a [String],
    expires_at: u64,
}

impl<'a> From<&'a Identity> for IdentityOut<'a> {
    fn from(id: &'a Identity) -> Self {
        IdentityOut {
            issuer: &id.issuer,
            subject: &id.subject,
            client_id: &id.client_id,
            scopes: &id.scopes,
            expires_at: id.expires_at,
        }
    }
}

/// A `respond` verdict, serialised straight from the core's [`Response`] (no `Value` tree:
/// this runs on every refused request).
#[derive(Serialize)]
struct RespondOut<'a> {
    kind: &'static str,
    status: u16,
    headers: &'a [(&'static str, String)],
    body: &'a str,
    reason: &'static str,
}

/// A `forward` verdict, serialised straight from the core's [`Forward`] (this runs on every
/// allowed request, cache hits included).
#[derive(Serialize)]
struct ForwardOut<'a> {
    kind: &'static str,
    remove_headers: &'a [String],
    add_headers: &'a [(String, String)],
    new_path: &'a Option<String>,
    response_headers: &'a [(&'static str, String)],
    identity: Option<IdentityOut<'a>>,
    reason: &'static str,
    cache_hit: bool,
    /// The list filter of its answer ([`Engine::list_open`]); 0: the answer passes as is.
    lists: u32,
    /// Where JavaScript keeps this verdict (see [`Recent`]); absent: not kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    keep: Option<Kept>,
}

/// A slot of [`Recent`] and the number of the verdict kept in it.
#[derive(Serialize, Clone, Copy, PartialEq, Eq, Debug)]
struct Kept {
    slot: usize,
    n: u64,
}

/// The forward verdicts JavaScript keeps parsed, by slot. A verified-token cache hit hands
/// back the very same shared identity and header lists every time, so the same forward
/// again crosses as `{"kind":"again","slot":…,"n":…}` instead of being serialised here and
/// parsed there (for a cache hit, more than the rest of the Worker's decision). A slot
/// holds the forward itself, so the shared parts it is recognised by stay alive and their
/// addresses cannot be reused by another identity. `n` numbers every verdict kept, so
/// JavaScript can tell (and fails closed) should its copy ever not be the one meant.
///
/// Only a cache hit's forward is kept (only those repeat: a token verified anew gets a new
/// identity), and only one without per-request parts: no list filter (its number is new
/// each time), no rewritten path, no response headers (CORS follows the request's origin).
///
/// Any identity may take any slot (found by its address); when every slot is taken, the
/// CLOCK hand gives the slot of one not sent again since the hand last passed (a
/// second-chance approximation of least recently used), so the busy callers stay kept.
struct Recent {
    slots: Vec<Option<KeptForward>>,
    /// The slot of each kept identity, by the identity's address.
    by_identity: HashMap<usize, usize, BuildHasherDefault<AddressHasher>>,
    /// The CLOCK hand: the next slot considered for eviction.
    hand: usize,
    next: u64,
}

/// A forward JavaScript holds, its number, and whether it was sent again since the CLOCK
/// hand last passed.
struct KeptForward {
    forward: Forward,
    n: u64,
    used: bool,
}

impl Recent {
    /// Slots: the busy callers of an isolate. With Zipf-skewed activity over 1,000 callers
    /// (the bench's reuse workload), 1,024 slots send 99.8% of the requests again (slots
    /// by address hash alone: 86%); over 4,000 callers 77% (70%), over 10,000 67% (61%)
    /// (simulated). Each slot holds one forward here and its parsed copy in JavaScript
    /// (about a kilobyte): 1 MiB at most.
    const SLOTS: usize = 1024;

    fn new() -> Recent {
        Recent {
            slots: (0..Self::SLOTS).map(|_| None).collect(),
            by_identity: HashMap::default(),
            hand: 0,
            next: 1,
        }
    }

    /// The identity address `f` is kept by, when `f` can be kept.
    fn key(f: &Forward) -> Option<usize> {
        match &f.identity {
            Some(id)
                if f.cache_hit
                    && f.lists.is_none()
                    && f.new_path.is_none()
                    && f.response_headers.is_empty() =>
            {
                Some(Arc::as_ptr(id) as *const u8 as usize)
            }
            _ => None,
        }
    }

    /// The slot of `f` and whether JavaScript already holds it: `Err` when `f` cannot be
    /// kept. A forward not held gets its identity's slot (its headers changed) or the one
    /// the CLOCK hand gives up; [`Recent::keep`] then fills it.
    fn find(&mut self, f: &Forward) -> Result<(Kept, bool), ()> {
        let key = Self::key(f).ok_or(())?;
        if let Some(&slot) = self.by_identity.get(&key) {
            return match self.slots.get_mut(slot) {
                Some(Some(k)) if same(&k.forward, f) => {
                    k.used = true;
                    Ok((Kept { slot, n: k.n }, true))
                }
                Some(_) => Ok((Kept { slot, n: self.next }, false)),
                None => Err(()),
            };
        }
        // At most two turns: the first clears every second chance it passes.
        for _ in 0..2 * Self::SLOTS {
            let slot = self.hand;
            self.hand = (self.hand + 1) % Self::SLOTS;
            match self.slots.get_mut(slot) {
                Some(Some(k)) if k.used => k.used = false,
                Some(_) => return Ok((Kept { slot, n: self.next }, false)),
                None => return Err(()),
            }
        }
        Err(())
    }

    fn keep(&mut self, at: Kept, f: Forward) {
        let Some(key) = Self::key(&f) else { return };
        let Some(s) = self.slots.get_mut(at.slot) else {
            return;
        };
        if let Some(old) = s.take() {
            if let Some(old_key) = Self::key(&old.forward) {
                if self.by_identity.get(&old_key) == Some(&at.slot) {
                    self.by_identity.remove(&old_key);
                }
            }
        }
        *s = Some(KeptForward {
            forward: f,
            n: at.n,
            used: true,
        });
        self.by_identity.insert(key, at.slot);
        self.next += 1;
    }
}

/// The hasher of [`Recent`]'s map, whose keys are addresses of live allocations:
/// Fibonacci hashing spreads them (allocations a fixed stride apart land apart) at the cost
/// of a multiplication, and no caller chooses them.
#[derive(Default)]
struct AddressHasher(u64);

impl Hasher for AddressHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_usize(&mut self, n: usize) {
        // The product's high bits are the well-mixed ones; the map indexes by the low bits.
        let h = (n as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        self.0 = h ^ (h >> 32);
    }
}

/// Whether two keepable forwards are the same verdict: the same shared identity and header
/// lists (shared parts are never changed, so the same address is the same content).
fn same(a: &Forward, b: &Forward) -> bool {
    let same_identity = match (&a.identity, &b.identity) {
        (Some(x), Some(y)) => Arc::ptr_eq(x, y),
        _ => false,
    };
    same_identity
        && Arc::ptr_eq(&a.remove_headers, &b.remove_headers)
        && Arc::ptr_eq(&a.add_headers, &b.add_headers)
        && a.reason == b.reason
        && a.cache_hit == b.cache_hit
        && a.new_path == b.new_path
        && a.response_headers == b.response_headers
        && a.lists.is_none()
        && b.lists.is_none()
}

/// A forward JavaScript holds in `slot` (see [`Recent`]).
#[derive(Serialize)]
struct AgainOut {
    kind: &'static str,
    slot: usize,
    n: u64,
}

/// A verdict before it crosses: text (JSON, or a forward's field form), a forward JavaScript
/// already holds, or a signature job.
#[derive(Debug, PartialEq, Eq)]
pub enum Out {
    /// The verdict as JSON, or a forward in its field form (see the crate docs).
    Text(String),
    /// The forward JavaScript keeps in this slot, with this number.
    Again { slot: usize, n: u64 },
    /// A signature job, pending under this number: [`Host::job_record`] describes it.
    Verify(u32),
}

/// A `verify` verdict as JSON ([`Host::decide`]); [`Host::job_record`] holds the same job,
/// its signing input (`input_len` bytes) and its signature.
#[derive(Serialize)]
struct VerifyOut<'a> {
    kind: &'static str,
    job: u32,
    issuer: usize,
    generation: u64,
    alg: &'static str,
    candidates: &'a [usize],
    input_len: usize,
}

fn respond_json(r: &Response) -> String {
    serialize(&RespondOut {
        kind: "respond",
        status: r.status,
        headers: &r.headers,
        body: &r.body,
        reason: r.reason.as_str(),
    })
}

/// A forward as it crosses to JavaScript. JSON made V8 build a dozen objects and intern
/// their keys for every allowed request that was not a kept cache hit (for an uncached
/// token, the parse cost more than the core's own forward decision), so a forward whose
/// parts hold no control character crosses as fields joined by U+001F, which `readForward`
/// (workers/lib/index.js) splits with one call:
///
/// `U+001E, reason, cache_hit (1|0), lists, new_path ("": none), keep slot ("": not kept),
/// keep n, R, R header names to remove, A, A (name, value) pairs to add, P, P (name, value)
/// response header pairs`, then `0` (no identity) or `1, issuer, subject, client_id,
/// expires_at, S, S scopes`, where an optional string is `""` for none and `=` before a
/// value. The identity crosses as fields too: parsing it as JSON was the costliest single
/// step of reading an uncached token's forward in workerd. Any other forward (a part holds
/// a control character) crosses as JSON (its first character is `{`); JavaScript reads both.
fn forward_text(f: &Forward, lists: u32, keep: Option<Kept>) -> String {
    let plain = |s: &str| s.bytes().all(|b| b >= 0x20);
    let textual = f.remove_headers.iter().all(|n| plain(n))
        && f.add_headers.iter().all(|(n, v)| plain(n) && plain(v))
        && f.response_headers.iter().all(|(n, v)| plain(n) && plain(v))
        // A path is never empty: "" stands for none.
        && f.new_path
            .as_deref()
            .is_none_or(|p| !p.is_empty() && plain(p))
        && f.identity.as_deref().is_none_or(|id| {
            plain(&id.issuer)
                && id.subject.as_deref().is_none_or(plain)
                && id.client_id.as_deref().is_none_or(plain)
                && id.scopes.iter().all(|s| plain(s))
        });
    if !textual {
        return forward_json(f, lists, keep);
    }
    let mut out = String::with_capacity(256);
    out.push('\u{1e}');
    let field = |out: &mut String, text: &str| {
        out.push('\u{1f}');
        out.push_str(text);
    };
    let number = |out: &mut String, n: u64| {
        // Writing to a String cannot fail.
        let _ = write!(out, "\u{1f}{n}");
    };
    // An optional string: "" for none, "=" before a value (which may be empty).
    let optional = |out: &mut String, text: Option<&str>| {
        out.push('\u{1f}');
        if let Some(t) = text {
            out.push('=');
            out.push_str(t);
        }
    };
    field(&mut out, f.reason.as_str());
    field(&mut out, if f.cache_hit { "1" } else { "0" });
    number(&mut out, u64::from(lists));
    field(&mut out, f.new_path.as_deref().unwrap_or(""));
    match keep {
        Some(k) => {
            number(&mut out, k.slot as u64);
            number(&mut out, k.n);
        }
        None => out.push_str("\u{1f}\u{1f}"),
    }
    number(&mut out, f.remove_headers.len() as u64);
    for name in f.remove_headers.iter() {
        field(&mut out, name);
    }
    number(&mut out, f.add_headers.len() as u64);
    for (name, value) in f.add_headers.iter() {
        field(&mut out, name);
        field(&mut out, value);
    }
    number(&mut out, f.response_headers.len() as u64);
    for (name, value) in &f.response_headers {
        field(&mut out, name);
        field(&mut out, value);
    }
    match f.identity.as_deref() {
        None => field(&mut out, "0"),
        Some(id) => {
            field(&mut out, "1");
            field(&mut out, &id.issuer);
            optional(&mut out, id.subject.as_deref());
            optional(&mut out, id.client_id.as_deref());
            number(&mut out, id.expires_at);
            number(&mut out, id.scopes.len() as u64);
            for scope in &id.scopes {
                field(&mut out, scope);
            }
        }
    }
    out
}

fn forward_json(f: &Forward, lists: u32, keep: Option<Kept>) -> String {
    serialize(&ForwardOut {
        kind: "forward",
        remove_headers: &f.remove_headers,
        add_headers: &f.add_headers,
        new_path: &f.new_path,
        response_headers: &f.response_headers,
        identity: f.identity.as_deref().map(IdentityOut::from),
        reason: f.reason.as_str(),
        cache_hit: f.cache_hit,
        lists,
        keep,
    })
}

/// A list filter handed to JavaScript with a forward: its filter until the response
/// headers are in, then the body being filtered.
enum ListSlot {
    Filter(Box<ListFilter>),
    Body(Box<ListBody>),
}

fn serialize<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| String::from(r#"{"kind":"error"}"#))
}

/// The answer for a job that is not (or no longer) pending: a 503, never a forward.
fn unknown_job() -> String {
    serialize(&RespondOut {
        kind: "respond",
        status: 503,
        headers: &[
            ("retry-after", "1".into()),
            ("cache-control", "no-store".into()),
        ],
        body: "",
        reason: "keys_unavailable",
    })
}

fn with_job(mut v: Value, id: u32) -> Value {
    if let Some(o) = v.as_object_mut() {
        o.insert("job".into(), json!(id));
    }
    v
}

/// Splits a header block of `name:value` lines (the form the JavaScript side builds from a
/// `Headers` object, whose values can hold neither CR nor LF). Lines without `:` are skipped.
fn parse_headers(block: &str) -> Vec<(&str, &str)> {
    if block.len() > MAX_HEADER_BLOCK {
        // Never a truncated view (a dropped second Authorization or Origin header would
        // change the decision): no headers at all, which can only lead to a refusal
        // (no credentials) on a protected path.
        return Vec::new();
    }
    block
        .split('\n')
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim(), v.trim_matches([' ', '\t', '\r'])))
        .filter(|(n, _)| !n.is_empty())
        .collect()
}

/// The request line parts and the header block of a `head` string (see [`Engine::decide`]).
/// `None` when it has fewer than four lines (the JavaScript side always sends them).
fn split_head(head: &str) -> Option<(&str, &str, &str, &str, &str)> {
    let mut parts = head.splitn(5, '\n');
    let method = parts.next()?;
    let scheme = parts.next()?;
    let authority = parts.next()?;
    let path = parts.next()?;
    Some((method, scheme, authority, path, parts.next().unwrap_or("")))
}

/// A public key as a JWK that WebCrypto's `importKey("jwk", …)` accepts.
fn webcrypto_jwk(key: &PublicKey) -> Value {
    let b = b64::encode_url;
    match key {
        PublicKey::Rsa { n, e } => json!({ "kty": "RSA", "n": b(n), "e": b(e), "ext": true }),
        PublicKey::Ec { curve, x, y } => json!({
            "kty": "EC",
            "crv": match curve { Curve::P256 => "P-256", Curve::P384 => "P-384" },
            "x": b(x),
            "y": b(y),
            "ext": true,
        }),
        PublicKey::Ed25519 { x } => {
            json!({ "kty": "OKP", "crv": "Ed25519", "x": b(x), "ext": true })
        }
    }
}

/// The gateway, the key store and the verified-token cache of one Worker isolate.
///
/// The plain-Rust half of [`Engine`]: everything here is testable on the host target.
pub struct Host {
    gateway: Gateway,
    keys: KeyStore,
    schedule: KeySchedule,
    cache: TokenCache,
    jobs: BTreeMap<u32, Job>,
    next_job: u32,
    /// Paused requests, by the number JavaScript knows them by (`WaitId::get`).
    waits: BTreeMap<u64, WaitId>,
    /// Fetches handed to JavaScript, by number.
    fetches: BTreeMap<u64, FetchId>,
    /// Token exchanges toward the upstream (`upstream_token`).
    exchanges: Exchanges,
    /// Exchange calls handed to JavaScript, by id (the body is read from here).
    exchange_calls: BTreeMap<u64, ExchangeCall>,
    /// Requests paused for an exchange, by their `wait` number.
    exchange_waits: BTreeMap<u64, ExchangeWait>,
    /// List filters of forwarded requests, by number (see [`Host::list_open`]).
    lists: BTreeMap<u32, ListSlot>,
    next_list: u32,
    /// Forward verdicts JavaScript keeps parsed.
    recent: Recent,
}

/// Work handed to JavaScript and resumed later.
enum Job {
    Signature(SignatureJob),
    Introspection(IntrospectionJob),
}

/// `body_state` values of [`Host::decide`].
const BODY_NOT_READ: u8 = 0;
const BODY_BYTES: u8 = 1;
const BODY_TOO_LARGE: u8 = 2;

impl Host {
    /// Loads a configuration (the one JSON format). The error names the offending field.
    pub fn new(config_json: &str) -> Result<Host, String> {
        let Loaded { config, keys } = config::load(
            config_json.as_bytes(),
            config::Host::Worker,
            Box::new(DeferredProvider),
        )
        .map_err(|e| e.to_string())?;
        // Everything is due at once: the first request (the Worker has no timers) starts it.
        let schedule = KeySchedule::new(&config, 0);
        let exchanges = Exchanges::new(&config);
        let gateway = Gateway::new(config);
        let cache = gateway.new_cache();
        Ok(Host {
            exchanges,
            exchange_calls: BTreeMap::new(),
            exchange_waits: BTreeMap::new(),
            lists: BTreeMap::new(),
            next_list: 1,
            recent: Recent::new(),
            gateway,
            keys,
            schedule,
            cache,
            jobs: BTreeMap::new(),
            next_job: 1,
            waits: BTreeMap::new(),
            fetches: BTreeMap::new(),
        })
    }

    /// How many body bytes to read before [`Host::decide`], or `None` when the decision does
    /// not depend on the body.
    pub fn body_limit(
        &self,
        method: &str,
        scheme: &str,
        authority: &str,
        path: &str,
        headers: &str,
    ) -> Option<usize> {
        let headers = parse_headers(headers);
        let req = Request::new(method, scheme, authority, path, &headers);
        self.gateway.body_limit(&req)
    }

    /// Decides a request; returns the verdict as text (see the crate docs). `body_state` is
    /// 0 (not read), 1 (`body` is the whole body) or 2 (longer than [`Host::body_limit`]);
    /// `previous` is the `wait` the request was woken from (0: none); `now_ms`, milliseconds
    /// since the Unix epoch.
    #[allow(clippy::too_many_arguments)]
    pub fn decide(
        &mut self,
        method: &str,
        scheme: &str,
        authority: &str,
        path: &str,
        headers: &str,
        body_state: u8,
        body: &[u8],
        now_ms: u64,
        previous: u64,
    ) -> String {
        let out = self.decide_out(
            method, scheme, authority, path, headers, body_state, body, now_ms, previous,
        );
        self.out_text(out)
    }

    /// A verdict as text (see the crate docs): `{"kind":"again","slot":…,"n":…}` for a kept
    /// forward, the `verify` document for a signature job.
    pub fn out_text(&self, out: Out) -> String {
        match out {
            Out::Text(s) => s,
            Out::Again { slot, n } => serialize(&AgainOut {
                kind: "again",
                slot,
                n,
            }),
            Out::Verify(id) => match self.jobs.get(&id) {
                Some(Job::Signature(job)) => serialize(&VerifyOut {
                    kind: "verify",
                    job: id,
                    issuer: job.issuer.0,
                    generation: job.generation,
                    alg: job.alg.name(),
                    candidates: &job.candidates,
                    input_len: job.signing_input.len(),
                }),
                _ => unknown_job(),
            },
        }
    }

    /// [`Host::decide`], with a forward JavaScript holds left as [`Out::Again`].
    #[allow(clippy::too_many_arguments)]
    pub fn decide_out(
        &mut self,
        method: &str,
        scheme: &str,
        authority: &str,
        path: &str,
        headers: &str,
        body_state: u8,
        body: &[u8],
        now_ms: u64,
        previous: u64,
    ) -> Out {
        let now = now_ms / 1000;
        let headers = parse_headers(headers);
        let mut req = Request::new(method, scheme, authority, path, &headers);
        req.body = match body_state {
            BODY_BYTES => Body::Bytes(body),
            BODY_TOO_LARGE => Body::TooLarge,
            BODY_NOT_READ => Body::NotRead,
            _ => Body::NotRead,
        };
        let verdict = self.gateway.decide(&req, now, &self.keys, &mut self.cache);
        let (previous, exchange) = if previous & EXCHANGE_WAIT != 0 {
            (None, self.exchange_waits.remove(&previous))
        } else {
            (self.waits.remove(&previous), None)
        };
        self.verdict_out(verdict, previous, exchange, now_ms)
    }

    /// Completes a signature job with JavaScript's answer. An unknown job (already resumed,
    /// cancelled or evicted, or not a signature job) answers 503, never a forward.
    pub fn resume(&mut self, job: u32, valid: bool, now_ms: u64) -> String {
        let now = now_ms / 1000;
        match self.jobs.remove(&job) {
            Some(Job::Signature(j)) => {
                let verdict = self
                    .gateway
                    .resume(j, valid, now, &self.keys, &mut self.cache);
                self.final_text(verdict, now_ms)
            }
            Some(Job::Introspection(j)) => {
                let verdict = self
                    .gateway
                    .resume_introspection(j, None, now, &mut self.cache);
                self.final_text(verdict, now_ms)
            }
            None => unknown_job(),
        }
    }

    /// Completes an introspection job: `answered` false when the call failed (timeout,
    /// connection refused, body too large), else the endpoint's status and body.
    pub fn resume_introspection(
        &mut self,
        job: u32,
        answered: bool,
        status: u16,
        body: &[u8],
        now_ms: u64,
    ) -> String {
        let now = now_ms / 1000;
        match self.jobs.remove(&job) {
            Some(Job::Introspection(j)) => {
                let answer = answered.then_some((status, body));
                let verdict = self
                    .gateway
                    .resume_introspection(j, answer, now, &mut self.cache);
                self.final_text(verdict, now_ms)
            }
            Some(Job::Signature(j)) => {
                let verdict = self
                    .gateway
                    .resume(j, false, now, &self.keys, &mut self.cache);
                self.final_text(verdict, now_ms)
            }
            None => unknown_job(),
        }
    }

    /// A resumed job's verdict: an answer, a forward, or a wait for the upstream token.
    fn final_text(&mut self, decision: Decision, now_ms: u64) -> String {
        match decision {
            Decision::Respond(r) => respond_json(&r),
            Decision::Forward(f) => self.forward_verdict(f),
            Decision::Exchange(need) => self.exchange_json(need, None, now_ms),
        }
    }

    /// A request that may go once it carries its upstream token: a forward (cached token),
    /// an answer, or `{"kind":"wait"}` until the exchange the core schedules ends.
    fn exchange_json(
        &mut self,
        need: ExchangeNeed,
        previous: Option<ExchangeWait>,
        now_ms: u64,
    ) -> String {
        match self.exchanges.begin(need, previous, now_ms) {
            Begin::Forward { forward, .. } => self.forward_verdict(forward),
            Begin::Respond(r) => respond_json(&r),
            Begin::Paused(w) => {
                let n = w.get() | EXCHANGE_WAIT;
                self.exchange_waits.insert(n, w);
                to_json(&json!({ "kind": "wait", "wait": n }))
            }
        }
    }

    /// The next token exchange to make, as JSON (`{"id","uri","timeout_ms","max_body_bytes",
    /// "headers"}`; the form body, which holds the client's token, comes from
    /// [`Host::exchange_body`]).
    pub fn poll_exchange(&mut self) -> Option<String> {
        let call = self.exchanges.poll_send()?;
        let v = json!({
            "id": call.id.get(),
            "uri": call.uri,
            "timeout_ms": call.timeout_ms,
            "max_body_bytes": call.max_body_bytes,
            "headers": pairs(&call.headers),
        });
        self.exchange_calls.insert(call.id.get(), call);
        Some(to_json(&v))
    }

    /// The form body of an exchange call (holds the client's token: never log it).
    pub fn exchange_body(&self, id: u64) -> Option<String> {
        self.exchange_calls.get(&id).map(|c| c.body.clone())
    }

    /// An exchange call finished (`outcome` as for [`Host::handle_fetch`]: 0 an HTTP answer,
    /// 1 too large, 2 timeout, 3 no connection, 4 not sent, 5 address refused). Answers the
    /// log event as JSON, or `None` for a stale id.
    pub fn handle_exchange(
        &mut self,
        id: u64,
        outcome: u8,
        status: u16,
        body: &[u8],
        now_ms: u64,
    ) -> Option<String> {
        let call = self.exchange_calls.remove(&id)?;
        let outcome = match outcome {
            0 => ExchangeOutcome::Response { status, body },
            1 => ExchangeOutcome::TooLarge,
            2 => ExchangeOutcome::Failed(Failure::Timeout),
            4 => ExchangeOutcome::Failed(Failure::NotSent),
            5 => ExchangeOutcome::Failed(Failure::AddressNotAllowed),
            _ => ExchangeOutcome::Failed(Failure::Connection),
        };
        let report = self.exchanges.handle_response(call.id, outcome, now_ms)?;
        Some(exchange_report_json(
            &report,
            self.exchanges.endpoint(&report),
        ))
    }

    /// The next exchange that got no answer in time, as a log event (JSON).
    pub fn poll_exchange_overdue(&mut self, now_ms: u64) -> Option<String> {
        let report = self.exchanges.poll_overdue(now_ms)?;
        // Its call, if JavaScript still has it, will be answered as stale.
        Some(exchange_report_json(
            &report,
            self.exchanges.endpoint(&report),
        ))
    }

    /// The form body of an introspection job (it holds the token: never log it).
    pub fn introspection_body(&self, job: u32) -> Option<String> {
        match self.jobs.get(&job) {
            Some(Job::Introspection(j)) => Some(j.body.clone()),
            _ => None,
        }
    }

    /// Forgets a job JavaScript will not resume.
    pub fn cancel(&mut self, job: u32) {
        self.jobs.remove(&job);
    }

    /// A signature job as one record, all JavaScript needs to carry it out without a JSON
    /// document or a copy out of Wasm (little-endian): the record's length u32 (these
    /// four bytes included), `input_len` u32, `issuer` u32, `generation` f64, the algorithm
    /// (u8: its index in [`algorithms`]), the candidate keys (u8 count, u32 each), then the
    /// signing input (`input_len` bytes) and the signature. Written into `out` (cleared
    /// first, its allocation kept); false when `job` is not a signature job.
    pub fn job_record(&self, job: u32, out: &mut Vec<u8>) -> bool {
        out.clear();
        let Some(Job::Signature(j)) = self.jobs.get(&job) else {
            return false;
        };
        let input = j.signing_input.as_bytes();
        let (Ok(count), Some(alg)) = (
            u8::try_from(j.candidates.len()),
            Algorithm::ALL
                .iter()
                .position(|a| *a == j.alg)
                .and_then(|i| u8::try_from(i).ok()),
        ) else {
            return false;
        };
        let len = 22 + 4 * j.candidates.len() + input.len() + j.signature.len();
        let (Ok(len32), Ok(input_len), Ok(issuer)) = (
            u32::try_from(len),
            u32::try_from(input.len()),
            u32::try_from(j.issuer.0),
        ) else {
            return false;
        };
        out.reserve(len);
        out.extend_from_slice(&len32.to_le_bytes());
        out.extend_from_slice(&input_len.to_le_bytes());
        out.extend_from_slice(&issuer.to_le_bytes());
        out.extend_from_slice(&(j.generation as f64).to_le_bytes());
        out.push(alg);
        out.push(count);
        for c in &j.candidates {
            let Ok(c) = u32::try_from(*c) else {
                out.clear();
                return false;
            };
            out.extend_from_slice(&c.to_le_bytes());
        }
        out.extend_from_slice(input);
        out.extend_from_slice(&j.signature);
        true
    }

    /// `{"alg":…,"jwk":{…}}` for key `index` of `issuer`, only while the issuer's key set is
    /// still `generation` (so that an index never names a key of another set).
    pub fn key_jwk(&self, issuer: u32, index: u32, generation: f64) -> Option<String> {
        let id = IssuerId(issuer as usize);
        if (self.keys.generation(id) as f64) != generation {
            return None;
        }
        let jwk = self.keys.key(id, index as usize)?;
        Some(to_json(
            &json!({ "alg": jwk.alg.name(), "jwk": webcrypto_jwk(&jwk.key) }),
        ))
    }

    /// The issuer's key-set generation.
    pub fn generation(&self, issuer: u32) -> f64 {
        self.keys.generation(IssuerId(issuer as usize)) as f64
    }

    /// When the issuer's keys were last installed (host seconds), or -1.
    pub fn loaded_at(&self, issuer: u32) -> f64 {
        self.keys
            .loaded_at(IssuerId(issuer as usize))
            .map_or(-1.0, |t| t as f64)
    }

    /// The next JWKS fetch the key schedule wants now, as JSON (see the crate docs).
    pub fn poll_fetch(&mut self, now_ms: u64) -> Option<String> {
        let f = self.schedule.poll_fetch(now_ms)?;
        self.fetches.insert(f.id.get(), f.id);
        let name = self
            .gateway
            .config()
            .issuer(f.issuer)
            .map(|i| i.issuer.as_str());
        Some(to_json(&json!({
            "id": f.id.get(),
            "issuer": f.issuer.0,
            "name": name,
            "trigger": f.trigger.as_str(),
            "unknown_kid": f.trigger == mcp_edge_auth_core::keys::schedule::Trigger::UnknownKid,
            "uri": f.uri,
            "timeout_ms": f.timeout_ms,
            "max_body_bytes": f.max_body_bytes,
            "accept": JWKS_ACCEPT,
        })))
    }

    /// A fetch finished. `outcome`: 0 an HTTP answer (`status`, `cache_control`, `body`), 1
    /// the body was too large, 2 a timeout, 3 no connection, 4 not sent, 5 the runtime refused
    /// the address (workerd's outbound network settings), 6 served by a document another
    /// isolate stored (handed over with [`Host::handle_document`] first). Answers the log
    /// event as JSON (`{"event":…,"issuer":…,"line":…,…}`), or `None` for a stale id.
    #[allow(clippy::too_many_arguments)]
    pub fn handle_fetch(
        &mut self,
        id: u64,
        outcome: u8,
        status: u16,
        cache_control: Option<&str>,
        body: &[u8],
        now_ms: u64,
    ) -> Option<String> {
        let fid = self.fetches.remove(&id)?;
        let outcome = match outcome {
            0 => FetchOutcome::Response {
                status,
                cache_control,
                body,
            },
            1 => FetchOutcome::TooLarge,
            2 => FetchOutcome::Failed(Failure::Timeout),
            4 => FetchOutcome::Failed(Failure::NotSent),
            5 => FetchOutcome::Failed(Failure::AddressNotAllowed),
            6 => FetchOutcome::Shared { ok: true },
            _ => FetchOutcome::Failed(Failure::Connection),
        };
        let rejected = matches!(outcome, FetchOutcome::Response { status: 200, .. });
        let report = self
            .schedule
            .handle_fetch(fid, outcome, now_ms, &mut self.keys)?;
        Some(self.report_json(&report, rejected))
    }

    fn report_json(&self, report: &FetchReport, rejected: bool) -> String {
        let issuer = match report {
            FetchReport::Installed { issuer, .. } | FetchReport::Failed { issuer, .. } => *issuer,
        };
        let name = self
            .gateway
            .config()
            .issuer(issuer)
            .map_or("?", |i| i.issuer.as_str());
        let (_, line) = report.log_line(name);
        let skipped = report.skipped_lines(name);
        let v = match report {
            FetchReport::Installed {
                report, refresh_in, ..
            } => json!({
                "event": "jwks_installed",
                "ok": true,
                "issuer": name,
                "changed": report.changed,
                "keys": report.keys,
                "refresh_in": refresh_in,
                "skipped": skipped,
                "line": line,
            }),
            FetchReport::Failed {
                why, retry_in_ms, ..
            } => json!({
                "event": if rejected { "jwks_rejected" } else { "jwks_fetch_failed" },
                "ok": false,
                "issuer": name,
                "error": why,
                "retry_in_ms": retry_in_ms,
                "line": line,
            }),
        };
        to_json(&v)
    }

    /// A JWKS another isolate stored (the Cache API), fetched at `fetched_at` (seconds):
    /// installed as if fetched here. True when installed.
    pub fn handle_document(
        &mut self,
        issuer: u32,
        body: &[u8],
        cache_control: Option<&str>,
        fetched_at: u64,
        now_ms: u64,
    ) -> bool {
        self.schedule
            .handle_document(
                IssuerId(issuer as usize),
                body,
                cache_control,
                fetched_at,
                now_ms,
                &mut self.keys,
            )
            .is_ok()
    }

    /// The next paused request to decide again (its `wait` number), if any: keys first,
    /// then token exchanges.
    pub fn poll_wake(&mut self, now_ms: u64) -> Option<u64> {
        if let Some(w) = self.schedule.poll_wake(now_ms) {
            return Some(w.get());
        }
        self.exchanges
            .poll_wake(now_ms)
            .map(|w| w.get() | EXCHANGE_WAIT)
    }

    /// When to call in next (ms since the epoch) while requests wait, or `None`.
    pub fn poll_timeout(&self) -> Option<u64> {
        let keys = if self.schedule.has_waiters() {
            self.schedule.poll_timeout()
        } else {
            None
        };
        let exchanges = if self.exchanges.has_waiters() {
            self.exchanges.poll_timeout()
        } else {
            None
        };
        [keys, exchanges].into_iter().flatten().min()
    }

    /// When the schedule next has work, whether or not requests wait (ms; `None`: never).
    pub fn next_due(&self) -> Option<u64> {
        self.schedule.poll_timeout()
    }

    /// A paused request went away.
    pub fn cancel_wait(&mut self, wait: u64) {
        if let Some(id) = self.waits.remove(&wait) {
            self.schedule.cancel(id);
        }
        if let Some(w) = self.exchange_waits.remove(&wait) {
            self.exchanges.cancel(w);
        }
    }

    /// Gives the verified-token cache a secret hash key from 16 random bytes (the
    /// JavaScript side draws them with `crypto.getRandomValues`). Only before the first
    /// request: a cache already holding tokens keeps its key. False when not taken.
    pub fn seed_cache(&mut self, seed: &[u8]) -> bool {
        let (Some(a), Some(b)) = (seed.get(..8), seed.get(8..16)) else {
            return false;
        };
        if !self.cache.is_empty() {
            return false;
        }
        let word = |w: &[u8]| w.iter().fold(0u64, |acc, x| (acc << 8) | u64::from(*x));
        self.cache = self.gateway.new_keyed_cache((word(a), word(b)));
        // The exchange cache hashes subject tokens too: the same secret, reversed.
        if self.exchanges.cached() == 0 {
            self.exchanges = Exchanges::with_hash_key(self.gateway.config(), (word(b), word(a)));
        }
        true
    }

    /// `{"entries":…,"capacity":…,"hits":…,"misses":…,"pending_jobs":…}`.
    pub fn stats(&self) -> String {
        let (hits, misses) = self.cache.stats();
        let ex = self.exchanges.stats();
        let [ok, failed, cache_hit] = mcp_edge_auth_core::exchange::COUNTERS;
        to_json(&json!({
            "entries": self.cache.len(),
            "capacity": self.cache.capacity(),
            "hits": hits,
            "misses": misses,
            "pending_jobs": self.jobs.len(),
            ok: ex.ok,
            failed: ex.failed,
            cache_hit: ex.cache_hits,
            "token_exchange_cached": self.exchanges.cached(),
        }))
    }

    /// A decision as it crosses: a forward (kept, or in its field form), a signature job by
    /// number, anything else as JSON.
    fn verdict_out(
        &mut self,
        verdict: Verdict,
        previous: Option<WaitId>,
        exchange: Option<ExchangeWait>,
        now_ms: u64,
    ) -> Out {
        let v = match verdict {
            Verdict::Respond(r) => return Out::Text(respond_json(&r)),
            Verdict::Forward(f) => return self.forward_out(f),
            Verdict::Exchange(need) => {
                return Out::Text(self.exchange_json(need, exchange, now_ms))
            }
            Verdict::AwaitKeys(need) => {
                match self.schedule.wait(need, previous, now_ms, &self.keys) {
                    Wait::Refused(r) => return Out::Text(respond_json(&r)),
                    Wait::Paused(id) => {
                        self.waits.insert(id.get(), id);
                        json!({ "kind": "wait", "wait": id.get() })
                    }
                }
            }
            Verdict::VerifySignature(job) => {
                return Out::Verify(self.push_job(Job::Signature(job)))
            }
            Verdict::Introspect(job) => {
                let v = json!({
                    "kind": "introspect",
                    "issuer": job.issuer.0,
                    "uri": job.uri,
                    "timeout_ms": job.timeout_ms,
                    "headers": pairs(&job.headers),
                });
                with_job(v, self.push_job(Job::Introspection(job)))
            }
        };
        Out::Text(to_json(&v))
    }

    /// A forward verdict as it crosses (its field form, or JSON; see [`forward_text`]).
    fn forward_verdict(&mut self, f: Forward) -> String {
        let out = self.forward_out(f);
        self.out_text(out)
    }

    /// A forward verdict; its list filter, if any, is kept for [`Host::list_open`].
    fn forward_out(&mut self, mut f: Forward) -> Out {
        let lists = match f.lists.take() {
            Some(l) => {
                let id = self.next_list;
                self.next_list = self.next_list.wrapping_add(1).max(1);
                while self.lists.len() >= MAX_PENDING_JOBS {
                    if self.lists.pop_first().is_none() {
                        break;
                    }
                }
                self.lists.insert(id, ListSlot::Filter(l));
                id
            }
            None => 0,
        };
        // A list filter is this request's own (its number is new each time): never kept.
        // (`f.lists` was taken above, so `Recent` cannot see it.)
        let kept = if lists == 0 {
            self.recent.find(&f)
        } else {
            Err(())
        };
        match kept {
            Ok((at, true)) => Out::Again {
                slot: at.slot,
                n: at.n,
            },
            Ok((at, false)) => {
                let text = forward_text(&f, lists, Some(at));
                self.recent.keep(at, f);
                Out::Text(text)
            }
            Err(()) => Out::Text(forward_text(&f, lists, None)),
        }
    }

    /// The upstream's answer to a forward with list filter `id` (`headers` as `name:value`
    /// lines): `{"mode":"pass"}` (send it as is), or `{"mode":"json"|"sse","remove":[…],
    /// "cache_control":"…"}`: apply the header changes and stream the body through
    /// [`Host::list_push`] and [`Host::list_finish`].
    pub fn list_open(&mut self, id: u32, status: u16, headers: &str) -> String {
        let Some(ListSlot::Filter(filter)) = self.lists.remove(&id) else {
            // Unknown (evicted): never pass a list unfiltered.
            return String::from(r#"{"mode":"lost"}"#);
        };
        let headers = parse_headers(headers);
        let lower: Vec<(String, &str)> = headers
            .iter()
            .map(|(n, v)| (n.to_ascii_lowercase(), *v))
            .collect();
        let pairs: Vec<(&str, &str)> = lower.iter().map(|(n, v)| (n.as_str(), *v)).collect();
        let Some((body, edits)) = (*filter).open(status, &pairs) else {
            return String::from(r#"{"mode":"pass"}"#);
        };
        let mode = match body.shape() {
            Shape::Json => "json",
            Shape::EventStream => "sse",
        };
        self.lists.insert(id, ListSlot::Body(Box::new(body)));
        to_json(
            &json!({ "mode": mode, "remove": edits.remove, "cache_control": edits.cache_control }),
        )
    }

    /// The next chunk of a filtered body: what goes on now (`None`: unknown filter; fail
    /// the stream).
    pub fn list_push(&mut self, id: u32, chunk: &[u8]) -> Option<Vec<u8>> {
        let Some(ListSlot::Body(body)) = self.lists.get_mut(&id) else {
            return None;
        };
        let mut out = Vec::new();
        body.push(&self.gateway, chunk, &mut out);
        Some(out)
    }

    /// Whether the rest of a filtered body passes untouched.
    pub fn list_passing(&self, id: u32) -> bool {
        matches!(self.lists.get(&id), Some(ListSlot::Body(b)) if b.is_passing())
    }

    /// The end of a filtered body: what is left to send (`None`: unknown filter). The filter
    /// stays until [`Self::list_drop`], so that its refusal can still be read.
    pub fn list_finish(&mut self, id: u32) -> Option<Vec<u8>> {
        let Some(ListSlot::Body(body)) = self.lists.get_mut(&id) else {
            return None;
        };
        let mut out = Vec::new();
        body.finish(&self.gateway, &mut out);
        Some(out)
    }

    /// Once a filtered answer was refused (too large, compressed, not JSON), the line for the
    /// log, once; it names why and the setting, never anything of the answer.
    pub fn list_refusal(&mut self, id: u32) -> Option<String> {
        match self.lists.get_mut(&id) {
            Some(ListSlot::Body(body)) => body.take_refusal(),
            _ => None,
        }
    }

    /// Forgets a list filter (the answer went away).
    pub fn list_drop(&mut self, id: u32) {
        self.lists.remove(&id);
    }

    fn push_job(&mut self, job: Job) -> u32 {
        let id = self.next_job;
        self.next_job = self.next_job.wrapping_add(1).max(1);
        while self.jobs.len() >= MAX_PENDING_JOBS {
            if self.jobs.pop_first().is_none() {
                break;
            }
        }
        self.jobs.insert(id, job);
        id
    }
}

/// A finished exchange as a log event: `{"event","ok","uri","line",…}` (no token, no text
/// from the authorization server).
fn exchange_report_json(report: &ExchangeReport, uri: &str) -> String {
    let (_, line) = report.log_line(uri);
    let v = match report {
        ExchangeReport::Issued { expires_in, .. } => json!({
            "event": "token_exchanged", "ok": true, "uri": uri, "expires_in": expires_in, "line": line,
        }),
        ExchangeReport::Refused { error, .. } => json!({
            "event": "token_exchange_refused", "ok": false, "uri": uri, "error": error, "line": line,
        }),
        ExchangeReport::Failed {
            why, retry_in_ms, ..
        } => json!({
            "event": "token_exchange_failed", "ok": false, "uri": uri, "error": why,
            "retry_in_ms": retry_in_ms, "line": line,
        }),
    };
    to_json(&v)
}

/// The JavaScript-facing engine: one per isolate (per configuration).
#[wasm_bindgen]
pub struct Engine {
    host: Host,
    /// Where JavaScript writes a request's head (UTF-8) and body before
    /// [`Engine::body_limit`] and [`Engine::decide`] (see [`Engine::io`]).
    io: IoBuffer,
    /// The last verdict of [`Engine::decide`] that crosses as text (JSON, or a forward's
    /// field form).
    verdict: String,
    /// The record of the last signature job JavaScript asked for ([`Engine::job_at`]).
    job: Vec<u8>,
}

/// A kept forward crosses as one number, `slot × KEPT_N_LIMIT + n`, exact in an f64
/// (2^12 × 2^40 < 2^53).
const KEPT_N_LIMIT: u64 = 1 << 40;
const KEPT_SLOT_LIMIT: usize = 1 << 12;

/// A request's bytes, written by JavaScript straight into Wasm memory. Passing the head as
/// a `&str` argument costs, per call, an allocation, a copy made one character at a time in
/// JavaScript, and a free; here the runtime's `TextEncoder.encodeInto` writes it once into a
/// buffer that lives as long as the engine.
#[derive(Default)]
struct IoBuffer {
    bytes: Vec<u8>,
}

impl IoBuffer {
    /// A buffer larger than this is given back after the request that needed it.
    const KEEP: usize = 64 * 1024;

    /// The address of at least `len` writable bytes.
    fn reserve(&mut self, len: usize) -> *mut u8 {
        if self.bytes.len() < len || (self.bytes.len() > Self::KEEP && len <= Self::KEEP) {
            self.bytes = vec![0; len.max(1024)];
        }
        self.bytes.as_mut_ptr()
    }

    /// The head (`head_len` bytes, UTF-8) and the body (`body_len` bytes after it) that
    /// JavaScript wrote. Lengths beyond the buffer or a head that is not UTF-8 (neither is
    /// ever written by our JavaScript) give an empty head, which the core refuses.
    fn request(&self, head_len: usize, body_len: usize) -> (&str, &[u8]) {
        let head = self
            .bytes
            .get(..head_len)
            .and_then(|b| core::str::from_utf8(b).ok())
            .unwrap_or("");
        let body = head_len
            .checked_add(body_len)
            .and_then(|end| self.bytes.get(head_len..end))
            .unwrap_or(&[]);
        (head, body)
    }
}

/// The request headers the core reads ([`mcp_edge_auth_core::READ_HEADERS`]), one per line:
/// JavaScript hands [`Engine::decide`] only these, read one by one with `Headers.get`, which
/// costs a fraction of iterating every header of the request. (A `Headers` object joins
/// repeated fields with `, ` for `get` and iteration alike, so nothing is lost.)
#[wasm_bindgen]
pub fn read_headers() -> String {
    mcp_edge_auth_core::READ_HEADERS.join("\n")
}

/// The JWS algorithms by the index a signature job's record names them with
/// ([`Host::job_record`]), one per line.
#[wasm_bindgen]
pub fn algorithms() -> String {
    let names: Vec<&str> = Algorithm::ALL.iter().map(|a| a.name()).collect();
    names.join("\n")
}

#[wasm_bindgen]
impl Engine {
    /// Loads a configuration; throws a string naming the offending field when it is invalid.
    #[wasm_bindgen(constructor)]
    pub fn new(config_json: &str) -> Result<Engine, JsValue> {
        Host::new(config_json)
            .map(|host| Engine {
                host,
                io: IoBuffer::default(),
                verdict: String::new(),
                job: Vec::new(),
            })
            .map_err(|e| JsValue::from_str(&e))
    }

    /// The address in this module's memory of `len` bytes where JavaScript writes the next
    /// request: its head, UTF-8 (the method, scheme, authority and path with query, then the
    /// headers as `name:value` lines — those of [`read_headers`] suffice —, all joined with
    /// `\n`), then its body if it was read. Valid until the next call into the engine.
    pub fn io(&mut self, len: usize) -> *mut u8 {
        self.io.reserve(len)
    }

    /// How many body bytes to read before `decide`, or -1 when the body does not matter.
    /// The head (`head_len` bytes) is in [`Engine::io`].
    pub fn body_limit(&self, head_len: usize) -> f64 {
        let (head, _) = self.io.request(head_len, 0);
        split_head(head)
            .and_then(|(m, s, a, p, h)| self.host.body_limit(m, s, a, p, h))
            .map_or(-1.0, |n| n as f64)
    }

    /// Decides the request in [`Engine::io`]: `head_len` bytes of head, then `body_len`
    /// bytes of body; `body_state` is 0 (not read), 1 (the body is the whole body) or 2 (too
    /// large); `now` is `Date.now()`; `previous` is the `wait` the request was woken from
    /// (0: none).
    ///
    /// Returns `slot × 2^40 + n` for the forward JavaScript keeps in `slot` with number `n`
    /// (the `again` verdict, which so crosses without any JSON: a cache hit's common
    /// answer); `-2 - job` for a signature job (described by [`Engine::job_at`]: an
    /// uncached token's common answer, again without JSON); or -1: then [`Engine::verdict`]
    /// holds the verdict (JSON, or a forward's field form).
    pub fn decide(
        &mut self,
        head_len: usize,
        body_state: u8,
        body_len: usize,
        now: f64,
        previous: f64,
    ) -> f64 {
        let (head, body) = self.io.request(head_len, body_len);
        // A head without its four lines (never sent by our JavaScript) is decided as an
        // empty request: the core refuses it.
        let (m, s, a, p, h) = split_head(head).unwrap_or_default();
        let out = self.host.decide_out(
            m,
            s,
            a,
            p,
            h,
            body_state,
            body,
            millis(now),
            millis(previous),
        );
        match out {
            Out::Again { slot, n } if slot < KEPT_SLOT_LIMIT && n < KEPT_N_LIMIT => {
                slot as f64 * KEPT_N_LIMIT as f64 + n as f64
            }
            Out::Verify(job) => -2.0 - f64::from(job),
            out => {
                self.verdict = self.host.out_text(out);
                -1.0
            }
        }
    }

    /// The verdict of the last [`Engine::decide`] that returned -1 (once): JSON, or a
    /// forward's field form (see the crate docs).
    pub fn verdict(&mut self) -> String {
        core::mem::take(&mut self.verdict)
    }

    /// Completes a `verify` verdict.
    pub fn resume(&mut self, job: u32, valid: bool, now: f64) -> String {
        self.host.resume(job, valid, millis(now))
    }

    /// The next token exchange to make (JSON), or `undefined`.
    pub fn poll_exchange(&mut self) -> Option<String> {
        self.host.poll_exchange()
    }

    /// The form body of an exchange (holds the client's token: never log it).
    pub fn exchange_body(&self, id: f64) -> Option<String> {
        self.host.exchange_body(millis(id))
    }

    /// An exchange finished (see [`Host::handle_exchange`]); the log event, or `undefined`.
    pub fn handle_exchange(
        &mut self,
        id: f64,
        outcome: u8,
        status: u16,
        body: &[u8],
        now: f64,
    ) -> Option<String> {
        self.host
            .handle_exchange(millis(id), outcome, status, body, millis(now))
    }

    /// The next exchange that got no answer in time (its log event), or `undefined`.
    pub fn poll_exchange_overdue(&mut self, now: f64) -> Option<String> {
        self.host.poll_exchange_overdue(millis(now))
    }

    /// Completes an `introspect` verdict: `answered` false when the call failed.
    pub fn resume_introspection(
        &mut self,
        job: u32,
        answered: bool,
        status: u16,
        body: &[u8],
        now: f64,
    ) -> String {
        self.host
            .resume_introspection(job, answered, status, body, millis(now))
    }

    /// The form body of an `introspect` job (holds the token: never log it).
    pub fn introspection_body(&self, job: u32) -> Option<String> {
        self.host.introspection_body(job)
    }

    /// Forgets a job that will not be resumed.
    pub fn cancel(&mut self, job: u32) {
        self.host.cancel(job);
    }

    /// The address of signature job `job`'s record ([`Host::job_record`]: what
    /// [`Engine::decide`]'s `-2 - job` names), or 0 when it is not one. The record stays in
    /// place until the next `job_at`: JavaScript reads the signed bytes and the signature
    /// where they are, without a copy.
    pub fn job_at(&mut self, job: u32) -> *const u8 {
        if self.host.job_record(job, &mut self.job) {
            self.job.as_ptr()
        } else {
            core::ptr::null()
        }
    }

    /// A candidate key as `{"alg","jwk"}` JSON, while `generation` is current.
    pub fn key_jwk(&self, issuer: u32, index: u32, generation: f64) -> Option<String> {
        self.host.key_jwk(issuer, index, generation)
    }

    /// The issuer's key-set generation.
    pub fn generation(&self, issuer: u32) -> f64 {
        self.host.generation(issuer)
    }

    /// When keys were last installed, or -1.
    pub fn loaded_at(&self, issuer: u32) -> f64 {
        self.host.loaded_at(issuer)
    }

    /// The next JWKS fetch to make (JSON), or `undefined`.
    pub fn poll_fetch(&mut self, now: f64) -> Option<String> {
        self.host.poll_fetch(millis(now))
    }

    /// A fetch finished (see [`Host::handle_fetch`]); the log event as JSON, or `undefined`.
    pub fn handle_fetch(
        &mut self,
        id: f64,
        outcome: u8,
        status: u16,
        cache_control: Option<String>,
        body: &[u8],
        now: f64,
    ) -> Option<String> {
        self.host.handle_fetch(
            millis(id),
            outcome,
            status,
            cache_control.as_deref(),
            body,
            millis(now),
        )
    }

    /// Installs a JWKS another isolate stored, fetched at `fetched_at` (seconds).
    pub fn handle_document(
        &mut self,
        issuer: u32,
        body: &[u8],
        cache_control: Option<String>,
        fetched_at: f64,
        now: f64,
    ) -> bool {
        self.host.handle_document(
            issuer,
            body,
            cache_control.as_deref(),
            millis(fetched_at),
            millis(now),
        )
    }

    /// The next paused request to decide again, or `undefined`.
    pub fn poll_wake(&mut self, now: f64) -> Option<f64> {
        self.host.poll_wake(millis(now)).map(|w| w as f64)
    }

    /// While requests wait: when to call `poll_fetch`/`poll_wake` next (ms), or -1.
    pub fn poll_timeout(&self) -> f64 {
        self.host.poll_timeout().map_or(-1.0, |t| t as f64)
    }

    /// When the key schedule next has work (ms), or -1: requests before then need not call
    /// `poll_fetch`.
    pub fn next_due(&self) -> f64 {
        self.host.next_due().map_or(-1.0, |t| t as f64)
    }

    /// A paused request went away.
    pub fn cancel_wait(&mut self, wait: f64) {
        self.host.cancel_wait(millis(wait));
    }

    /// Cache statistics (JSON).
    pub fn stats(&self) -> String {
        self.host.stats()
    }

    /// See [`Host::list_open`]; `headers` as `name:value` lines.
    pub fn list_open(&mut self, id: u32, status: u16, headers: &str) -> String {
        self.host.list_open(id, status, headers)
    }

    /// See [`Host::list_push`].
    pub fn list_push(&mut self, id: u32, chunk: &[u8]) -> Option<Vec<u8>> {
        self.host.list_push(id, chunk)
    }

    /// See [`Host::list_passing`].
    pub fn list_passing(&self, id: u32) -> bool {
        self.host.list_passing(id)
    }

    /// See [`Host::list_finish`].
    pub fn list_finish(&mut self, id: u32) -> Option<Vec<u8>> {
        self.host.list_finish(id)
    }

    /// See [`Host::list_refusal`].
    pub fn list_refusal(&mut self, id: u32) -> Option<String> {
        self.host.list_refusal(id)
    }

    /// See [`Host::list_drop`].
    pub fn list_drop(&mut self, id: u32) {
        self.host.list_drop(id);
    }

    /// Gives the verified-token cache a secret hash key (16 random bytes); see
    /// [`Host::seed_cache`].
    pub fn seed_cache(&mut self, seed: &[u8]) -> bool {
        self.host.seed_cache(seed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RSA_N: &str = "oqGPYfrTFzZZKla6mH1sMU1Om9dmVe3jbVcQHZCN6qej1L9whg-_KwUGUm-l_9nxGaMRZ6BrBjViJX_KYgFeeC216VEEziRMK0fgUyroeZ22pBZeqlOaCXmBs49NABAjXDO-rySnJLoUM-y7gh4sE2hdeEYvxDQQWokp3w4pgjovLvGqgjL6hnWLKpZkAyYj5DU2g-QbEqznfe9wAH0u7MdjPMIC0_NokJ4MlV31y9RCu5_14id0DmMoL_rmBQBPCSOCBrZWwaxSLyDqubgM6jTIGNWAih8JNbT--d6hSljkO_DRLPyF0TbMFpSJE_S_biGhxHgzAU4jQEvHElG2Jw";

    fn config() -> String {
        format!(
            r#"{{"resources":[{{"resource":"https://mcp.example.com/mcp","authorization_servers":["https://as.example.com"],
              "scopes_supported":["mcp:read"],"required_scopes":["mcp:read"],
              "issuers":[{{"issuer":"https://as.example.com","algorithms":["RS256"],
                "local_jwks":{{"keys":[{{"kty":"RSA","kid":"k1","alg":"RS256","n":"{RSA_N}","e":"AQAB"}}]}}}},
                {{"issuer":"https://as2.example.com","remote_jwks":{{"http_uri":{{"uri":"https://as2.example.com/jwks","timeout_ms":1500}},"max_body_bytes":2048}}}}]}}]}}"#
        )
    }

    /// A verdict as JavaScript reads it: JSON, or a forward's field form (`forward_text`),
    /// turned into the JSON form it stands for.
    fn parse(s: &str) -> Value {
        let Some(text) = s.strip_prefix('\u{1e}') else {
            return serde_json::from_str(s).unwrap();
        };
        let f: Vec<&str> = text.split('\u{1f}').skip(1).collect();
        let mut at = 6;
        let mut list = |width: usize| -> Vec<Value> {
            let count: usize = f[at].parse().unwrap();
            at += 1;
            let items = (0..count)
                .map(|i| {
                    let i = at + i * width;
                    if width == 1 {
                        json!(f[i])
                    } else {
                        json!([f[i], f[i + 1]])
                    }
                })
                .collect();
            at += count * width;
            items
        };
        let (remove, add, response) = (list(1), list(2), list(2));
        let optional = |t: &str| match t.strip_prefix('=') {
            Some(v) => json!(v),
            None => {
                assert_eq!(t, "", "an optional field is empty or starts with '='");
                Value::Null
            }
        };
        let identity = match f[at] {
            "0" => {
                at += 1;
                Value::Null
            }
            "1" => {
                let scopes: usize = f[at + 5].parse().unwrap();
                let id = json!({
                    "issuer": f[at + 1],
                    "subject": optional(f[at + 2]),
                    "client_id": optional(f[at + 3]),
                    "expires_at": f[at + 4].parse::<u64>().unwrap(),
                    "scopes": f[at + 6..at + 6 + scopes],
                });
                at += 6 + scopes;
                id
            }
            other => panic!("identity marker {other:?} in {s:?}"),
        };
        assert_eq!(at, f.len(), "the identity's fields are the last: {s:?}");
        let mut v = json!({
            "kind": "forward",
            "reason": f[0],
            "cache_hit": f[1] == "1",
            "lists": f[2].parse::<u64>().unwrap(),
            "new_path": if f[3].is_empty() { Value::Null } else { json!(f[3]) },
            "remove_headers": remove,
            "add_headers": add,
            "response_headers": response,
            "identity": identity,
        });
        if !f[4].is_empty() {
            v["keep"] =
                json!({ "slot": f[4].parse::<u64>().unwrap(), "n": f[5].parse::<u64>().unwrap() });
        }
        v
    }

    #[test]
    fn config_errors_name_the_field() {
        let e = Host::new(r#"{"resources":[]}"#).err().unwrap();
        assert!(e.contains("resources"), "{e}");
        assert!(Host::new("not json").is_err());
    }

    #[test]
    fn metadata_and_challenge() {
        let mut h = Host::new(&config()).unwrap();
        let v = parse(&h.decide(
            "GET",
            "https",
            "mcp.example.com",
            "/.well-known/oauth-protected-resource/mcp",
            "",
            0,
            &[],
            1_800_000_000_000,
            0,
        ));
        assert_eq!(v["kind"], "respond");
        assert_eq!(v["status"], 200);
        let doc = parse(v["body"].as_str().unwrap());
        assert_eq!(doc["resource"], "https://mcp.example.com/mcp");
        let v = parse(&h.decide(
            "POST",
            "https",
            "mcp.example.com",
            "/mcp",
            "content-type:application/json",
            0,
            &[],
            1_800_000_000_000,
            0,
        ));
        assert_eq!(v["status"], 401);
        let www = v["headers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p[0] == "www-authenticate")
            .unwrap();
        assert!(www[1]
            .as_str()
            .unwrap()
            .starts_with("Bearer resource_metadata="));
    }

    #[test]
    fn header_block() {
        let h = parse_headers("a:1\nAuthorization: Bearer x\n\nbogus\nx-y:a:b");
        assert_eq!(
            h,
            vec![("a", "1"), ("Authorization", "Bearer x"), ("x-y", "a:b")]
        );
        let big = "a".repeat(MAX_HEADER_BLOCK + 10);
        assert!(parse_headers(&big).is_empty());
    }

    #[test]
    fn keys_and_fetches() {
        let mut h = Host::new(&config()).unwrap();
        let k = parse(&h.key_jwk(0, 0, h.generation(0)).unwrap());
        assert_eq!(k["alg"], "RS256");
        assert_eq!(k["jwk"]["n"], RSA_N);
        assert!(h.key_jwk(0, 0, h.generation(0) + 1.0).is_none());
        assert!(h.key_jwk(0, 1, h.generation(0)).is_none());
        // The remote issuer's first fetch is due at once, and carries what JavaScript needs.
        let f = parse(&h.poll_fetch(100_000).unwrap());
        assert_eq!(f["issuer"], 1);
        assert_eq!(f["uri"], "https://as2.example.com/jwks");
        assert_eq!(f["timeout_ms"], 1500);
        assert_eq!(f["max_body_bytes"], 2048);
        assert_eq!(f["trigger"], "initial");
        assert!(h.poll_fetch(100_001).is_none(), "one at a time");
        let id = f["id"].as_u64().unwrap();
        let r = parse(&h.handle_fetch(id, 0, 200, None, b"{}", 100_010).unwrap());
        assert_eq!(r["ok"], false);
        assert_eq!(r["event"], "jwks_rejected");
        assert!(
            h.handle_fetch(id, 0, 200, None, b"{}", 100_020).is_none(),
            "stale"
        );
        // Retried after 1 s.
        assert_eq!(h.next_due(), Some(101_010));
        assert!(h.poll_fetch(101_000).is_none());
        let f = parse(&h.poll_fetch(101_010).unwrap());
        assert_eq!(f["trigger"], "retry");
        let id = f["id"].as_u64().unwrap();
        let r = parse(&h.handle_fetch(id, 5, 0, None, b"", 101_020).unwrap());
        assert_eq!(r["event"], "jwks_fetch_failed");
        assert!(
            r["error"].as_str().unwrap().contains("network service"),
            "{r}"
        );
    }

    #[test]
    fn unknown_job_is_never_a_forward() {
        let mut h = Host::new(&config()).unwrap();
        let v = parse(&h.resume(42, true, 1_800_000_000));
        assert_eq!(v["kind"], "respond");
        assert_eq!(v["status"], 503);
        assert!(!h.job_record(42, &mut Vec::new()));
    }

    /// A token of the config's issuer for `sub` (signature bytes arbitrary, one per token: the
    /// tests answer the `verify` job themselves).
    fn token(sub: &str, exp: u64) -> String {
        let b = |v: &str| b64::encode_url(v.as_bytes());
        let claims = format!(
            r#"{{"iss":"https://as.example.com","aud":"https://mcp.example.com/mcp","sub":"{sub}","scope":"mcp:read","exp":{exp},"iat":1}}"#
        );
        format!(
            "{}.{}.{}",
            b(r#"{"alg":"RS256","kid":"k1","typ":"at+jwt"}"#),
            b(&claims),
            b(&format!("signature of {sub}"))
        )
    }

    /// `GET /mcp` with `token`, decided.
    fn get(h: &mut Host, token: &str, now_ms: u64) -> Out {
        let headers = format!("authorization:Bearer {token}");
        h.decide_out(
            "GET",
            "https",
            "mcp.example.com",
            "/mcp",
            &headers,
            0,
            &[],
            now_ms,
            0,
        )
    }

    /// Decides `token` as JavaScript does: verify jobs answered valid, `again` looked up in
    /// the verdicts kept. Returns the forward (or respond) verdict.
    fn decide_as_js(
        h: &mut Host,
        kept: &mut BTreeMap<u64, (u64, Value)>,
        token: &str,
        now_ms: u64,
    ) -> (Value, bool) {
        let out = get(h, token, now_ms);
        let mut v = parse(&h.out_text(out));
        if v["kind"] == "verify" {
            v = parse(&h.resume(v["job"].as_u64().unwrap() as u32, true, now_ms));
        }
        if v["kind"] == "again" {
            let (n, kept) = kept
                .get(&v["slot"].as_u64().unwrap())
                .expect("a slot JavaScript holds");
            assert_eq!(
                *n,
                v["n"].as_u64().unwrap(),
                "the verdict JavaScript holds in that slot"
            );
            return (kept.clone(), true);
        }
        if let Some(k) = v.get("keep") {
            kept.insert(
                k["slot"].as_u64().unwrap(),
                (k["n"].as_u64().unwrap(), v.clone()),
            );
        }
        (v, false)
    }

    #[test]
    fn a_forward_again_crosses_as_its_slot_and_is_always_that_identity_s() {
        let config = config().replacen(
            r#""required_scopes":["mcp:read"],"#,
            r#""required_scopes":["mcp:read"],"claim_to_headers":[{"header_name":"x-mcp-subject","claim_name":"sub"}],"#,
            1,
        );
        let mut h = Host::new(&config).unwrap();
        let mut kept = BTreeMap::new();
        let now = 1_800_000_000_000;
        let exp = now / 1000 + 60;
        let subjects: Vec<String> = (0..600).map(|i| format!("client-{i}")).collect();
        let tokens: Vec<String> = subjects.iter().map(|s| token(s, exp)).collect();
        // First sight: verified, not kept (a token verified anew never repeats); first cache
        // hit: kept; then the same again.
        let (v, again) = decide_as_js(&mut h, &mut kept, &tokens[0], now);
        assert!(
            !again && v["kind"] == "forward" && v["cache_hit"] == false && v.get("keep").is_none(),
            "{v}"
        );
        let (v, again) = decide_as_js(&mut h, &mut kept, &tokens[0], now);
        assert!(
            !again && v["cache_hit"] == true && v.get("keep").is_some(),
            "{v}"
        );
        let (v, again) = decide_as_js(&mut h, &mut kept, &tokens[0], now);
        assert!(
            again && v["identity"]["subject"] == "client-0" && v["cache_hit"] == true,
            "{v}"
        );
        // Many identities in a pseudo-random order (more than the slots): every verdict,
        // kept or not, is the token's own.
        let mut againn = 0;
        let mut x: u64 = 7;
        for step in 0..5000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let i = ((x >> 33) % if step % 2 == 0 { 8 } else { 600 }) as usize;
            let (v, again) = decide_as_js(&mut h, &mut kept, &tokens[i], now + step);
            assert_eq!(v["kind"], "forward", "{v}");
            assert_eq!(v["identity"]["subject"], subjects[i].as_str(), "{v}");
            assert_eq!(v["add_headers"][0][1], subjects[i].as_str(), "{v}");
            againn += usize::from(again);
        }
        assert!(
            againn > 2000,
            "the frequent identities cross as their slot: {againn}"
        );
        // Expired: refused, never a kept forward.
        let (v, _) = decide_as_js(&mut h, &mut kept, &tokens[0], (exp + 120) * 1000);
        assert_eq!(v["kind"], "respond", "{v}");
        assert_eq!(v["status"], 401, "{v}");
    }

    #[test]
    fn every_busy_caller_stays_kept_and_a_list_answer_never_is() {
        let config = config().replacen(
            r#""required_scopes":["mcp:read"],"#,
            r#""required_scopes":["mcp:read"],"mcp":{"rules":[{"method":"tools/call","name":"admin_*","scopes":["mcp:admin"]}]},"#,
            1,
        );
        let mut h = Host::new(&config).unwrap();
        let mut kept = BTreeMap::new();
        let now = 1_800_000_000_000;
        let exp = now / 1000 + 60;
        // 1,000 callers (fewer than the slots), each seen twice: then every cache hit of
        // every one of them crosses as its slot, whatever their identities' addresses.
        let tokens: Vec<String> = (0..1000).map(|i| token(&format!("c-{i}"), exp)).collect();
        for t in tokens.iter().chain(tokens.iter()) {
            decide_as_js(&mut h, &mut kept, t, now);
        }
        for (i, t) in tokens.iter().enumerate().rev() {
            let (v, again) = decide_as_js(&mut h, &mut kept, t, now);
            assert!(again, "caller {i}: {v}");
            assert_eq!(v["identity"]["subject"], format!("c-{i}"));
        }
        // tools/list: the answer is filtered per request, so its forward is never kept nor
        // sent again, however often the same token lists.
        let body = br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
        let headers = format!(
            "authorization:Bearer {}\ncontent-type:application/json\naccept:application/json, text/event-stream",
            tokens[0]
        );
        let mut ids = Vec::new();
        for _ in 0..4 {
            let v = parse(&h.decide(
                "POST",
                "https",
                "mcp.example.com",
                "/mcp",
                &headers,
                BODY_BYTES,
                body,
                now,
                0,
            ));
            assert_eq!(v["kind"], "forward", "{v}");
            assert!(v.get("keep").is_none(), "{v}");
            let id = v["lists"].as_u64().unwrap();
            assert!(
                id > 0 && !ids.contains(&id),
                "a list filter of its own: {v}"
            );
            ids.push(id);
        }
        // The caller's next plain request is still its kept verdict.
        let (v, again) = decide_as_js(&mut h, &mut kept, &tokens[0], now);
        assert!(again, "{v}");
    }

    /// The field form says what the JSON form says, for any forward; one whose parts hold
    /// a control character (which could be taken for a separator) crosses as JSON.
    #[test]
    fn a_forward_crosses_as_fields_that_say_what_its_json_says() {
        use mcp_edge_auth_core::http::Reason;
        let forward = |path: Option<&str>, value: &str, identity: Option<Identity>| Forward {
            remove_headers: Arc::from(vec!["x-mcp-subject".to_string(), "authorization".into()]),
            add_headers: Arc::from(vec![
                ("x-mcp-subject".to_string(), value.to_string()),
                ("x-mcp-scopes".into(), "a,b".into()),
            ]),
            new_path: path.map(str::to_string),
            response_headers: vec![
                ("vary", "origin".into()),
                ("access-control-allow-origin", "https://a.example".into()),
            ],
            identity: identity.map(Arc::new),
            reason: Reason::Allowed,
            cache_hit: true,
            lists: None,
        };
        let id = Identity {
            issuer: "https://as.example".into(),
            subject: Some("sub \"é\" =x".into()),
            client_id: None,
            scopes: vec!["mcp:read".into(), "".into(), "=".into()],
            expires_at: 1_800_000_000,
        };
        let empty = Identity {
            subject: Some(String::new()),
            client_id: Some("=".into()),
            scopes: vec![],
            ..id.clone()
        };
        let control = Identity {
            subject: Some("\u{1f}sub\u{1e}\"é\n".into()),
            ..id.clone()
        };
        let cases = [
            (forward(None, "client-1", Some(id.clone())), None, 0),
            (
                forward(Some("/mcp?x=1"), "", None),
                Some(Kept {
                    slot: 1023,
                    n: 1 << 39,
                }),
                7,
            ),
            (
                forward(Some("/p"), "ü ∑", Some(id.clone())),
                Some(Kept { slot: 0, n: 1 }),
                u32::MAX,
            ),
            (forward(None, "v", Some(empty)), None, 1),
        ];
        for (f, keep, lists) in &cases {
            let text = forward_text(f, *lists, *keep);
            assert!(text.starts_with('\u{1e}'), "{text:?}");
            assert_eq!(
                parse(&text),
                parse(&forward_json(f, *lists, *keep)),
                "{text:?}"
            );
        }
        // A control character in any part: JSON, which says the same.
        for f in [
            forward(Some("/a\u{1f}b"), "v", None),
            forward(None, "v\u{1f}x-evil\u{1f}1", Some(id.clone())),
            forward(None, "tab\there", None),
            forward(None, "v", Some(control)),
        ] {
            let text = forward_text(&f, 0, None);
            assert!(text.starts_with('{'), "{text:?}");
            assert_eq!(parse(&text), parse(&forward_json(&f, 0, None)));
        }
        // An empty path would read as none: never sent as fields.
        let f = forward(Some(""), "v", None);
        assert!(forward_text(&f, 0, None).starts_with('{'));
    }

    #[test]
    fn a_signature_job_crosses_as_its_number_and_one_record() {
        let mut h = Host::new(&config()).unwrap();
        let now = 1_800_000_000_000;
        let t = token("client-0", now / 1000 + 60);
        let out = get(&mut h, &t, now);
        let Out::Verify(id) = out else {
            panic!("a signature job: {out:?}")
        };
        // The JSON form (Host::decide, the crate docs) names the same job.
        let v = parse(&h.out_text(Out::Verify(id)));
        assert_eq!(v["kind"], "verify");
        assert_eq!(v["job"], id);
        let mut r = vec![7u8; 3];
        assert!(h.job_record(id, &mut r));
        let u32_at = |at: usize| u32::from_le_bytes(r[at..at + 4].try_into().unwrap()) as usize;
        assert_eq!(u32_at(0), r.len(), "the record starts with its length");
        let input_len = u32_at(4);
        assert_eq!(input_len, v["input_len"].as_u64().unwrap() as usize);
        assert_eq!(u32_at(8), v["issuer"].as_u64().unwrap() as usize);
        let generation = f64::from_le_bytes(r[12..20].try_into().unwrap());
        assert_eq!(generation, v["generation"].as_f64().unwrap());
        let names = algorithms();
        assert_eq!(names.split('\n').nth(usize::from(r[20])), Some("RS256"));
        assert_eq!(names.split('\n').count(), Algorithm::ALL.len());
        let count = usize::from(r[21]);
        let at = 22;
        let candidates: Vec<usize> = (0..count).map(|i| u32_at(at + 4 * i)).collect();
        assert_eq!(serde_json::to_value(&candidates).unwrap(), v["candidates"]);
        let rest = &r[at + 4 * count..];
        let (input, signature) = rest.split_at(input_len);
        let mut parts = t.rsplitn(2, '.');
        let sig = parts.next().unwrap();
        assert_eq!(input, parts.next().unwrap().as_bytes());
        assert_eq!(signature, b64::decode_url(sig).unwrap());
        // The engine hands JavaScript the same record, where it lies.
        let mut e = Engine::new(&config()).unwrap();
        let Out::Verify(eid) = get(&mut e.host, &t, now) else {
            panic!("a signature job")
        };
        let at = e.job_at(eid);
        assert!(!at.is_null());
        assert_eq!(at, e.job.as_ptr());
        assert_eq!(e.job[20..], r[20..]);
        assert!(e.job_at(eid + 1).is_null());
        // Resumed once; then the number names nothing.
        let f = parse(&h.resume(id, true, now));
        assert_eq!(f["kind"], "forward", "{f}");
        assert!(!h.job_record(id, &mut r));
        assert!(r.is_empty());
        assert_eq!(parse(&h.out_text(Out::Verify(id)))["status"], 503);
    }

    #[test]
    fn io_buffer_lengths_beyond_it_or_bytes_not_utf8_give_an_empty_request() {
        let mut io = IoBuffer::default();
        let at = io.reserve(8);
        assert!(!at.is_null());
        io.bytes[..8].copy_from_slice(b"GET\nabcd");
        assert_eq!(io.request(4, 4), ("GET\n", &b"abcd"[..]));
        assert_eq!(io.request(usize::MAX, 0), ("", &[][..]));
        assert_eq!(io.request(4, usize::MAX), ("GET\n", &[][..]));
        assert_eq!(io.request(4, io.bytes.len()), ("GET\n", &[][..]));
        io.bytes[1] = 0xff;
        assert_eq!(io.request(4, 0).0, "");
        // A large request's buffer is given back after it.
        io.reserve(1 << 20);
        assert_eq!(io.bytes.len(), 1 << 20);
        io.reserve(10);
        assert!(io.bytes.len() <= IoBuffer::KEEP);
    }

    #[test]
    fn time_conversion() {
        assert_eq!(millis(f64::NAN), 0);
        assert_eq!(millis(-5.0), 0);
        assert_eq!(millis(1.7e12 + 0.9), 1_700_000_000_000);
        assert_eq!(millis(f64::INFINITY), 0);
    }
}
