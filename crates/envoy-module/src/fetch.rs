//! Remote JWKS: fetched on Envoy's main thread with config-level HTTP callouts, installed
//! in the one [`KeyStore`](mcp_edge_auth_core::KeyStore) every worker reads, and the paused
//! requests woken when an attempt finishes.
//!
//! Who does what:
//!
//! * a **timer thread** (one per filter config) commits a config-scheduler event every
//!   second, or every [`URGENT_TICK`] while requests wait;
//! * the **main thread** (`on_http_filter_config_scheduled`) starts fetches (at startup,
//!   when keys are due for refresh, and when requests wait for keys), respecting the
//!   store's refetch cooldown, and wakes waiters whose attempt finished or whose deadline
//!   passed; `on_http_filter_config_http_callout_done` installs what came;
//! * a **worker** whose request needs keys registers a [`WaitSlot`] and kicks the main
//!   thread; the wake-up runs on the worker through the stream's own scheduler.
//!
//! Fetches only ever run on the main thread, never from a stream: a stream's callout would
//! die with its client, and one fetch serves every worker.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use mcp_edge_auth_core::config::KeySource;
use mcp_edge_auth_core::keys::InstallReport;
use mcp_edge_auth_core::{Config, IssuerId};

use crate::abi::{self, ConfigRef, ConfigScheduler, Level, StreamScheduler};
use crate::filter::{now_ms, FilterConfig, WAKE};

/// Timer period while nothing waits: refresh checks.
const IDLE_TICK: Duration = Duration::from_millis(1000);
/// Timer period while requests wait for keys: deadline precision.
const URGENT_TICK: Duration = Duration::from_millis(50);
/// A paused request is decided again at the latest this long after the fetch timeout.
const WAIT_GRACE_MS: u64 = 2000;
/// Config-scheduler event: timer tick or a worker's kick (handled alike).
pub(crate) const TICK: u64 = 1;
/// `Remote::in_flight` while a callout is being started (its id not known yet).
const STARTING: u64 = u64::MAX;

/// A remote JWKS.
#[derive(Debug)]
pub(crate) struct Remote {
    issuer: IssuerId,
    /// The `iss` (for logs; never secret).
    name: String,
    cluster: String,
    authority: String,
    path: String,
    timeout_ms: u64,
    max_body_bytes: usize,
    /// The callout in flight, if any.
    in_flight: Option<u64>,
    /// When it started (s): the store's cooldown runs from there once it finishes.
    started_at: u64,
}

/// The remote JWKS sources of a config, after the core's check that every remote JWKS and
/// introspection endpoint names its Envoy cluster ([`Config::require_clusters`]).
pub(crate) fn remotes(config: &Config) -> Result<Vec<Remote>, String> {
    config
        .require_clusters("Envoy module")
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
            cluster,
            authority: remote.authority.clone(),
            path: remote.path.clone(),
            timeout_ms: u64::from(remote.timeout_ms),
            max_body_bytes: usize::try_from(remote.max_body_bytes).unwrap_or(usize::MAX),
            in_flight: None,
            started_at: 0,
        });
    }
    Ok(out)
}

/// Where a paused stream can be woken. The stream's scheduler lives here so that waking
/// (main thread) and the stream going away (worker) cannot race: both take it under the
/// lock, and only one gets it.
pub(crate) struct WaitSlot(Mutex<Option<StreamScheduler>>);

impl WaitSlot {
    pub fn new(scheduler: StreamScheduler) -> Self {
        WaitSlot(Mutex::new(Some(scheduler)))
    }

    /// Wakes the stream (once). Envoy delivers a committed event even when the scheduler
    /// is deleted right after.
    fn wake(&self) {
        let s = self.0.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(s) = s {
            s.commit(WAKE);
        }
    }

    /// The stream is gone: never wake it.
    pub fn cancel(&self) {
        drop(self.0.lock().unwrap_or_else(PoisonError::into_inner).take());
    }

    fn live(&self) -> bool {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }
}

/// A paused request.
struct Waiter {
    issuer: IssuerId,
    /// Finished attempts of its issuer when it was decided: any later one wakes it.
    seen: u64,
    deadline_ms: u64,
    slot: Arc<WaitSlot>,
}

