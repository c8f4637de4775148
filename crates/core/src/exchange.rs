//! RFC 8693 token exchange toward the upstream: when, who waits, what is cached, what a
//! failure answers. One sans-IO state machine every host drives, like the key schedule.
//!
//! The MCP spec forbids passing the client's token on; an MCP server that needs a bearer
//! token of its own gets one from the resource's `upstream_token` section: the gateway
//! exchanges the client's (verified) token at the authorization server's token endpoint for
//! one issued to the upstream, and forwards with that instead.
//!
//! A host
//!
//! * gets [`Verdict::Exchange`](crate::Verdict::Exchange) from the gateway for a request
//!   that passed every check on such a resource, and hands the [`ExchangeNeed`] to
//!   [`Exchanges::begin`]: a forward (the exchanged token is cached), an answer (the
//!   endpoint is failing: 503 with the true `Retry-After`), or the request is paused;
//! * carries out each [`ExchangeCall`] of [`Exchanges::poll_send`] (a POST of a form;
//!   its body holds the subject token: never log it) and hands the answer to
//!   [`Exchanges::handle_response`];
//! * decides the requests [`Exchanges::poll_wake`] names again, passing their
//!   [`ExchangeWait`] as `previous` to [`Exchanges::begin`], which then hands each the
//!   outcome of the exchange it waited for;
//! * arms one timer for [`Exchanges::poll_timeout`].
//!
//! The policy, once for every host (times in milliseconds of the host's clock):
//!
//! * **One exchange per subject token and resource** at a time: concurrent requests with
//!   the same token wait for the exchange the first one started.
//! * **Cached** under a secret-keyed hash of the subject token (the token cache's hash, with
//!   this instance's own key), confirmed on the whole token, bounded by `token_cache.max_entries` (at most 4096 slots), never past `min(expires_in, the
//!   subject token's exp)`, and given up a little early (a tenth of its life, at most 30 s)
//!   so that no upstream receives a token about to expire. A new configuration starts with
//!   a new, empty `Exchanges`.
//! * **The answer is checked** (RFC 8693 §2.2.1): a 200 JSON object with a non-empty
//!   header-safe `access_token`, `issued_token_type` equal to the one requested, `token_type`
//!   `Bearer` (case-insensitive; `N_A` is accepted for other token types carried outside
//!   `Authorization`), `expires_in` a positive integer when present (absent: cached
//!   [`DEFAULT_LIFETIME_MS`] at most).
//! * **Failures are closed.** The endpoint down, slow, answering 5xx or garbage, or refusing
//!   the gateway's own credentials: 503 with `Retry-After`; further attempts for that resource
//!   back off 1 s, 2 s, 4 s … up to `retry_after_seconds`, and requests in between are
//!   answered 503 at once with the time until the next attempt. The authorization server
//!   refusing this subject (`invalid_grant`): 401 `invalid_token`; refusing the target or
//!   scope (`invalid_target`, `invalid_scope`, `unauthorized_client`, `access_denied`): 403.
//!   Every description is fixed text: nothing the authorization server wrote reaches the
//!   client, and a logged error code is one of RFC 6749 / 8693's or "unregistered".

use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use serde_json::Value;

use crate::cache::{same_token, token_hash, TokenHash};
use crate::challenge;
use crate::config::{Config, UpstreamToken, ACCESS_TOKEN_TYPE, TOKEN_EXCHANGE_GRANT};
use crate::form;
use crate::http::{Forward, Response};
use crate::json::StrictObject;
use crate::keys::schedule::{Failure, LogLevel};

/// An exchanged token the answer gives no `expires_in` for is reused at most this long.
pub const DEFAULT_LIFETIME_MS: u64 = 60_000;
/// Largest token endpoint answer read.
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// Longest exchanged token accepted (it goes into a request header).
const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// A paused request is woken at the latest this long after its exchange's timeout, whatever
/// the host's call does.
const WAIT_GRACE_MS: u64 = 2000;
/// First back-off after a failed exchange; doubles per consecutive failure.
const FIRST_RETRY_MS: u64 = 1000;
/// Exchange cache slots at most (`token_cache.max_entries` may be up to a million; the slots
/// are allocated at once).
const MAX_SLOTS: usize = 4096;
/// Exchanges in flight at most (per host instance); beyond, requests get a 503.
const MAX_FLIGHTS: usize = 1024;
/// Requests waiting for one exchange at most; beyond, a 503.
const MAX_WAITERS: usize = 4096;
/// A finished exchange's outcome is kept this long for waiters that have not collected it.
const OUTCOME_KEEP_MS: u64 = 10_000;

