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
//! [`Verdict::AwaitKeys`] goes to the core's key schedule (see [`crate::fetch`]): paused, it
//! is copied and decided again on its own worker when the schedule wakes it.

use std::cell::{Cell, RefCell};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use mcp_edge_auth_core::config::{self, Loaded};
use mcp_edge_auth_core::crypto::ring::RingProvider;
use mcp_edge_auth_core::lists::{ListBody, ListFilter};
use mcp_edge_auth_core::{
    Decision, ExchangeNeed, ExchangeWait, Forward, Gateway, HeadersVerdict, IntrospectionJob,
    KeySchedule, KeyStore, OwnedBody, OwnedRequest, Reason, Request, Response, TokenCache, Verdict,
    WaitId,
};

use crate::abi::{self, status, Filter, HeaderMap, Level};
use crate::exchange::{Exchanger, Started};
use crate::fetch::{Fetcher, NoWait, WaitSlot};
use crate::metrics::Metrics;

/// The request headers the core reads (besides the pseudo headers), as the core lists them
/// ([`mcp_edge_auth_core::READ_HEADERS`]), and `content-length` (a body declared over the MCP limit is refused
/// before it is read): nothing else is copied out of Envoy's header map.
const HEADERS: &[&str] = &[
    "authorization",
    "origin",
    "access-control-request-method",
    "mcp-method",
    "mcp-name",
    "mcp-protocol-version",
    "content-length",
];

/// Event id of a paused stream's wake-up.
pub(crate) const WAKE: u64 = 1;