/// The timer thread and how to stop it.
struct Timer {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

/// Fetch bookkeeping of one filter config.
pub(crate) struct Fetcher {
    remotes: Mutex<Vec<Remote>>,
    waiters: Mutex<Vec<Waiter>>,
    /// Whether requests wait (the timer ticks faster then).
    urgent: Arc<AtomicBool>,
    scheduler: Option<Arc<ConfigScheduler>>,
    timer: Option<Timer>,
}

impl Fetcher {
    pub fn new(remotes: Vec<Remote>) -> Fetcher {
        Fetcher {
            remotes: Mutex::new(remotes),
            waiters: Mutex::new(Vec::new()),
            urgent: Arc::new(AtomicBool::new(false)),
            scheduler: None,
            timer: None,
        }
    }

    pub fn remote_count(&self) -> usize {
        self.remotes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Starts the config scheduler and the timer thread, and asks for a first run on the
    /// main thread (which fetches remote keys before the first request needs them).
    /// Not called in `envoy --mode validate`.
    pub fn start(&mut self, config: ConfigRef) -> Result<(), String> {
        let scheduler = Arc::new(
            config
                .scheduler()
                .ok_or("Envoy refused to create a config scheduler")?,
        );
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let thread = {
            let (stop, scheduler, urgent) = (
                Arc::clone(&stop),
                Arc::clone(&scheduler),
                Arc::clone(&self.urgent),
            );
            std::thread::Builder::new()
                .name("mcp-edge-auth-timer".into())
                .spawn(move || timer(&stop, &scheduler, &urgent))
                .map_err(|e| format!("cannot start the timer thread: {e}"))?
        };
        scheduler.commit(TICK);
        self.scheduler = Some(scheduler);
        self.timer = Some(Timer {
            stop,
            thread: Some(thread),
        });
        Ok(())
    }

    /// Registers a paused request and has the main thread look at once.
    pub fn wait(
        &self,
        issuer: IssuerId,
        seen: u64,
        slot: Arc<WaitSlot>,
        now_ms: u64,
        unknown_kid: bool,
    ) {
        let timeout = self
            .remotes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .find(|r| r.issuer == issuer)
            .map_or(0, |r| r.timeout_ms);
        self.waiters
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Waiter {
                issuer,
                seen,
                deadline_ms: now_ms.saturating_add(timeout).saturating_add(WAIT_GRACE_MS),
                slot,
            });
        self.urgent.store(true, Ordering::Relaxed);
        abi::log(Level::Debug, || {
            let why = if unknown_kid {
                "unknown kid"
            } else {
                "no usable keys"
            };
            format!("mcp-edge-auth: request paused for keys ({why})")
        });
        if let Some(s) = &self.scheduler {
            s.commit(TICK);
        }
    }
}

impl Drop for Fetcher {
    /// Stops and joins the timer thread before the scheduler it commits to is deleted.
    fn drop(&mut self) {
        if let Some(mut t) = self.timer.take() {
            let (lock, cv) = &*t.stop;
            *lock.lock().unwrap_or_else(PoisonError::into_inner) = true;
            cv.notify_all();
            if let Some(h) = t.thread.take() {
                let _ = h.join();
            }
        }
        // Waiters' schedulers go with them (streams are gone by now).
        self.waiters
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }
}

fn timer(stop: &(Mutex<bool>, Condvar), scheduler: &ConfigScheduler, urgent: &AtomicBool) {
    let (lock, cv) = stop;
    let mut stopped = lock.lock().unwrap_or_else(PoisonError::into_inner);
    loop {
        let period = if urgent.load(Ordering::Relaxed) {
            URGENT_TICK
        } else {
            IDLE_TICK
        };
        stopped = cv
            .wait_timeout(stopped, period)
            .unwrap_or_else(PoisonError::into_inner)
            .0;
        if *stopped {
            return;
        }
        scheduler.commit(TICK);
    }
}

/// What a finished fetch brought.
pub(crate) struct Fetched<'a> {
    pub status: Option<u16>,
    pub cache_control: Option<&'a str>,
    /// The body, or `Err` when larger than `max_body_bytes`.
    pub body: Result<&'a [u8], ()>,
}

