//! Token exchange (RFC 8693, `upstream_token`) in the native module: the core's
//! [`Exchanges`] decides who waits, what is cached and when to call; this module makes the
//! calls on the main thread (config-level callouts, like JWKS fetches: one exchange serves
//! every worker's requests, and no client going away cancels it) and wakes the paused
//! requests on their own workers through the same [`WaitSlot`]s as the key schedule.
//!
//! Lock order: the fetcher's driver, then the exchanger (never the other way round).

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use mcp_edge_auth_core::exchange::{
    ExchangeCall, ExchangeId, ExchangeOutcome, ExchangeReport, MAX_ANSWER_BYTES,
};
use mcp_edge_auth_core::keys::schedule::{Failure, LogLevel};
use mcp_edge_auth_core::{Begin, Config, ExchangeNeed, ExchangeWait, Exchanges};

use crate::abi::{self, ConfigRef, Level, StreamScheduler};
use crate::fetch::{Fetched, NoWait, WaitSlot};
use crate::filter::{now_ms, FilterConfig};

/// A call made for an exchange: the callout id (`None` while it is being started: Envoy may
/// complete it inline) and the exchange.
struct Call {
    callout: Option<u64>,
    id: ExchangeId,
}

struct State {
    exchanges: Exchanges,
    calls: Vec<Call>,
    slots: Vec<(ExchangeWait, Arc<WaitSlot>)>,
}

/// The exchange state of one filter config.
pub(crate) struct Exchanger(Mutex<State>);

/// What a worker does with a request that needs an upstream token.
pub(crate) enum Started {
    /// Forward with these changes; `cached`: the token came from the cache.
    Forward(mcp_edge_auth_core::Forward, bool),
    /// Paused: woken through the slot, then decided again with this wait as `previous`.
    Paused(ExchangeWait, Arc<WaitSlot>),
}

/// Whether a report is an issued token, and its log line (worded by the core, under the lock).
fn described(ex: &Exchanges, r: &ExchangeReport) -> (bool, LogLevel, String) {
    let (level, line) = r.log_line(ex.endpoint(r));
    (r.ok(), level, line)
}

impl Exchanger {
    pub fn new(config: &Config) -> Exchanger {
        Exchanger(Mutex::new(State {
            exchanges: Exchanges::with_hash_key(config, crate::filter::random_key()),
            calls: Vec::new(),
            slots: Vec::new(),
        }))
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether requests wait (the timer then ticks fast).
    pub fn has_waiters(&self) -> bool {
        self.state().exchanges.has_waiters()
    }

    /// The exchanges' next deadline (ms since the epoch).
    pub fn poll_timeout(&self) -> Option<u64> {
        self.state().exchanges.poll_timeout()
    }

    /// Whether `callout` is an exchange call (else it is a JWKS fetch).
    pub fn owns(&self, callout: u64) -> bool {
        self.state()
            .calls
            .iter()
            .any(|c| c.callout == Some(callout))
    }

    /// Whether a call is being started (an inline completion is then this one's).
    pub fn starting(&self) -> bool {
        self.state().calls.iter().any(|c| c.callout.is_none())
    }
}

impl FilterConfig {
    /// Worker: a request that passed every check needs its upstream token.
    pub(crate) fn begin_exchange(
        &self,
        need: ExchangeNeed,
        previous: Option<ExchangeWait>,
        slot: impl FnOnce() -> Option<StreamScheduler>,
    ) -> Result<Started, NoWait> {
        let mut s = self.exchanger.state();
        match s.exchanges.begin(need, previous, now_ms()) {
            Begin::Forward { forward, cached } => Ok(Started::Forward(forward, cached)),
            Begin::Respond(r) => Err(NoWait::Respond(r)),
            Begin::Paused(wait) => {
                let Some(scheduler) = slot() else {
                    s.exchanges.cancel(wait);
                    return Err(NoWait::Broken);
                };
                let slot = Arc::new(WaitSlot::new(scheduler));
                s.slots.push((wait, Arc::clone(&slot)));
                drop(s);
                abi::log(Level::Debug, || {
                    "mcp-edge-auth: request paused for a token exchange".to_string()
                });
                self.fetcher.urgent();
                self.fetcher.kick();
                Ok(Started::Paused(wait, slot))
            }
        }
    }

