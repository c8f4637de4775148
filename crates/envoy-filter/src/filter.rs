//! The state of one configured plugin in one VM, and what the filter does with it.
//!
//! One [`Filter`] per root context (so per plugin per VM); the root context and every HTTP
//! context of that VM share it through an `Rc<RefCell<…>>` (a VM is single-threaded).
//! It holds the core's [`Gateway`], the VM's [`KeyStore`] and [`TokenCache`], the JWKS
//! sources this VM keeps in step with shared data, and the requests paused for keys.
//!
//! Keys, in short: the root context fetches (never an HTTP context, whose calls Envoy
//! cancels when the client goes away), at most one VM per JWKS source at a time (a lease in
//! shared data), and publishes the document for the other VMs. A request the core answers
//! with [`Verdict::FetchKeys`] is paused and becomes a [`Waiter`]; it is decided again when
//! the next fetch attempt of that source finishes, on any VM, or when its deadline passes.

use std::cell::RefCell;
use std::rc::Weak;
use std::time::Duration;

use mcp_edge_auth_core::config::KeySource;
use mcp_edge_auth_core::crypto::ring::RingProvider;
use mcp_edge_auth_core::gateway::IntrospectionJob;
use mcp_edge_auth_core::keys::InstallReport;
use mcp_edge_auth_core::{
    Body, Config, Forward, Gateway, IssuerId, KeyStore, Reason, Request, Response, TokenCache,
    Verdict,
};
use proxy_wasm::hostcalls;
use proxy_wasm::types::{LogLevel, MapType};

use crate::host;
use crate::metrics::Metrics;
use crate::shared::{self, Document, Lease};

/// Tick period when nothing is pending: refresh checks and picking up documents other VMs
/// fetched.
const IDLE_TICK: Duration = Duration::from_millis(1000);
/// Tick period while some JWKS source has never had keys (startup, outage).
const NO_KEYS_TICK: Duration = Duration::from_millis(200);
/// Tick period while requests wait for keys: how soon a document fetched by another VM
/// reaches them.
const WAIT_TICK: Duration = Duration::from_millis(20);
/// The period that makes the root context run at once (to start a fetch for a request that
/// just paused, or right after configuration).
pub(crate) const KICK: Duration = Duration::from_millis(1);
/// A claim on a fetch outlives the fetch timeout by this much before others may take over.
const LEASE_GRACE_MS: u64 = 2000;
/// A paused request is decided again at the latest this long after the fetch timeout.
const WAIT_GRACE_MS: u64 = 2000;
/// How long a request whose decision needs its body waits for the first body callback.
/// Clients send the body of an MCP POST right behind its headers, so in practice none
/// arriving means Envoy runs the plugin without `allow_on_headers_stop_iteration: true` and
/// will never deliver one: the request is then answered 500 rather than left hanging.
pub(crate) const BODY_WAIT_MS: u64 = 3000;
/// Tick period while requests wait for their first body callback (deadline precision).
const BODY_TICK: Duration = Duration::from_millis(250);
/// The plugin-config setting request bodies need (named in the log and the 500 body).
pub(crate) const STOP_ITERATION_KNOB: &str = "allow_on_headers_stop_iteration";

/// An incoming request, owned, so that a paused request can be decided again later.
#[derive(Debug, Clone, Default)]
pub(crate) struct OwnedRequest {
    method: String,
    scheme: String,
    authority: String,
    path: String,
    headers: Vec<(String, String)>,
    /// What the filter knows of the body (read only when the core asks for it).
    pub body: OwnedBody,
}

/// The owned form of [`Body`]. Never logged.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) enum OwnedBody {
    #[default]
    NotRead,
    Bytes(Vec<u8>),
    TooLarge,
}

impl OwnedRequest {
    /// Reads the current request's headers.
    pub fn read() -> OwnedRequest {
        let mut req = OwnedRequest::default();
        for (name, value) in host::headers(MapType::HttpRequestHeaders) {
            match name.as_str() {
                ":method" => req.method = value,
                ":scheme" => req.scheme = value,
                ":authority" => req.authority = value,
                ":path" => req.path = value,
                n if n.starts_with(':') => {}
                _ => req.headers.push((name, value)),
            }
        }
        req
    }

    /// Runs `f` on the core's view of this request.
    fn with<R>(&self, f: impl FnOnce(&Request<'_>) -> R) -> R {
        let body = match &self.body {
            OwnedBody::NotRead => Body::NotRead,
            OwnedBody::Bytes(b) => Body::Bytes(b),
            OwnedBody::TooLarge => Body::TooLarge,
        };
        self.with_body(body, f)
    }

    /// Runs `f` on the core's view of this request, with `body` for its body.
    fn with_body<R>(&self, body: Body<'_>, f: impl FnOnce(&Request<'_>) -> R) -> R {
        let pairs: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let mut req = Request::new(
            &self.method,
            &self.scheme,
            &self.authority,
            &self.path,
            &pairs,
        );
        req.body = body;
        f(&req)
    }

    fn decide(&self, f: &mut Filter, now: u64) -> Verdict {
        self.with(|req| f.gateway.decide(req, now, &f.keys, &mut f.cache))
    }

    /// The declared `Content-Length`, when there is exactly one and it is a number.
    fn content_length(&self) -> Option<u64> {
        let mut values = self
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("content-length"));
        let (_, v) = values.next()?;
        if values.next().is_some() {
            return None;
        }
        v.trim().parse().ok()
    }
}

