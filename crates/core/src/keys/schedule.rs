//! When to fetch keys, and who waits for which fetch: the one key schedule every host drives.
//!
//! This is a sans-IO state machine in the manner of `quinn-proto`'s `Connection`: events and
//! time go in, work and deadlines come out. A host
//!
//! * asks [`KeySchedule::poll_fetch`] for work and carries out each [`JwksFetch`] (a complete
//!   request: URL, Envoy cluster, `:authority`/`:path`, headers, timeout, body limit);
//! * hands each answer back with [`KeySchedule::handle_fetch`], which installs the keys in the
//!   [`KeyStore`] and says what to log;
//! * for a [`Verdict::AwaitKeys`](crate::Verdict::AwaitKeys), calls [`KeySchedule::wait`]: the
//!   request is paused under a [`WaitId`], or refused with the exact response to send;
//! * resumes the requests [`KeySchedule::poll_wake`] names by deciding them again;
//! * arms one timer for [`KeySchedule::poll_timeout`].
//!
//! The policy, once for every host (all times in milliseconds of the host's clock):
//!
//! * **Initial fetch** at once; **refresh** when the keys' `Cache-Control` lifetime ends. Neither
//!   delays a request: keys keep serving until `max_staleness` after the last good fetch.
//! * **Unknown `kid`**: a token naming a plausible `kid` the keys lack starts a refetch at once,
//!   and the request waits for it (bounded by the fetch timeout) instead of failing. The
//!   `refetch_cooldown_seconds` counts only from the previous *kid-triggered* fetch, so a
//!   rotation right after a scheduled fetch is picked up on first sight, while a flood of
//!   random `kid`s costs at most one fetch per cooldown.
//! * **No usable keys** (cold start during an outage, or keys past `max_staleness`): the
//!   request joins the attempt in flight, or starts one if one is due. Failed attempts back off
//!   1 s, 2 s, 4 s … up to `retry_after_seconds` (up to the cooldown while old keys still
//!   serve), and a refused request's `Retry-After` is the time until the next attempt: the
//!   truth, so a client that honours it meets that attempt.
//! * **A request waits once.** It may wait a second time only if the first attempt it joined
//!   was not started for its `kid` and did not bring it (a scheduled refresh that was already
//!   under way); then, cooldown permitting, it gets the kid-triggered fetch of its own.
//!
//! Hosts that share one fetch between several processes (the Envoy proxy-wasm filter: one VM
//! per worker) report what another process fetched with [`KeySchedule::handle_document`] and
//! [`FetchOutcome::Shared`], and that process's kid-triggered fetches with
//! [`KeySchedule::handle_kid_fetch_elsewhere`], so that the cooldown holds across them.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use crate::config::{Config, KeySource};
use crate::http::Response;
use crate::keys::{InstallError, InstallReport, IssuerId, KeyStore};

/// The `accept` header of every JWKS fetch.
pub const JWKS_ACCEPT: &str = "application/jwk-set+json, application/json";

/// A paused request is decided again at the latest this long after its fetch's timeout,
/// whatever the host's fetch does.
const WAIT_GRACE_MS: u64 = 2000;
/// First retry delay after a failed attempt; doubles per failure.
const FIRST_RETRY_MS: u64 = 1000;
/// A request that finds no usable keys up to this long before the next attempt is due starts
/// that attempt and waits for it, rather than being told to come back in a second. Where
/// workers share attempts (the proxy-wasm filter's VMs), a worker learns that another's
/// attempt failed on its next tick, so its backoff ends up to a tick (200 ms) after the
/// `Retry-After` the failing worker gave: a client that honours that `Retry-After` exactly
/// must still be served by the attempt then, whichever worker it reaches.
const EARLY_START_MS: u64 = 250;

/// One fetch attempt, named so that its answer finds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FetchId(u64);

impl FetchId {
    /// The id as a number (for host-side maps and logs).
    pub fn get(self) -> u64 {
        self.0
    }
}