/// One exchange, named so that its answer finds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ExchangeId(u64);

impl ExchangeId {
    /// The id as a number (for host-side maps).
    pub fn get(self) -> u64 {
        self.0
    }
}

/// A request paused for an exchange; handed back to [`Exchanges::begin`] once woken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ExchangeWait {
    n: u64,
    flight: ExchangeId,
}

impl ExchangeWait {
    /// The id as a number, unique per [`Exchanges`] (for host-side maps).
    pub fn get(self) -> u64 {
        self.n
    }
}

/// A request that passed every check on a resource with `upstream_token`: it may be
/// forwarded once it carries an exchanged token. Holds the client's token: `Debug` redacts.
pub struct ExchangeNeed {
    pub(crate) resource: usize,
    pub(crate) subject: Box<str>,
    /// The subject token's `exp` (seconds): no exchanged token is reused past it.
    pub(crate) subject_exp: u64,
    pub(crate) forward: Forward,
}

impl fmt::Debug for ExchangeNeed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExchangeNeed")
            .field("resource", &self.resource)
            .field("subject", &"<redacted>")
            .field("forward", &self.forward)
            .finish_non_exhaustive()
    }
}

impl ExchangeNeed {
    /// The request's forward as it would go without its upstream token, for hosts that
    /// report what was decided. Never forward it: it lacks the token.
    pub fn pending_forward(&self) -> &Forward {
        &self.forward
    }

    /// The resource (index into the config's resources) whose `upstream_token` applies.
    pub fn resource(&self) -> usize {
        self.resource
    }
}

/// What [`Exchanges::begin`] says.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Begin {
    /// Forward with these changes (they carry the exchanged token). `cached`: from the cache.
    Forward {
        /// The forward.
        forward: Forward,
        /// Whether the exchanged token came from the cache (for the hit counter).
        cached: bool,
    },
    /// Answer this (the exchange failed or is backing off).
    Respond(Response),
    /// Paused: decide the request again when [`Exchanges::poll_wake`] names this.
    Paused(ExchangeWait),
}

/// A token exchange request for the host to send: `POST` `body` (a form) with `headers`.
/// The body holds the client's token: never log it (`Debug` redacts it).
#[derive(Clone)]
pub struct ExchangeCall {
    /// Hand the answer back under this id.
    pub id: ExchangeId,
    /// The resource (index into the config's resources) it is for.
    pub resource: usize,
    /// Endpoint URL (for `fetch` and logs).
    pub uri: String,
    /// Envoy cluster that reaches it.
    pub cluster: Option<String>,
    /// `:authority` of the request.
    pub authority: String,
    /// `:path` of the request.
    pub path: String,
    /// Request headers beyond the pseudo-headers.
    pub headers: Vec<(&'static str, String)>,
    /// The form body.
    pub body: String,
    /// The whole call must finish within this.
    pub timeout_ms: u32,
    /// Read no more of the answer than this ([`ExchangeOutcome::TooLarge`]).
    pub max_body_bytes: usize,
}

impl fmt::Debug for ExchangeCall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExchangeCall")
            .field("id", &self.id)
            .field("uri", &self.uri)
            .field("cluster", &self.cluster)
            .field("body", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// How a call ended, as the host saw it.
#[derive(Debug, Clone, Copy)]
pub enum ExchangeOutcome<'a> {
    /// An HTTP answer (any status), its body at most `max_body_bytes`.
    Response {
        /// The status code.
        status: u16,
        /// The body.
        body: &'a [u8],
    },
    /// The body was longer than `max_body_bytes`.
    TooLarge,
    /// No HTTP answer.
    Failed(Failure),
}

/// What a finished exchange did, for the host's log and counters. Never holds a token or
/// text from the authorization server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExchangeReport {
    /// A token was issued.
    Issued {
        /// For which resource.
        resource: usize,
        /// Its lifetime in seconds, as the answer gave it.
        expires_in: Option<u64>,
    },
    /// The authorization server refused this subject or target (an RFC 6749 / 8693 code).
    Refused {
        /// For which resource.
        resource: usize,
        /// The error code (registered codes only; others are `"unregistered"`).
        error: &'static str,
    },
    /// No usable answer: the endpoint is failing, or refused the gateway's own request.
    Failed {
        /// For which resource.
        resource: usize,
        /// Why, in words.
        why: String,
        /// When the next exchange for this resource may start, in ms from now.
        retry_in_ms: u64,
    },
}

