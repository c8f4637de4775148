//! # mcp-edge-auth-bench
//!
//! The core's microbenchmark cases, defined once and run three ways (`make bench-micro`):
//!
//! * by criterion, natively (`benches/core.rs`, `cargo bench -p mcp-edge-auth-bench`);
//! * by the plain timing loop of `src/main.rs`, natively;
//! * by the same loop built for `wasm32-wasip1` and run under Node's V8 with `--no-liftoff`
//!   (`bench/wasm-run.mjs`), which is how Envoy runs the filter: optimising compiler only.
//!
//! So the native and Wasm columns come from the same code, and the Wasm overhead is visible.
//! Cases (each signature case for both providers, `ring` — what the Envoy filter ships — and
//! `jwt-simple`, the default provider):
//!
//! | group | what one iteration is |
//! |---|---|
//! | `parse/ALG` | [`jws::parse`] of a typical access token (base64url, strict JSON header and claims) |
//! | `hash/ALG` | the keyed SipHash of the token (the verified-token cache's map key) |
//! | `verify/PROVIDER-ALG` | one signature check with a verifier prepared at key install |
//! | `decide-uncached/PROVIDER-ALG` | [`Gateway::decide`] with the token cache off: the whole request path with a signature check |
//! | `cache-hit/ALG` | [`Gateway::decide`] answered from the verified-token cache |
//! | `exchange-cache-hit/ALG` | the same on a resource with `upstream_token`: [`Gateway::decide`], then [`Exchanges::begin`] answered from the exchange cache (RFC 8693) |
//! | `list-filter/100-tools-json`, `…-sse` | filtering the answer to `tools/list` (100 tools, 10 of them hidden from the caller): [`ListFilter::open`], the body through [`ListBody::push`] and [`ListBody::finish`]: what per-caller discovery adds to a list request |
//!
//! Keys and tokens come from `fixtures.json` (written by `bench/micro-fixtures.mjs` with
//! `jose`); every decision runs at the fixture's fixed `now`, so the tokens never expire.

use std::fmt::Write as _;

use mcp_edge_auth_core::crypto::{
    jwt_simple::JwtSimpleProvider, ring::RingProvider, AlgSet, Algorithm, CryptoProvider,
    SignatureVerifier, Verification, VerifyInput,
};
use mcp_edge_auth_core::exchange::ExchangeOutcome;
use mcp_edge_auth_core::{jwks, jws};
use mcp_edge_auth_core::{
    Begin, Config, Exchanges, Gateway, KeyStore, Request, TokenCache, Verdict,
};
use serde_json::{json, Value};

/// The keys and tokens (see `bench/micro-fixtures.mjs`).
pub const FIXTURES: &str = include_str!("../fixtures.json");

/// The algorithms benchmarked: what most authorization servers issue (RS256), the common
/// elliptic-curve choice (ES256), and EdDSA.
pub const ALGS: [Algorithm; 3] = [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA];

/// Leeway passed to verifiers, as the core's default `clock_skew_seconds`.
const CLOCK_SKEW: u64 = 60;

/// A signature provider under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    /// `ring`: the Envoy filter's provider (ES256 through `mcp-edge-auth-p256`'s tables).
    Ring,
    /// `jwt-simple`: the core's default provider.
    JwtSimple,
}

impl Provider {
    /// Both, in report order.
    pub const ALL: [Provider; 2] = [Provider::Ring, Provider::JwtSimple];

    /// Its name in case ids.
    pub fn name(self) -> &'static str {
        match self {
            Provider::Ring => "ring",
            Provider::JwtSimple => "jwt-simple",
        }
    }

    fn boxed(self) -> Box<dyn CryptoProvider> {
        match self {
            Provider::Ring => Box::new(RingProvider),
            Provider::JwtSimple => Box::new(JwtSimpleProvider),
        }
    }
}

/// One benchmark case: a named closure doing one iteration. It returns a number derived from
/// its result, which the runners pass to `black_box` so the work cannot be optimised away.
pub struct Case {
    /// `parse`, `hash`, `verify`, `decide-uncached`, `cache-hit`.
    pub group: &'static str,
    /// The variant: `ALG` or `PROVIDER-ALG`.
    pub name: String,
    run: Box<dyn FnMut() -> u64>,
}