/// A paused request. Opaque: the host keeps it with the request, matches it against
/// [`KeySchedule::poll_wake`], and hands it back to [`KeySchedule::wait`] if the request,
/// decided again, still needs keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WaitId {
    n: u64,
    /// The attempt it waits for (`None`: keys arrived while it asked; woken at once).
    attempt: Option<FetchId>,
    /// Whether it may wait once more (see the module docs).
    second_chance: bool,
}

impl WaitId {
    /// The id as a number, unique per schedule (for host-side maps).
    pub fn get(self) -> u64 {
        self.n
    }
}

/// Why a fetch is made (for logs; the schedule treats them alike once started).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// The first fetch of a source.
    Initial,
    /// The keys' lifetime ended.
    Refresh,
    /// A previous attempt failed.
    Retry,
    /// A token named a `kid` the keys lack.
    UnknownKid,
}

impl Trigger {
    /// A short name for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Initial => "initial",
            Trigger::Refresh => "refresh",
            Trigger::Retry => "retry",
            Trigger::UnknownKid => "unknown kid",
        }
    }
}

/// A JWKS request for the host to send: everything it needs, nothing to look up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwksFetch {
    /// Hand the answer back under this id.
    pub id: FetchId,
    /// Whose keys.
    pub issuer: IssuerId,
    /// Why.
    pub trigger: Trigger,
    /// The full URL (for hosts with `fetch`, and for logs).
    pub uri: String,
    /// Envoy cluster that reaches it (the Envoy hosts refuse a config without one).
    pub cluster: Option<String>,
    /// `:authority` of the request.
    pub authority: String,
    /// `:path` of the request.
    pub path: String,
    /// Request headers beyond the pseudo-headers.
    pub headers: &'static [(&'static str, &'static str)],
    /// The whole exchange must finish within this.
    pub timeout_ms: u32,
    /// Read no more of the body than this; a longer one is [`FetchOutcome::TooLarge`].
    pub max_body_bytes: usize,
}

const FETCH_HEADERS: &[(&str, &str)] = &[("accept", JWKS_ACCEPT), ("user-agent", "mcp-edge-auth")];

/// How a fetch ended, as the host saw it.
#[derive(Debug, Clone, Copy)]
pub enum FetchOutcome<'a> {
    /// An HTTP answer (any status).
    Response {
        /// The status code.
        status: u16,
        /// Its `Cache-Control`, if any.
        cache_control: Option<&'a str>,
        /// The body (at most `max_body_bytes`).
        body: &'a [u8],
    },
    /// The body was longer than `max_body_bytes`.
    TooLarge,
    /// No HTTP answer.
    Failed(Failure),
    /// Another process sharing this fetch made the attempt; `ok` when it succeeded, in which
    /// case its document was handed over with [`KeySchedule::handle_document`] first.
    Shared {
        /// Whether the attempt brought keys.
        ok: bool,
    },
}

/// Why a fetch got no HTTP answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// No answer within `timeout_ms`.
    Timeout,
    /// The connection failed (refused, reset, no healthy upstream).
    Connection,
    /// The host could not even send it (Envoy: unknown cluster).
    NotSent,
    /// The host's runtime refused to connect to that address (workerd without a `network`
    /// service allowing private or local addresses).
    AddressNotAllowed,
}

/// What a finished attempt did, for the host's log. Never holds secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchReport {
    /// Keys installed.
    Installed {
        /// Whose.
        issuer: IssuerId,
        /// Why it was fetched.
        trigger: Trigger,
        /// What the install did.
        report: InstallReport,
        /// Seconds until the keys are due for refresh.
        refresh_in: u64,
    },
    /// The attempt failed; the keys in use (if any) stay.
    Failed {
        /// Whose.
        issuer: IssuerId,
        /// Why it was fetched.
        trigger: Trigger,
        /// Why it failed, in words.
        why: String,
        /// When the next attempt is due, in ms from now (`None`: at the keys' refresh time).
        retry_in_ms: Option<u64>,
    },
}

