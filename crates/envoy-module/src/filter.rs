//! One filter config (shared by every worker thread) and what a stream does with it.
//!
//! All Envoy workers run the same module in one process, so the state is ordinary Rust:
//! one [`KeyStore`] per filter config behind an `RwLock` (workers read; only the main
//! thread writes, when it fetches), and one [`TokenCache`] per worker behind its own
//! `Mutex`, which only that worker takes: the hot path (a cached token) takes no lock
//! another thread contends for, except the store's read lock.
//!
//! A stream reads only the request headers the core looks at, without copying them, asks
//! [`Gateway::decide`] and carries the verdict out. A request the core answers with
//! [`Verdict::FetchKeys`] is paused: it is copied, registered as a waiter (see
//! [`crate::fetch`]), and decided again on its own worker when the main thread's next
//! fetch attempt finishes or its deadline passes.

use std::cell::{Cell, RefCell};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use mcp_edge_auth_core::crypto::ring::RingProvider;
use mcp_edge_auth_core::{
    Config, Forward, Gateway, IssuerId, KeyStore, Reason, Request, Response, TokenCache, Verdict,
    READ_HEADERS,
};

use crate::abi::{self, status, Filter, HeaderMap, Level};
use crate::fetch::{self, Fetcher, WaitSlot};

/// The request headers the core reads (besides the pseudo headers), as the core lists them:
/// nothing else is copied out of Envoy's header map.
const HEADERS: &[&str] = READ_HEADERS;

/// Event id of a paused stream's wake-up.
pub(crate) const WAKE: u64 = 1;

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The key store and, per issuer, how many fetch attempts have finished. Both change only
/// under the write lock, so a decision and the attempt count read under one read lock
/// agree: a paused request knows exactly which attempt it waits for.
pub(crate) struct Keys {
    pub store: KeyStore,
    pub attempts: Vec<u64>,
}

/// One worker's verified-token cache, on its own cache line.
#[repr(align(128))]
struct Shard(Mutex<TokenCache>);

/// One configured filter (an Envoy filter config), shared by all workers.
pub struct FilterConfig {
    pub(crate) gateway: Gateway,
    pub(crate) keys: RwLock<Keys>,
    caches: Box<[Shard]>,
    pub(crate) fetcher: Fetcher,
}

/// Why the module cannot decide (never expected: a panic poisoned the key store).
#[derive(Debug)]
pub(crate) struct Broken;

impl FilterConfig {
    /// Builds the filter from its JSON config, or says (naming the field) why not.
    pub fn build(json: &[u8], workers: usize) -> Result<FilterConfig, String> {
        if json.iter().all(u8::is_ascii_whitespace) {
            return Err(
                "config: the filter configuration is empty; pass the JSON config as \
                        filter_config (a google.protobuf.StringValue)"
                    .to_string(),
            );
        }
        let config = Config::from_json(json).map_err(|e| e.to_string())?;
        refuse_unsupported(json, &config)?;
        let remotes = fetch::remotes(&config)?;
        let store = KeyStore::new(&config, Box::new(RingProvider)).map_err(|e| e.to_string())?;
        let issuers = store.len();
        let gateway = Gateway::new(config);
        let caches = (0..workers.max(1))
            .map(|_| Shard(Mutex::new(gateway.new_cache())))
            .collect();
        Ok(FilterConfig {
            gateway,
            keys: RwLock::new(Keys {
                store,
                attempts: vec![0; issuers],
            }),
            caches,
            fetcher: Fetcher::new(remotes),
        })
    }

    /// A one-line summary for the log.
    pub fn summary(&self) -> String {
        let resources: Vec<&str> = self
            .gateway
            .config()
            .resources()
            .iter()
            .map(|r| r.resource.as_str())
            .collect();
        format!(
            "protecting {} with {} issuer(s), {} remote JWKS, {} token cache shard(s)",
            resources.join(", "),
            self.gateway.config().issuers().count(),
            self.fetcher.remote_count(),
            self.caches.len()
        )
    }