impl Case {
    /// `group/name`, the id used in every report.
    pub fn id(&self) -> String {
        format!("{}/{}", self.group, self.name)
    }

    /// Runs one iteration.
    #[inline]
    pub fn run(&mut self) -> u64 {
        (self.run)()
    }
}

/// The parsed fixtures.
struct Fixtures {
    now: u64,
    resource: String,
    issuer: String,
    jwks: String,
    tokens: Vec<(Algorithm, String)>,
}

impl Fixtures {
    fn load() -> Result<Fixtures, String> {
        let v: Value = serde_json::from_str(FIXTURES).map_err(|e| format!("fixtures.json: {e}"))?;
        let s = |k: &str| {
            v.get(k)
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| format!("fixtures.json: no {k}"))
        };
        let mut tokens = Vec::new();
        for alg in ALGS {
            let t = v
                .get("tokens")
                .and_then(|t| t.get(alg.name()))
                .and_then(Value::as_str)
                .ok_or_else(|| format!("fixtures.json: no {} token", alg.name()))?;
            tokens.push((alg, t.to_string()));
        }
        Ok(Fixtures {
            now: v
                .get("now")
                .and_then(Value::as_u64)
                .ok_or("fixtures.json: no now")?,
            resource: s("resource")?,
            issuer: s("issuer")?,
            jwks: v
                .get("jwks")
                .map(Value::to_string)
                .ok_or("fixtures.json: no jwks")?,
            tokens,
        })
    }

    /// The gateway config the decision cases run: one resource, one issuer with the three
    /// keys inline, a required scope and one claim header (as the Envoy benchmark).
    fn config(&self, cache_entries: usize) -> Result<Config, String> {
        self.config_with(cache_entries, json!({}))
    }

    /// As [`Fixtures::config`], with more resource fields.
    fn config_with(&self, cache_entries: usize, extra: Value) -> Result<Config, String> {
        let mut c = json!({
            "resources": [{
                "resource": self.resource,
                "authorization_servers": [self.issuer],
                "required_scopes": ["mcp:read"],
                "issuers": [{
                    "issuer": self.issuer,
                    "algorithms": ["RS256", "ES256", "EdDSA"],
                    "local_jwks": { "inline_string": self.jwks },
                }],
                "claim_to_headers": [{ "header_name": "x-mcp-subject", "claim_name": "sub" }],
            }],
            "token_cache": { "max_entries": cache_entries },
        });
        if let (Some(r), Some(extra)) = (
            c.pointer_mut("/resources/0").and_then(Value::as_object_mut),
            extra.as_object(),
        ) {
            r.extend(extra.clone());
        }
        Config::from_json(c.to_string().as_bytes()).map_err(|e| e.to_string())
    }
}

/// A request as the Envoy filter hands it to the core: GET /mcp with the headers a client
/// and Envoy put on it.
struct OwnedRequest {
    headers: Vec<(String, String)>,
}

impl OwnedRequest {
    fn new(token: &str) -> Self {
        let h = |n: &str, v: &str| (n.to_string(), v.to_string());
        OwnedRequest {
            headers: vec![
                h("user-agent", "mcp-client/1.0"),
                h("accept", "application/json, text/event-stream"),
                h("mcp-protocol-version", "2025-06-18"),
                h("authorization", &format!("Bearer {token}")),
                h("x-forwarded-proto", "http"),
                h("x-request-id", "6f1c9a62-3d2e-4c4b-9a8e-0c6f3b2a1d11"),
            ],
        }
    }

    fn decide(&self, g: &Gateway, now: u64, keys: &KeyStore, cache: &mut TokenCache) -> Verdict {
        let pairs: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let req = Request::new("GET", "http", "mcp.example.com", "/mcp", &pairs);
        g.decide(&req, now, keys, cache)
    }
}

/// 1 for a forward with the expected cache outcome, else an error naming what came back.
fn forwarded(v: &Verdict, cache_hit: bool) -> Result<u64, String> {
    match v {
        Verdict::Forward(f) if f.cache_hit == cache_hit => Ok(1),
        other => Err(format!(
            "expected a forward (cache_hit {cache_hit}), got {other:?}"
        )),
    }
}

