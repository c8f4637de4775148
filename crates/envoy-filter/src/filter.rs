//! The state of one configured plugin in one VM, and what the filter does with it.
//!
//! One [`Filter`] per root context (so per plugin per VM); the root context and every HTTP
//! context of that VM share it through an `Rc<RefCell<…>>` (a VM is single-threaded).
//! It holds the core's [`Gateway`], the VM's [`KeyStore`] and [`TokenCache`], the JWKS
//! sources this VM keeps in step with shared data, and the requests paused for keys.
//!
//! Keys, in short: the core's [`KeySchedule`] says when to fetch and which paused request
//! waits for which attempt; this host only carries that out. The root context makes the
//! fetches (never an HTTP context, whose calls Envoy cancels when the client goes away), at
//! most one VM per JWKS source at a time (a lease in shared data, [`crate::shared`]), and
//! publishes the document for the other VMs; a VM whose schedule wants a fetch while another
//! VM holds the lease rides on that VM's attempt and gets its document. A request the core
//! answers with [`Verdict::AwaitKeys`] is paused under the schedule's [`WaitId`] and decided
//! again when [`KeySchedule::poll_wake`] names it.

use std::cell::RefCell;
use std::rc::Weak;
use std::sync::Arc;
use std::time::Duration;

use mcp_edge_auth_core::config::{self, Loaded};
use mcp_edge_auth_core::crypto::ring::RingProvider;
use mcp_edge_auth_core::exchange::{ExchangeCall, ExchangeId, ExchangeOutcome, ExchangeReport};
use mcp_edge_auth_core::gateway::IntrospectionJob;
use mcp_edge_auth_core::keys::schedule::{
    self, Failure, FetchOutcome, FetchReport, JwksFetch, Trigger,
};
use mcp_edge_auth_core::keys::InstallReport;
use mcp_edge_auth_core::lists::{ListBody, ListFilter};
use mcp_edge_auth_core::{
    Begin, Config, ExchangeWait, Exchanges, Forward, Gateway, HeadersVerdict, IssuerId,
    KeySchedule, KeyStore, OwnedRequest, Reason, Request, Response, TokenCache, Verdict, Wait,
    WaitId,
};
use proxy_wasm::hostcalls;
use proxy_wasm::types::{LogLevel, MapType};

use crate::host::{self, place, HeaderMap, Place};
use crate::metrics::Metrics;
use crate::shared::{self, Document};

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
/// How long a request whose decision needs its body waits for the first body callback.
/// Clients send the body of an MCP POST right behind its headers, so in practice none
/// arriving means Envoy runs the plugin without `allow_on_headers_stop_iteration: true` and
/// will never deliver one: the request is then answered 500 rather than left hanging.
pub(crate) const BODY_WAIT_MS: u64 = 3000;
/// Tick period while requests wait for their first body callback (deadline precision).
const BODY_TICK: Duration = Duration::from_millis(250);
/// The plugin-config setting request bodies need (named in the log and the 500 body).
pub(crate) const STOP_ITERATION_KNOB: &str = "allow_on_headers_stop_iteration";

/// The current request's head as the core sees it, read with one host call and looked at in
/// place ([`HeaderMap`]): a request decided at once (a cache hit, a refusal) is never copied;
/// one that has to wait is kept as an [`OwnedRequest`] ([`OwnedRequest::copy`]).
pub(crate) enum Head<'a> {
    /// Every name and value is UTF-8 (in practice, always): borrowed from the map.
    Borrowed {
        /// `:method`, `:scheme`, `:authority`, `:path`.
        pseudo: [&'a str; 4],
        headers: Vec<(&'a str, &'a str)>,
    },
    /// Some value is not UTF-8 (an `obs-text` byte): converted lossily. A mangled
    /// `Authorization` or `Origin` value is refused by the core like any other bad value.
    Lossy {
        pseudo: [String; 4],
        headers: Vec<(String, String)>,
    },
}

impl<'a> Head<'a> {
    /// The head in `map` (the request headers); `None` if the host's map is malformed
    /// (never from Envoy; the request is then refused).
    pub fn of(map: &'a HeaderMap) -> Option<Head<'a>> {
        match map.text_head() {
            Some((pseudo, headers)) => Some(Head::Borrowed { pseudo, headers }),
            None => map.pairs().map(|pairs| Head::lossy(&pairs)),
        }
    }

    /// A head with a value that is not UTF-8, converted lossily.
    fn lossy(pairs: &[(&[u8], &[u8])]) -> Head<'a> {
        let mut pseudo: [String; 4] = Default::default();
        let mut headers = Vec::new();
        for &(name, value) in pairs {
            match place(name) {
                Place::Header => headers.push((host::lossy(name), host::lossy(value))),
                Place::Pseudo(i) => {
                    if let Some(slot) = pseudo.get_mut(i) {
                        *slot = host::lossy(value);
                    }
                }
                Place::Dropped => {}
            }
        }
        Head::Lossy { pseudo, headers }
    }