    /// Decides `req` with worker `shard`'s cache. For [`Verdict::FetchKeys`], also the
    /// number of finished fetch attempts of that issuer the decision saw.
    pub(crate) fn decide(
        &self,
        req: &Request<'_>,
        now: u64,
        shard: usize,
    ) -> Result<(Verdict, u64), Broken> {
        let keys = self.keys.read().map_err(|_| Broken)?;
        let mut cache = self.cache(shard).ok_or(Broken)?;
        let verdict = self.gateway.decide(req, now, &keys.store, &mut cache);
        let seen = match &verdict {
            Verdict::FetchKeys(kf) => keys.attempts.get(kf.issuer.0).copied().unwrap_or(0),
            _ => 0,
        };
        Ok((verdict, seen))
    }

    /// Worker `shard`'s cache (`None` only if there were no shards, which `build` rules
    /// out). A cache poisoned by a panic is emptied and used again: it only saves work.
    fn cache(&self, shard: usize) -> Option<std::sync::MutexGuard<'_, TokenCache>> {
        let Shard(m) = self.caches.get(shard % self.caches.len().max(1))?;
        Some(m.lock().unwrap_or_else(|p| {
            let mut c = p.into_inner();
            c.clear();
            c
        }))
    }

    /// Completes verdicts the native host never expects (deferred signatures, opaque
    /// tokens), failing closed.
    fn settle(&self, verdict: Verdict, now: u64, shard: usize) -> Verdict {
        let unavailable = || Verdict::Respond(self.gateway.keys_unavailable(IssuerId(0)));
        match verdict {
            Verdict::VerifySignature(job) => {
                // The ring provider verifies synchronously; a deferred job means a
                // provider this host cannot serve. Fail closed.
                abi::log(Level::Error, || {
                    "mcp-edge-auth: signature verification was deferred; refusing the token"
                        .to_string()
                });
                let (Ok(keys), Some(mut cache)) = (self.keys.read(), self.cache(shard)) else {
                    return unavailable();
                };
                self.gateway
                    .resume(job, false, now, &keys.store, &mut cache)
            }
            Verdict::Introspect(job) => {
                // Refused at config load; should one get here, the core's answer to a
                // failed call is a 503.
                let Some(mut cache) = self.cache(shard) else {
                    return unavailable();
                };
                self.gateway
                    .resume_introspection(job, None, now, &mut cache)
            }
            v => v,
        }
    }
}