/// A secret key for a verified-token cache's hash, from std's per-process randomness.
pub(crate) fn random_key() -> (u64, u64) {
    use std::hash::BuildHasher;
    let s = std::collections::hash_map::RandomState::new();
    (s.hash_one(0x6b30_u64), s.hash_one(0x6b31_u64))
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// One worker's verified-token cache, on its own cache line.
#[repr(align(128))]
struct Shard(Mutex<TokenCache>);

/// One configured filter (an Envoy filter config), shared by all workers.
pub struct FilterConfig {
    pub(crate) gateway: Gateway,
    pub(crate) keys: RwLock<KeyStore>,
    caches: Box<[Shard]>,
    pub(crate) fetcher: Fetcher,
    /// Token exchanges toward the upstream (`upstream_token`).
    pub(crate) exchanger: Exchanger,
    /// Envoy counters (defined by `on_http_filter_config_new`, which has the config).
    pub(crate) metrics: Metrics,
}

/// Why the module cannot decide (never expected: a panic poisoned the key store).
#[derive(Debug)]
pub(crate) struct Broken;

impl FilterConfig {
    /// Builds the filter from its JSON config, or says (naming the field) why not.
    pub fn build(json: &[u8], workers: usize) -> Result<FilterConfig, String> {
        let Loaded {
            config,
            keys: store,
        } = config::load(json, config::Host::EnvoyModule, Box::new(RingProvider))
            .map_err(|e| e.to_string())?;
        let schedule = KeySchedule::new(&config, now_ms());
        let exchanger = Exchanger::new(&config);
        let gateway = Gateway::new(config);
        // Each worker's cache hashes with its own secret key, so that clients cannot aim
        // tokens at one slot (hits are confirmed on the whole token either way).
        let caches = (0..workers.max(1))
            .map(|_| Shard(Mutex::new(gateway.new_keyed_cache(random_key()))))
            .collect();
        Ok(FilterConfig {
            gateway,
            keys: RwLock::new(store),
            caches,
            fetcher: Fetcher::new(schedule),
            exchanger,
            metrics: Metrics::default(),
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

    /// Decides `req` on its headers with worker `shard`'s cache
    /// ([`Gateway::decide_headers`]).
    fn decide_headers(
        &self,
        req: &Request<'_>,
        end_of_stream: bool,
        now: u64,
        shard: usize,
    ) -> Result<HeadersVerdict, Broken> {
        let keys = self.keys.read().map_err(|_| Broken)?;
        let mut cache = self.cache(shard).ok_or(Broken)?;
        Ok(self
            .gateway
            .decide_headers(req, end_of_stream, now, &keys, &mut cache))
    }

    /// Decides `req` with worker `shard`'s cache.
    pub(crate) fn decide(
        &self,
        req: &Request<'_>,
        now: u64,
        shard: usize,
    ) -> Result<Verdict, Broken> {
        let keys = self.keys.read().map_err(|_| Broken)?;
        let mut cache = self.cache(shard).ok_or(Broken)?;
        Ok(self.gateway.decide(req, now, &keys, &mut cache))
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

    /// Completes an introspection with the endpoint's answer (`None`: the call failed).
    fn resume_introspection(
        &self,
        job: IntrospectionJob,
        answer: Option<(u16, &[u8])>,
        now: u64,
        shard: usize,
    ) -> Decision {
        match self.cache(shard) {
            Some(mut cache) => self
                .gateway
                .resume_introspection(job, answer, now, &mut cache),
            // No shards (never: `build` makes one per worker): decide without caching.
            None => {
                self.gateway
                    .resume_introspection(job, answer, now, &mut self.gateway.new_cache())
            }
        }
    }
}

/// Where a stream stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Phase {
    #[default]
    Deciding,
    /// Headers held back while the body is buffered (the decision needs it).
    ReadingBody,
    /// Paused until keys come, or the upstream token (or its deadline).
    Waiting,
    /// Paused until the introspection endpoint answers (or the call fails).
    Introspecting,
    Forwarded,
    Answered,
}

/// How a verdict was carried out; each hook turns it into its own status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Forwarded: let the request (and what was buffered of its body) go on.
    Continue,
    /// Answered locally.
    Stop,
    /// Paused (keys, introspection): hold the request until resumed.
    Paused,
}

/// What the headers hook found. (Lives on one hook's stack for a moment; boxing the
/// verdict to shrink it would cost an allocation on the hot path.)
#[allow(clippy::large_enum_variant)]
enum Start {
    /// A verdict; for [`Verdict::AwaitKeys`], the request, copied.
    Decided(Verdict, Option<OwnedRequest>),
    /// The decision needs the body, at most this many bytes of it.
    ReadBody(usize, OwnedRequest),
}

/// What a paused request waits for.
#[derive(Debug, Clone, Copy)]
enum Held {
    /// Keys (the key schedule's wait).
    Keys(WaitId),
    /// A token exchange.
    Exchange(ExchangeWait),
}

/// A paused request.
struct Paused {
    request: OwnedRequest,
    wait: Held,
    slot: Arc<WaitSlot>,
}

/// The answer of an introspection call: its status and body (`None`: the call failed).
type Answer = Option<(u16, Vec<u8>)>;

/// One stream. Envoy may re-enter a stream's hooks from a call into Envoy, so state is in
/// `Cell`/`RefCell`, and no borrow is held across a call into Envoy.
#[derive(Default)]
pub struct Stream {
    phase: Cell<Phase>,
    /// Added to the upstream's response (CORS for allowed browser origins).
    response_headers: RefCell<Vec<(&'static str, String)>>,
    paused: RefCell<Option<Paused>>,
    /// While reading the body: the request's headers, and the most the core reads.
    reading: RefCell<Option<OwnedRequest>>,
    body_limit: Cell<usize>,
    /// The introspection call in flight (its id; `None` while it is being started) and
    /// what to resume with its answer.
    introspection: RefCell<Option<(Option<u64>, IntrospectionJob)>>,
    /// An answer Envoy delivered while the call was still being started (a callout can
    /// fail synchronously), for the starter to carry out.
    inline_answer: RefCell<Option<Answer>>,
    /// The request being introspected, kept for a token exchange after it (woken requests
    /// are decided again from it).
    introspected_request: RefCell<Option<OwnedRequest>>,
    /// The forward's list requests, until the response headers say whether their answer
    /// is filtered ([`mcp_edge_auth_core::lists`]); then the body being filtered.
    lists: RefCell<Option<Box<ListFilter>>>,
    list_body: RefCell<Option<ListBody>>,
}

impl Stream {
    /// `on_http_filter_request_headers`: decide, and answer, forward or pause; or, when the
    /// decision needs the body (a POST to a resource with MCP rules, unless the core can
    /// answer without it), hold the headers back while Envoy buffers it.
    pub fn request_headers(
        &self,
        cfg: &FilterConfig,
        envoy: &mut Filter<'_>,
        end_of_stream: bool,
    ) -> u32 {
        let now_ms = now_ms();
        let now = now_ms / 1000;
        let shard = envoy.worker_index();
        let started = envoy.with_request(HEADERS, |req| {
            Ok::<_, Broken>(match cfg.decide_headers(req, end_of_stream, now, shard)? {
                HeadersVerdict::Decided(verdict) => {
                    let owned = matches!(verdict, Verdict::AwaitKeys(_) | Verdict::Exchange(_))
                        .then(|| OwnedRequest::copy(req));
                    Start::Decided(verdict, owned)
                }
                HeadersVerdict::ReadBody { limit } => {
                    Start::ReadBody(limit, OwnedRequest::copy(req))
                }
            })
        });
        match started {
            Err(Broken) => self.fail_closed(envoy),
            Ok(Start::ReadBody(limit, request)) => {
                *self.reading.borrow_mut() = Some(request);
                self.body_limit.set(limit);
                self.phase.set(Phase::ReadingBody);
                status::STOP_ITERATION
            }
            Ok(Start::Decided(verdict, owned)) => {
                match self.act(cfg, envoy, verdict, owned, None) {
                    Outcome::Continue => status::CONTINUE,
                    Outcome::Stop => status::STOP_ITERATION,
                    Outcome::Paused => status::STOP_ALL_AND_WATERMARK,
                }
            }
        }
    }

    /// `on_http_filter_request_body`: while the body is read, buffer it until it is
    /// complete (or over the limit), then decide; while paused, hold it back (buffered).
    pub fn request_body(&self, cfg: &FilterConfig, envoy: &Filter<'_>, end_of_stream: bool) -> u32 {
        match self.phase.get() {
            Phase::Forwarded | Phase::Answered => status::CONTINUE,
            Phase::ReadingBody => self.read_body(cfg, envoy, end_of_stream),
            Phase::Deciding | Phase::Waiting | Phase::Introspecting => status::STOP_ITERATION,
        }
    }

    /// `on_http_filter_request_trailers`: trailers end the body.
    pub fn request_trailers(&self, cfg: &FilterConfig, envoy: &Filter<'_>) -> u32 {
        match self.phase.get() {
            Phase::Forwarded | Phase::Answered => status::CONTINUE,
            Phase::ReadingBody => self.read_body(cfg, envoy, true),
            Phase::Deciding | Phase::Waiting | Phase::Introspecting => status::STOP_ITERATION,
        }
    }

    /// A body hook (or the trailers) of a request reading its body: wait for more
    /// (`StopIterationAndBuffer`), or decide when it is `complete` or over the limit. The
    /// status is the body hook's (the trailers hook's shares its values): `Continue` sends
    /// the held headers and the buffered body upstream, unchanged.
    fn read_body(&self, cfg: &FilterConfig, envoy: &Filter<'_>, complete: bool) -> u32 {
        let limit = self.body_limit.get();
        let body = if envoy.request_body_size() > limit {
            OwnedBody::TooLarge
        } else if complete {
            envoy
                .request_body(limit)
                .map_or(OwnedBody::TooLarge, OwnedBody::Bytes)
        } else {
            return status::STOP_ITERATION;
        };
        let Some(mut request) = self.reading.borrow_mut().take() else {
            // Never expected: the headers were kept when the body was asked for.
            return self.fail_closed(envoy);
        };
        request.body = body;
        let now_ms = now_ms();
        let shard = envoy.worker_index();
        let decided = request.with(|r| cfg.decide(r, now_ms / 1000, shard));
        let verdict = match decided {
            Ok(d) => d,
            Err(Broken) => return self.fail_closed(envoy),
        };
        match self.act(cfg, envoy, verdict, Some(request), None) {
            Outcome::Continue => status::CONTINUE,
            Outcome::Stop | Outcome::Paused => status::STOP_ITERATION,
        }
    }

    /// `on_http_filter_scheduled`: the key schedule (or the exchanges) woke a paused
    /// request: it is decided again, and answered, resumed, or (if allowed) paused once more.
    pub fn wake(&self, cfg: &FilterConfig, envoy: &mut Filter<'_>) {
        if self.phase.get() != Phase::Waiting {
            return;
        }
        let Some(paused) = self.paused.borrow_mut().take() else {
            return;
        };
        let now_ms = now_ms();
        let shard = envoy.worker_index();
        let verdict = match paused
            .request
            .with(|req| cfg.decide(req, now_ms / 1000, shard))
        {
            Ok(v) => v,
            Err(Broken) => {
                self.fail_closed(envoy);
                return;
            }
        };
        let previous = Some(paused.wait);
        if self.act(cfg, envoy, verdict, Some(paused.request), previous) == Outcome::Continue {
            envoy.continue_decoding();
        }
    }

    /// `on_http_filter_http_callout_done`: the introspection endpoint answered (or the call
    /// failed: `answer` is `None`). Ignored unless it is this stream's call in flight.
    pub fn introspected(
        &self,
        cfg: &FilterConfig,
        envoy: &Filter<'_>,
        callout_id: u64,
        answer: Answer,
    ) {
        let job = {
            let mut slot = self.introspection.borrow_mut();
            match slot.take() {
                // Delivered while the call was being started: its starter carries it out.
                Some((None, job)) => {
                    *slot = Some((None, job));
                    drop(slot);
                    *self.inline_answer.borrow_mut() = Some(answer);
                    return;
                }
                Some((Some(id), job)) if id == callout_id => job,
                other => {
                    *slot = other;
                    return;
                }
            }
        };
        if self.phase.get() != Phase::Introspecting {
            return;
        }
        if self.finish_introspection(cfg, envoy, job, answer) == Outcome::Continue {
            envoy.continue_decoding();
        }
    }

    /// Carries a verdict out. `owned` is the request, kept if it is paused for keys;
    /// `previous`, the wait it was woken from (the key schedule decides whether it may wait
    /// again).
    fn act(
        &self,
        cfg: &FilterConfig,
        envoy: &Filter<'_>,
        verdict: Verdict,
        owned: Option<OwnedRequest>,
        previous: Option<Held>,
    ) -> Outcome {
        let (key_wait, exchange_wait) = match previous {
            Some(Held::Keys(w)) => (Some(w), None),
            Some(Held::Exchange(w)) => (None, Some(w)),
            None => (None, None),
        };
        match verdict {
            Verdict::Respond(r) => self.respond(cfg, envoy, r),
            Verdict::Forward(f) => self.forward(cfg, envoy, f),
            Verdict::AwaitKeys(need) => {
                let Some(request) = owned else {
                    // Never expected: every path that can need keys passes its request.
                    return self.fail_closed_outcome(envoy);
                };
                match cfg.wait_for_keys(need, key_wait, || envoy.scheduler()) {
                    Ok((wait, slot)) => {
                        *self.paused.borrow_mut() = Some(Paused {
                            request,
                            wait: Held::Keys(wait),
                            slot,
                        });
                        self.phase.set(Phase::Waiting);
                        Outcome::Paused
                    }
                    Err(NoWait::Respond(r)) => self.respond(cfg, envoy, r),
                    Err(NoWait::Broken) => self.fail_closed_outcome(envoy),
                }
            }
            Verdict::Introspect(job) => {
                *self.introspected_request.borrow_mut() = owned;
                self.introspect(cfg, envoy, job)
            }
            Verdict::Exchange(need) => self.exchange(cfg, envoy, need, owned, exchange_wait),
            Verdict::VerifySignature(job) => {
                // The ring provider verifies synchronously: a deferred job would mean a
                // provider this host cannot serve. Fail closed.
                abi::log(Level::Error, || {
                    "mcp-edge-auth: signature verification was deferred; refusing the token"
                        .to_string()
                });
                self.respond(cfg, envoy, cfg.gateway.reject(job))
            }
        }
    }

    /// A request that may go once it carries its upstream token: forwarded with a cached
    /// one, answered (the exchange failed), or paused until the main thread's exchange ends.
    fn exchange(
        &self,
        cfg: &FilterConfig,
        envoy: &Filter<'_>,
        need: ExchangeNeed,
        owned: Option<OwnedRequest>,
        previous: Option<ExchangeWait>,
    ) -> Outcome {
        let Some(request) = owned else {
            // Never expected: every path that can need an exchange passes its request.
            return self.fail_closed_outcome(envoy);
        };
        match cfg.begin_exchange(need, previous, || envoy.scheduler()) {
            Ok(Started::Forward(f, cached)) => {
                if cached {
                    cfg.metrics.exchange_cache_hit(envoy);
                }
                self.forward(cfg, envoy, f)
            }
            Ok(Started::Paused(wait, slot)) => {
                *self.paused.borrow_mut() = Some(Paused {
                    request,
                    wait: Held::Exchange(wait),
                    slot,
                });
                self.phase.set(Phase::Waiting);
                Outcome::Paused
            }
            Err(NoWait::Respond(r)) => self.respond(cfg, envoy, r),
            Err(NoWait::Broken) => self.fail_closed_outcome(envoy),
        }
    }

    /// Sends an RFC 7662 introspection request from this stream (so that Envoy cancels it
    /// if the client goes away), and pauses until it answers. The job's body holds the
    /// token: it goes to the endpoint and nowhere else (never to the log).
    fn introspect(&self, cfg: &FilterConfig, envoy: &Filter<'_>, job: IntrospectionJob) -> Outcome {
        let Some(cluster) = job.cluster.clone() else {
            // Refused at config load; fail closed should one get here.
            return self.finish_introspection(cfg, envoy, job, None);
        };
        let mut headers: Vec<(&str, String)> = vec![
            (":method", "POST".to_string()),
            (":path", job.path.clone()),
            ("host", job.authority.clone()),
        ];
        headers.extend(job.headers.iter().map(|(n, v)| (*n, v.clone())));
        let body = job.body.clone();
        let timeout = u64::from(job.timeout_ms);
        let uri = job.uri.clone();
        *self.introspection.borrow_mut() = Some((None, job));
        *self.inline_answer.borrow_mut() = None;
        self.phase.set(Phase::Introspecting);
        let pairs: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let started = envoy.http_callout(&cluster, &pairs, body.as_bytes(), timeout);
        let inline = self.inline_answer.borrow_mut().take();
        let Some((_, job)) = self.introspection.borrow_mut().take() else {
            // Never expected: only this stream takes it.
            return self.fail_closed_outcome(envoy);
        };
        match (inline, started) {
            (Some(answer), _) => self.finish_introspection(cfg, envoy, job, answer),
            (None, Ok(id)) => {
                *self.introspection.borrow_mut() = Some((Some(id), job));
                Outcome::Paused
            }
            (None, Err(code)) => {
                abi::log(Level::Error, || {
                    format!(
                        "mcp-edge-auth: cannot introspect a token at {uri}: Envoy refused the \
                         call (code {code}); is cluster \"{cluster}\" defined?"
                    )
                });
                self.finish_introspection(cfg, envoy, job, None)
            }
        }
    }

    /// Resumes the decision with the endpoint's answer and carries it out.
    fn finish_introspection(
        &self,
        cfg: &FilterConfig,
        envoy: &Filter<'_>,
        job: IntrospectionJob,
        answer: Answer,
    ) -> Outcome {
        if answer.as_ref().is_none_or(|(status, _)| *status != 200) {
            abi::log(Level::Warn, || {
                let what = answer
                    .as_ref()
                    .map_or("no answer".to_string(), |(s, _)| format!("HTTP status {s}"));
                format!("mcp-edge-auth: introspection at {} failed: {what}", job.uri)
            });
        }
        let now_ms = now_ms();
        let answer = answer.as_ref().map(|(s, b)| (*s, b.as_slice()));
        let v = cfg.resume_introspection(job, answer, now_ms / 1000, envoy.worker_index());
        // A resumed introspection answers, forwards, or needs the upstream token; it never
        // starts another introspection nor waits for keys.
        match v {
            Decision::Respond(r) => self.respond(cfg, envoy, r),
            Decision::Forward(f) => self.forward(cfg, envoy, f),
            Decision::Exchange(need) => {
                let request = self.introspected_request.borrow_mut().take();
                self.exchange(cfg, envoy, need, request, None)
            }
        }
    }

    /// `on_http_filter_response_headers`: adds the decision's response headers (CORS) to
    /// the upstream's response, replacing any the upstream set, except `Vary`, which lists
    /// and so is appended to. When the request had list requests, the core says whether
    /// their answer is filtered and how the headers change; a JSON answer's headers are then
    /// held until its body is rewritten.
    pub fn response_headers(&self, envoy: &mut Filter<'_>, end_of_stream: bool) -> u32 {
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
        let Some(lists) = self.lists.borrow_mut().take() else {
            return status::CONTINUE;
        };
        let all = envoy.response_headers();
        let status = all
            .iter()
            .find(|(n, _)| n == ":status")
            .and_then(|(_, v)| v.parse::<u16>().ok())
            .unwrap_or(0);
        let pairs: Vec<(&str, &str)> = all.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        let Some((body, edits)) = (*lists).open(status, &pairs) else {
            return status::CONTINUE;
        };
        for name in edits.remove {
            envoy.set_header(HeaderMap::Response, name, None);
        }
        envoy.set_header(
            HeaderMap::Response,
            "cache-control",
            Some(&edits.cache_control),
        );
        let hold = body.holds_headers() && !end_of_stream;
        *self.list_body.borrow_mut() = Some(body);
        if hold {
            status::STOP_ITERATION
        } else {
            status::CONTINUE
        }
    }

    /// `on_http_filter_response_body` of a filtered answer: a JSON one is buffered until it
    /// is complete and then replaced by the core's rewrite; an event stream's chunks go on at
    /// once, each replaced by what the core lets go of it.
    pub fn response_body(
        &self,
        cfg: &FilterConfig,
        envoy: &Filter<'_>,
        end_of_stream: bool,
    ) -> u32 {
        let mut slot = self.list_body.borrow_mut();
        let Some(body) = slot.as_mut() else {
            return status::CONTINUE;
        };
        if body.is_passing() {
            return status::CONTINUE;
        }
        let json = body.holds_headers();
        if json && !end_of_stream && envoy.response_body_size() <= body.max_bytes() {
            return status::STOP_ITERATION;
        }
        // Bounded: a JSON body is buffered only up to the limit, a stream chunk is one chunk.
        let chunk = envoy.response_body(usize::MAX).unwrap_or_default();
        let mut out = Vec::new();
        body.push(&cfg.gateway, &chunk, &mut out);
        if end_of_stream {
            body.finish(&cfg.gateway, &mut out);
        }
        if let Some(line) = body.take_refusal() {
            abi::log(Level::Warn, || format!("mcp-edge-auth: {line}"));
        }
        drop(slot);
        if out != chunk {
            envoy.replace_response_body(&out);
        }
        if !json {
            status::CONTINUE
        } else if end_of_stream {
            envoy.set_header(
                HeaderMap::Response,
                "content-length",
                Some(&out.len().to_string()),
            );
            status::CONTINUE
        } else {
            // Over the limit: refused; what came so far is dropped, and so is the rest.
            status::STOP_ITERATION
        }
    }

    /// The stream is going away: a paused request stops waiting (Envoy cancels an
    /// introspection call in flight itself).
    pub fn destroy(&self) {
        if let Some(p) = self.paused.borrow_mut().take() {
            p.slot.cancel();
        }
        self.introspection.borrow_mut().take();
    }

    /// Answers 500 unless the stream was already answered or forwarded: used when the
    /// module cannot decide (a panic, a poisoned lock). Never a pass.
    pub fn fail_closed(&self, envoy: &Filter<'_>) -> u32 {
        match self.phase.get() {
            Phase::Answered | Phase::Forwarded => status::STOP_ITERATION,
            Phase::Deciding | Phase::ReadingBody | Phase::Waiting | Phase::Introspecting => {
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

    fn fail_closed_outcome(&self, envoy: &Filter<'_>) -> Outcome {
        self.fail_closed(envoy);
        Outcome::Stop
    }

    fn respond(&self, cfg: &FilterConfig, envoy: &Filter<'_>, r: Response) -> Outcome {
        self.phase.set(Phase::Answered);
        cfg.metrics.decision(envoy, r.reason);
        abi::log(Level::Debug, || {
            format!(
                "mcp-edge-auth: answered {} ({})",
                r.status,
                r.reason.as_str()
            )
        });
        let details = details(r.reason);
        envoy.send_response(r.status, &r.headers, &r.body, details);
        Outcome::Stop
    }

    fn forward(&self, cfg: &FilterConfig, envoy: &Filter<'_>, f: Forward) -> Outcome {
        self.phase.set(Phase::Forwarded);
        cfg.metrics.decision(envoy, f.reason);
        if f.reason == Reason::Allowed {
            cfg.metrics.cache(envoy, f.cache_hit);
        }
        for name in f.remove_headers.iter() {
            envoy.set_header(HeaderMap::Request, name, None);
        }
        for (name, value) in f.add_headers.iter() {
            envoy.add_header(HeaderMap::Request, name, value);
        }
        if let Some(path) = &f.new_path {
            envoy.set_header(HeaderMap::Request, ":path", Some(path));
        }
        if !f.response_headers.is_empty() {
            *self.response_headers.borrow_mut() = f.response_headers;
        }
        *self.lists.borrow_mut() = f.lists;
        Outcome::Continue
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
        // MCP rules and introspection are supported; an introspection endpoint needs a
        // cluster, and its secret never shows in the refusal.
        let rules = serde_json::json!({
            "mcp": { "rules": [{ "method": "tools/call", "name": "admin_*", "scopes": ["mcp:admin"] }] }
        });
        assert!(FilterConfig::build(&config(remote(Some("idp")), rules), 1).is_ok());
        let mut intro = remote(Some("idp"));
        intro["introspection"] = serde_json::json!({
            "http_uri": { "uri": "https://as.example.com/introspect", "cluster": "idp" },
            "client_id": "gw", "client_secret": "s3cret"
        });
        assert!(FilterConfig::build(&config(intro.clone(), serde_json::json!({})), 1).is_ok());
        intro["introspection"]["http_uri"]
            .as_object_mut()
            .unwrap()
            .remove("cluster");
        let e = err(&config(intro, serde_json::json!({})));
        assert!(
            e.starts_with("config: resources[0].issuers[0].introspection.http_uri.cluster: "),
            "{e}"
        );
        assert!(!e.contains("s3cret"));
    }

    #[test]
    fn every_header_the_core_reads_is_copied() {
        for h in mcp_edge_auth_core::READ_HEADERS {
            assert!(HEADERS.contains(h), "{h}");
        }
        assert!(
            HEADERS.len() * 2 <= 16,
            "with_request keeps two values of each"
        );
    }

    #[test]
    fn content_length_is_copied_for_the_core() {
        // decide_headers reads it (413 before the body): it must be among the headers taken.
        assert!(HEADERS.contains(&"content-length"));
    }

    #[test]
    fn decisions_come_from_the_core() {
        let cfg =
            FilterConfig::build(&config(remote(Some("idp")), serde_json::json!({})), 1).unwrap();
        let b64 =
            |v: serde_json::Value| mcp_edge_auth_core::b64::encode_url(v.to_string().as_bytes());
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
        // No keys yet: the core asks for them.
        let v = cfg.decide(&req, 1000, 7).unwrap();
        assert!(matches!(v, Verdict::AwaitKeys(_)), "{v:?}");
        let none: [(&str, &str); 0] = [];
        let req = Request::new("GET", "https", "mcp.example.com", "/mcp", &none);
        match cfg.decide(&req, 1000, 0).unwrap() {
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