impl FetchReport {
    /// Whether keys were installed.
    pub fn ok(&self) -> bool {
        matches!(self, FetchReport::Installed { .. })
    }

    /// The log line, naming the issuer as `name`: a change at info, a failure at warn, an
    /// unchanged refresh at debug.
    pub fn log_line(&self, name: &str) -> (LogLevel, String) {
        match self {
            FetchReport::Installed {
                report, refresh_in, ..
            } => {
                let what = if report.changed {
                    "in use"
                } else {
                    "unchanged"
                };
                let level = if report.changed {
                    LogLevel::Info
                } else {
                    LogLevel::Debug
                };
                (
                    level,
                    format!(
                        "JWKS of {name} fetched: {} key(s) {what}, refresh in {refresh_in}s",
                        report.keys
                    ),
                )
            }
            FetchReport::Failed {
                why, retry_in_ms, ..
            } => {
                let next = match retry_in_ms {
                    Some(ms) => format!("next attempt in {}s", ms.div_ceil(1000)),
                    None => "next attempt at the keys' refresh time".into(),
                };
                (
                    LogLevel::Warn,
                    format!(
                        "JWKS fetch for {name} failed: {why}; cached keys (if any) stay in use; \
                         {next}"
                    ),
                )
            }
        }
    }

    /// One line per key the install skipped (warn), e.g. an unsupported algorithm.
    pub fn skipped_lines(&self, name: &str) -> Vec<String> {
        match self {
            FetchReport::Installed { report, .. } => report
                .skipped
                .iter()
                .map(|s| {
                    format!(
                        "JWKS of {name}: key #{} (kid {}) skipped: {}",
                        s.index,
                        s.kid.as_deref().unwrap_or("-"),
                        s.reason
                    )
                })
                .collect(),
            FetchReport::Failed { .. } => Vec::new(),
        }
    }
}

/// Log levels of the lines the schedule words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    /// Routine.
    Debug,
    /// A change worth a line.
    Info,
    /// Something failed.
    Warn,
}

/// A request's need for keys, from [`Verdict::AwaitKeys`](crate::Verdict::AwaitKeys). Carries
/// the refusal to send if it cannot wait.
#[derive(Debug, Clone)]
pub struct KeyWait {
    /// Whose keys.
    pub issuer: IssuerId,
    /// True when the token names a `kid` the keys lack; false when no keys are usable.
    pub unknown_kid: bool,
    /// The key generation the decision saw.
    pub(crate) generation: u64,
    pub(crate) refusal: Refusal,
}