/// The answer to a request whose decision depends on its body, when it can be given before
/// the body is read: the body cannot change it (metadata, no or malformed credentials, a
/// refused `Origin`: the core settles those before it looks at the body), or the declared
/// `Content-Length` is already over `limit` (413, without waiting for the bytes).
/// `None`: read the body, then decide.
pub(crate) fn answer_before_body(
    gateway: &Gateway,
    req: &OwnedRequest,
    limit: usize,
    now: u64,
    keys: &KeyStore,
    cache: &mut TokenCache,
) -> Option<Response> {
    let declared_too_large = req
        .content_length()
        .is_some_and(|n| usize::try_from(n).map_or(true, |n| n > limit));
    // With the body unread, the core answers 400 (`BadBody`) exactly when it got as far as
    // the body; any other answer was decided on what came before it. Told the body is too
    // large, it answers 413 there instead.
    let body = if declared_too_large {
        Body::TooLarge
    } else {
        Body::NotRead
    };
    match req.with_body(body, |r| gateway.decide(r, now, keys, cache)) {
        Verdict::Respond(r) if r.reason != Reason::BadBody => Some(r),
        _ => None,
    }
}

/// Where a request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Phase {
    /// Not decided yet.
    #[default]
    Deciding,
    /// Headers held back while the body is buffered (the decision needs it).
    ReadingBody,
    /// Paused until keys arrive.
    Waiting,
    /// Paused until the introspection endpoint answers.
    Introspecting,
    /// Let through to the upstream.
    Forwarded,
    /// Answered locally.
    Answered,
}

/// The part of a request's state the root context needs to finish a paused request.
#[derive(Debug, Default)]
pub(crate) struct StreamState {
    pub phase: Phase,
    /// Kept while keys are awaited.
    pub request: Option<OwnedRequest>,
    /// Added to the upstream's response (CORS for allowed browser origins).
    pub response_headers: Vec<(&'static str, String)>,
    /// The introspection call in flight (its token) and what to resume with its answer.
    pub introspection: Option<(u32, IntrospectionJob)>,
    /// While reading the body: the most the core reads (`mcp.max_body_bytes`).
    pub body_limit: usize,
    /// While reading the body: whether a body callback came (Envoy delivers bodies to a
    /// paused filter), and the body size it reported last.
    pub body_started: bool,
    pub body_size: usize,
}

/// What became of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    Forwarded,
    Answered,
    /// Pause it until this issuer's next fetch attempt finishes.
    Wait(IssuerId),
    /// Paused until the introspection call it made answers.
    Introspecting,
    /// Paused while its body is buffered.
    ReadBody,
}

/// A paused request.
#[derive(Debug)]
pub(crate) struct Waiter {
    pub context_id: u32,
    pub stream: Weak<RefCell<StreamState>>,
    pub what: WaitFor,
    pub deadline_ms: u64,
}

/// What a paused request waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WaitFor {
    /// Keys of this issuer. `seen_seq` is the lease sequence number when it paused: any
    /// finished attempt after that wakes it.
    Keys { issuer: IssuerId, seen_seq: u64 },
    /// Its first body callback (see [`BODY_WAIT_MS`]).
    Body,
}

impl Waiter {
    fn for_keys(&self, issuer: IssuerId) -> bool {
        matches!(self.what, WaitFor::Keys { issuer: i, .. } if i == issuer)
    }
}

/// A fetch this VM has in flight.
#[derive(Debug, Clone, Copy)]
struct InFlight {
    token: u32,
    holder: u64,
    started_at: u64,
}

/// A remote JWKS this VM keeps in step with the shared document.
#[derive(Debug)]
struct Remote {
    issuer: IssuerId,
    /// The `iss` (for logs; never secret).
    name: String,
    cluster: String,
    authority: String,
    path: String,
    timeout_ms: u64,
    max_body_bytes: usize,
    keys: shared::Keys,
    /// The lease sequence number last acted on.
    seen_seq: u64,
    /// The document version installed here (0: none).
    installed: u64,
    /// Latest attempt start known here (s): the store's cooldown runs from it.
    last_attempt: u64,
    fetch: Option<InFlight>,
}

/// One configured plugin in one VM.
pub(crate) struct Filter {
    gateway: Gateway,
    keys: KeyStore,
    cache: TokenCache,
    metrics: Metrics,
    remotes: Vec<Remote>,
    waiters: Vec<Waiter>,
    tick: Duration,
    /// Makes lease holder ids unique within the VM.
    claims: u64,
    /// A body callback came for a paused request: Envoy runs this plugin with
    /// `allow_on_headers_stop_iteration: true`.
    bodies_delivered: bool,
    /// The missing setting was logged (once per VM).
    knob_logged: bool,
    /// Resources with MCP rules (for the startup log line).
    body_rules: usize,
}

