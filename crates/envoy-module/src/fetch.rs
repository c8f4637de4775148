//! Remote JWKS in the native module: the core's [`KeySchedule`] decides when to fetch and who
//! waits; this module carries it out on Envoy's threads.
//!
//! * a **timer thread** (one per filter config) commits a config-scheduler event when the
//!   schedule's next deadline comes (at the latest every second, every [`URGENT_TICK`] while
//!   requests wait);
//! * the **main thread** (`on_http_filter_config_scheduled`) starts the fetches the schedule
//!   wants with config-level HTTP callouts and wakes the requests it names;
//!   `on_http_filter_config_http_callout_done` hands each answer to the schedule, which
//!   installs the keys in the one [`KeyStore`](mcp_edge_auth_core::KeyStore) every worker reads;
//! * a **worker** whose request needs keys asks the schedule ([`FilterConfig::wait_for_keys`]):
//!   paused, it registers a [`WaitSlot`] and kicks the main thread; the wake-up runs on the
//!   worker through the stream's own scheduler.
//!
//! Fetches only ever run on the main thread, never from a stream: a stream's callout would
//! die with its client, and one fetch serves every worker. Lock order: the driver, then the
//! key store.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use mcp_edge_auth_core::keys::schedule::{self, Failure, FetchOutcome, JwksFetch};
use mcp_edge_auth_core::{KeySchedule, KeyWait, Response, Wait, WaitId};

use crate::abi::{self, ConfigRef, ConfigScheduler, Level, StreamScheduler};
use crate::filter::{now_ms, FilterConfig, WAKE};

/// Longest timer period: other deadlines come from the schedule.
const IDLE_TICK: Duration = Duration::from_millis(1000);
/// Timer period while requests wait for keys: deadline precision.
const URGENT_TICK: Duration = Duration::from_millis(50);
/// Config-scheduler event: timer tick or a worker's kick (handled alike).
pub(crate) const TICK: u64 = 1;

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
    pub(crate) fn wake(&self) {
        let s = self.0.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(s) = s {
            s.commit(WAKE);
        }
    }

    /// The stream is gone: never wake it.
    pub fn cancel(&self) {
        drop(self.0.lock().unwrap_or_else(PoisonError::into_inner).take());
    }

    pub(crate) fn live(&self) -> bool {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }
}

/// A callout the main thread made for the schedule: its id (`None` while it is being
/// started: Envoy may complete it inline) and the fetch.
struct Call {
    callout: Option<u64>,
    fetch: JwksFetch,
}

/// What the main thread and the workers share about fetches, under one lock.
struct Driver {
    schedule: KeySchedule,
    calls: Vec<Call>,
    /// Paused requests, by the schedule's id.
    slots: Vec<(WaitId, Arc<WaitSlot>)>,
}

/// The timer thread and how to stop it.
struct Timer {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

/// Fetch bookkeeping of one filter config.
pub(crate) struct Fetcher {
    driver: Mutex<Driver>,
    /// Whether requests wait (the timer ticks faster then).
    urgent: Arc<AtomicBool>,
    /// The schedule's next deadline (ms since the epoch; 0: none).
    due_ms: Arc<AtomicU64>,
    scheduler: Option<Arc<ConfigScheduler>>,
    timer: Option<Timer>,
}

impl Fetcher {
    pub fn new(schedule: KeySchedule) -> Fetcher {
        Fetcher {
            driver: Mutex::new(Driver {
                schedule,
                calls: Vec::new(),
                slots: Vec::new(),
            }),
            urgent: Arc::new(AtomicBool::new(false)),
            due_ms: Arc::new(AtomicU64::new(0)),
            scheduler: None,
            timer: None,
        }
    }

    fn driver(&self) -> MutexGuard<'_, Driver> {
        self.driver.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn remote_count(&self) -> usize {
        self.driver().schedule.issuers().count()
    }