fn decision_case(
    f: &Fixtures,
    group: &'static str,
    name: String,
    provider: Provider,
    token: &str,
    cache_entries: usize,
) -> Result<Case, String> {
    let config = f.config(cache_entries)?;
    let keys = KeyStore::new(&config, provider.boxed()).map_err(|e| e.to_string())?;
    let gateway = Gateway::new(config);
    let mut cache = gateway.new_cache();
    let req = OwnedRequest::new(token);
    let now = f.now;
    let hit = cache_entries > 0;
    // The first decision fills the cache (for cache-hit cases) and proves that the case
    // measures the success path.
    forwarded(&req.decide(&gateway, now, &keys, &mut cache), false)
        .map_err(|e| format!("{group}/{name}: {e}"))?;
    forwarded(&req.decide(&gateway, now, &keys, &mut cache), hit)
        .map_err(|e| format!("{group}/{name}: {e}"))?;
    Ok(Case {
        group,
        name,
        run: Box::new(move || match req.decide(&gateway, now, &keys, &mut cache) {
            Verdict::Forward(fw) => fw.add_headers.len() as u64,
            _ => 0,
        }),
    })
}

/// A cache hit on a resource with `upstream_token`, its exchanged token cached too: what a
/// request costs once both caches hold its token (the exchange made once, in setup).
fn exchange_case(f: &Fixtures, alg: Algorithm, token: &str) -> Result<Case, String> {
    let name = alg.name().to_string();
    let err = |e: String| format!("exchange-cache-hit/{name}: {e}");
    let extra = json!({ "upstream_token": {
        "http_uri": { "uri": "https://auth.example.com/token", "cluster": "auth" },
        "client_id": "gateway", "client_secret": "secret", "audience": ["urn:upstream"],
    }});
    let config = f.config_with(4096, extra).map_err(err)?;
    let keys = KeyStore::new(&config, Provider::Ring.boxed()).map_err(|e| err(e.to_string()))?;
    let mut exchanges = Exchanges::with_hash_key(&config, (7, 11));
    let gateway = Gateway::new(config);
    let mut cache = gateway.new_cache();
    let req = OwnedRequest::new(token);
    let now = f.now;
    let now_ms = now * 1000;
    let Verdict::Exchange(need) = req.decide(&gateway, now, &keys, &mut cache) else {
        return Err(err("expected an exchange".into()));
    };
    let Begin::Paused(wait) = exchanges.begin(need, None, now_ms) else {
        return Err(err("expected a pause for the first exchange".into()));
    };
    let call = exchanges
        .poll_send()
        .ok_or_else(|| err("no exchange to send".into()))?;
    let answer = json!({
        "access_token": "upstream-access-token-0123456789abcdef",
        "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
        "token_type": "Bearer", "expires_in": 300,
    })
    .to_string();
    let outcome = ExchangeOutcome::Response {
        status: 200,
        body: answer.as_bytes(),
    };
    exchanges.handle_response(call.id, outcome, now_ms);
    if exchanges.poll_wake(now_ms) != Some(wait) {
        return Err(err("the waiter was not woken".into()));
    }
    let mut step = move || -> Result<u64, String> {
        let Verdict::Exchange(need) = req.decide(&gateway, now, &keys, &mut cache) else {
            return Err("expected an exchange".into());
        };
        match exchanges.begin(need, None, now_ms) {
            Begin::Forward {
                forward,
                cached: true,
            } => Ok(forward.add_headers.len() as u64),
            other => Err(format!("expected a cached forward, got {other:?}")),
        }
    };
    step().map_err(err)?;
    Ok(Case {
        group: "exchange-cache-hit",
        name,
        run: Box::new(move || step().unwrap_or(0)),
    })
}

fn verify_case(
    f: &Fixtures,
    provider: Provider,
    alg: Algorithm,
    token: &str,
) -> Result<Case, String> {
    let name = format!("{}-{}", provider.name(), alg.name());
    let (keys, _) = jwks::parse(f.jwks.as_bytes(), AlgSet::all())
        .map_err(|e| format!("verify/{name}: jwks: {e:?}"))?;
    let jwk = keys
        .into_iter()
        .find(|k| k.alg == alg)
        .ok_or_else(|| format!("verify/{name}: no key"))?;
    let verifier: Box<dyn SignatureVerifier> = provider
        .boxed()
        .verifier(&jwk.key, jwk.alg)
        .map_err(|e| format!("verify/{name}: {e:?}"))?;
    let parsed = jws::parse(token).map_err(|e| format!("verify/{name}: {e:?}"))?;
    let signing_input = parsed.signing_input.to_string();
    let signature = parsed.signature.clone();
    let token = token.to_string();
    let now = f.now;
    let check = move || {
        verifier.verify(&VerifyInput {
            token: &token,
            signing_input: signing_input.as_bytes(),
            signature: &signature,
            now,
            clock_skew: CLOCK_SKEW,
        })
    };
    if check() != Verification::Valid {
        return Err(format!("verify/{name}: the fixture token does not verify"));
    }
    Ok(Case {
        group: "verify",
        name,
        run: Box::new(move || u64::from(check() == Verification::Valid)),
    })
}