impl ExchangeReport {
    /// Whether a token was issued (the `exchanges_ok` counter; else `exchanges_failed`).
    pub fn ok(&self) -> bool {
        matches!(self, ExchangeReport::Issued { .. })
    }

    /// The log line: `uri` names the endpoint.
    pub fn log_line(&self, uri: &str) -> (LogLevel, String) {
        match self {
            ExchangeReport::Issued { expires_in, .. } => (
                LogLevel::Debug,
                format!(
                    "token exchange at {uri}: issued (expires_in {})",
                    expires_in.map_or_else(|| "absent".to_string(), |s| format!("{s} s"))
                ),
            ),
            ExchangeReport::Refused { error, .. } => (
                LogLevel::Info,
                format!("token exchange at {uri}: refused the subject or target ({error})"),
            ),
            ExchangeReport::Failed {
                why, retry_in_ms, ..
            } => (
                LogLevel::Warn,
                format!(
                    "token exchange at {uri} failed: {why}; next attempt in {} ms",
                    retry_in_ms
                ),
            ),
        }
    }
}

/// Counter names (after a host's prefix, as [`crate::Reason::counter_name`]): tokens issued,
/// exchanges that ended without one, forwards served from the exchange cache.
pub const COUNTERS: [&str; 3] = [
    "token_exchange_ok",
    "token_exchange_failed",
    "token_exchange_cache_hit",
];

/// Exchange counters since creation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExchangeStats {
    /// Tokens issued.
    pub ok: u64,
    /// Exchanges that ended without a token.
    pub failed: u64,
    /// Forwards served from the cache.
    pub cache_hits: u64,
}