/// What a request that cannot wait is told.
#[derive(Debug, Clone)]
pub(crate) enum Refusal {
    /// 401 `invalid_token` "signed with an unknown key" (CORS included).
    UnknownKey(Response),
    /// 503 with the `Retry-After` the schedule computes, plus these CORS headers.
    Unavailable(Vec<(&'static str, String)>),
}

/// The answer to [`KeySchedule::wait`].
#[derive(Debug)]
pub enum Wait {
    /// Paused: decide the request again when [`KeySchedule::poll_wake`] names this id. The host
    /// may have new work ([`KeySchedule::poll_fetch`]) and a new [`KeySchedule::poll_timeout`].
    Paused(WaitId),
    /// Cannot wait: send this.
    Refused(Response),
}

#[derive(Debug, Clone, Copy)]
struct Attempt {
    id: FetchId,
    trigger: Trigger,
    started_ms: u64,
    /// Handed to the host by `poll_fetch`.
    dispatched: bool,
}

#[derive(Debug)]
struct Source {
    issuer: IssuerId,
    uri: String,
    cluster: Option<String>,
    authority: String,
    path: String,
    timeout_ms: u32,
    max_body_bytes: usize,
    cooldown_ms: u64,
    max_retry_ms: u64,
    in_flight: Option<Attempt>,
    /// When the next attempt of its own is due (initially: now).
    next_ms: u64,
    /// Consecutive failed attempts.
    failures: u32,
    /// Start of the latest kid-triggered attempt (here or elsewhere).
    last_kid_ms: Option<u64>,
    /// Keys were installed at least once.
    loaded: bool,
}

#[derive(Debug, Clone, Copy)]
struct Waiter {
    id: WaitId,
    deadline_ms: u64,
}

/// The fetch schedule of every remote JWKS of one config. See the module docs.
#[derive(Debug)]
pub struct KeySchedule {
    sources: Vec<Source>,
    waiters: Vec<Waiter>,
    /// Waiters whose attempt finished, in order.
    ready: Vec<WaitId>,
    next_id: u64,
}

impl KeySchedule {
    /// The schedule of a config's remote JWKS sources, all due at once (`now_ms`).
    pub fn new(config: &Config, now_ms: u64) -> KeySchedule {
        let sources = config
            .issuers()
            .filter_map(|(id, iss)| match &iss.source {
                KeySource::Remote(r) => Some(Source {
                    issuer: id,
                    uri: r.uri.clone(),
                    cluster: r.cluster.clone(),
                    authority: r.authority.clone(),
                    path: r.path.clone(),
                    timeout_ms: r.timeout_ms,
                    max_body_bytes: usize::try_from(r.max_body_bytes).unwrap_or(usize::MAX),
                    cooldown_ms: u64::from(r.refetch_cooldown).saturating_mul(1000),
                    max_retry_ms: u64::from(r.retry_after).max(1).saturating_mul(1000),
                    in_flight: None,
                    next_ms: now_ms,
                    failures: 0,
                    last_kid_ms: None,
                    loaded: false,
                }),
                KeySource::Local(_) | KeySource::None => None,
            })
            .collect();
        KeySchedule {
            sources,
            waiters: Vec::new(),
            ready: Vec::new(),
            next_id: 1,
        }
    }

    /// The issuers with remote keys.
    pub fn issuers(&self) -> impl Iterator<Item = IssuerId> + '_ {
        self.sources.iter().map(|s| s.issuer)
    }

    /// The largest JWKS body any source accepts (for hosts that size one read buffer).
    pub fn max_body_bytes(&self) -> usize {
        self.sources
            .iter()
            .map(|s| s.max_body_bytes)
            .max()
            .unwrap_or(0)
    }

    /// Whether some source has never had keys (hosts poll shared state faster then).
    pub fn any_unloaded(&self) -> bool {
        self.sources.iter().any(|s| !s.loaded)
    }

    /// Whether requests are paused.
    pub fn has_waiters(&self) -> bool {
        !self.waiters.is_empty() || !self.ready.is_empty()
    }

    fn source(&self, issuer: IssuerId) -> Option<&Source> {
        self.sources.iter().find(|s| s.issuer == issuer)
    }

    fn source_mut(&mut self, issuer: IssuerId) -> Option<&mut Source> {
        self.sources.iter_mut().find(|s| s.issuer == issuer)
    }

    fn fresh_id(&mut self) -> u64 {
        let n = self.next_id;
        self.next_id = self.next_id.wrapping_add(1).max(1);
        n
    }

    /// The next fetch to make now, if any: one a paused request started, or one that is due.
    /// Each is returned once; its answer goes to [`KeySchedule::handle_fetch`].
    pub fn poll_fetch(&mut self, now_ms: u64) -> Option<JwksFetch> {
        let mut fresh = None;
        if !self
            .sources
            .iter()
            .any(|s| s.in_flight.is_some_and(|a| !a.dispatched))
        {
            let i = self
                .sources
                .iter()
                .position(|s| s.in_flight.is_none() && now_ms >= s.next_ms)?;
            let id = FetchId(self.fresh_id());
            let s = self.sources.get_mut(i)?;
            let trigger = if !s.loaded && s.failures == 0 {
                Trigger::Initial
            } else if s.failures > 0 {
                Trigger::Retry
            } else {
                Trigger::Refresh
            };
            s.in_flight = Some(Attempt {
                id,
                trigger,
                started_ms: now_ms,
                dispatched: false,
            });
            fresh = Some(i);
        }
        let s = match fresh {
            Some(i) => self.sources.get_mut(i)?,
            None => self
                .sources
                .iter_mut()
                .find(|s| s.in_flight.is_some_and(|a| !a.dispatched))?,
        };
        let a = s.in_flight.as_mut()?;
        a.dispatched = true;
        Some(JwksFetch {
            id: a.id,
            issuer: s.issuer,
            trigger: a.trigger,
            uri: s.uri.clone(),
            cluster: s.cluster.clone(),
            authority: s.authority.clone(),
            path: s.path.clone(),
            headers: FETCH_HEADERS,
            timeout_ms: s.timeout_ms,
            max_body_bytes: s.max_body_bytes,
        })
    }

    /// A fetch finished: installs what it brought into `store`, schedules the next attempt,
    /// and readies the requests that waited for it. `None` for an id that is not in flight
    /// (a stale answer).
    pub fn handle_fetch(
        &mut self,
        id: FetchId,
        outcome: FetchOutcome<'_>,
        now_ms: u64,
        store: &mut KeyStore,
    ) -> Option<FetchReport> {
        let s = self
            .sources
            .iter_mut()
            .find(|s| s.in_flight.is_some_and(|a| a.id == id))?;
        let a = s.in_flight.take()?;
        if a.trigger == Trigger::UnknownKid {
            s.last_kid_ms = Some(s.last_kid_ms.map_or(a.started_ms, |t| t.max(a.started_ms)));
        }
        let now = now_ms / 1000;
        let elapsed = now_ms.saturating_sub(a.started_ms);
        let result: Result<Option<InstallReport>, String> = match outcome {
            FetchOutcome::Response {
                status: 200,
                cache_control,
                body,
            } => {
                if body.len() > s.max_body_bytes {
                    Err(too_large(s.max_body_bytes))
                } else {
                    store
                        .install_jwks(s.issuer, body, cache_control, now)
                        .map(Some)
                        .map_err(|e| describe_install_error(&e))
                }
            }
            // Envoy answers its own timeout with a local 504: an answer that took the whole
            // timeout is that, not the server's.
            FetchOutcome::Response { status: 504, .. }
                if elapsed.saturating_add(50) >= u64::from(s.timeout_ms) =>
            {
                Err(describe_failure(Failure::Timeout, s.timeout_ms))
            }
            FetchOutcome::Response { status, .. } => Err(format!("HTTP status {status}")),
            FetchOutcome::TooLarge => Err(too_large(s.max_body_bytes)),
            FetchOutcome::Failed(f) => Err(describe_failure(f, s.timeout_ms)),
            FetchOutcome::Shared { ok: true } => Ok(None),
            FetchOutcome::Shared { ok: false } => {
                Err("the attempt made by another worker failed (see its log line)".into())
            }
        };
        let issuer = s.issuer;
        let report = match result {
            Ok(installed) => {
                s.failures = 0;
                s.loaded = true;
                let refresh_at = store.refresh_at(issuer).unwrap_or(now);
                s.next_ms = refresh_at.saturating_mul(1000).max(now_ms);
                installed.map(|report| FetchReport::Installed {
                    issuer,
                    trigger: a.trigger,
                    refresh_in: report.refresh_at.saturating_sub(now),
                    report,
                })
            }
            Err(why) => {
                s.failures = s.failures.saturating_add(1);
                let usable = store.usable(issuer, now);
                let refresh_pending = store.refresh_at(issuer).is_some_and(|r| usable && now < r);
                let retry_in_ms = if refresh_pending {
                    // A kid-triggered fetch failed while the keys are still fresh: nothing to
                    // retry before their refresh.
                    s.next_ms = store
                        .refresh_at(issuer)
                        .map_or(now_ms, |r| r.saturating_mul(1000));
                    None
                } else {
                    let cap = if usable {
                        s.cooldown_ms.max(s.max_retry_ms)
                    } else {
                        s.max_retry_ms
                    };
                    let shift = s.failures.saturating_sub(1).min(20);
                    let delay = FIRST_RETRY_MS.saturating_mul(1 << shift).min(cap);
                    s.next_ms = now_ms.saturating_add(delay);
                    Some(delay)
                };
                Some(FetchReport::Failed {
                    issuer,
                    trigger: a.trigger,
                    why,
                    retry_in_ms,
                })
            }
        };
        let (ready, kept): (Vec<Waiter>, Vec<Waiter>) = core::mem::take(&mut self.waiters)
            .into_iter()
            .partition(|w| w.id.attempt == Some(id));
        self.waiters = kept;
        self.ready.extend(ready.into_iter().map(|w| w.id));
        report
    }

    /// Another process sharing this fetch published a document: installs it (keys age from
    /// `fetched_at`, seconds) and reschedules the source's refresh from it. Requests waiting
    /// for an attempt of this process are not woken here: their attempt ends with
    /// [`FetchOutcome::Shared`].
    pub fn handle_document(
        &mut self,
        issuer: IssuerId,
        body: &[u8],
        cache_control: Option<&str>,
        fetched_at: u64,
        now_ms: u64,
        store: &mut KeyStore,
    ) -> Result<InstallReport, InstallError> {
        let report = store.install_jwks(issuer, body, cache_control, fetched_at)?;
        if let Some(s) = self.source_mut(issuer) {
            s.loaded = true;
            s.failures = 0;
            s.next_ms = report.refresh_at.saturating_mul(1000).max(now_ms);
        }
        Ok(report)
    }

    /// Another process sharing this fetch made a kid-triggered attempt that started at
    /// `started_ms`: the cooldown runs from it here too. Never moves backwards.
    pub fn handle_kid_fetch_elsewhere(&mut self, issuer: IssuerId, started_ms: u64) {
        if let Some(s) = self.source_mut(issuer) {
            s.last_kid_ms = Some(s.last_kid_ms.map_or(started_ms, |t| t.max(started_ms)));
        }
    }

    /// Start of the latest kid-triggered attempt of `issuer` known here (for hosts that share
    /// it with other processes).
    pub fn last_kid_fetch(&self, issuer: IssuerId) -> Option<u64> {
        self.source(issuer).and_then(|s| s.last_kid_ms)
    }

    /// Pauses a request that needs keys, or refuses it. `previous` is the [`WaitId`] the
    /// request already waited under, if it was decided again after a wake-up.
    pub fn wait(
        &mut self,
        need: KeyWait,
        previous: Option<WaitId>,
        now_ms: u64,
        store: &KeyStore,
    ) -> Wait {
        let now = now_ms / 1000;
        // Keys changed between the decision and now (another thread installed them): decide
        // again at once, through the normal wake-up.
        let changed = if need.unknown_kid {
            store.generation(need.issuer) != need.generation
        } else {
            store.usable(need.issuer, now)
        };
        let n = self.fresh_id();
        let Some(s) = self.sources.iter_mut().find(|s| s.issuer == need.issuer) else {
            return Wait::Refused(refuse(need.refusal, 1));
        };
        let retry_after = |s: &Source| {
            let next = if s.in_flight.is_some() {
                now_ms
            } else {
                s.next_ms.max(now_ms)
            };
            next.saturating_sub(now_ms).div_ceil(1000).max(1)
        };
        if let Some(p) = previous {
            let joined_current = s.in_flight.is_some_and(|a| Some(a.id) == p.attempt);
            if !p.second_chance || joined_current {
                let ra = retry_after(s);
                return Wait::Refused(refuse(need.refusal, ra));
            }
        }
        let first_wait = previous.is_none();
        let attempt = match s.in_flight {
            Some(a) => {
                // Join the attempt under way. A kid miss that joins an attempt not made for it
                // may get its own afterwards.
                let second = need.unknown_kid && a.trigger != Trigger::UnknownKid && first_wait;
                Some((a, second))
            }
            None if changed => None,
            None => {
                let may_start = if need.unknown_kid {
                    s.last_kid_ms
                        .is_none_or(|t| now_ms >= t.saturating_add(s.cooldown_ms))
                } else {
                    now_ms.saturating_add(EARLY_START_MS) >= s.next_ms
                };
                if !may_start {
                    let ra = retry_after(s);
                    return Wait::Refused(refuse(need.refusal, ra));
                }
                let trigger = if need.unknown_kid {
                    Trigger::UnknownKid
                } else if s.failures > 0 {
                    Trigger::Retry
                } else if s.loaded {
                    Trigger::Refresh
                } else {
                    Trigger::Initial
                };
                let a = Attempt {
                    id: FetchId(n),
                    trigger,
                    started_ms: now_ms,
                    dispatched: false,
                };
                s.in_flight = Some(a);
                Some((a, false))
            }
        };
        let (attempt_id, second_chance, deadline_ms) = match attempt {
            Some((a, second)) => (
                Some(a.id),
                second,
                a.started_ms
                    .saturating_add(u64::from(s.timeout_ms))
                    .saturating_add(WAIT_GRACE_MS),
            ),
            // Keys arrived meanwhile: wake it at once (it then decides like any other).
            None => (None, first_wait, now_ms),
        };
        let id = WaitId {
            n,
            attempt: attempt_id,
            second_chance,
        };
        if attempt.is_some() {
            self.waiters.push(Waiter { id, deadline_ms });
        } else {
            self.ready.push(id);
        }
        Wait::Paused(id)
    }

    /// The next paused request to decide again: its attempt finished, or it waited past its
    /// deadline (the host's fetch never answered).
    pub fn poll_wake(&mut self, now_ms: u64) -> Option<WaitId> {
        if !self.ready.is_empty() {
            return Some(self.ready.remove(0));
        }
        let i = self.waiters.iter().position(|w| w.deadline_ms <= now_ms)?;
        Some(self.waiters.remove(i).id)
    }

    /// The request went away (client gone): forget it.
    pub fn cancel(&mut self, id: WaitId) {
        self.waiters.retain(|w| w.id != id);
        self.ready.retain(|w| *w != id);
    }

    /// When the host must call in next ([`KeySchedule::poll_fetch`] and
    /// [`KeySchedule::poll_wake`]) even if nothing else happens: the earliest of a due
    /// attempt and a waiter's deadline. `None`: nothing is scheduled.
    pub fn poll_timeout(&self) -> Option<u64> {
        let ready = (!self.ready.is_empty()).then_some(0);
        let sources = self
            .sources
            .iter()
            .filter_map(|s| match s.in_flight {
                None => Some(s.next_ms),
                Some(a) if !a.dispatched => Some(0),
                Some(_) => None,
            })
            .min();
        let waiters = self.waiters.iter().map(|w| w.deadline_ms).min();
        [ready, sources, waiters].into_iter().flatten().min()
    }
}

fn refuse(refusal: Refusal, retry_after: u64) -> Response {
    match refusal {
        Refusal::UnknownKey(r) => r,
        Refusal::Unavailable(cors) => {
            let mut r = crate::challenge::unavailable(retry_after);
            r.headers.extend(cors);
            r
        }
    }
}

fn too_large(max: usize) -> String {
    format!("the body is larger than max_body_bytes ({max})")
}

fn describe_failure(f: Failure, timeout_ms: u32) -> String {
    match f {
        Failure::Timeout => format!("no answer within timeout_ms ({timeout_ms} ms)"),
        Failure::Connection => "no connection (refused, reset, or no healthy upstream host)".into(),
        Failure::NotSent => "the request could not be sent".into(),
        Failure::AddressNotAllowed => "the runtime refused to connect to that address \
             (workerd: the Worker's global outbound must be a network service that allows \
             \"private\" and \"local\" addresses; see workers/README.md)"
            .into(),
    }
}

fn describe_install_error(e: &InstallError) -> String {
    format!("{e}")
}