/// Every case, set up and checked (each signature verifies, each decision forwards).
pub fn cases() -> Result<Vec<Case>, String> {
    let f = Fixtures::load()?;
    let mut out = Vec::new();
    for (alg, token) in &f.tokens {
        let t = token.clone();
        jws::parse(&t).map_err(|e| format!("parse/{}: {e:?}", alg.name()))?;
        out.push(Case {
            group: "parse",
            name: alg.name().to_string(),
            run: Box::new(move || match jws::parse(&t) {
                Ok(j) => j.signature.len() as u64,
                Err(_) => 0,
            }),
        });
    }
    for (alg, token) in &f.tokens {
        let t = token.clone();
        let c = TokenCache::new(1);
        out.push(Case {
            group: "hash",
            name: alg.name().to_string(),
            run: Box::new(move || c.hash(&t)),
        });
    }
    for provider in Provider::ALL {
        for (alg, token) in &f.tokens {
            out.push(verify_case(&f, provider, *alg, token)?);
        }
    }
    for provider in Provider::ALL {
        for (alg, token) in &f.tokens {
            let name = format!("{}-{}", provider.name(), alg.name());
            out.push(decision_case(
                &f,
                "decide-uncached",
                name,
                provider,
                token,
                0,
            )?);
        }
    }
    for (alg, token) in &f.tokens {
        let name = alg.name().to_string();
        out.push(decision_case(
            &f,
            "cache-hit",
            name,
            Provider::Ring,
            token,
            4096,
        )?);
    }
    for (alg, token) in &f.tokens {
        out.push(exchange_case(&f, *alg, token)?);
    }
    if let Some((_, token)) = f.tokens.first() {
        out.push(list_case(&f, token, false)?);
        out.push(list_case(&f, token, true)?);
    }
    Ok(out)
}

/// The answer to `tools/list` of a server with 100 tools (each with a description and an
/// input schema, ~280 bytes: ~28 KB), 10 of which (`admin_*`) need `mcp:admin`.
pub fn hundred_tools() -> String {
    let tools: Vec<Value> = (0..100)
        .map(|i| {
            let name = if i % 10 == 0 { format!("admin_{i}") } else { format!("tool_{i}") };
            json!({
                "name": name,
                "description": format!("Tool number {i}: does one thing well and reports what it did."),
                "inputSchema": {
                    "type": "object",
                    "properties": {
                        "text": { "type": "string", "description": "What to work on" },
                        "count": { "type": "integer", "minimum": 1, "maximum": 100 }
                    },
                    "required": ["text"]
                }
            })
        })
        .collect();
    json!({ "jsonrpc": "2.0", "id": 1, "result": { "tools": tools, "nextCursor": "page-2" } })
        .to_string()
}