/// The outcome of one exchange, as its waiters get it.
#[derive(Debug, Clone)]
enum Outcome {
    Token {
        value: Box<str>,
        reuse_until_ms: u64,
    },
    Refused(Refusal),
    Unavailable {
        retry_at_ms: u64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// `invalid_grant`: the subject token is not good for an exchange (401).
    Subject,
    /// The target, scope or client is not allowed (403).
    Target,
}

/// A paused request (its forward is decided afresh when it is woken).
struct Waiter {
    n: u64,
}

struct Flight {
    resource: usize,
    hash: TokenHash,
    subject: Box<str>,
    subject_exp: u64,
    sent: bool,
    deadline_ms: u64,
    waiters: Vec<Waiter>,
    /// Set when the exchange finished; waiters collect it, then the flight goes.
    outcome: Option<(Outcome, u64)>,
}

struct Cached {
    subject: Box<str>,
    value: Box<str>,
    reuse_until_ms: u64,
}

/// Per resource: the exchange config and the back-off state.
struct Target {
    config: Option<UpstreamToken>,
    /// 401 for `invalid_grant`, built once from the resource (its challenge names its
    /// metadata URL).
    subject_refused: Response,
    failures: u32,
    retry_at_ms: u64,
}

/// The token exchange state of one host instance (one Envoy worker VM, one native filter
/// config, one Worker isolate). See the module docs.
pub struct Exchanges {
    targets: Vec<Target>,
    max_entries: usize,
    cache: Slots,
    flights: Flights,
    unsent: VecDeque<ExchangeId>,
    woken: VecDeque<ExchangeWait>,
    next: u64,
    stats: ExchangeStats,
    /// Secret key of the subject-token hash (one per instance, shared by every thread that
    /// uses it: the native module's workers hash alike).
    hash_key: (u64, u64),
}

impl fmt::Debug for Exchanges {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Exchanges")
            .field("cached", &self.cache.len())
            .field("flights", &self.flights.0.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Exchanges {
    /// The exchange state for `config` (empty: a new config starts a new one), hashing
    /// subject tokens with a fixed key. Hosts with randomness use [`Exchanges::with_hash_key`].
    pub fn new(config: &Config) -> Exchanges {
        Self::with_hash_key(config, (0x6578_6368_616e_6765, 0x2d75_7073_7472_6561))
    }

    /// As [`Exchanges::new`], hashing subject tokens with a secret `key` (two random words),
    /// so that no client can aim tokens at one cache slot.
    pub fn with_hash_key(config: &Config, hash_key: (u64, u64)) -> Exchanges {
        let targets = config
            .resources
            .iter()
            .map(|res| Target {
                config: res.upstream_token.clone(),
                subject_refused: challenge::invalid_token(
                    res,
                    "The access token could not be exchanged for the upstream",
                    crate::Reason::ExchangeRefused,
                ),
                failures: 0,
                retry_at_ms: 0,
            })
            .collect();
        Exchanges {
            targets,
            max_entries: config.token_cache_max_entries.min(MAX_SLOTS),
            cache: Slots(Vec::new()),
            flights: Flights(Vec::new()),
            unsent: VecDeque::new(),
            woken: VecDeque::new(),
            next: 1,
            stats: ExchangeStats::default(),
            hash_key,
        }
    }

    /// Whether any resource exchanges tokens (hosts skip the machinery otherwise).
    pub fn enabled(&self) -> bool {
        self.targets.iter().any(|t| t.config.is_some())
    }

    /// Counters since creation.
    pub fn stats(&self) -> ExchangeStats {
        self.stats
    }

    /// The token endpoint a report is about (for its log line).
    pub fn endpoint(&self, report: &ExchangeReport) -> &str {
        let (ExchangeReport::Issued { resource, .. }
        | ExchangeReport::Refused { resource, .. }
        | ExchangeReport::Failed { resource, .. }) = report;
        self.targets
            .get(*resource)
            .and_then(|t| t.config.as_ref())
            .map_or("?", |c| c.uri.as_str())
    }

    /// Exchanged tokens cached.
    pub fn cached(&self) -> usize {
        self.cache.len()
    }

    /// Whether requests wait for an exchange.
    pub fn has_waiters(&self) -> bool {
        self.flights
            .0
            .iter()
            .any(|(_, f)| f.outcome.is_none() && !f.waiters.is_empty())
    }

    fn id(&mut self) -> u64 {
        let n = self.next;
        self.next = self.next.wrapping_add(1).max(1);
        n
    }

    /// A request that needs an upstream token (`previous`: the wait it was woken from).
    pub fn begin(
        &mut self,
        need: ExchangeNeed,
        previous: Option<ExchangeWait>,
        now_ms: u64,
    ) -> Begin {
        let hash = token_hash(self.hash_key, &need.subject);
        let key = (need.resource, hash);
        if let Some(prev) = previous {
            if let Some(begin) = self.collect(prev, &need, now_ms) {
                return begin;
            }
        }
        let Some(target) = self.targets.get(need.resource) else {
            return Begin::Respond(challenge::unmatched());
        };
        let Some(config) = target.config.as_ref() else {
            // Never made for a resource without `upstream_token`; fail closed.
            return Begin::Respond(challenge::unmatched());
        };
        if let Some(c) = self.cache.get(key) {
            if now_ms < c.reuse_until_ms
                && same_token(c.subject.as_bytes(), need.subject.as_bytes())
            {
                self.stats.cache_hits += 1;
                let value = config.header_value(&c.value);
                return Begin::Forward {
                    forward: with_token(need.forward, &config.header, value),
                    cached: true,
                };
            }
        }
        let open = self.flights.0.iter().find(|(_, f)| {
            f.outcome.is_none()
                && (f.resource, f.hash) == key
                && same_token(f.subject.as_bytes(), need.subject.as_bytes())
        });
        if let Some((id, _)) = open {
            let id = *id;
            return self.join(id, need.forward);
        }
        if now_ms < target.retry_at_ms {
            return Begin::Respond(unavailable(target.retry_at_ms, now_ms, need.forward));
        }
        let open = self
            .flights
            .0
            .iter()
            .filter(|(_, f)| f.outcome.is_none())
            .count();
        if open >= MAX_FLIGHTS {
            return Begin::Respond(unavailable(now_ms + 1000, now_ms, need.forward));
        }
        let deadline_ms = now_ms
            .saturating_add(u64::from(config.timeout_ms))
            .saturating_add(WAIT_GRACE_MS);
        let id = ExchangeId(self.id());
        self.flights.insert(
            id,
            Flight {
                resource: need.resource,
                hash,
                subject: need.subject,
                subject_exp: need.subject_exp,
                sent: false,
                deadline_ms,
                waiters: Vec::new(),
                outcome: None,
            },
        );
        self.unsent.push_back(id);
        self.join(id, need.forward)
    }

    fn join(&mut self, id: ExchangeId, forward: Forward) -> Begin {
        let n = self.id();
        let Some(f) = self.flights.get_mut(&id) else {
            return Begin::Respond(challenge::exchange_unavailable(1));
        };
        if f.waiters.len() >= MAX_WAITERS {
            return Begin::Respond(unavailable(f.deadline_ms, f.deadline_ms, forward));
        }
        f.waiters.push(Waiter { n });
        Begin::Paused(ExchangeWait { n, flight: id })
    }

    /// A woken request takes the outcome of the exchange it waited for, applied to the
    /// forward decided now (a fresh decision of the same request). `None` when that outcome
    /// is gone or the request is not the one that waited (then it is decided like a new one).
    fn collect(&mut self, prev: ExchangeWait, need: &ExchangeNeed, now_ms: u64) -> Option<Begin> {
        let flight = self.flights.get_mut(&prev.flight)?;
        let pos = flight.waiters.iter().position(|w| w.n == prev.n)?;
        let same_request = flight.resource == need.resource
            && same_token(flight.subject.as_bytes(), need.subject.as_bytes());
        let Some((outcome, _)) = flight.outcome.clone() else {
            // Woken early (never by this schedule): it keeps waiting.
            return same_request.then_some(Begin::Paused(prev));
        };
        flight.waiters.swap_remove(pos);
        if flight.waiters.is_empty() {
            self.flights.remove(&prev.flight);
        }
        if !same_request {
            return None;
        }
        let target = self.targets.get(need.resource)?;
        let config = target.config.as_ref()?;
        let forward = need.forward.clone();
        Some(match outcome {
            Outcome::Token { value, .. } => Begin::Forward {
                forward: with_token(forward, &config.header, config.header_value(&value)),
                cached: false,
            },
            Outcome::Refused(Refusal::Subject) => {
                let mut r = target.subject_refused.clone();
                r.headers.extend(forward.response_headers);
                Begin::Respond(r)
            }
            Outcome::Refused(Refusal::Target) => Begin::Respond(refused_target(forward)),
            Outcome::Unavailable { retry_at_ms } => {
                Begin::Respond(unavailable(retry_at_ms, now_ms, forward))
            }
        })
    }

    /// The next exchange to send, if any.
    pub fn poll_send(&mut self) -> Option<ExchangeCall> {
        while let Some(id) = self.unsent.pop_front() {
            let Some(f) = self.flights.get_mut(&id) else {
                continue;
            };
            if f.sent || f.outcome.is_some() {
                continue;
            }
            let Some(config) = self.targets.get(f.resource).and_then(|t| t.config.as_ref()) else {
                continue;
            };
            f.sent = true;
            let mut body = format!(
                "grant_type={}&subject_token={}",
                form::encode(TOKEN_EXCHANGE_GRANT),
                form::encode(&f.subject)
            );
            body.push_str(&config.form_tail);
            let mut headers = vec![
                (
                    "content-type",
                    "application/x-www-form-urlencoded".to_string(),
                ),
                ("accept", "application/json".to_string()),
                ("user-agent", "mcp-edge-auth".to_string()),
            ];
            if let crate::config::upstream_token::ClientAuth::Basic(v) = &config.client_auth {
                headers.push(("authorization", v.clone()));
            }
            return Some(ExchangeCall {
                id,
                resource: f.resource,
                uri: config.uri.clone(),
                cluster: config.cluster.clone(),
                authority: config.authority.clone(),
                path: config.path.clone(),
                headers,
                body,
                timeout_ms: config.timeout_ms,
                max_body_bytes: MAX_ANSWER_BYTES,
            });
        }
        None
    }

    /// The answer to an exchange. `None` when the exchange is unknown (already timed out).
    pub fn handle_response(
        &mut self,
        id: ExchangeId,
        outcome: ExchangeOutcome<'_>,
        now_ms: u64,
    ) -> Option<ExchangeReport> {
        let f = self.flights.get(&id)?;
        if f.outcome.is_some() {
            return None;
        }
        let resource = f.resource;
        let config = self.targets.get(resource)?.config.as_ref()?;
        let judged = judge(config, outcome);
        Some(self.settle(id, judged, now_ms))
    }

    /// Records how an exchange ended, wakes its waiters, caches or backs off.
    fn settle(&mut self, id: ExchangeId, judged: Judged, now_ms: u64) -> ExchangeReport {
        let Some(f) = self.flights.get_mut(&id) else {
            return ExchangeReport::Failed {
                resource: 0,
                why: "unknown exchange".into(),
                retry_in_ms: 0,
            };
        };
        let resource = f.resource;
        let key = (f.resource, f.hash);
        let (outcome, report) = match judged {
            Judged::Token { value, expires_in } => {
                let life_ms = expires_in.map_or(DEFAULT_LIFETIME_MS, |s| s.saturating_mul(1000));
                let until = now_ms
                    .saturating_add(life_ms)
                    .min(f.subject_exp.saturating_mul(1000));
                let margin = (until.saturating_sub(now_ms) / 10).min(30_000);
                let reuse_until_ms = until.saturating_sub(margin);
                (
                    Outcome::Token {
                        value,
                        reuse_until_ms,
                    },
                    ExchangeReport::Issued {
                        resource,
                        expires_in,
                    },
                )
            }
            Judged::Refused(kind, error) => (
                Outcome::Refused(kind),
                ExchangeReport::Refused { resource, error },
            ),
            Judged::Failed(why) => {
                let t = self.targets.get_mut(resource);
                let (retry_at_ms, retry_in_ms) = match t {
                    Some(t) => {
                        t.failures = t.failures.saturating_add(1);
                        let backoff = FIRST_RETRY_MS
                            .saturating_mul(1 << t.failures.saturating_sub(1).min(20))
                            .min(
                                t.config
                                    .as_ref()
                                    .map_or(10_000, |c| u64::from(c.retry_after) * 1000),
                            );
                        t.retry_at_ms = now_ms.saturating_add(backoff);
                        (t.retry_at_ms, backoff)
                    }
                    None => (now_ms + FIRST_RETRY_MS, FIRST_RETRY_MS),
                };
                (
                    Outcome::Unavailable { retry_at_ms },
                    ExchangeReport::Failed {
                        resource,
                        why,
                        retry_in_ms,
                    },
                )
            }
        };
        if report.ok() {
            self.stats.ok += 1;
            if let Some(t) = self.targets.get_mut(resource) {
                t.failures = 0;
                t.retry_at_ms = 0;
            }
        } else {
            self.stats.failed += 1;
        }
        let Some(f) = self.flights.get_mut(&id) else {
            return report;
        };
        if let Outcome::Token {
            value,
            reuse_until_ms,
        } = &outcome
        {
            if self.max_entries > 0 && *reuse_until_ms > now_ms {
                let cached = Cached {
                    subject: f.subject.clone(),
                    value: value.clone(),
                    reuse_until_ms: *reuse_until_ms,
                };
                self.cache.insert(key, cached, self.max_entries);
            }
        }
        for w in &f.waiters {
            self.woken.push_back(ExchangeWait { n: w.n, flight: id });
        }
        if f.waiters.is_empty() {
            self.flights.remove(&id);
        } else {
            f.outcome = Some((outcome, now_ms));
        }
        report
    }

    /// The next paused request to decide again (its exchange finished, or failed: call
    /// [`Exchanges::poll_overdue`] first, so that a lost answer counts as a failure). Also
    /// forgets outcomes nobody collected.
    pub fn poll_wake(&mut self, now_ms: u64) -> Option<ExchangeWait> {
        self.flights.0.retain(|(_, f)| match &f.outcome {
            Some((_, at)) => now_ms < at.saturating_add(OUTCOME_KEEP_MS),
            None => true,
        });
        self.woken.pop_front()
    }

    /// The next exchange whose answer did not come by its deadline (timeout plus a grace):
    /// it fails (503, back-off) and its waiters are woken. Call until `None`, then
    /// [`Exchanges::poll_wake`].
    pub fn poll_overdue(&mut self, now_ms: u64) -> Option<ExchangeReport> {
        let id = self
            .flights
            .0
            .iter()
            .find(|(_, f)| f.outcome.is_none() && now_ms >= f.deadline_ms)
            .map(|(id, _)| *id)?;
        Some(self.settle(id, Judged::Failed("no answer in time".into()), now_ms))
    }

    /// When to call [`Exchanges::poll_wake`] next: the earliest deadline of an exchange in
    /// flight, or now when requests are ready.
    pub fn poll_timeout(&self) -> Option<u64> {
        if !self.woken.is_empty() {
            return Some(0);
        }
        self.flights
            .0
            .iter()
            .filter(|(_, f)| f.outcome.is_none())
            .map(|(_, f)| f.deadline_ms)
            .min()
    }

    /// A paused request went away: forget it (its exchange goes on; the token is cached).
    pub fn cancel(&mut self, wait: ExchangeWait) {
        if let Some(f) = self.flights.get_mut(&wait.flight) {
            f.waiters.retain(|w| w.n != wait.n);
            if f.waiters.is_empty() && f.outcome.is_some() {
                self.flights.remove(&wait.flight);
            }
        }
        self.woken.retain(|w| *w != wait);
    }
}

/// What an answer amounts to.
enum Judged {
    Token {
        value: Box<str>,
        expires_in: Option<u64>,
    },
    Refused(Refusal, &'static str),
    Failed(String),
}

/// Checks a token endpoint answer (RFC 8693 §2.2).
fn judge(config: &UpstreamToken, outcome: ExchangeOutcome<'_>) -> Judged {
    let (status, body) =
        match outcome {
            ExchangeOutcome::Response { status, body } => (status, body),
            ExchangeOutcome::TooLarge => {
                return Judged::Failed(format!("answer larger than {MAX_ANSWER_BYTES} bytes"))
            }
            ExchangeOutcome::Failed(f) => return Judged::Failed(
                match f {
                    Failure::Timeout => "no answer in time",
                    Failure::Connection => "connection failed",
                    Failure::NotSent => "the request could not be sent",
                    Failure::AddressNotAllowed => {
                        "the runtime refused to connect to that address (workerd: allow private \
                         and local addresses in the network service)"
                    }
                }
                .into(),
            ),
        };
    let doc = StrictObject::from_slice(body);
    if status != 200 {
        let code = doc
            .as_ref()
            .and_then(|d| d.get("error"))
            .and_then(Value::as_str)
            .map_or("unregistered", registered);
        return match (status, code) {
            (400, "invalid_grant") => Judged::Refused(Refusal::Subject, "invalid_grant"),
            (
                400 | 403,
                c @ ("invalid_target" | "invalid_scope" | "unauthorized_client" | "access_denied"),
            ) => Judged::Refused(Refusal::Target, c),
            (400 | 401, c @ ("invalid_client" | "unsupported_grant_type" | "invalid_request")) => {
                Judged::Failed(format!(
                    "the authorization server refused the gateway's request ({c}): check \
                     upstream_token's client credentials, client_auth and that the client may \
                     use the token-exchange grant"
                ))
            }
            (s, c) => Judged::Failed(format!("HTTP status {s} ({c})")),
        };
    }
    let Some(doc) = doc else {
        return Judged::Failed("the answer is not a JSON object".into());
    };
    let Some(token) = doc.get("access_token").and_then(Value::as_str) else {
        return Judged::Failed("the answer has no access_token".into());
    };
    if token.is_empty()
        || token.len() > MAX_TOKEN_BYTES
        || !token.bytes().all(|b| (0x21..=0x7e).contains(&b))
    {
        return Judged::Failed("the access_token is empty, too long or not header-safe".into());
    }
    if doc.get("issued_token_type").and_then(Value::as_str)
        != Some(config.requested_token_type.as_str())
    {
        return Judged::Failed(format!(
            "issued_token_type is not the requested {}",
            config.requested_token_type
        ));
    }
    let token_type = doc.get("token_type").and_then(Value::as_str).unwrap_or("");
    let bearer = token_type.eq_ignore_ascii_case("bearer");
    let n_a = token_type == "N_A"
        && config.header != "authorization"
        && config.requested_token_type != ACCESS_TOKEN_TYPE;
    if !(bearer || n_a) {
        return Judged::Failed("token_type is not Bearer".into());
    }
    let expires_in = match doc.get("expires_in") {
        None => None,
        Some(v) => match v.as_u64() {
            Some(s) if s > 0 => Some(s),
            _ => return Judged::Failed("expires_in is not a positive integer".into()),
        },
    };
    Judged::Token {
        value: token.into(),
        expires_in,
    }
}

/// An error code for the log: one RFC 6749 / RFC 8693 registered, never the server's text.
fn registered(code: &str) -> &'static str {
    const CODES: &[&str] = &[
        "invalid_request",
        "invalid_client",
        "invalid_grant",
        "unauthorized_client",
        "unsupported_grant_type",
        "invalid_scope",
        "invalid_target",
        "access_denied",
        "server_error",
        "temporarily_unavailable",
    ];
    CODES
        .iter()
        .find(|c| **c == code)
        .copied()
        .unwrap_or("unregistered")
}

/// The forward with the exchanged token in `header` (replacing whatever the client sent
/// there).
fn with_token(mut f: Forward, header: &str, value: String) -> Forward {
    if !f.remove_headers.iter().any(|h| h == header) {
        f.remove_headers = crate::http::appended(&f.remove_headers, header.to_string());
    }
    f.add_headers = crate::http::appended(&f.add_headers, (header.to_string(), value));
    f
}

/// 503 with the time until the next attempt, and the request's CORS headers.
fn unavailable(retry_at_ms: u64, now_ms: u64, f: Forward) -> Response {
    let secs = retry_at_ms.saturating_sub(now_ms).div_ceil(1000).max(1);
    let mut r = challenge::exchange_unavailable(secs);
    r.headers.extend(f.response_headers);
    r
}

/// 403: the authorization server will not issue a token for this upstream to this caller.
fn refused_target(f: Forward) -> Response {
    let mut r = challenge::exchange_refused();
    r.headers.extend(f.response_headers);
    r
}

/// The exchange cache: direct-mapped (one slot per hash, a newer entry replaces whatever
/// held its slot), allocated on first use. Small code and one probe per lookup; an eviction by
/// a colliding token costs one exchange. At most `max_entries` slots.
struct Slots(Vec<Option<((usize, TokenHash), Cached)>>);

impl Slots {
    fn slot(len: usize, key: (usize, TokenHash)) -> usize {
        let h = key.1 ^ (key.0 as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        usize::try_from(h % (len.max(1) as u64)).unwrap_or(0)
    }

    fn get(&self, key: (usize, TokenHash)) -> Option<&Cached> {
        match self.0.get(Self::slot(self.0.len(), key))? {
            Some((k, c)) if *k == key => Some(c),
            _ => None,
        }
    }

    fn insert(&mut self, key: (usize, TokenHash), entry: Cached, max: usize) {
        if self.0.is_empty() {
            self.0.resize_with(max, || None);
        }
        let i = Self::slot(self.0.len(), key);
        if let Some(s) = self.0.get_mut(i) {
            *s = Some((key, entry));
        }
    }

    fn len(&self) -> usize {
        self.0.iter().filter(|s| s.is_some()).count()
    }
}

/// Exchanges in flight or finished and not yet collected (a few at a time; at most
/// [`MAX_FLIGHTS`] open).
struct Flights(Vec<(ExchangeId, Flight)>);

impl Flights {
    fn get(&self, id: &ExchangeId) -> Option<&Flight> {
        self.0.iter().find(|(i, _)| i == id).map(|(_, f)| f)
    }

    fn get_mut(&mut self, id: &ExchangeId) -> Option<&mut Flight> {
        self.0.iter_mut().find(|(i, _)| i == id).map(|(_, f)| f)
    }

    fn insert(&mut self, id: ExchangeId, f: Flight) {
        self.0.push((id, f));
    }

    fn remove(&mut self, id: &ExchangeId) {
        self.0.retain(|(i, _)| i != id);
    }
}