    /// The largest JWKS body any remote accepts (for reading callout answers).
    pub fn max_body_bytes(&self) -> usize {
        self.driver().schedule.max_body_bytes()
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
            let (stop, scheduler, urgent, due) = (
                Arc::clone(&stop),
                Arc::clone(&scheduler),
                Arc::clone(&self.urgent),
                Arc::clone(&self.due_ms),
            );
            std::thread::Builder::new()
                .name("mcp-edge-auth-timer".into())
                .spawn(move || timer(&stop, &scheduler, &urgent, &due))
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

    /// Makes the timer tick fast (requests wait) until the next tick says otherwise.
    pub(crate) fn urgent(&self) {
        self.urgent.store(true, Ordering::Relaxed);
    }

    /// Has the main thread look at once.
    pub(crate) fn kick(&self) {
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
        self.driver().slots.clear();
    }
}

fn timer(
    stop: &(Mutex<bool>, Condvar),
    scheduler: &ConfigScheduler,
    urgent: &AtomicBool,
    due_ms: &AtomicU64,
) {
    let (lock, cv) = stop;
    let mut stopped = lock.lock().unwrap_or_else(PoisonError::into_inner);
    loop {
        let mut period = if urgent.load(Ordering::Relaxed) {
            URGENT_TICK
        } else {
            IDLE_TICK
        };
        let due = due_ms.load(Ordering::Relaxed);
        if due > 0 {
            let until = Duration::from_millis(due.saturating_sub(now_ms()).max(1));
            period = period.min(until);
        }
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

/// Why a request that needs keys is not paused.
pub(crate) enum NoWait {
    /// The schedule refused the wait: send this (401 unknown key, 503 with `Retry-After`).
    Respond(Response),
    /// Envoy gave no stream scheduler, or a panic poisoned the key store: fail closed.
    Broken,
}

/// What a finished callout brought.
pub(crate) struct Fetched<'a> {
    pub status: Option<u16>,
    pub cache_control: Option<&'a str>,
    /// The body, or `Err` when larger than the largest `max_body_bytes`.
    pub body: Result<&'a [u8], ()>,
}

impl FilterConfig {
    /// Worker: a request needs keys. Paused, it is woken through `slot`'s stream scheduler
    /// (and the main thread is kicked to make the fetch); refused, the response to send.
    pub(crate) fn wait_for_keys(
        &self,
        need: KeyWait,
        previous: Option<WaitId>,
        slot: impl FnOnce() -> Option<StreamScheduler>,
    ) -> Result<(WaitId, Arc<WaitSlot>), NoWait> {
        let now_ms = now_ms();
        let mut d = self.fetcher.driver();
        let wait = match self.keys.read() {
            Ok(keys) => d.schedule.wait(need, previous, now_ms, &keys),
            Err(_) => return Err(NoWait::Broken),
        };
        match wait {
            Wait::Refused(r) => Err(NoWait::Respond(r)),
            Wait::Paused(id) => {
                let Some(scheduler) = slot() else {
                    d.schedule.cancel(id);
                    return Err(NoWait::Broken);
                };
                let slot = Arc::new(WaitSlot::new(scheduler));
                d.slots.push((id, Arc::clone(&slot)));
                drop(d);
                self.fetcher.urgent.store(true, Ordering::Relaxed);
                abi::log(Level::Debug, || {
                    "mcp-edge-auth: request paused for keys".to_string()
                });
                self.fetcher.kick();
                Ok((id, slot))
            }
        }
    }

    /// Main thread, on a timer tick or a worker's kick: starts the fetches the schedule
    /// wants, then wakes the requests it names.
    pub(crate) fn on_tick(&self, envoy: ConfigRef) {
        let now_ms = now_ms();
        loop {
            let fetch = {
                let mut d = self.fetcher.driver();
                let Some(fetch) = d.schedule.poll_fetch(now_ms) else {
                    break;
                };
                d.calls.push(Call {
                    callout: None,
                    fetch: fetch.clone(),
                });
                fetch
            };
            self.start(envoy, &fetch, now_ms);
        }
        self.wake_ready(now_ms);
        self.exchange_tick(envoy);
        self.pace();
    }

    /// Tells the timer how fast to tick: fast while requests wait for keys or an exchange,
    /// and when the next deadline of either comes.
    fn pace(&self) {
        let (waiting, due) = {
            let d = self.fetcher.driver();
            (d.schedule.has_waiters(), d.schedule.poll_timeout())
        };
        let waiting = waiting || self.exchanger.has_waiters();
        let due = [due, self.exchanger.poll_timeout()]
            .into_iter()
            .flatten()
            .min();
        self.fetcher.urgent.store(waiting, Ordering::Relaxed);
        self.fetcher
            .due_ms
            .store(due.unwrap_or(0), Ordering::Relaxed);
    }

    /// Makes the callout of one fetch. The driver lock is not held across it: Envoy may
    /// complete a callout inline (a local reply such as "no healthy upstream"), re-entering
    /// [`FilterConfig::on_fetched`] before the id is known, which then takes the call that
    /// is still being started.
    fn start(&self, envoy: ConfigRef, fetch: &JwksFetch, now_ms: u64) {
        let cluster = fetch.cluster.as_deref().unwrap_or_default();
        let started = envoy.get(
            cluster,
            &fetch.authority,
            &fetch.path,
            fetch.headers,
            u64::from(fetch.timeout_ms),
        );
        let name = self.issuer_name(fetch);
        match started {
            Ok(id) => {
                abi::log(Level::Debug, || {
                    format!(
                        "mcp-edge-auth: fetching JWKS of {name} from cluster {cluster} ({})",
                        fetch.trigger.as_str()
                    )
                });
                let mut d = self.fetcher.driver();
                // Unless it already completed inline.
                if let Some(c) = d
                    .calls
                    .iter_mut()
                    .find(|c| c.fetch.id == fetch.id && c.callout.is_none())
                {
                    c.callout = Some(id);
                }
            }
            Err(code) => {
                abi::log(Level::Error, || {
                    format!(
                        "mcp-edge-auth: cannot fetch JWKS of {name}: Envoy refused the callout \
                         (init result {code}); is cluster \"{cluster}\" defined?"
                    )
                });
                self.finish(
                    envoy,
                    fetch.id,
                    FetchOutcome::Failed(Failure::NotSent),
                    now_ms,
                );
            }
        }
    }

    fn issuer_name(&self, fetch: &JwksFetch) -> String {
        self.gateway
            .config()
            .issuer(fetch.issuer)
            .map_or_else(|| fetch.uri.clone(), |i| i.issuer.clone())
    }

    /// Main thread: a JWKS callout finished (`result` 0 is an HTTP exchange, of any status).
    pub(crate) fn on_fetched(&self, envoy: ConfigRef, id: u64, result: u32, fetched: &Fetched<'_>) {
        let now_ms = now_ms();
        let fetch_id = {
            let d = self.fetcher.driver();
            let Some(c) = d
                .calls
                .iter()
                .find(|c| c.callout == Some(id))
                .or_else(|| d.calls.iter().find(|c| c.callout.is_none()))
            else {
                return;
            };
            c.fetch.id
        };
        let outcome = match (result, fetched.status, fetched.body) {
            (abi::CALLOUT_SUCCESS, Some(_), Err(())) => FetchOutcome::TooLarge,
            (abi::CALLOUT_SUCCESS, Some(status), Ok(body)) => FetchOutcome::Response {
                status,
                cache_control: fetched.cache_control,
                body,
            },
            _ => FetchOutcome::Failed(Failure::Connection),
        };
        self.finish(envoy, fetch_id, outcome, now_ms);
        self.wake_ready(now_ms);
        self.pace();
    }

    /// Hands an attempt's outcome to the schedule (which installs the keys) and logs it.
    fn finish(
        &self,
        envoy: ConfigRef,
        id: schedule::FetchId,
        outcome: FetchOutcome<'_>,
        now_ms: u64,
    ) {
        let mut d = self.fetcher.driver();
        let Some(pos) = d.calls.iter().position(|c| c.fetch.id == id) else {
            return;
        };
        let call = d.calls.swap_remove(pos);
        let report = match self.keys.write() {
            Ok(mut keys) => d.schedule.handle_fetch(id, outcome, now_ms, &mut keys),
            Err(_) => None,
        };
        drop(d);
        let Some(report) = report else { return };
        self.metrics.fetch(envoy, report.ok());
        let name = self.issuer_name(&call.fetch);
        let (level, line) = report.log_line(&name);
        abi::log(abi::level_of(level), || format!("mcp-edge-auth: {line}"));
        for skipped in report.skipped_lines(&name) {
            abi::log(Level::Warn, || format!("mcp-edge-auth: {skipped}"));
        }
    }

    /// Wakes every request the schedule names (its attempt finished, or its deadline
    /// passed), forgets those whose stream is gone, and tells the timer when to come back.
    fn wake_ready(&self, now_ms: u64) {
        let mut d = self.fetcher.driver();
        let mut ready = Vec::new();
        while let Some(id) = d.schedule.poll_wake(now_ms) {
            if let Some(pos) = d.slots.iter().position(|(w, _)| *w == id) {
                ready.push(d.slots.swap_remove(pos).1);
            }
        }
        let gone: Vec<WaitId> = d
            .slots
            .iter()
            .filter(|(_, s)| !s.live())
            .map(|(w, _)| *w)
            .collect();
        for id in gone {
            d.schedule.cancel(id);
        }
        d.slots.retain(|(_, s)| s.live());
        self.fetcher
            .urgent
            .store(d.schedule.has_waiters(), Ordering::Relaxed);
        self.fetcher
            .due_ms
            .store(d.schedule.poll_timeout().unwrap_or(0), Ordering::Relaxed);
        drop(d);
        for slot in ready {
            slot.wake();
        }
    }
}