/// Filtering the answer to `tools/list` for a caller without `mcp:admin`.
fn list_case(f: &Fixtures, token: &str, sse: bool) -> Result<Case, String> {
    let name = if sse {
        "100-tools-sse"
    } else {
        "100-tools-json"
    };
    let err = |e: String| format!("list-filter/{name}: {e}");
    let extra = json!({ "mcp": { "rules": [
        { "method": "tools/call", "name": "admin_*", "scopes": ["mcp:admin"] }
    ]}});
    let config = f.config_with(4096, extra).map_err(err)?;
    let keys = KeyStore::new(&config, Provider::Ring.boxed()).map_err(|e| err(e.to_string()))?;
    let gateway = Gateway::new(config);
    let mut cache = gateway.new_cache();
    let auth = format!("Bearer {token}");
    let headers = [
        ("authorization", auth.as_str()),
        ("content-type", "application/json"),
    ];
    let mut req = Request::new("POST", "http", "mcp.example.com", "/mcp", &headers);
    let body = br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
    req.body = mcp_edge_auth_core::Body::Bytes(body);
    let Verdict::Forward(forward) = gateway.decide(&req, f.now, &keys, &mut cache) else {
        return Err(err("expected a forward".into()));
    };
    let lists = forward
        .lists
        .ok_or_else(|| err("the forward has no list filter".into()))?;
    let answer = hundred_tools();
    let (content_type, upstream) = if sse {
        (
            "text/event-stream",
            format!("event: message\ndata: {answer}\n\n"),
        )
    } else {
        ("application/json", answer)
    };
    let response_headers = [(":status", "200"), ("content-type", content_type)];
    let step = move || -> Result<u64, String> {
        let (mut body, _) = (*lists.clone())
            .open(200, &response_headers)
            .ok_or("the answer is not filtered")?;
        let mut out = Vec::new();
        // As a host gets it: in 16 KiB chunks.
        for chunk in upstream.as_bytes().chunks(16 * 1024) {
            body.push(&gateway, chunk, &mut out);
        }
        body.finish(&gateway, &mut out);
        if body.hidden() != 10 {
            return Err(format!("{} tools hidden, expected 10", body.hidden()));
        }
        Ok(out.len() as u64)
    };
    step().map_err(err)?;
    Ok(Case {
        group: "list-filter",
        name: name.to_string(),
        run: Box::new(move || step().unwrap_or(0)),
    })
}

/// One measurement of the timing loop.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Case id.
    pub id: String,
    /// Median over batches of the mean time per iteration, in nanoseconds.
    pub ns_median: f64,
    /// Fastest batch.
    pub ns_min: f64,
    /// Slowest batch.
    pub ns_max: f64,
    /// Batches measured.
    pub batches: usize,
    /// Iterations per batch.
    pub iters: u64,
}

impl Sample {
    /// The sample as one JSON line.
    pub fn json(&self, target: &str) -> String {
        json!({
            "target": target,
            "id": self.id,
            "ns_median": self.ns_median,
            "ns_min": self.ns_min,
            "ns_max": self.ns_max,
            "batches": self.batches,
            "iters": self.iters,
        })
        .to_string()
    }
}

/// The plain timing loop (the same on every target): a warm-up of a tenth of `budget_ns`,
/// then `batches` batches of a calibrated iteration count, each about
/// `budget_ns / batches` long; reports the median batch's time per iteration. `clock` is
/// a monotonic clock in nanoseconds.
pub fn measure(
    case: &mut Case,
    budget_ns: u64,
    batches: usize,
    clock: &dyn Fn() -> u64,
    sink: &mut dyn FnMut(u64),
) -> Sample {
    let batches = batches.max(1);
    // Warm-up, which also estimates the cost of one iteration.
    let warm_end = clock().saturating_add(budget_ns / 10);
    let start = clock();
    let mut n: u64 = 0;
    loop {
        sink(case.run());
        n += 1;
        if clock() >= warm_end {
            break;
        }
    }
    let per_iter = (clock().saturating_sub(start) / n.max(1)).max(1);
    let iters = (budget_ns / batches as u64 / per_iter).max(1);
    let mut times = Vec::with_capacity(batches);
    for _ in 0..batches {
        let t0 = clock();
        for _ in 0..iters {
            sink(case.run());
        }
        let dt = clock().saturating_sub(t0);
        times.push(dt as f64 / iters as f64);
    }
    times.sort_by(f64::total_cmp);
    let pick = |i: usize| times.get(i).copied().unwrap_or(f64::NAN);
    Sample {
        id: case.id(),
        ns_median: pick(times.len() / 2),
        ns_min: pick(0),
        ns_max: pick(times.len().saturating_sub(1)),
        batches,
        iters,
    }
}

/// A human-readable line for a sample.
pub fn describe(s: &Sample) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "{:<34} {:>12} /iter  (min {}, max {}, {}x{})",
        s.id,
        human(s.ns_median),
        human(s.ns_min),
        human(s.ns_max),
        s.batches,
        s.iters
    );
    out
}

/// Nanoseconds as ns, µs or ms.
pub fn human(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{:.3} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{ns:.0} ns")
    }
}