/// Refuses, naming the field, what this host does not implement yet: MCP rules (they need
/// the request body) and RFC 7662 introspection. Never skipped silently: a check the
/// config asks for and the host does not make would let requests through.
fn refuse_unsupported(json: &[u8], config: &Config) -> Result<(), String> {
    let doc: serde_json::Value = serde_json::from_slice(json).map_err(|e| e.to_string())?;
    let resources = doc
        .get("resources")
        .and_then(serde_json::Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    for (i, r) in resources.iter().enumerate() {
        if r.get("mcp").is_some() {
            return Err(format!(
                "config: resources[{i}].mcp: is not supported by the native Envoy module yet \
                 (MCP rules need the request body); use the proxy-wasm filter for it"
            ));
        }
    }
    for (id, iss) in config.issuers() {
        if iss.introspection.is_some() {
            let position = config
                .issuers()
                .filter(|(other, i)| i.resource == iss.resource && *other < id)
                .count();
            return Err(format!(
                "config: resources[{}].issuers[{position}].introspection: is not supported \
                 by the native Envoy module yet (RFC 7662); use the proxy-wasm filter for it",
                iss.resource
            ));
        }
    }
    Ok(())
}

/// An incoming request, owned, so that a paused request can be decided again later.
#[derive(Debug, Clone, Default)]
pub(crate) struct OwnedRequest {
    method: String,
    scheme: String,
    authority: String,
    path: String,
    headers: Vec<(String, String)>,
}

impl OwnedRequest {
    fn copy(req: &Request<'_>) -> OwnedRequest {
        OwnedRequest {
            method: req.method.to_string(),
            scheme: req.scheme.to_string(),
            authority: req.authority.to_string(),
            path: req.path.to_string(),
            headers: req
                .headers
                .iter()
                .map(|(n, v)| ((*n).to_string(), (*v).to_string()))
                .collect(),
        }
    }

    fn with<R>(&self, f: impl FnOnce(&Request<'_>) -> R) -> R {
        let pairs: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        f(&Request::new(
            &self.method,
            &self.scheme,
            &self.authority,
            &self.path,
            &pairs,
        ))
    }
}

/// Where a stream stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Phase {
    #[default]
    Deciding,
    /// Paused until keys come (or its deadline).
    Waiting,
    Forwarded,
    Answered,
}

/// A paused request.
struct Paused {
    request: OwnedRequest,
    slot: Arc<WaitSlot>,
}

/// One stream. Envoy may re-enter a stream's hooks from a call into Envoy, so state is in
/// `Cell`/`RefCell`, and no borrow is held across a call into Envoy.
#[derive(Default)]
pub struct Stream {
    phase: Cell<Phase>,
    /// Added to the upstream's response (CORS for allowed browser origins).
    response_headers: RefCell<Vec<(&'static str, String)>>,
    paused: RefCell<Option<Paused>>,
}

impl Stream {
    /// `on_http_filter_request_headers`: decide, and answer, forward or pause.
    pub fn request_headers(&self, cfg: &FilterConfig, envoy: &mut Filter<'_>) -> u32 {
        let now_ms = now_ms();
        let now = now_ms / 1000;
        let shard = envoy.worker_index();
        let decided = envoy.with_request(HEADERS, |req| {
            let (verdict, seen) = cfg.decide(req, now, shard)?;
            let owned = matches!(verdict, Verdict::FetchKeys(_)).then(|| OwnedRequest::copy(req));
            Ok::<_, Broken>((verdict, seen, owned))
        });
        let (verdict, seen, owned) = match decided {
            Ok(d) => d,
            Err(Broken) => return self.fail_closed(envoy),
        };
        let verdict = cfg.settle(verdict, now, shard);
        match verdict {
            Verdict::FetchKeys(kf) => {
                let (Some(request), Some(scheduler)) = (owned, envoy.scheduler()) else {
                    return self.respond(envoy, cfg.gateway.keys_unavailable(kf.issuer));
                };
                let slot = Arc::new(WaitSlot::new(scheduler));
                cfg.fetcher
                    .wait(kf.issuer, seen, Arc::clone(&slot), now_ms, kf.unknown_kid);
                *self.paused.borrow_mut() = Some(Paused { request, slot });
                self.phase.set(Phase::Waiting);
                status::STOP_ALL_AND_WATERMARK
            }
            other => self.carry_out(cfg, envoy, other),
        }
    }

    /// `on_http_filter_scheduled`: a paused request is decided again, once; it is answered
    /// or resumed now, whatever happens (no second wait).
    pub fn wake(&self, cfg: &FilterConfig, envoy: &mut Filter<'_>) {
        if self.phase.get() != Phase::Waiting {
            return;
        }
        let Some(paused) = self.paused.borrow_mut().take() else {
            return;
        };
        let now = now_ms() / 1000;
        let shard = envoy.worker_index();
        let verdict = match paused.request.with(|req| cfg.decide(req, now, shard)) {
            Ok((v, _)) => cfg.settle(v, now, shard),
            Err(Broken) => {
                self.fail_closed(envoy);
                return;
            }
        };
        let verdict = match verdict {
            Verdict::FetchKeys(kf) => Verdict::Respond(cfg.gateway.keys_unavailable(kf.issuer)),
            v => v,
        };
        if self.carry_out(cfg, envoy, verdict) == status::CONTINUE {
            envoy.continue_decoding();
        }
    }

    /// `on_http_filter_request_body` / `_trailers`: hold the body back while paused.
    pub fn request_data(&self) -> u32 {
        match self.phase.get() {
            Phase::Waiting | Phase::Deciding => status::STOP_ITERATION,
            Phase::Forwarded | Phase::Answered => status::CONTINUE,
        }
    }

    /// `on_http_filter_response_headers`: adds the decision's response headers (CORS) to
    /// the upstream's response, replacing any the upstream set, except `Vary`, which lists
    /// and so is appended to.
    pub fn response_headers(&self, envoy: &Filter<'_>) -> u32 {
        if self.phase.get() != Phase::Forwarded {
            return status::CONTINUE;
        }
        let headers = std::mem::take(&mut *self.response_headers.borrow_mut());
        for (name, value) in &headers {
            if *name == "vary" {
                envoy.add_header(HeaderMap::Response, name, value);
            } else {
                envoy.set_header(HeaderMap::Response, name, Some(value));
            }
        }
        status::CONTINUE
    }

    /// The stream is going away: a paused request stops waiting.
    pub fn destroy(&self) {
        if let Some(p) = self.paused.borrow_mut().take() {
            p.slot.cancel();
        }
    }

    /// Answers 500 unless the stream was already answered or forwarded: used when the
    /// module cannot decide (a panic, a poisoned lock). Never a pass.
    pub fn fail_closed(&self, envoy: &Filter<'_>) -> u32 {
        match self.phase.get() {
            Phase::Answered | Phase::Forwarded => status::STOP_ITERATION,
            Phase::Deciding | Phase::Waiting => {
                self.phase.set(Phase::Answered);
                envoy.send_response(
                    500,
                    &[("content-type", "application/json".to_string())],
                    r#"{"error":"server_error","error_description":"The gateway failed to decide this request"}"#,
                    "mcp_edge_auth_internal_error",
                );
                status::STOP_ITERATION
            }
        }
    }

    fn carry_out(&self, cfg: &FilterConfig, envoy: &Filter<'_>, verdict: Verdict) -> u32 {
        match verdict {
            Verdict::Respond(r) => self.respond(envoy, r),
            Verdict::Forward(f) => self.forward(envoy, f),
            other => {
                // FetchKeys is handled by the callers; the rest was settled.
                abi::log(Level::Error, || {
                    "mcp-edge-auth: unexpected verdict; answering 503".to_string()
                });
                let _ = other;
                self.respond(envoy, cfg.gateway.keys_unavailable(IssuerId(0)))
            }
        }
    }

    fn respond(&self, envoy: &Filter<'_>, r: Response) -> u32 {
        self.phase.set(Phase::Answered);
        abi::log(Level::Debug, || {
            format!(
                "mcp-edge-auth: answered {} ({})",
                r.status,
                r.reason.as_str()
            )
        });
        let details = details(r.reason);
        envoy.send_response(r.status, &r.headers, &r.body, details);
        status::STOP_ITERATION
    }

    fn forward(&self, envoy: &Filter<'_>, f: Forward) -> u32 {
        self.phase.set(Phase::Forwarded);
        for name in &f.remove_headers {
            envoy.set_header(HeaderMap::Request, name, None);
        }
        for (name, value) in &f.add_headers {
            envoy.add_header(HeaderMap::Request, name, value);
        }
        if let Some(path) = &f.new_path {
            envoy.set_header(HeaderMap::Request, ":path", Some(path));
        }
        if !f.response_headers.is_empty() {
            *self.response_headers.borrow_mut() = f.response_headers;
        }
        status::CONTINUE
    }
}

/// Response-code details for a local reply (shows in access logs as `%RESPONSE_CODE_DETAILS%`).
fn details(reason: Reason) -> &'static str {
    match reason {
        Reason::Metadata => "mcp_edge_auth_metadata",
        Reason::Preflight => "mcp_edge_auth_preflight",
        Reason::KeysUnavailable => "mcp_edge_auth_keys_unavailable",
        _ => "mcp_edge_auth_denied",
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn config(issuer: serde_json::Value, extra: serde_json::Value) -> Vec<u8> {
        let mut resource = serde_json::json!({
            "resource": "https://mcp.example.com/mcp",
            "authorization_servers": ["https://as.example.com"],
            "issuers": [issuer],
        });
        if let (Some(r), Some(e)) = (resource.as_object_mut(), extra.as_object()) {
            r.extend(e.clone());
        }
        serde_json::to_vec(&serde_json::json!({ "resources": [resource] })).unwrap()
    }

    fn remote(cluster: Option<&str>) -> serde_json::Value {
        let mut http_uri = serde_json::json!({ "uri": "https://as.example.com/jwks" });
        if let Some(c) = cluster {
            http_uri["cluster"] = c.into();
        }
        serde_json::json!({ "issuer": "https://as.example.com", "remote_jwks": { "http_uri": http_uri } })
    }

    fn err(json: &[u8]) -> String {
        match FilterConfig::build(json, 2) {
            Ok(_) => panic!("accepted"),
            Err(e) => e,
        }
    }

    #[test]
    fn a_valid_config_builds_with_one_cache_per_worker() {
        let cfg =
            FilterConfig::build(&config(remote(Some("idp")), serde_json::json!({})), 3).unwrap();
        assert_eq!(cfg.caches.len(), 3);
        assert!(cfg.summary().contains("https://mcp.example.com/mcp"));
        assert_eq!(cfg.keys.read().unwrap().attempts, vec![0]);
    }

    #[test]
    fn refusals_name_the_field() {
        assert!(err(b"  ").contains("empty"));
        assert!(err(b"{").starts_with("config: "));
        let e = err(&config(remote(None), serde_json::json!({})));
        assert!(
            e.starts_with("config: resources[0].issuers[0].remote_jwks.http_uri.cluster: "),
            "{e}"
        );
        let rules = serde_json::json!({
            "mcp": { "rules": [{ "method": "tools/call", "name": "admin_*", "scopes": ["mcp:admin"] }] }
        });
        let e = err(&config(remote(Some("idp")), rules));
        assert!(e.starts_with("config: resources[0].mcp: "), "{e}");
        assert!(
            e.contains("not supported by the native Envoy module"),
            "{e}"
        );
        let mut intro = remote(Some("idp"));
        intro["introspection"] = serde_json::json!({
            "http_uri": { "uri": "https://as.example.com/introspect", "cluster": "idp" },
            "client_id": "gw", "client_secret": "s3cret"
        });
        let e = err(&config(intro, serde_json::json!({})));
        assert!(
            e.starts_with("config: resources[0].issuers[0].introspection: "),
            "{e}"
        );
        assert!(!e.contains("s3cret"));
    }

    #[test]
    fn decisions_come_from_the_core() {
        let cfg =
            FilterConfig::build(&config(remote(Some("idp")), serde_json::json!({})), 1).unwrap();
        use base64::Engine;
        let b64 = |v: serde_json::Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
        };
        let token = format!(
            "{}.{}.AAAA",
            b64(serde_json::json!({ "alg": "RS256", "typ": "at+jwt", "kid": "k1" })),
            b64(serde_json::json!({
                "iss": "https://as.example.com", "aud": "https://mcp.example.com/mcp",
                "exp": 2000, "sub": "u"
            }))
        );
        let bearer = format!("Bearer {token}");
        let headers = [("authorization", bearer.as_str())];
        let req = Request::new("POST", "https", "mcp.example.com", "/mcp", &headers);
        // No keys yet: the core asks for them, and the attempt count is what it saw.
        let (v, seen) = cfg.decide(&req, 1000, 7).unwrap();
        assert!(matches!(v, Verdict::FetchKeys(_)), "{v:?}");
        assert_eq!(seen, 0);
        let none: [(&str, &str); 0] = [];
        let req = Request::new("GET", "https", "mcp.example.com", "/mcp", &none);
        match cfg.decide(&req, 1000, 0).unwrap().0 {
            Verdict::Respond(r) => assert_eq!(r.status, 401),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn owned_requests_decide_alike() {
        let headers = [
            ("authorization", "Bearer x"),
            ("origin", "https://a.example"),
        ];
        let req = Request::new("GET", "https", "h", "/mcp?q", &headers);
        let owned = OwnedRequest::copy(&req);
        owned.with(|r| {
            assert_eq!(r.path, "/mcp?q");
            assert_eq!(r.single_header("origin"), Ok(Some("https://a.example")));
        });
    }
}