impl Filter {
    /// Builds the filter from the plugin configuration, or says (naming the field) why not.
    pub fn build(config: Option<&[u8]>) -> Result<Filter, String> {
        let bytes = match config {
            Some(b) if !b.iter().all(u8::is_ascii_whitespace) => b,
            _ => {
                return Err(
                    "config: the plugin configuration is empty; pass the JSON config as a \
                            google.protobuf.StringValue (Istio: WasmPlugin.spec.pluginConfig)"
                        .to_string(),
                )
            }
        };
        let config = Config::from_json(bytes).map_err(|e| e.to_string())?;
        let body_rules = body_rule_count(bytes);
        let remotes = remotes(&config)?;
        let keys = KeyStore::new(&config, Box::new(RingProvider)).map_err(|e| e.to_string())?;
        let gateway = Gateway::new(config);
        let cache = gateway.new_keyed_cache(host::random_key());
        for r in &remotes {
            shared::host::init(&r.keys);
        }
        Ok(Filter {
            gateway,
            keys,
            cache,
            metrics: Metrics::define(),
            remotes,
            waiters: Vec::new(),
            tick: KICK,
            claims: 0,
            bodies_delivered: false,
            knob_logged: false,
            body_rules,
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
        let rules = if self.body_rules == 0 {
            String::new()
        } else {
            format!(
                "; MCP rules on the JSON-RPC body of {} resource(s) (the plugin config needs \
                 {STOP_ITERATION_KNOB}: true)",
                self.body_rules
            )
        };
        format!(
            "protecting {} with {} issuer(s), {} remote JWKS{rules}",
            resources.join(", "),
            self.keys.len(),
            self.remotes.len()
        )
    }

    /// How many body bytes the core needs before deciding this request (`None`: none).
    pub fn body_limit(&self, req: &OwnedRequest) -> Option<usize> {
        req.with(|r| self.gateway.body_limit(r))
    }

    /// Starts a request whose decision needs its body (at most `limit` bytes): answers it
    /// now if the body cannot change the answer ([`answer_before_body`]); otherwise keeps
    /// it in `state` to be decided once the body is in ([`Filter::body_arrived`]), with a
    /// deadline for the first body callback.
    pub fn start_body(
        &mut self,
        context_id: u32,
        stream: Weak<RefCell<StreamState>>,
        req: OwnedRequest,
        limit: usize,
        state: &mut StreamState,
        now_ms: u64,
    ) -> Step {
        let now = now_ms / 1000;
        if let Some(r) =
            answer_before_body(&self.gateway, &req, limit, now, &self.keys, &mut self.cache)
        {
            return self.carry_out(Verdict::Respond(r), state, now, false);
        }
        state.request = Some(req);
        state.body_limit = limit;
        state.body_started = false;
        state.body_size = 0;
        state.phase = Phase::ReadingBody;
        self.waiters.push(Waiter {
            context_id,
            stream,
            what: WaitFor::Body,
            deadline_ms: now_ms.saturating_add(BODY_WAIT_MS),
        });
        if self.tick > BODY_TICK {
            self.set_tick(BODY_TICK);
        }
        Step::ReadBody
    }

    /// The first body callback of a request reading its body: Envoy delivers bodies to
    /// paused filters, so the request no longer needs its deadline.
    pub fn body_arrived(&mut self, context_id: u32) {
        self.bodies_delivered = true;
        self.waiters
            .retain(|w| !(w.what == WaitFor::Body && w.context_id == context_id));
    }

    /// Decides a request and carries the decision out on the current stream. `woken` is set
    /// when a paused request is decided again: it is answered now, whatever happens.
    pub fn handle(
        &mut self,
        req: &OwnedRequest,
        state: &mut StreamState,
        now_ms: u64,
        woken: bool,
    ) -> Step {
        let now = now_ms / 1000;
        let mut verdict = req.decide(self, now);
        if let Verdict::FetchKeys(kf) = &verdict {
            // Another VM may have fetched since the last tick: look before waiting.
            if !woken && self.sync_issuer(kf.issuer, now_ms) {
                verdict = req.decide(self, now);
            }
        }
        self.carry_out(verdict, state, now, woken)
    }

    /// Carries a verdict out on the current stream and records where the request stands.
    fn carry_out(
        &mut self,
        verdict: Verdict,
        state: &mut StreamState,
        now: u64,
        woken: bool,
    ) -> Step {
        let step = match verdict {
            Verdict::Respond(r) => self.respond(r),
            Verdict::Forward(f) => self.forward(f, state),
            Verdict::FetchKeys(kf) if !woken => {
                host::debug(|| {
                    let why = if kf.unknown_kid {
                        "unknown kid"
                    } else {
                        "no usable keys"
                    };
                    format!(
                        "request paused for keys of {} ({why})",
                        self.issuer_name(kf.issuer)
                    )
                });
                Step::Wait(kf.issuer)
            }
            Verdict::FetchKeys(kf) => {
                // Only possible with a zero refetch cooldown: never wait twice.
                self.respond(self.gateway.keys_unavailable(kf.issuer))
            }
            Verdict::Introspect(job) if !woken => self.introspect(job, state, now),
            Verdict::Introspect(job) => {
                // Only the request's own context can make the call (and get its answer).
                let v = self
                    .gateway
                    .resume_introspection(job, None, now, &mut self.cache);
                self.carry_out(v, state, now, true)
            }
            Verdict::VerifySignature(job) => {
                // The ring provider verifies synchronously; a deferred job would mean
                // a provider this host cannot serve. Fail closed.
                host::error(|| {
                    "signature verification was deferred; refusing the token".to_string()
                });
                let v = self
                    .gateway
                    .resume(job, false, now, &self.keys, &mut self.cache);
                match v {
                    Verdict::Respond(r) => self.respond(r),
                    _ => self.respond(self.gateway.keys_unavailable(IssuerId(0))),
                }
            }
        };
        state.phase = match step {
            Step::Forwarded => Phase::Forwarded,
            Step::Answered => Phase::Answered,
            Step::Wait(_) => Phase::Waiting,
            Step::Introspecting => Phase::Introspecting,
            Step::ReadBody => Phase::ReadingBody,
        };
        step
    }

    /// Sends an RFC 7662 introspection request from the current request's context (so
    /// that its answer comes back to it, and Envoy cancels it if the client goes away).
    fn introspect(&mut self, job: IntrospectionJob, state: &mut StreamState, now: u64) -> Step {
        let dispatched = match job.cluster.as_deref() {
            Some(cluster) => {
                let mut headers: Vec<(&str, &str)> = vec![
                    (":method", "POST"),
                    (":path", &job.path),
                    (":authority", &job.authority),
                ];
                headers.extend(job.headers.iter().map(|(n, v)| (*n, v.as_str())));
                let timeout = Duration::from_millis(u64::from(job.timeout_ms));
                hostcalls::dispatch_http_call(
                    cluster,
                    headers,
                    Some(job.body.as_bytes()),
                    vec![],
                    timeout,
                )
                .map_err(|e| {
                    format!("Envoy refused the call ({e:?}); is cluster \"{cluster}\" defined?")
                })
            }
            None => Err("no cluster configured".to_string()),
        };
        match dispatched {
            Ok(token) => {
                state.introspection = Some((token, job));
                Step::Introspecting
            }
            Err(why) => {
                host::error(|| format!("cannot introspect a token at {}: {why}", job.uri));
                let v = self
                    .gateway
                    .resume_introspection(job, None, now, &mut self.cache);
                self.carry_out(v, state, now, true)
            }
        }
    }

    /// Completes an introspection with the endpoint's answer (`None`: the call failed).
    pub fn finish_introspection(
        &mut self,
        job: IntrospectionJob,
        answer: Option<(u16, &[u8])>,
        state: &mut StreamState,
        now_ms: u64,
    ) -> Step {
        let now = now_ms / 1000;
        if answer.is_none_or(|(status, _)| status != 200) {
            host::warn(|| {
                let what =
                    answer.map_or("no answer".to_string(), |(s, _)| format!("HTTP status {s}"));
                format!("introspection at {} failed: {what}", job.uri)
            });
        }
        let v = self
            .gateway
            .resume_introspection(job, answer, now, &mut self.cache);
        self.carry_out(v, state, now, true)
    }

    fn respond(&self, r: Response) -> Step {
        self.metrics.decision(r.reason);
        host::debug(|| format!("answered {} ({})", r.status, r.reason.as_str()));
        host::send_response(r.status, &r.headers, &r.body);
        Step::Answered
    }

    fn forward(&self, f: Forward, state: &mut StreamState) -> Step {
        self.metrics.decision(f.reason);
        if f.reason == Reason::Allowed {
            self.metrics.cache(f.cache_hit);
        }
        host::debug(|| {
            let cached = if f.cache_hit { ", token cache hit" } else { "" };
            format!("forwarded ({}{cached})", f.reason.as_str())
        });
        for name in &f.remove_headers {
            host::remove_header(MapType::HttpRequestHeaders, name);
        }
        for (name, value) in &f.add_headers {
            host::add_header(MapType::HttpRequestHeaders, name, value);
        }
        if let Some(path) = &f.new_path {
            host::set_header(MapType::HttpRequestHeaders, ":path", path);
        }
        state.response_headers = f.response_headers;
        Step::Forwarded
    }

    /// Pauses a request until keys come, and has the root context look at once.
    pub fn add_waiter(
        &mut self,
        context_id: u32,
        stream: Weak<RefCell<StreamState>>,
        issuer: IssuerId,
        now_ms: u64,
    ) {
        let (seen_seq, timeout_ms) = self
            .remote(issuer)
            .map_or((0, 0), |r| (r.seen_seq, r.timeout_ms));
        self.waiters.push(Waiter {
            context_id,
            stream,
            what: WaitFor::Keys { issuer, seen_seq },
            deadline_ms: now_ms
                .saturating_add(timeout_ms)
                .saturating_add(WAIT_GRACE_MS),
        });
        self.set_tick(KICK);
    }

    /// The periodic work of the root context: pick up documents other VMs published, start
    /// due fetches, and never let a paused request wait past its deadline.
    pub fn on_tick(&mut self, root_id: u32, now_ms: u64) {
        for i in 0..self.remotes.len() {
            if self.sync(i, now_ms) {
                self.wake_finished(root_id, i, now_ms);
            }
            self.maybe_fetch(root_id, i, now_ms);
        }
        let expired: Vec<Waiter> =
            self.take_waiters(|w| w.deadline_ms <= now_ms || w.stream.strong_count() == 0);
        let (bodies, keys): (Vec<Waiter>, Vec<Waiter>) = expired
            .into_iter()
            .filter(|w| w.stream.strong_count() > 0)
            .partition(|w| w.what == WaitFor::Body);
        if !keys.is_empty() {
            host::warn(|| {
                format!(
                    "{} request(s) waited too long for keys; answering without",
                    keys.len()
                )
            });
        }
        self.wake(root_id, keys, now_ms);
        self.bodies_missing(root_id, bodies);
        let period = if self
            .waiters
            .iter()
            .any(|w| matches!(w.what, WaitFor::Keys { .. }))
        {
            WAIT_TICK
        } else if !self.waiters.is_empty() {
            BODY_TICK
        } else if self.remotes.iter().any(|r| r.installed == 0) {
            NO_KEYS_TICK
        } else {
            IDLE_TICK
        };
        self.set_tick(period);
    }

    fn set_tick(&mut self, period: Duration) {
        if self.tick != period {
            self.tick = period;
            host::set_tick(period);
        }
    }

    fn remote(&self, issuer: IssuerId) -> Option<&Remote> {
        self.remotes.iter().find(|r| r.issuer == issuer)
    }

    fn issuer_name(&self, issuer: IssuerId) -> &str {
        self.gateway
            .config()
            .issuer(issuer)
            .map_or("?", |i| i.issuer.as_str())
    }

    /// Brings one issuer up to date with shared data; true if an attempt finished since.
    fn sync_issuer(&mut self, issuer: IssuerId, now_ms: u64) -> bool {
        match self.remotes.iter().position(|r| r.issuer == issuer) {
            Some(i) => self.sync(i, now_ms),
            None => false,
        }
    }

    /// Reads the lease of remote `i`; when an attempt finished since we last looked, adopts
    /// its cooldown and installs its document if newer. True if anything finished.
    fn sync(&mut self, i: usize, now_ms: u64) -> bool {
        let Some(r) = self.remotes.get(i) else {
            return false;
        };
        let (lease, _) = shared::host::read_lease(&r.keys);
        if lease.seq == r.seen_seq {
            return false;
        }
        let (issuer, installed) = (r.issuer, r.installed);
        if lease.version > installed {
            if let Some(bytes) = shared::host::read_document(&r.keys) {
                if let Some(doc) = Document::decode(&bytes) {
                    if doc.version > installed {
                        self.install(i, &doc, now_ms);
                    }
                }
            }
        }
        self.note_attempt(issuer, lease.last_attempt);
        if let Some(r) = self.remotes.get_mut(i) {
            r.seen_seq = lease.seq;
        }
        true
    }

    /// Installs a document another VM published.
    fn install(&mut self, i: usize, doc: &Document<'_>, now_ms: u64) {
        let Some(r) = self.remotes.get_mut(i) else {
            return;
        };
        let issuer = r.issuer;
        match self
            .keys
            .install_jwks(issuer, doc.body, doc.cache_control, doc.fetched_at)
        {
            Ok(report) => {
                r.installed = doc.version;
                log_install(&r.name, &report, now_ms / 1000, false);
            }
            Err(e) => {
                // It installed where it was fetched, so this is an algorithm mismatch
                // between two plugins sharing one JWKS: keep what we have.
                r.installed = doc.version;
                host::warn(|| format!("JWKS of {} from another VM not usable here: {e}", r.name));
            }
        }
    }

    /// The store's cooldown runs from the latest attempt any VM made.
    fn note_attempt(&mut self, issuer: IssuerId, started_at: u64) {
        let Some(r) = self.remotes.iter_mut().find(|r| r.issuer == issuer) else {
            return;
        };
        if started_at > r.last_attempt {
            r.last_attempt = started_at;
            self.keys.fetch_started(issuer, started_at);
        }
    }

    /// Starts a fetch of remote `i` when requests wait for it or its keys are due, no fetch
    /// is in flight anywhere, and this VM wins the claim.
    fn maybe_fetch(&mut self, root_id: u32, i: usize, now_ms: u64) {
        let now = now_ms / 1000;
        let Some(r) = self.remotes.get(i) else { return };
        if r.fetch.is_some() {
            return;
        }
        let waited_for = self.waiters.iter().any(|w| w.for_keys(r.issuer));
        if !waited_for && !self.keys.refresh_due(r.issuer, now) {
            return;
        }
        let (lease, _) = shared::host::read_lease(&r.keys);
        if lease.seq != r.seen_seq || lease.busy(now_ms) {
            return; // someone finished or is fetching: the next tick picks it up
        }
        self.claims = self.claims.wrapping_add(1);
        let holder = holder_id(root_id, self.claims, now_ms);
        let expires = now_ms
            .saturating_add(r.timeout_ms)
            .saturating_add(LEASE_GRACE_MS);
        if shared::host::claim(&r.keys, holder, now_ms, expires).is_none() {
            return;
        }
        let headers = vec![
            (":method", "GET"),
            (":path", r.path.as_str()),
            (":authority", r.authority.as_str()),
            ("accept", "application/jwk-set+json, application/json"),
            ("user-agent", "mcp-edge-auth"),
        ];
        let timeout = Duration::from_millis(r.timeout_ms);
        match hostcalls::dispatch_http_call(&r.cluster, headers, None, vec![], timeout) {
            Ok(token) => {
                host::debug(|| format!("fetching JWKS of {} from cluster {}", r.name, r.cluster));
                if let Some(r) = self.remotes.get_mut(i) {
                    r.fetch = Some(InFlight {
                        token,
                        holder,
                        started_at: now,
                    });
                }
            }
            Err(status) => {
                host::error(|| {
                    format!(
                        "cannot fetch JWKS of {}: Envoy refused the call ({status:?}); is cluster \"{}\" defined?",
                        r.name, r.cluster
                    )
                });
                self.metrics.fetch(false);
                self.finish(root_id, i, holder, now, None, now_ms);
            }
        }
    }

    /// Handles the response (or failure) of a JWKS fetch.
    pub fn on_fetch_response(
        &mut self,
        root_id: u32,
        token: u32,
        num_headers: usize,
        body_size: usize,
        now_ms: u64,
    ) {
        let Some(i) = self
            .remotes
            .iter()
            .position(|r| r.fetch.is_some_and(|f| f.token == token))
        else {
            return;
        };
        let Some(r) = self.remotes.get_mut(i) else {
            return;
        };
        let Some(flight) = r.fetch.take() else { return };
        let now = now_ms / 1000;
        let headers = if num_headers == 0 {
            Vec::new()
        } else {
            host::headers(MapType::HttpCallResponseHeaders)
        };
        let header = |n: &str| {
            headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(n))
                .map(|(_, v)| v.as_str())
        };
        let status = header(":status").and_then(|s| s.parse::<u16>().ok());
        let cache_control = header("cache-control");
        let (name, issuer, max) = (r.name.clone(), r.issuer, r.max_body_bytes);
        let outcome: Result<(InstallReport, Vec<u8>), String> = match status {
            None => Err("no response (timeout, or the cluster could not connect)".to_string()),
            Some(200) if body_size > max => {
                Err(format!("the body is larger than max_body_bytes ({max})"))
            }
            Some(200) => {
                let body = host::call_response_body(body_size);
                match self.keys.install_jwks(issuer, &body, cache_control, now) {
                    Ok(report) => Ok((report, body)),
                    Err(e) => Err(e.to_string()),
                }
            }
            Some(s) => Err(format!("HTTP status {s}")),
        };
        match outcome {
            Ok((report, body)) => {
                self.metrics.fetch(true);
                log_install(&name, &report, now, true);
                let published = Some((now, cache_control, body.as_slice()));
                self.finish(
                    root_id,
                    i,
                    flight.holder,
                    flight.started_at,
                    published,
                    now_ms,
                );
            }
            Err(why) => {
                self.metrics.fetch(false);
                host::warn(|| {
                    format!("JWKS fetch for {name} failed: {why}; cached keys (if any) stay in use")
                });
                self.finish(root_id, i, flight.holder, flight.started_at, None, now_ms);
            }
        }
    }

    /// Records a finished attempt in shared data (publishing the document if there is one),
    /// starts the cooldown here, and decides the requests that waited for it.
    fn finish(
        &mut self,
        root_id: u32,
        i: usize,
        holder: u64,
        started_at: u64,
        fetched: Option<(u64, Option<&str>, &[u8])>,
        now_ms: u64,
    ) {
        let Some(r) = self.remotes.get_mut(i) else {
            return;
        };
        let issuer = r.issuer;
        if let Some(lease) = shared::host::finish(&r.keys, holder, started_at, fetched) {
            adopt(r, &lease, fetched.is_some());
        } else {
            host::warn(|| {
                format!(
                    "could not record the JWKS fetch of {} in shared data",
                    r.name
                )
            });
        }
        self.note_attempt(issuer, started_at);
        self.wake_finished(root_id, i, now_ms);
    }

    /// Decides every request waiting on remote `i` that paused before its latest attempt.
    fn wake_finished(&mut self, root_id: u32, i: usize, now_ms: u64) {
        let Some(r) = self.remotes.get(i) else { return };
        let (issuer, seq) = (r.issuer, r.seen_seq);
        let ready = self.take_waiters(|w| {
            matches!(w.what, WaitFor::Keys { issuer: i, seen_seq } if i == issuer && seen_seq != seq)
        });
        self.wake(root_id, ready, now_ms);
    }

    fn take_waiters(&mut self, pick: impl Fn(&Waiter) -> bool) -> Vec<Waiter> {
        let (picked, kept) = std::mem::take(&mut self.waiters)
            .into_iter()
            .partition(|w| pick(w));
        self.waiters = kept;
        picked
    }

    /// Decides paused requests again, from the root context: each is answered or resumed.
    fn wake(&mut self, root_id: u32, waiters: Vec<Waiter>, now_ms: u64) {
        if waiters.is_empty() {
            return;
        }
        let now = now_ms / 1000;
        for w in waiters {
            let WaitFor::Keys { issuer, .. } = w.what else {
                continue;
            };
            let Some(stream) = w.stream.upgrade() else {
                continue;
            };
            let Ok(mut state) = stream.try_borrow_mut() else {
                continue;
            };
            let Some(req) = state.request.take() else {
                continue;
            };
            if !host::switch_to(w.context_id) {
                continue;
            }
            // A fetch slower than the cooldown would let the core ask for keys again.
            if self.keys.may_fetch(issuer, now) {
                self.note_attempt(issuer, now);
            }
            if self.handle(&req, &mut state, now_ms, true) == Step::Forwarded {
                host::resume_request();
            }
        }
        host::switch_to(root_id);
    }

    /// Answers the requests that got no body callback within [`BODY_WAIT_MS`] of their
    /// headers. While no body ever reached this plugin, that is Envoy holding every body
    /// back from a paused filter (the plugin config lacks `allow_on_headers_stop_iteration:
    /// true`): 500, never a pass, and one error in the log. Once bodies have been seen to
    /// arrive, the setting is on and the client is just slow to send: its request is left
    /// to Envoy's own timeouts, like any slow upload.
    fn bodies_missing(&mut self, root_id: u32, waiters: Vec<Waiter>) {
        if waiters.is_empty() {
            return;
        }
        for w in waiters {
            let Some(stream) = w.stream.upgrade() else {
                continue;
            };
            let Ok(mut state) = stream.try_borrow_mut() else {
                continue;
            };
            if state.phase != Phase::ReadingBody || state.body_started {
                continue;
            }
            if self.bodies_delivered {
                host::debug(|| {
                    format!("no request body {BODY_WAIT_MS} ms after the headers; still waiting")
                });
                continue;
            }
            if !host::switch_to(w.context_id) {
                continue;
            }
            if !self.knob_logged {
                self.knob_logged = true;
                host::error(|| {
                    format!(
                        "a request whose decision needs its body (MCP rules) got no body within \
                         {BODY_WAIT_MS} ms, and this plugin has never received a request body: \
                         Envoy delivers none to a filter that paused the headers unless the Wasm \
                         plugin config (envoy.extensions.wasm.v3.PluginConfig, Envoy 1.35 or \
                         later) sets {STOP_ITERATION_KNOB}: true. Such requests are answered 500 \
                         until it does."
                    )
                });
            }
            state.request = None;
            state.phase = Phase::Answered;
            self.metrics.body_unavailable();
            host::send_response(
                500,
                &[("content-type", "application/json".to_string())],
                &body_unavailable_json(),
            );
        }
        host::switch_to(root_id);
    }
}

/// The body of the 500 sent when Envoy withholds request bodies from the filter.
fn body_unavailable_json() -> String {
    serde_json::json!({
        "error": "server_error",
        "error_description": format!(
            "The gateway cannot read request bodies: its Envoy Wasm plugin config must set \
             {STOP_ITERATION_KNOB}: true"
        ),
    })
    .to_string()
}

/// Updates a remote after this VM wrote `lease`.
fn adopt(r: &mut Remote, lease: &Lease, published: bool) {
    r.seen_seq = lease.seq;
    if published {
        r.installed = lease.version;
    }
}

/// Logs an installed key set. The VM that fetched speaks at `info` (a change) and `warn`
/// (skipped keys); the others, installing the same document, only at `debug`, so that one
/// rotation is one log line, not one per worker.
fn log_install(name: &str, report: &InstallReport, now: u64, fetched: bool) {
    let ttl = report.refresh_at.saturating_sub(now);
    let how = if fetched {
        "fetched"
    } else {
        "shared by another VM"
    };
    let level = match (fetched, report.changed) {
        (true, true) => LogLevel::Info,
        _ => LogLevel::Debug,
    };
    host::log(level, || {
        let what = if report.changed {
            "in use"
        } else {
            "unchanged"
        };
        format!(
            "JWKS of {name} {how}: {} key(s) {what}, refresh in {ttl}s",
            report.keys
        )
    });
    for s in &report.skipped {
        host::log(
            if fetched {
                LogLevel::Warn
            } else {
                LogLevel::Debug
            },
            || {
                format!(
                    "JWKS of {name}: key #{} (kid {}) skipped: {}",
                    s.index,
                    s.kid.as_deref().unwrap_or("-"),
                    s.reason
                )
            },
        );
    }
}

/// A claim id unique enough across VMs (time) and within one (counter).
fn holder_id(root_id: u32, n: u64, now_ms: u64) -> u64 {
    let ns = hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(now_ms, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    (ns ^ (u64::from(root_id) << 48) ^ n.rotate_left(32)) | 1
}

/// How many resources have MCP rules (read from the JSON: the core keeps them private).
fn body_rule_count(json: &[u8]) -> usize {
    serde_json::from_slice::<serde_json::Value>(json)
        .ok()
        .as_ref()
        .and_then(|d| d.get("resources"))
        .and_then(serde_json::Value::as_array)
        .map_or(0, |rs| rs.iter().filter(|r| r.get("mcp").is_some()).count())
}

/// The remote JWKS sources of a config, after the core's check that every remote JWKS and
/// introspection endpoint names its Envoy cluster ([`Config::require_clusters`]).
fn remotes(config: &Config) -> Result<Vec<Remote>, String> {
    config
        .require_clusters("Envoy filter")
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for (id, iss) in config.issuers() {
        let KeySource::Remote(remote) = &iss.source else {
            continue;
        };
        let Some(cluster) = remote.cluster.clone() else {
            // require_clusters has refused this already; never an issuer without fetches.
            return Err(format!("config: {}: no cluster", config.issuer_path(id)));
        };
        out.push(Remote {
            issuer: id,
            name: iss.issuer.clone(),
            keys: shared::Keys::new(&cluster, &remote.authority, &remote.path),
            cluster,
            authority: remote.authority.clone(),
            path: remote.path.clone(),
            timeout_ms: u64::from(remote.timeout_ms),
            max_body_bytes: usize::try_from(remote.max_body_bytes).unwrap_or(usize::MAX),
            seen_seq: 0,
            installed: 0,
            last_attempt: 0,
            fetch: None,
        });
    }
    Ok(out)
}

#[cfg(test)]
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

    #[test]
    fn remote_jwks_needs_a_cluster() {
        let bytes = config(remote(None), serde_json::json!({}));
        let cfg = Config::from_json(&bytes).unwrap();
        let err = remotes(&cfg).unwrap_err();
        assert!(
            err.starts_with("config: resources[0].issuers[0].remote_jwks.http_uri.cluster: "),
            "{err}"
        );
        let bytes = config(remote(Some("idp")), serde_json::json!({}));
        let r = remotes(&Config::from_json(&bytes).unwrap()).unwrap();
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].cluster, "idp");
        assert_eq!(r[0].authority, "as.example.com");
        assert_eq!(r[0].path, "/jwks");
    }

    fn rules() -> serde_json::Value {
        serde_json::json!({
            "mcp": { "rules": [{ "method": "tools/call", "name": "admin_*", "scopes": ["mcp:admin"] }] }
        })
    }

    #[test]
    fn body_rules_are_accepted() {
        let bytes = config(remote(Some("idp")), rules());
        let cfg = Config::from_json(&bytes).unwrap();
        assert_eq!(remotes(&cfg).unwrap().len(), 1);
        assert_eq!(body_rule_count(&bytes), 1);
        assert_eq!(
            body_rule_count(&config(remote(Some("idp")), serde_json::json!({}))),
            0
        );
        assert_eq!(body_rule_count(b"not json"), 0);
    }

    fn request(method: &str, headers: &[(&str, &str)]) -> OwnedRequest {
        OwnedRequest {
            method: method.into(),
            scheme: "https".into(),
            authority: "mcp.example.com".into(),
            path: "/mcp".into(),
            headers: headers
                .iter()
                .map(|(n, v)| ((*n).to_string(), (*v).to_string()))
                .collect(),
            body: OwnedBody::NotRead,
        }
    }

    fn status(v: Option<Verdict>) -> Option<(u16, Reason)> {
        match v? {
            Verdict::Respond(r) => Some((r.status, r.reason)),
            other => panic!("not a response: {other:?}"),
        }
    }

    #[test]
    fn what_is_answered_before_the_body() {
        let cfg = Config::from_json(&config(remote(Some("idp")), rules())).unwrap();
        let keys = KeyStore::new(&cfg, Box::new(RingProvider)).unwrap();
        let gateway = Gateway::new(cfg);
        let mut cache = gateway.new_cache();
        let limit = 65536;
        let get = request("GET", &[("authorization", "Bearer a.b.c")]);
        assert_eq!(get.with(|r| gateway.body_limit(r)), None);
        let post = request("POST", &[("authorization", "Bearer a.b.c")]);
        assert_eq!(post.with(|r| gateway.body_limit(r)), Some(limit));
        let mut answer = |req: &OwnedRequest| {
            answer_before_body(&gateway, req, limit, 1, &keys, &mut cache)
                .map(|r| (r.status, r.reason))
        };
        // A token: the body decides.
        assert_eq!(answer(&post), None);
        let small = request(
            "POST",
            &[("authorization", "Bearer a.b.c"), ("content-length", "100")],
        );
        assert_eq!(answer(&small), None);
        // No token, or a malformed header: the body cannot change the answer.
        assert_eq!(answer(&request("POST", &[])), Some((401, Reason::Missing)));
        assert_eq!(
            answer(&request("POST", &[("authorization", "Bearer a b")])),
            Some((400, Reason::Malformed))
        );
        // A declared length over the limit: 413 without reading a byte; still 401 first.
        let big = request(
            "POST",
            &[
                ("authorization", "Bearer a.b.c"),
                ("content-length", "65537"),
            ],
        );
        assert_eq!(answer(&big), Some((413, Reason::BodyTooLarge)));
        let huge = request(
            "POST",
            &[
                ("authorization", "Bearer a.b.c"),
                ("content-length", "99999999999999999999999"),
            ],
        );
        assert_eq!(
            answer(&huge),
            None,
            "not a number we can read: read the body"
        );
        assert_eq!(
            answer(&request("POST", &[("content-length", "65537")])),
            Some((401, Reason::Missing))
        );
        let twice = request(
            "POST",
            &[
                ("authorization", "Bearer a.b.c"),
                ("content-length", "65537"),
                ("content-length", "65537"),
            ],
        );
        assert_eq!(answer(&twice), None);
    }

    #[test]
    fn the_body_reaches_the_core() {
        let cfg = Config::from_json(&config(remote(Some("idp")), rules())).unwrap();
        let keys = KeyStore::new(&cfg, Box::new(RingProvider)).unwrap();
        let gateway = Gateway::new(cfg);
        let mut cache = gateway.new_cache();
        let mut req = request("POST", &[("authorization", "Bearer a.b.c")]);
        let mut decide = |req: &OwnedRequest| {
            status(Some(req.with(|r| gateway.decide(r, 1, &keys, &mut cache))))
        };
        req.body = OwnedBody::Bytes(b"not json".to_vec());
        assert_eq!(decide(&req), Some((400, Reason::BadBody)));
        req.body = OwnedBody::Bytes(Vec::new());
        assert_eq!(decide(&req), Some((400, Reason::BadBody)));
        req.body = OwnedBody::TooLarge;
        assert_eq!(decide(&req), Some((413, Reason::BodyTooLarge)));
        req.body = OwnedBody::NotRead;
        assert_eq!(decide(&req), Some((400, Reason::BadBody)));
    }

    #[test]
    fn the_500_names_the_setting() {
        let body: serde_json::Value = serde_json::from_str(&body_unavailable_json()).unwrap();
        assert_eq!(body["error"], "server_error");
        assert!(body["error_description"]
            .as_str()
            .unwrap()
            .contains("allow_on_headers_stop_iteration: true"));
    }
}