    /// Main thread: makes the calls the exchanges want, fails the overdue ones, wakes the
    /// requests whose exchange ended.
    pub(crate) fn exchange_tick(&self, envoy: ConfigRef) {
        let now_ms = now_ms();
        loop {
            let call = {
                let mut s = self.exchanger.state();
                let Some(call) = s.exchanges.poll_send() else {
                    break;
                };
                s.calls.push(Call {
                    callout: None,
                    id: call.id,
                });
                call
            };
            self.send_exchange(envoy, &call, now_ms);
        }
        let overdue: Vec<(bool, LogLevel, String)> = {
            let mut s = self.exchanger.state();
            let mut out = Vec::new();
            while let Some(r) = s.exchanges.poll_overdue(now_ms) {
                out.push(described(&s.exchanges, &r));
            }
            out
        };
        for r in overdue {
            self.report_exchange(envoy, r);
        }
        self.wake_exchanges(now_ms);
    }

    /// Starts one call. The lock is not held across it: Envoy may complete it inline.
    fn send_exchange(&self, envoy: ConfigRef, call: &ExchangeCall, now_ms: u64) {
        let cluster = call.cluster.as_deref().unwrap_or_default();
        let headers: Vec<(&str, &str)> =
            call.headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let started = envoy.post(
            cluster,
            &call.authority,
            &call.path,
            &headers,
            call.body.as_bytes(),
            u64::from(call.timeout_ms),
        );
        match started {
            Ok(callout) => {
                let mut s = self.exchanger.state();
                if let Some(c) = s
                    .calls
                    .iter_mut()
                    .find(|c| c.id == call.id && c.callout.is_none())
                {
                    c.callout = Some(callout);
                }
            }
            Err(code) => {
                abi::log(Level::Error, || {
                    format!(
                        "mcp-edge-auth: cannot exchange a token at {}: Envoy refused the callout \
                         (init result {code}); is cluster \"{cluster}\" defined?",
                        call.uri
                    )
                });
                self.finish_exchange(
                    envoy,
                    call.id,
                    ExchangeOutcome::Failed(Failure::NotSent),
                    now_ms,
                );
            }
        }
    }

    /// Main thread: an exchange callout finished (`result` 0 is an HTTP exchange).
    pub(crate) fn on_exchanged(
        &self,
        envoy: ConfigRef,
        callout: u64,
        result: u32,
        fetched: &Fetched<'_>,
    ) {
        let now_ms = now_ms();
        let id = {
            let s = self.exchanger.state();
            let found = s
                .calls
                .iter()
                .find(|c| c.callout == Some(callout))
                .or_else(|| s.calls.iter().find(|c| c.callout.is_none()));
            let Some(c) = found else { return };
            c.id
        };
        let outcome = match (result, fetched.status, fetched.body) {
            (abi::CALLOUT_SUCCESS, Some(_), Err(())) => ExchangeOutcome::TooLarge,
            (abi::CALLOUT_SUCCESS, Some(_), Ok(body)) if body.len() > MAX_ANSWER_BYTES => {
                ExchangeOutcome::TooLarge
            }
            (abi::CALLOUT_SUCCESS, Some(status), Ok(body)) => {
                ExchangeOutcome::Response { status, body }
            }
            _ => ExchangeOutcome::Failed(Failure::Connection),
        };
        self.finish_exchange(envoy, id, outcome, now_ms);
        self.wake_exchanges(now_ms);
    }

    fn finish_exchange(
        &self,
        envoy: ConfigRef,
        id: ExchangeId,
        outcome: ExchangeOutcome<'_>,
        now_ms: u64,
    ) {
        let report = {
            let mut s = self.exchanger.state();
            let Some(pos) = s.calls.iter().position(|c| c.id == id) else {
                return;
            };
            s.calls.swap_remove(pos);
            s.exchanges
                .handle_response(id, outcome, now_ms)
                .map(|r| described(&s.exchanges, &r))
        };
        if let Some(r) = report {
            self.report_exchange(envoy, r);
        }
    }

    /// Counts and logs how an exchange ended (the core words it: no token, no AS text).
    fn report_exchange(&self, envoy: ConfigRef, (ok, level, line): (bool, LogLevel, String)) {
        self.metrics.exchange(envoy, ok);
        abi::log(abi::level_of(level), || format!("mcp-edge-auth: {line}"));
    }

    /// Wakes every request whose exchange ended and forgets those whose stream is gone.
    fn wake_exchanges(&self, now_ms: u64) {
        let mut ready = Vec::new();
        {
            let mut s = self.exchanger.state();
            while let Some(w) = s.exchanges.poll_wake(now_ms) {
                if let Some(pos) = s.slots.iter().position(|(x, _)| *x == w) {
                    ready.push(s.slots.swap_remove(pos).1);
                }
            }
            let gone: Vec<ExchangeWait> = s
                .slots
                .iter()
                .filter(|(_, slot)| !slot.live())
                .map(|(w, _)| *w)
                .collect();
            for w in gone {
                s.exchanges.cancel(w);
            }
            s.slots.retain(|(_, slot)| slot.live());
        }
        for slot in ready {
            slot.wake();
        }
    }
}