impl FilterConfig {
    /// Largest JWKS body any remote of this config accepts (for reading callout answers).
    pub(crate) fn max_jwks_bytes(&self) -> usize {
        self.fetcher
            .remotes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|r| r.max_body_bytes)
            .max()
            .unwrap_or(0)
    }

    /// Main thread, on a timer tick or a worker's kick: starts due fetches, then wakes the
    /// waiters that can go.
    pub(crate) fn on_tick(&self, envoy: ConfigRef) {
        let now_ms = now_ms();
        let now = now_ms / 1000;
        let waiting: Vec<IssuerId> = self
            .fetcher
            .waiters
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|w| w.issuer)
            .collect();
        let count = self.fetcher.remote_count();
        for i in 0..count {
            self.maybe_fetch(envoy, i, &waiting, now);
        }
        self.wake_ready(now_ms);
    }

    /// Starts a fetch of remote `i` when it is due (missing or stale keys) or requests wait
    /// for it, and the store's cooldown allows it. The remotes lock is not held across the
    /// callout: Envoy may complete a callout inline (a local reply such as "no healthy
    /// upstream"), re-entering [`FilterConfig::on_fetched`] before the id is known, so the
    /// remote is marked [`STARTING`] first and that hook accepts the mark.
    fn maybe_fetch(&self, envoy: ConfigRef, i: usize, waiting: &[IssuerId], now: u64) {
        let lock = || {
            self.fetcher
                .remotes
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
        };
        let (issuer, name, cluster, authority, path, timeout_ms) = {
            let mut remotes = lock();
            let Some(r) = remotes.get_mut(i) else { return };
            if r.in_flight.is_some() {
                return;
            }
            let Ok(mut keys) = self.keys.write() else {
                return;
            };
            let store = &mut keys.store;
            let wanted = waiting.contains(&r.issuer) && store.may_fetch(r.issuer, now);
            if !wanted && !store.refresh_due(r.issuer, now) {
                return;
            }
            r.in_flight = Some(STARTING);
            r.started_at = now;
            (
                r.issuer,
                r.name.clone(),
                r.cluster.clone(),
                r.authority.clone(),
                r.path.clone(),
                r.timeout_ms,
            )
        };
        let started = envoy.get(
            &cluster,
            &authority,
            &path,
            "application/jwk-set+json, application/json",
            timeout_ms,
        );
        let mut remotes = lock();
        let Some(r) = remotes.get_mut(i) else { return };
        match started {
            Ok(id) => {
                abi::log(Level::Debug, || {
                    format!("mcp-edge-auth: fetching JWKS of {name} from cluster {cluster}")
                });
                // Unless it already completed inline.
                if r.in_flight == Some(STARTING) {
                    r.in_flight = Some(id);
                }
            }
            Err(code) => {
                r.in_flight = None;
                drop(remotes);
                self.metrics.fetch(envoy, false);
                abi::log(Level::Error, || {
                    format!(
                        "mcp-edge-auth: cannot fetch JWKS of {name}: Envoy refused the callout \
                         (init result {code}); is cluster \"{cluster}\" defined?"
                    )
                });
                self.attempt_finished(issuer, now);
            }
        }
    }

    /// Main thread: a JWKS callout finished (`result` 0 is an HTTP exchange; its status
    /// still has to be 200).
    pub(crate) fn on_fetched(&self, envoy: ConfigRef, id: u64, result: u32, fetched: &Fetched<'_>) {
        let now_ms = now_ms();
        let now = now_ms / 1000;
        let mut remotes = self
            .fetcher
            .remotes
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let Some(r) = remotes
            .iter_mut()
            .find(|r| r.in_flight == Some(id) || r.in_flight == Some(STARTING))
        else {
            return;
        };
        r.in_flight = None;
        let outcome: Result<InstallReport, String> = match (result, fetched.status) {
            (abi::CALLOUT_SUCCESS, Some(200)) => match fetched.body {
                Err(()) => Err(format!(
                    "the body is larger than max_body_bytes ({})",
                    r.max_body_bytes
                )),
                Ok(body) => match self.keys.write() {
                    Ok(mut keys) => keys
                        .store
                        .install_jwks(r.issuer, body, fetched.cache_control, now)
                        .map_err(|e| e.to_string()),
                    Err(_) => Err("the key store is unusable after a panic".to_string()),
                },
            },
            (abi::CALLOUT_SUCCESS, Some(s)) => Err(format!("HTTP status {s}")),
            _ => Err(format!(
                "no response (callout result {result}: timeout, reset, or no connection)"
            )),
        };
        self.metrics.fetch(envoy, outcome.is_ok());
        match &outcome {
            Ok(report) => log_install(&r.name, report, now),
            Err(why) => abi::log(Level::Warn, || {
                format!(
                    "mcp-edge-auth: JWKS fetch for {} failed: {why}; cached keys (if any) stay \
                     in use",
                    r.name
                )
            }),
        }
        let (issuer, started_at) = (r.issuer, r.started_at);
        drop(remotes);
        self.attempt_finished(issuer, started_at);
        self.wake_ready(now_ms);
    }

    /// Records a finished attempt (ok or not): the store's cooldown starts from when it
    /// began, and the waiters that paused before it can go. The cooldown is only started
    /// now, not when the callout is made: while a fetch is in flight, requests that need
    /// keys must hear "fetch" (and wait for it), not "unavailable" (503); the in-flight
    /// mark keeps them from starting a second fetch meanwhile.
    fn attempt_finished(&self, issuer: IssuerId, started_at: u64) {
        if let Ok(mut keys) = self.keys.write() {
            keys.store.fetch_started(issuer, started_at);
            if let Some(n) = keys.attempts.get_mut(issuer.0) {
                *n = n.wrapping_add(1);
            }
        }
    }

    /// Wakes every waiter whose issuer finished an attempt since it paused, or whose
    /// deadline passed; forgets those whose stream is gone.
    fn wake_ready(&self, now_ms: u64) {
        let attempts = match self.keys.read() {
            Ok(k) => k.attempts.clone(),
            Err(_) => Vec::new(),
        };
        let ready: Vec<Waiter> = {
            let mut waiters = self
                .fetcher
                .waiters
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let (ready, kept): (Vec<Waiter>, Vec<Waiter>) =
                std::mem::take(&mut *waiters).into_iter().partition(|w| {
                    attempts.get(w.issuer.0) != Some(&w.seen)
                        || w.deadline_ms <= now_ms
                        || !w.slot.live()
                });
            *waiters = kept;
            self.fetcher
                .urgent
                .store(!waiters.is_empty(), Ordering::Relaxed);
            ready
        };
        let late = ready
            .iter()
            .filter(|w| w.deadline_ms <= now_ms && attempts.get(w.issuer.0) == Some(&w.seen))
            .count();
        if late > 0 {
            abi::log(Level::Warn, || {
                format!(
                    "mcp-edge-auth: {late} request(s) waited too long for keys; answering without"
                )
            });
        }
        for w in ready {
            w.slot.wake();
        }
    }
}

/// Logs an installed key set: `info` for a change, `debug` when unchanged, `warn` per
/// skipped key. (The launcher of the tests waits for the first of these lines.)
fn log_install(name: &str, report: &InstallReport, now: u64) {
    let ttl = report.refresh_at.saturating_sub(now);
    let level = if report.changed {
        Level::Info
    } else {
        Level::Debug
    };
    abi::log(level, || {
        let what = if report.changed {
            "in use"
        } else {
            "unchanged"
        };
        format!(
            "mcp-edge-auth: JWKS of {name} fetched: {} key(s) {what}, refresh in {ttl}s",
            report.keys
        )
    });
    for s in &report.skipped {
        abi::log(Level::Warn, || {
            format!(
                "mcp-edge-auth: JWKS of {name}: key #{} (kid {}) skipped: {}",
                s.index,
                s.kid.as_deref().unwrap_or("-"),
                s.reason
            )
        });
    }
}