    /// Runs `f` on the core's view of the request (one instantiation of `f` for both forms:
    /// it is the whole request-headers callback).
    pub fn with<R>(&self, f: impl FnOnce(&Request<'_>) -> R) -> R {
        let lossy: Vec<(&str, &str)>;
        let (pseudo, headers): ([&str; 4], &[(&str, &str)]) = match self {
            Head::Borrowed { pseudo, headers } => (*pseudo, headers),
            Head::Lossy { pseudo, headers } => {
                lossy = headers
                    .iter()
                    .map(|(n, v)| (n.as_str(), v.as_str()))
                    .collect();
                (pseudo.each_ref().map(String::as_str), &lossy)
            }
        };
        let [method, scheme, authority, path] = pseudo;
        f(&Request::new(method, scheme, authority, path, headers))
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
    /// Paused until keys arrive, or the upstream token.
    Waiting,
    /// Paused until the introspection endpoint answers.
    Introspecting,
    /// Headers let through (token checked) while the body is held until the MCP rules
    /// decide (no `allow_on_headers_stop_iteration`; see [`Gateway::decide_deferring_body`]).
    HoldingBody,
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
    /// Set when the headers go on before the body: the most the core reads. The request is
    /// then decided without its MCP rules, and checked against them when the body is in.
    pub hold_body: Option<usize>,
    /// The verified identity of a forwarded request (what a held body is checked against).
    pub identity: Option<Arc<mcp_edge_auth_core::Identity>>,
    /// A forward whose body is held is counted only once the body is let go: its reason and
    /// whether the token cache decided it.
    pub uncounted: Option<(Reason, bool)>,
    /// Set while the request is decided again after waiting for a token exchange.
    pub exchange_wait: Option<ExchangeWait>,
    /// The forward's list requests, until the upstream's response headers say whether their
    /// answers are filtered ([`mcp_edge_auth_core::lists`]).
    pub lists: Option<Box<ListFilter>>,
    /// The response body being filtered, and whether its headers are held until it is
    /// rewritten (they may change only then).
    pub list_body: Option<ListBody>,
    pub list_headers_held: bool,
}

/// What became of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    Forwarded,
    Answered,
    /// Paused until the key schedule wakes it.
    Wait(WaitId),
    /// Paused until the introspection call it made answers.
    Introspecting,
    /// Paused until the token exchange it waits for ends.
    Exchange(ExchangeWait),
}

/// A paused request: for keys (`W` = [`WaitId`]) or a token exchange ([`ExchangeWait`]).
#[derive(Debug)]
pub(crate) struct Waiter<W = WaitId> {
    pub context_id: u32,
    pub stream: Weak<RefCell<StreamState>>,
    pub wait: W,
}

/// A request waiting for its first body callback (see [`BODY_WAIT_MS`]).
#[derive(Debug)]
pub(crate) struct BodyWaiter {
    pub context_id: u32,
    pub stream: Weak<RefCell<StreamState>>,
    pub deadline_ms: u64,
}

/// A fetch of this VM's schedule, as this VM carries it out.
#[derive(Debug, Clone)]
enum Carried {
    /// This VM holds the lease and made the call (its token).
    Calling { token: u32, holder: u64 },
    /// Another VM holds the lease: this attempt ends when that VM's does.
    Riding,
}

/// A remote JWKS this VM keeps in step with the shared document.
#[derive(Debug)]
struct Remote {
    issuer: IssuerId,
    /// The `iss` (for logs; never secret).
    name: String,
    keys: shared::Keys,
    /// The lease sequence number last acted on.
    seen_seq: u64,
    /// The document version installed here (0: none).
    installed: u64,
    /// This VM's attempt in flight.
    own: Option<(JwksFetch, Carried)>,
}

/// One configured plugin in one VM.
pub(crate) struct Filter {
    gateway: Gateway,
    keys: KeyStore,
    schedule: KeySchedule,
    cache: TokenCache,
    /// Token exchanges toward the upstream (`upstream_token`), made by the root context.
    exchanges: Exchanges,
    /// Exchange calls in flight: the dispatch token and the exchange.
    exchange_calls: Vec<(u32, ExchangeId)>,
    exchange_waiters: Vec<Waiter<ExchangeWait>>,
    metrics: Metrics,
    remotes: Vec<Remote>,
    waiters: Vec<Waiter>,
    body_waiters: Vec<BodyWaiter>,
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
        let bytes = config.unwrap_or_default();
        let Loaded { config, keys } =
            config::load(bytes, config::Host::EnvoyWasm, Box::new(RingProvider))
                .map_err(|e| e.to_string())?;
        let body_rules = body_rule_count(bytes);
        let remotes = remotes(&config)?;
        let schedule = KeySchedule::new(&config, host::now_ms());
        let exchanges = Exchanges::with_hash_key(&config, host::random_key());
        let gateway = Gateway::new(config);
        let cache = gateway.new_keyed_cache(host::random_key());
        for r in &remotes {
            shared::host::init(&r.keys);
        }
        Ok(Filter {
            gateway,
            keys,
            schedule,
            cache,
            exchanges,
            exchange_calls: Vec::new(),
            exchange_waiters: Vec::new(),
            metrics: Metrics::define(),
            remotes,
            waiters: Vec::new(),
            body_waiters: Vec::new(),
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
            let mode = if self.holds_headers() {
                // The operator said the Wasm plugin config has the setting.
                format!(
                    "holding the headers until the body is read (the Wasm plugin config must \
                     set {STOP_ITERATION_KNOB}: true)"
                )
            } else {
                "the headers go on once the token is checked, the body is held until the rules \
                 decide"
                    .to_string()
            };
            format!(
                "; MCP rules on the JSON-RPC body of {} resource(s), {mode}",
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

    /// Decides a request on its headers ([`Gateway::decide_headers`]): the verdict, or how
    /// much of the body to read first.
    pub fn decide_headers(
        &mut self,
        req: &Request<'_>,
        end_of_stream: bool,
        now_ms: u64,
    ) -> HeadersVerdict {
        self.gateway.decide_headers(
            req,
            end_of_stream,
            now_ms / 1000,
            &self.keys,
            &mut self.cache,
        )
    }

    /// Keeps a request whose decision needs its body (at most `limit` bytes) in `state`, to
    /// be decided once the body is in, with a deadline for the first body callback
    /// ([`Filter::body_arrived`]).
    pub fn start_body(
        &mut self,
        context_id: u32,
        stream: Weak<RefCell<StreamState>>,
        req: OwnedRequest,
        limit: usize,
        state: &mut StreamState,
        now_ms: u64,
    ) {
        state.request = Some(req);
        state.body_limit = limit;
        state.body_started = false;
        state.body_size = 0;
        state.phase = Phase::ReadingBody;
        self.body_waiters.push(BodyWaiter {
            context_id,
            stream,
            deadline_ms: now_ms.saturating_add(BODY_WAIT_MS),
        });
        if self.tick > BODY_TICK {
            self.set_tick(BODY_TICK);
        }
    }

    /// The first body callback of a request reading its body: Envoy delivers bodies to
    /// paused filters, so the request no longer needs its deadline.
    pub fn body_arrived(&mut self, context_id: u32) {
        self.bodies_delivered = true;
        self.body_waiters.retain(|w| w.context_id != context_id);
    }

    /// Decides a request and carries the decision out on the current stream. `previous` is
    /// set when a paused request is decided again: the schedule then decides whether it may
    /// wait once more.
    pub fn handle(
        &mut self,
        req: &Request<'_>,
        state: &mut StreamState,
        now_ms: u64,
        previous: Option<WaitId>,
    ) -> Step {
        let verdict = self.decide(req, now_ms, state.hold_body.is_some());
        self.settle(req, verdict, state, now_ms, previous)
    }

    /// Decides `req`, without its MCP rules when the body is held (`deferring`).
    fn decide(&mut self, req: &Request<'_>, now_ms: u64, deferring: bool) -> Verdict {
        let now = now_ms / 1000;
        if deferring {
            self.gateway
                .decide_deferring_body(req, now, &self.keys, &mut self.cache)
        } else {
            self.gateway.decide(req, now, &self.keys, &mut self.cache)
        }
    }

    /// Whether this plugin may hold headers while it reads a body (the operator set
    /// `envoy_wasm.allow_on_headers_stop_iteration`, matching the Wasm plugin config).
    pub fn holds_headers(&self) -> bool {
        self.gateway.config().wasm_holds_headers()
    }

    /// A held body is complete (`req.body` set): `None` lets it go, or the refusal to send
    /// (which makes Envoy reset the upstream request, so it never gets the whole body).
    pub fn check_body(
        &self,
        req: &OwnedRequest,
        identity: Option<&mcp_edge_auth_core::Identity>,
    ) -> Option<Response> {
        // A held body always follows a forward with an identity; without one (never), no
        // scope is granted: refused.
        let none = mcp_edge_auth_core::Identity::default();
        let identity = identity.unwrap_or(&none);
        req.with(|r| self.gateway.check_body(r, identity))
    }

    /// The list filter of a request whose held body was let go ([`Filter::check_body`]).
    pub fn list_filter(
        &self,
        req: &OwnedRequest,
        identity: Option<&Arc<mcp_edge_auth_core::Identity>>,
    ) -> Option<Box<ListFilter>> {
        let identity = identity?;
        req.with(|r| self.gateway.list_filter(r, identity))
            .map(Box::new)
    }

    /// The gateway (list bodies are filtered by its rules).
    pub fn gateway(&self) -> &Gateway {
        &self.gateway
    }

    /// Answers a request locally (counted and logged like every answer).
    pub fn answer(&self, r: Response) {
        self.respond(r);
    }

    /// Carries out `verdict`, the decision of `req`; a request that needs keys first looks
    /// whether another VM fetched them since the last tick.
    pub fn settle(
        &mut self,
        req: &Request<'_>,
        verdict: Verdict,
        state: &mut StreamState,
        now_ms: u64,
        previous: Option<WaitId>,
    ) -> Step {
        let verdict = match verdict {
            Verdict::AwaitKeys(need)
                if previous.is_none() && self.sync_issuer(need.issuer, now_ms) =>
            {
                self.decide(req, now_ms, state.hold_body.is_some())
            }
            v => v,
        };
        self.carry_out(verdict, state, now_ms, previous, Some(req))
    }

    /// Carries a verdict out on the current stream and records where the request stands.
    /// `req`: the request's headers, when at hand (a forward then removes only the headers
    /// it carries; without them, every header the core names).
    fn carry_out(
        &mut self,
        verdict: Verdict,
        state: &mut StreamState,
        now_ms: u64,
        previous: Option<WaitId>,
        req: Option<&Request<'_>>,
    ) -> Step {
        let now = now_ms / 1000;
        let step = match verdict {
            Verdict::Respond(r) => self.respond(r),
            Verdict::Forward(f) => self.forward(f, state, req),
            Verdict::AwaitKeys(need) => {
                let issuer = need.issuer;
                let unknown_kid = need.unknown_kid;
                match self.schedule.wait(need, previous, now_ms, &self.keys) {
                    Wait::Paused(id) => {
                        host::debug(|| {
                            let why = if unknown_kid {
                                "unknown kid"
                            } else {
                                "no usable keys"
                            };
                            format!(
                                "request paused for keys of {} ({why})",
                                self.issuer_name(issuer)
                            )
                        });
                        // The root context carries out the fetch (and the wake-up).
                        self.set_tick(KICK);
                        Step::Wait(id)
                    }
                    Wait::Refused(r) => self.respond(r),
                }
            }
            Verdict::Introspect(job) if previous.is_none() => self.introspect(job, state, now),
            Verdict::Introspect(job) => {
                // Only the request's own context can make the call (and get its answer).
                let v = self
                    .gateway
                    .resume_introspection(job, None, now, &mut self.cache);
                self.carry_out(v.into(), state, now_ms, previous, req)
            }
            Verdict::VerifySignature(job) => {
                // The ring provider verifies synchronously; a deferred job would mean
                // a provider this host cannot serve. Fail closed.
                host::error(|| {
                    "signature verification was deferred; refusing the token".to_string()
                });
                self.respond(self.gateway.reject(job))
            }
            Verdict::Exchange(need) => {
                let previous = state.exchange_wait.take();
                match self.exchanges.begin(need, previous, now_ms) {
                    Begin::Forward { forward, cached } => {
                        if cached {
                            self.metrics.exchange_cache_hit();
                        }
                        self.forward(forward, state, req)
                    }
                    Begin::Respond(r) => self.respond(r),
                    Begin::Paused(w) => {
                        host::debug(|| "request paused for a token exchange".to_string());
                        // The root context makes the call.
                        self.set_tick(KICK);
                        Step::Exchange(w)
                    }
                }
            }
        };
        state.phase = match step {
            Step::Forwarded => Phase::Forwarded,
            Step::Answered => Phase::Answered,
            Step::Wait(_) | Step::Exchange(_) => Phase::Waiting,
            Step::Introspecting => Phase::Introspecting,
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
                self.carry_out(v.into(), state, now.saturating_mul(1000), None, None)
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
        self.carry_out(v.into(), state, now_ms, None, None)
    }

    fn respond(&self, r: Response) -> Step {
        self.metrics.decision(r.reason);
        host::debug(|| format!("answered {} ({})", r.status, r.reason.as_str()));
        host::send_response(r.status, &r.headers, &r.body);
        Step::Answered
    }

    fn forward(&self, f: Forward, state: &mut StreamState, req: Option<&Request<'_>>) -> Step {
        if state.hold_body.is_some() {
            // Counted when the held body is let go; a refusal counts as that refusal only.
            state.uncounted = Some((f.reason, f.cache_hit));
        } else {
            self.count_forward(f.reason, f.cache_hit);
        }
        host::debug(|| {
            let cached = if f.cache_hit { ", token cache hit" } else { "" };
            format!("forwarded ({}{cached})", f.reason.as_str())
        });
        // The filter hands the core every request header, so it knows which of these the
        // request carries: removing an absent one would be a host call for nothing.
        match req {
            Some(req) => f
                .removals_in(req)
                .for_each(|name| host::remove_header(MapType::HttpRequestHeaders, name)),
            None => f
                .remove_headers
                .iter()
                .for_each(|name| host::remove_header(MapType::HttpRequestHeaders, name)),
        }
        for (name, value) in f.add_headers.iter() {
            host::add_header(MapType::HttpRequestHeaders, name, value);
        }
        if let Some(path) = &f.new_path {
            host::set_header(MapType::HttpRequestHeaders, ":path", path);
        }
        state.response_headers = f.response_headers;
        state.identity = f.identity;
        state.lists = f.lists;
        Step::Forwarded
    }

    /// Hands the VM's counts to Envoy (the tick does; so do a new configuration and the
    /// VM's end).
    pub fn flush_metrics(&self) {
        self.metrics.flush();
    }

    /// Counts a request let through (and whether the token cache decided it).
    pub fn count_forward(&self, reason: Reason, cache_hit: bool) {
        self.metrics.decision(reason);
        if reason == Reason::Allowed {
            self.metrics.cache(cache_hit);
        }
    }

    /// Keeps a request the schedule paused, to decide it again when it is woken.
    pub fn add_waiter(
        &mut self,
        context_id: u32,
        stream: Weak<RefCell<StreamState>>,
        wait: WaitId,
    ) {
        self.waiters.push(Waiter {
            context_id,
            stream,
            wait,
        });
    }

    /// Keeps a request paused for a token exchange, to decide it again when it is woken.
    pub fn add_exchange_waiter(
        &mut self,
        context_id: u32,
        stream: Weak<RefCell<StreamState>>,
        wait: ExchangeWait,
    ) {
        self.exchange_waiters.push(Waiter {
            context_id,
            stream,
            wait,
        });
    }

    /// The periodic work of the root context: pick up documents other VMs published, carry
    /// out the fetches the schedule wants, decide the requests it wakes, and answer requests
    /// whose body never came.
    pub fn on_tick(&mut self, root_id: u32, now_ms: u64) {
        self.metrics.flush();
        for i in 0..self.remotes.len() {
            self.sync(i, now_ms);
        }
        self.pump(root_id, now_ms);
        let now_ms = host::now_ms().max(now_ms);
        let (expired, kept): (Vec<BodyWaiter>, Vec<BodyWaiter>) =
            std::mem::take(&mut self.body_waiters)
                .into_iter()
                .filter(|w| w.stream.strong_count() > 0)
                .partition(|w| w.deadline_ms <= now_ms);
        self.body_waiters = kept;
        self.bodies_missing(root_id, expired);
        self.schedule_tick(now_ms);
    }

    /// The tick period: fast while this VM waits on other VMs' fetches or requests wait;
    /// otherwise until the schedule's next deadline, at most [`IDLE_TICK`] (other VMs'
    /// documents are picked up on ticks).
    fn schedule_tick(&mut self, now_ms: u64) {
        let riding = self.remotes.iter().any(|r| r.own.is_some());
        let period = if self.schedule.has_waiters() || riding || self.exchanges.has_waiters() {
            WAIT_TICK
        } else if !self.body_waiters.is_empty() {
            BODY_TICK
        } else if self.schedule.any_unloaded() {
            NO_KEYS_TICK
        } else {
            IDLE_TICK
        };
        let due = [self.schedule.poll_timeout(), self.exchanges.poll_timeout()]
            .into_iter()
            .flatten()
            .min()
            .map(|t| Duration::from_millis(t.saturating_sub(now_ms)));
        let period = due.map_or(period, |d| d.min(period)).max(KICK);
        self.set_tick(period);
    }

    fn set_tick(&mut self, period: Duration) {
        if self.tick != period {
            self.tick = period;
            host::set_tick(period);
        }
    }

    fn issuer_name(&self, issuer: IssuerId) -> &str {
        self.gateway
            .config()
            .issuer(issuer)
            .map_or("?", |i| i.issuer.as_str())
    }

    /// Carries out what the schedule and the exchanges want now: fetches and calls, then
    /// wake-ups.
    fn pump(&mut self, root_id: u32, now_ms: u64) {
        while let Some(fetch) = self.schedule.poll_fetch(now_ms) {
            self.start(fetch, now_ms);
        }
        self.wake(root_id, now_ms);
        while let Some(call) = self.exchanges.poll_send() {
            self.send_exchange(call, now_ms);
        }
        while let Some(report) = self.exchanges.poll_overdue(now_ms) {
            self.report_exchange(&report);
        }
        self.wake_exchanges(root_id, now_ms);
    }

    /// Posts one token exchange from the root context (a request's own call would be
    /// cancelled with its client, and one exchange serves every request that waits for it).
    fn send_exchange(&mut self, call: ExchangeCall, now_ms: u64) {
        let cluster = call.cluster.clone().unwrap_or_default();
        let mut headers: Vec<(&str, &str)> = vec![
            (":method", "POST"),
            (":path", &call.path),
            (":authority", &call.authority),
        ];
        headers.extend(call.headers.iter().map(|(n, v)| (*n, v.as_str())));
        let timeout = Duration::from_millis(u64::from(call.timeout_ms));
        match hostcalls::dispatch_http_call(
            &cluster,
            headers,
            Some(call.body.as_bytes()),
            vec![],
            timeout,
        ) {
            Ok(token) => self.exchange_calls.push((token, call.id)),
            Err(e) => {
                host::error(|| {
                    format!(
                        "cannot exchange a token at {}: Envoy refused the call ({e:?}); is \
                         cluster \"{cluster}\" defined?",
                        call.uri
                    )
                });
                let outcome = ExchangeOutcome::Failed(Failure::NotSent);
                if let Some(report) = self.exchanges.handle_response(call.id, outcome, now_ms) {
                    self.report_exchange(&report);
                }
            }
        }
    }

    /// Whether `token` is a token exchange call of this VM.
    pub fn is_exchange_call(&self, token: u32) -> bool {
        self.exchange_calls.iter().any(|(t, _)| *t == token)
    }

    /// Root context: the answer (or failure: no headers) of a token exchange call.
    pub fn on_exchange_response(
        &mut self,
        root_id: u32,
        token: u32,
        num_headers: usize,
        body_size: usize,
        now_ms: u64,
    ) {
        let Some(pos) = self.exchange_calls.iter().position(|(t, _)| *t == token) else {
            return;
        };
        let (_, id) = self.exchange_calls.swap_remove(pos);
        let status = (num_headers > 0)
            .then(|| host::headers(MapType::HttpCallResponseHeaders))
            .and_then(|h| h.into_iter().find(|(n, _)| n == ":status"))
            .and_then(|(_, v)| v.parse::<u16>().ok());
        let max = mcp_edge_auth_core::exchange::MAX_ANSWER_BYTES;
        let body = match status {
            Some(_) if body_size <= max => host::call_response_body(body_size),
            _ => Vec::new(),
        };
        let outcome = match status {
            None => ExchangeOutcome::Failed(Failure::Connection),
            Some(_) if body_size > max => ExchangeOutcome::TooLarge,
            Some(status) => ExchangeOutcome::Response {
                status,
                body: &body,
            },
        };
        if let Some(report) = self.exchanges.handle_response(id, outcome, now_ms) {
            self.report_exchange(&report);
        }
        self.pump(root_id, now_ms);
        self.schedule_tick(now_ms);
    }

    /// Counts and logs how an exchange ended (the core words it; no token, no AS text).
    fn report_exchange(&self, report: &ExchangeReport) {
        self.metrics.exchange(report.ok());
        let (level, line) = report.log_line(self.exchanges.endpoint(report));
        host::log(log_level(level), || line);
    }

    /// Decides again every request whose token exchange ended, from the root context.
    fn wake_exchanges(&mut self, root_id: u32, now_ms: u64) {
        let mut switched = false;
        while let Some(wait) = self.exchanges.poll_wake(now_ms) {
            let Some(pos) = self.exchange_waiters.iter().position(|w| w.wait == wait) else {
                continue;
            };
            let w = self.exchange_waiters.swap_remove(pos);
            let Some(stream) = w.stream.upgrade() else {
                self.exchanges.cancel(wait);
                continue;
            };
            let Ok(mut state) = stream.try_borrow_mut() else {
                continue;
            };
            let Some(req) = state.request.take() else {
                continue;
            };
            if !host::switch_to(w.context_id) {
                self.exchanges.cancel(wait);
                continue;
            }
            switched = true;
            state.exchange_wait = Some(wait);
            self.redecide(w.context_id, &w.stream, &mut state, req, now_ms, None);
        }
        let gone: Vec<ExchangeWait> = self
            .exchange_waiters
            .iter()
            .filter(|w| w.stream.strong_count() == 0)
            .map(|w| w.wait)
            .collect();
        for id in gone {
            self.exchanges.cancel(id);
        }
        self.exchange_waiters
            .retain(|w| w.stream.strong_count() > 0);
        if switched {
            host::switch_to(root_id);
        }
    }

    /// Brings one issuer up to date with shared data; true if an attempt finished since.
    fn sync_issuer(&mut self, issuer: IssuerId, now_ms: u64) -> bool {
        match self.remotes.iter().position(|r| r.issuer == issuer) {
            Some(i) => self.sync(i, now_ms),
            None => false,
        }
    }

    /// Reads the lease of remote `i`; when an attempt finished since we last looked (on any
    /// VM), installs its document if newer, adopts its kid-fetch time, and ends this VM's
    /// attempt if it rode on it. True if anything finished.
    fn sync(&mut self, i: usize, now_ms: u64) -> bool {
        let Some(r) = self.remotes.get(i) else {
            return false;
        };
        let (lease, _) = shared::host::read_lease(&r.keys);
        if lease.seq == r.seen_seq {
            // Riding on an attempt whose VM let its claim expire without finishing (it died,
            // or never got an answer): that attempt failed, as far as this VM can tell.
            if matches!(r.own, Some((_, Carried::Riding))) && !lease.busy(now_ms) {
                if let Some((fetch, _)) = self.remotes.get_mut(i).and_then(|r| r.own.take()) {
                    let outcome = FetchOutcome::Shared { ok: false };
                    self.schedule
                        .handle_fetch(fetch.id, outcome, now_ms, &mut self.keys);
                }
                return true;
            }
            return false;
        }
        let (issuer, installed) = (r.issuer, r.installed);
        if lease.version > installed {
            if let Some(bytes) = shared::host::read_document(&r.keys) {
                if let Some(doc) = Document::decode(&bytes) {
                    if doc.version > installed {
                        self.install_shared(i, &doc, now_ms);
                    }
                }
            }
        }
        if lease.last_kid_ms > 0 {
            self.schedule
                .handle_kid_fetch_elsewhere(issuer, lease.last_kid_ms);
        }
        let Some(r) = self.remotes.get_mut(i) else {
            return true;
        };
        r.seen_seq = lease.seq;
        if let Some((fetch, Carried::Riding)) = &r.own {
            let id = fetch.id;
            r.own = None;
            let ok = lease.last_ok;
            self.schedule
                .handle_fetch(id, FetchOutcome::Shared { ok }, now_ms, &mut self.keys);
        }
        true
    }

    /// Installs a document another VM published.
    fn install_shared(&mut self, i: usize, doc: &Document<'_>, now_ms: u64) {
        let Some(r) = self.remotes.get_mut(i) else {
            return;
        };
        r.installed = doc.version;
        let (issuer, name) = (r.issuer, r.name.clone());
        match self.schedule.handle_document(
            issuer,
            doc.body,
            doc.cache_control,
            doc.fetched_at,
            now_ms,
            &mut self.keys,
        ) {
            Ok(report) => log_shared_install(&name, &report, now_ms / 1000),
            // It installed where it was fetched, so this is an algorithm mismatch between
            // two plugins sharing one JWKS: keep what we have.
            Err(e) => host::warn(|| format!("JWKS of {name} from another VM not usable here: {e}")),
        }
    }

    /// Carries out one fetch of the schedule: claims the lease and calls, or rides on the
    /// attempt of the VM that holds it.
    fn start(&mut self, fetch: JwksFetch, now_ms: u64) {
        let Some(i) = self.remotes.iter().position(|r| r.issuer == fetch.issuer) else {
            // Not a remote of this config (never: the schedule is built from it).
            let _ = self.schedule.handle_fetch(
                fetch.id,
                FetchOutcome::Failed(Failure::NotSent),
                now_ms,
                &mut self.keys,
            );
            return;
        };
        let Some(r) = self.remotes.get(i) else { return };
        let (lease, _) = shared::host::read_lease(&r.keys);
        if lease.busy(now_ms) {
            host::debug(|| format!("JWKS of {}: another worker is fetching", r.name));
            if let Some(r) = self.remotes.get_mut(i) {
                r.own = Some((fetch, Carried::Riding));
            }
            return;
        }
        self.claims = self.claims.wrapping_add(1);
        let holder = holder_id(self.claims, now_ms);
        let expires = now_ms
            .saturating_add(u64::from(fetch.timeout_ms))
            .saturating_add(LEASE_GRACE_MS);
        if shared::host::claim(&r.keys, holder, now_ms, expires).is_none() {
            if let Some(r) = self.remotes.get_mut(i) {
                r.own = Some((fetch, Carried::Riding));
            }
            return;
        }
        let cluster = fetch.cluster.clone().unwrap_or_default();
        let mut headers = vec![
            (":method", "GET"),
            (":path", fetch.path.as_str()),
            (":authority", fetch.authority.as_str()),
        ];
        headers.extend(fetch.headers.iter().copied());
        let timeout = Duration::from_millis(u64::from(fetch.timeout_ms));
        match hostcalls::dispatch_http_call(&cluster, headers, None, vec![], timeout) {
            Ok(token) => {
                host::debug(|| {
                    format!(
                        "fetching JWKS of {} from cluster {cluster} ({})",
                        r.name,
                        fetch.trigger.as_str()
                    )
                });
                if let Some(r) = self.remotes.get_mut(i) {
                    r.own = Some((fetch, Carried::Calling { token, holder }));
                }
            }
            Err(status) => {
                host::error(|| {
                    format!(
                        "cannot fetch JWKS of {}: Envoy refused the call ({status:?}); is cluster \"{cluster}\" defined?",
                        r.name
                    )
                });
                self.finish(
                    i,
                    &fetch,
                    holder,
                    FetchOutcome::Failed(Failure::NotSent),
                    None,
                    now_ms,
                );
            }
        }
    }

    /// Handles the response (or failure) of a JWKS fetch this VM made.
    pub fn on_fetch_response(
        &mut self,
        root_id: u32,
        token: u32,
        num_headers: usize,
        body_size: usize,
        now_ms: u64,
    ) {
        let Some(i) = self.remotes.iter().position(
            |r| matches!(&r.own, Some((_, Carried::Calling { token: t, .. })) if *t == token),
        ) else {
            return;
        };
        let Some((fetch, Carried::Calling { holder, .. })) =
            self.remotes.get_mut(i).and_then(|r| r.own.take())
        else {
            return;
        };
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
        let body = match status {
            Some(_) if body_size <= fetch.max_body_bytes => host::call_response_body(body_size),
            _ => Vec::new(),
        };
        let outcome = match status {
            None => FetchOutcome::Failed(Failure::Connection),
            Some(_) if body_size > fetch.max_body_bytes => FetchOutcome::TooLarge,
            Some(status) => FetchOutcome::Response {
                status,
                cache_control,
                body: &body,
            },
        };
        let published = Some((now_ms / 1000, cache_control, body.as_slice()));
        self.finish(i, &fetch, holder, outcome, published, now_ms);
        self.pump(root_id, now_ms);
        self.schedule_tick(now_ms);
    }

    /// Ends an attempt this VM made: the schedule installs and logs it, and the lease records
    /// it for the other VMs (with the document, when it brought keys).
    fn finish(
        &mut self,
        i: usize,
        fetch: &JwksFetch,
        holder: u64,
        outcome: FetchOutcome<'_>,
        published: Option<(u64, Option<&str>, &[u8])>,
        now_ms: u64,
    ) {
        let report = self
            .schedule
            .handle_fetch(fetch.id, outcome, now_ms, &mut self.keys);
        let Some(r) = self.remotes.get_mut(i) else {
            return;
        };
        let ok = report.as_ref().is_some_and(FetchReport::ok);
        if let Some(report) = &report {
            self.metrics.fetch(ok);
            log_report(&r.name, report);
        }
        let kid_started = (fetch.trigger == Trigger::UnknownKid)
            .then(|| self.schedule.last_kid_fetch(fetch.issuer))
            .flatten();
        let published = published.filter(|_| ok);
        match shared::host::finish(&r.keys, holder, kid_started, published) {
            Some(lease) => {
                r.seen_seq = lease.seq;
                if published.is_some() {
                    r.installed = lease.version;
                }
            }
            None => host::warn(|| {
                format!(
                    "could not record the JWKS fetch of {} in shared data",
                    r.name
                )
            }),
        }
    }

    /// Decides a woken request again on its own context (the caller switched to it): resumed
    /// when forwarded, kept when it waits once more (for keys or an exchange), else answered.
    fn redecide(
        &mut self,
        context_id: u32,
        stream: &Weak<RefCell<StreamState>>,
        state: &mut StreamState,
        req: OwnedRequest,
        now_ms: u64,
        previous: Option<WaitId>,
    ) {
        match req.with(|r| self.handle(r, state, now_ms, previous)) {
            Step::Forwarded => {
                if state.hold_body.is_some() {
                    state.phase = Phase::HoldingBody;
                    state.request = Some(req);
                }
                host::resume_request();
            }
            Step::Wait(again) => {
                state.request = Some(req);
                self.add_waiter(context_id, stream.clone(), again);
            }
            Step::Exchange(again) => {
                state.request = Some(req);
                self.add_exchange_waiter(context_id, stream.clone(), again);
            }
            Step::Answered | Step::Introspecting => {}
        }
    }

    /// Decides again every paused request the schedule wakes, from the root context: each
    /// is answered, resumed, or paused once more.
    fn wake(&mut self, root_id: u32, now_ms: u64) {
        let mut switched = false;
        while let Some(id) = self.schedule.poll_wake(now_ms) {
            let Some(pos) = self.waiters.iter().position(|w| w.wait == id) else {
                continue;
            };
            let w = self.waiters.swap_remove(pos);
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
            switched = true;
            self.redecide(w.context_id, &w.stream, &mut state, req, now_ms, Some(id));
        }
        // Forget requests whose client went away.
        let gone: Vec<WaitId> = self
            .waiters
            .iter()
            .filter(|w| w.stream.strong_count() == 0)
            .map(|w| w.wait)
            .collect();
        for id in gone {
            self.schedule.cancel(id);
        }
        self.waiters.retain(|w| w.stream.strong_count() > 0);
        if switched {
            host::switch_to(root_id);
        }
    }

    /// Answers the requests that got no body callback within [`BODY_WAIT_MS`] of their
    /// headers. While no body ever reached this plugin, that is Envoy holding every body
    /// back from a paused filter (the plugin config lacks `allow_on_headers_stop_iteration:
    /// true`): 500, never a pass, and one error in the log. Once bodies have been seen to
    /// arrive, the setting is on and the client is just slow to send: its request is left
    /// to Envoy's own timeouts, like any slow upload.
    fn bodies_missing(&mut self, root_id: u32, waiters: Vec<BodyWaiter>) {
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

/// Logs what an attempt of this VM did (the schedule words it).
/// The proxy-wasm level of a core log level.
fn log_level(level: schedule::LogLevel) -> LogLevel {
    match level {
        schedule::LogLevel::Debug => LogLevel::Debug,
        schedule::LogLevel::Info => LogLevel::Info,
        schedule::LogLevel::Warn => LogLevel::Warn,
    }
}

fn log_report(name: &str, report: &FetchReport) {
    let (level, line) = report.log_line(name);
    host::log(log_level(level), || line);
    for skipped in report.skipped_lines(name) {
        host::warn(|| skipped);
    }
}

/// Logs a key set another VM fetched, at `debug`: one rotation is one log line (the fetching
/// VM's), not one per worker.
fn log_shared_install(name: &str, report: &InstallReport, now: u64) {
    let ttl = report.refresh_at.saturating_sub(now);
    host::debug(|| {
        format!(
            "JWKS of {name} shared by another VM: {} key(s), refresh in {ttl}s",
            report.keys
        )
    });
}

/// A claim id unique enough across VMs (time, and the VM's randomness) and within one
/// (counter).
fn holder_id(n: u64, now_ms: u64) -> u64 {
    let ns = hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(now_ms, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    (ns ^ vm_salt() ^ n.rotate_left(32)) | 1
}

/// A random number drawn once per VM.
fn vm_salt() -> u64 {
    use std::sync::OnceLock;
    static SALT: OnceLock<u64> = OnceLock::new();
    *SALT.get_or_init(|| host::random_key().0)
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

/// The remote JWKS sources of a config, which [`config::load`] has checked to name their
/// Envoy cluster each.
fn remotes(config: &Config) -> Result<Vec<Remote>, String> {
    let mut out = Vec::new();
    for (id, iss) in config.issuers() {
        let mcp_edge_auth_core::config::KeySource::Remote(remote) = &iss.source else {
            continue;
        };
        let Some(cluster) = remote.cluster.as_deref() else {
            // require_clusters has refused this already; never an issuer without fetches.
            return Err(format!("config: {}: no cluster", config.issuer_path(id)));
        };
        out.push(Remote {
            issuer: id,
            name: iss.issuer.clone(),
            keys: shared::Keys::new(cluster, &remote.authority, &remote.path),
            seen_seq: 0,
            installed: 0,
            own: None,
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
    fn the_head_is_read_in_place_and_a_value_that_is_not_utf8_lossily() {
        let map = HeaderMap::from_pairs(&[
            (b":method", b"GET"),
            (b":scheme", b"https"),
            (b":authority", b"mcp.example.com"),
            (b":path", b"/mcp"),
            (b"authorization", b"Bearer t"),
        ]);
        let head = Head::of(&map).unwrap();
        assert!(matches!(head, Head::Borrowed { .. }));
        head.with(|r| {
            assert_eq!(
                (r.method, r.scheme, r.authority, r.path),
                ("GET", "https", "mcp.example.com", "/mcp")
            );
            assert_eq!(r.headers, &[("authorization", "Bearer t")]);
        });
        let map = HeaderMap::from_pairs(&[(b":path", b"/mcp"), (b"origin", b"https://caf\xe9")]);
        let head = Head::of(&map).unwrap();
        assert!(matches!(head, Head::Lossy { .. }));
        head.with(|r| {
            assert_eq!(r.path, "/mcp");
            assert_eq!(r.headers, &[("origin", "https://caf\u{fffd}")]);
        });
        assert!(Head::of(&HeaderMap::from_bytes(vec![9, 0, 0, 0])).is_none());
    }

    #[test]
    fn remote_jwks_needs_a_cluster() {
        let bytes = config(remote(None), serde_json::json!({}));
        let err = config::load(&bytes, config::Host::EnvoyWasm, Box::new(RingProvider))
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.starts_with("config: resources[0].issuers[0].remote_jwks.http_uri.cluster: "),
            "{err}"
        );
        let bytes = config(remote(Some("idp")), serde_json::json!({}));
        let r = remotes(&Config::from_json(&bytes).unwrap()).unwrap();
        assert_eq!(r.len(), 1);
        assert_eq!(
            r[0].keys,
            shared::Keys::new("idp", "as.example.com", "/jwks")
        );
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
