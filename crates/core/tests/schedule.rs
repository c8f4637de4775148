//! The key schedule at a fixed clock: what a host sees when it drives the core's
//! `KeySchedule` (fetches, answers, waits, wake-ups, deadlines) through rotations, outages,
//! slow endpoints and `kid` floods. Every time is in milliseconds of a simulated clock.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::*;
use mcp_edge_auth_core::keys::schedule::{Failure, FetchOutcome, FetchReport, JwksFetch, Trigger};
use mcp_edge_auth_core::{
    Config, Gateway, IssuerId, KeySchedule, KeyStore, Reason, Request, Response, TokenCache,
    Verdict, Wait, WaitId,
};
use serde_json::{json, Value};

const ID: IssuerId = IssuerId(0);
const T0: u64 = NOW * 1000;

fn remote_config(extra: Value) -> Value {
    let remote = merge(
        json!({"http_uri": {"uri": "https://auth.example.com/jwks", "cluster": "auth", "timeout_ms": 1500},
               "refetch_cooldown_seconds": 30, "max_staleness_seconds": 3600, "retry_after_seconds": 10}),
        extra,
    );
    json!({"resources":[{
        "resource": RESOURCE, "authorization_servers": [ISSUER], "required_scopes": ["mcp:read"],
        "issuers": [{"issuer": ISSUER, "remote_jwks": remote}]
    }]})
}

fn jwks(keys: &[&Ed]) -> Vec<u8> {
    let keys: Vec<Value> = keys.iter().map(|k| k.jwk()).collect();
    json!({ "keys": keys }).to_string().into_bytes()
}

/// A host in miniature: it carries out exactly what the schedule says, nothing more.
struct Host {
    gw: Gateway,
    keys: KeyStore,
    cache: TokenCache,
    sched: KeySchedule,
    fetches: Vec<JwksFetch>,
}

/// Where a request ended.
#[derive(Debug)]
enum End {
    Forwarded,
    Answered(Response),
    Paused(WaitId),
}

impl Host {
    fn new(extra: Value) -> Host {
        let cfg = Config::from_json(remote_config(extra).to_string().as_bytes()).unwrap();
        let keys = KeyStore::new(
            &cfg,
            Box::new(mcp_edge_auth_core::crypto::default_provider()),
        )
        .unwrap();
        let sched = KeySchedule::new(&cfg, T0);
        let gw = Gateway::new(cfg);
        let cache = gw.new_cache();
        Host {
            gw,
            keys,
            cache,
            sched,
            fetches: Vec::new(),
        }
    }

    /// The next fetch the schedule wants now (recorded).
    fn poll(&mut self, now_ms: u64) -> Option<JwksFetch> {
        let f = self.sched.poll_fetch(now_ms)?;
        self.fetches.push(f.clone());
        Some(f)
    }

    fn answer(&mut self, f: &JwksFetch, outcome: FetchOutcome<'_>, now_ms: u64) -> FetchReport {
        self.sched
            .handle_fetch(f.id, outcome, now_ms, &mut self.keys)
            .expect("the fetch was in flight")
    }

    fn serve(&mut self, f: &JwksFetch, body: &[u8], now_ms: u64) -> FetchReport {
        let outcome = FetchOutcome::Response {
            status: 200,
            cache_control: Some("max-age=300"),
            body,
        };
        self.answer(f, outcome, now_ms)
    }

    /// Loads `keys` with the initial fetch at T0.
    fn loaded(extra: Value, keys: &[&Ed]) -> Host {
        let mut h = Host::new(extra);
        let f = h.poll(T0).expect("initial fetch");
        assert_eq!(f.trigger, Trigger::Initial);
        assert!(h.serve(&f, &jwks(keys), T0).ok());
        h
    }

    fn decide(&mut self, token: &str, now_ms: u64, previous: Option<WaitId>) -> End {
        let auth = format!("Bearer {token}");
        let headers = [("authorization", auth.as_str())];
        let req = Request::new("POST", "https", "mcp.example.com", "/mcp", &headers);
        match self
            .gw
            .decide(&req, now_ms / 1000, &self.keys, &mut self.cache)
        {
            Verdict::Forward(_) => End::Forwarded,
            Verdict::Respond(r) => End::Answered(r),
            Verdict::AwaitKeys(need) => match self.sched.wait(need, previous, now_ms, &self.keys) {
                Wait::Paused(id) => End::Paused(id),
                Wait::Refused(r) => End::Answered(r),
            },
            other => panic!("unexpected verdict {other:?}"),
        }
    }

    /// Wakes `id` (it must be next) and decides its request again.
    fn wake(&mut self, id: WaitId, token: &str, now_ms: u64) -> End {
        assert_eq!(self.sched.poll_wake(now_ms), Some(id), "woken");
        self.decide(token, now_ms, Some(id))
    }
}

fn paused(e: End) -> WaitId {
    match e {
        End::Paused(id) => id,
        other => panic!("expected a pause, got {other:?}"),
    }
}

fn answered(e: End) -> Response {
    match e {
        End::Answered(r) => r,
        other => panic!("expected an answer, got {other:?}"),
    }
}

fn retry_after(r: &Response) -> u64 {
    assert_eq!(
        (r.status, r.reason),
        (503, Reason::KeysUnavailable),
        "{r:?}"
    );
    r.header("retry-after").unwrap().parse().unwrap()
}

#[test]
fn the_first_fetch_is_due_at_once_and_carries_everything_the_host_needs() {
    let mut h = Host::new(json!({}));
    assert_eq!(h.sched.poll_timeout(), Some(T0));
    let f = h.poll(T0).unwrap();
    assert_eq!(f.issuer, ID);
    assert_eq!(f.uri, "https://auth.example.com/jwks");
    assert_eq!(f.cluster.as_deref(), Some("auth"));
    assert_eq!(
        (f.authority.as_str(), f.path.as_str()),
        ("auth.example.com", "/jwks")
    );
    assert_eq!(f.timeout_ms, 1500);
    assert!(f
        .headers
        .iter()
        .any(|(n, v)| *n == "accept" && v.contains("jwk-set+json")));
    assert!(h.poll(T0).is_none(), "one attempt at a time");
    assert_eq!(
        h.sched.poll_timeout(),
        None,
        "nothing due while it is in flight"
    );
}

#[test]
fn a_key_published_after_the_last_fetch_is_accepted_on_first_sight() {
    let (k1, k2) = (Ed::new(1, "k1"), Ed::new(2, "k2"));
    let mut h = Host::loaded(json!({}), &[&k1]);
    let at = T0 + 2_000; // rotation 2 s after the gateway's last fetch
    let t2 = k2.token(json!({}));
    let id = paused(h.decide(&t2, at, None));
    let f = h
        .poll(at)
        .expect("a kid-triggered refetch at once, not after the cooldown");
    assert_eq!(f.trigger, Trigger::UnknownKid);
    h.serve(&f, &jwks(&[&k1, &k2]), at + 40);
    assert!(matches!(h.wake(id, &t2, at + 40), End::Forwarded));
    // The old key still works, and the new one from the cache.
    assert!(matches!(
        h.decide(&k1.token(json!({})), at + 50, None),
        End::Forwarded
    ));
    assert!(matches!(h.decide(&t2, at + 60, None), End::Forwarded));
    assert_eq!(h.fetches.len(), 2);
}

#[test]
fn a_flood_of_unknown_kids_costs_one_fetch_per_cooldown() {
    let k1 = Ed::new(1, "k1");
    let mut h = Host::loaded(json!({}), &[&k1]);
    let attacker = Ed::new(7, "x");
    let body = jwks(&[&k1]);
    // 10,000 distinct kids over 60 s; each fetch is answered 20 ms after it starts.
    let mut refused = 0;
    for i in 0..10_000u64 {
        let at = T0 + 1 + i * 6; // 0 … 60 s
        let t = Ed::new(7, &format!("kid-{i}")).sign(
            json!({"alg":"EdDSA","typ":"at+jwt","kid": format!("kid-{i}")}),
            merge(default_claims(), json!({})),
        );
        let _ = &attacker;
        match h.decide(&t, at, None) {
            End::Paused(id) => {
                if let Some(f) = h.poll(at) {
                    h.serve(&f, &body, at + 20);
                }
                // Woken, decided again: still unknown, and it never waits twice.
                let r = answered(h.wake(id, &t, at + 20));
                assert_eq!(r.status, 401);
                refused += 1;
            }
            End::Answered(r) => {
                assert_eq!(r.status, 401);
                assert_eq!(
                    param(&r, "error_description").as_deref(),
                    Some("The access token was signed with an unknown key")
                );
                refused += 1;
            }
            End::Forwarded => panic!("a forged kid passed"),
        }
    }
    assert_eq!(refused, 10_000);
    let kid_fetches = h
        .fetches
        .iter()
        .filter(|f| f.trigger == Trigger::UnknownKid)
        .count();
    // Cooldown 30 s over 60 s: one at 0 s, one at 30 s, none more.
    assert_eq!(kid_fetches, 2);
    assert_eq!(
        h.fetches.len(),
        3,
        "the initial fetch and the two kid fetches"
    );
}

#[test]
fn cold_start_outage_backs_off_and_retry_after_tells_the_truth() {
    let k1 = Ed::new(1, "k1");
    let t = k1.token(json!({"exp": NOW + 3600}));
    let mut h = Host::new(json!({}));
    let f = h.poll(T0).unwrap();
    // A request while the first attempt is in flight waits for it.
    let id = paused(h.decide(&t, T0 + 10, None));
    let rep = h.answer(&f, FetchOutcome::Failed(Failure::Connection), T0 + 30);
    assert!(
        matches!(
            rep,
            FetchReport::Failed {
                retry_in_ms: Some(1000),
                ..
            }
        ),
        "{rep:?}"
    );
    let r = answered(h.wake(id, &t, T0 + 30));
    assert_eq!(retry_after(&r), 1, "the next attempt is 1 s away");
    assert!(r.header("www-authenticate").is_none());
    // Backoff: 1, 2, 4, 8, then capped at retry_after_seconds (10).
    let mut at = T0 + 30;
    let mut delays = Vec::new();
    for _ in 0..6 {
        let due = h.sched.poll_timeout().unwrap();
        delays.push(due - at);
        // In between, a request hears exactly how long until that attempt.
        let r = answered(h.decide(&t, at + 1, None));
        assert_eq!(retry_after(&r), (due - at - 1).div_ceil(1000));
        assert!(h.poll(due - 1).is_none(), "not before it is due");
        let f = h.poll(due).unwrap();
        assert_eq!(f.trigger, Trigger::Retry);
        h.answer(&f, FetchOutcome::Failed(Failure::Timeout), due + 1500);
        at = due + 1500;
    }
    assert_eq!(delays, vec![1000, 2000, 4000, 8000, 10_000, 10_000]);
    // The endpoint comes back: a client that honoured Retry-After meets the next attempt.
    let r = answered(h.decide(&t, at + 500, None));
    let told = retry_after(&r);
    let back = at + 500 + told * 1000;
    let due = h.sched.poll_timeout().unwrap();
    assert!(due <= back, "the attempt is due when the client comes back");
    let f = h.poll(due).unwrap();
    let id = paused(h.decide(&t, back, None));
    h.serve(&f, &jwks(&[&k1]), back + 30);
    assert!(matches!(h.wake(id, &t, back + 30), End::Forwarded));
}

#[test]
fn a_client_honouring_another_worker_s_retry_after_is_served_by_this_one_too() {
    // Workers that share attempts (the proxy-wasm filter's VMs) learn that another worker's
    // attempt failed on their next tick. The worker that made it failed it at T0 + 30 and
    // told its clients to come back in 1 s; this one heard 200 ms later, so its own backoff
    // ends 200 ms after that Retry-After.
    let k1 = Ed::new(1, "k1");
    let t = k1.token(json!({"exp": NOW + 3600}));
    let mut h = Host::new(json!({}));
    let f = h.poll(T0).unwrap();
    h.answer(&f, FetchOutcome::Shared { ok: false }, T0 + 230);
    // Well before its attempt is due, a request is told to come back.
    assert_eq!(retry_after(&answered(h.decide(&t, T0 + 500, None))), 1);
    // The client that honoured the other worker's Retry-After starts the attempt and waits.
    let back = T0 + 30 + 1000;
    let id = paused(h.decide(&t, back, None));
    let f = h.poll(back).expect("the request started the attempt");
    assert_eq!(f.trigger, Trigger::Retry);
    h.serve(&f, &jwks(&[&k1]), back + 20);
    assert!(matches!(h.wake(id, &t, back + 20), End::Forwarded));
}

#[test]
fn a_host_without_timers_starts_the_due_attempt_with_the_request() {
    // The Worker has no timers between requests: a request after the due time starts it.
    let k1 = Ed::new(1, "k1");
    let t = k1.token(json!({}));
    let mut h = Host::new(json!({}));
    let f = h.poll(T0).unwrap();
    h.answer(&f, FetchOutcome::Failed(Failure::Connection), T0 + 5);
    let later = T0 + 60_000;
    let id = paused(h.decide(&t, later, None));
    let f = h.poll(later).expect("the request started the attempt");
    h.serve(&f, &jwks(&[&k1]), later + 10);
    assert!(matches!(h.wake(id, &t, later + 10), End::Forwarded));
}

#[test]
fn a_slow_endpoint_never_holds_a_request_past_its_deadline() {
    let k1 = Ed::new(1, "k1");
    let t = k1.token(json!({}));
    let mut h = Host::new(json!({}));
    let f = h.poll(T0).unwrap();
    let id = paused(h.decide(&t, T0 + 100, None));
    // The host's fetch never answers: the waiter's deadline is the attempt's timeout + 2 s.
    assert_eq!(h.sched.poll_timeout(), Some(T0 + 1500 + 2000));
    assert_eq!(h.sched.poll_wake(T0 + 3499), None);
    let r = answered(h.wake(id, &t, T0 + 3500));
    assert_eq!(retry_after(&r), 1);
    // The answer comes late after all: installed, and the next request passes.
    h.serve(&f, &jwks(&[&k1]), T0 + 5000);
    assert!(matches!(h.decide(&t, T0 + 5001, None), End::Forwarded));
}

#[test]
fn an_envoy_504_after_the_whole_timeout_is_a_timeout() {
    let mut h = Host::new(json!({}));
    let f = h.poll(T0).unwrap();
    let slow = FetchOutcome::Response {
        status: 504,
        cache_control: None,
        body: b"upstream request timeout",
    };
    let FetchReport::Failed { why, .. } = h.answer(&f, slow, T0 + 1500) else {
        panic!()
    };
    assert_eq!(why, "no answer within timeout_ms (1500 ms)");
    let due = h.sched.poll_timeout().unwrap();
    let f = h.poll(due).unwrap();
    let fast = FetchOutcome::Response {
        status: 504,
        cache_control: None,
        body: b"",
    };
    let FetchReport::Failed { why, .. } = h.answer(&f, fast, due + 100) else {
        panic!()
    };
    assert_eq!(why, "HTTP status 504");
}

#[test]
fn garbage_after_keys_were_loaded_keeps_the_old_keys_serving() {
    let k1 = Ed::new(1, "k1");
    let t = k1.token(json!({"exp": NOW + 3600}));
    let mut h = Host::loaded(json!({}), &[&k1]);
    // Refresh due at max-age=300.
    assert_eq!(h.sched.poll_timeout(), Some(T0 + 300_000));
    let at = T0 + 300_000;
    let f = h.poll(at).unwrap();
    assert_eq!(f.trigger, Trigger::Refresh);
    // A refresh in flight never delays a request.
    assert!(matches!(h.decide(&t, at + 1, None), End::Forwarded));
    let rep = h.answer(
        &f,
        FetchOutcome::Response {
            status: 200,
            cache_control: None,
            body: b"<html>oops</html>",
        },
        at + 10,
    );
    let (_, line) = rep.log_line("https://auth.example.com");
    assert!(line.contains("not a JWKS"), "{line}");
    assert!(matches!(h.decide(&t, at + 20, None), End::Forwarded));
    // Retried with backoff, capped by the cooldown while old keys serve.
    assert_eq!(h.sched.poll_timeout(), Some(at + 10 + 1000));
    let big = h.poll(at + 1010).unwrap();
    h.answer(&big, FetchOutcome::TooLarge, at + 1020);
    assert_eq!(h.sched.poll_timeout(), Some(at + 1020 + 2000));
    assert!(matches!(h.decide(&t, at + 2000, None), End::Forwarded));
}

#[test]
fn a_dropped_key_is_refused_once_the_refetch_removes_it() {
    let (k1, k2) = (Ed::new(1, "k1"), Ed::new(2, "k2"));
    let mut h = Host::loaded(json!({}), &[&k1]);
    let t1 = k1.token(json!({}));
    assert!(matches!(h.decide(&t1, T0 + 10, None), End::Forwarded)); // now cached
                                                                     // The issuer rotates to k2 only; a k2 token triggers the refetch that drops k1.
    let t2 = k2.token(json!({}));
    let id = paused(h.decide(&t2, T0 + 1000, None));
    let f = h.poll(T0 + 1000).unwrap();
    h.serve(&f, &jwks(&[&k2]), T0 + 1030);
    assert!(matches!(h.wake(id, &t2, T0 + 1030), End::Forwarded));
    // The cached k1 token is void at once; its kid refetch is within the cooldown: 401.
    let r = answered(h.decide(&t1, T0 + 1031, None));
    assert_eq!(r.status, 401);
    assert_eq!(
        param(&r, "error_description").as_deref(),
        Some("The access token was signed with an unknown key")
    );
}

#[test]
fn a_request_waits_once_unless_it_joined_a_refresh_that_was_already_under_way() {
    let (k1, k2) = (Ed::new(1, "k1"), Ed::new(2, "k2"));
    let mut h = Host::loaded(json!({}), &[&k1]);
    let at = T0 + 300_000;
    let refresh = h.poll(at).unwrap();
    assert_eq!(refresh.trigger, Trigger::Refresh);
    // k2 is published just after the refresh left; a k2 token joins the refresh…
    let t2 = k2.token(json!({"exp": NOW + 3600}));
    let id = paused(h.decide(&t2, at + 5, None));
    h.serve(&refresh, &jwks(&[&k1]), at + 20);
    // …which lacks k2: it gets the kid-triggered fetch of its own.
    let id2 = match h.wake(id, &t2, at + 20) {
        End::Paused(id2) => id2,
        other => panic!("{other:?}"),
    };
    let f = h.poll(at + 20).unwrap();
    assert_eq!(f.trigger, Trigger::UnknownKid);
    h.serve(&f, &jwks(&[&k1, &k2]), at + 60);
    assert!(matches!(h.wake(id2, &t2, at + 60), End::Forwarded));

    // A request that waited for a kid-triggered fetch of its own does not wait again.
    let k3 = Ed::new(3, "k3");
    let t3 = k3.token(json!({"exp": NOW + 3600}));
    let later = at + 60 + 30_000;
    let id = paused(h.decide(&t3, later, None));
    let f = h.poll(later).unwrap();
    h.serve(&f, &jwks(&[&k1, &k2]), later + 10);
    assert_eq!(answered(h.wake(id, &t3, later + 10)).status, 401);
}

#[test]
fn keys_past_max_staleness_are_refetched_and_the_request_waits() {
    let k1 = Ed::new(1, "k1");
    let t = k1.token(json!({"exp": NOW + 10_000}));
    let mut h = Host::loaded(json!({"max_staleness_seconds": 600}), &[&k1]);
    // Refresh at 300 s fails and keeps failing; keys serve until 600 s.
    let mut at = T0 + 300_000;
    while at < T0 + 600_000 {
        let due = h.sched.poll_timeout().unwrap().max(at);
        let Some(f) = h.poll(due) else { break };
        h.answer(&f, FetchOutcome::Failed(Failure::Connection), due + 10);
        at = due + 10;
        if at < T0 + 600_000 {
            assert!(matches!(h.decide(&t, at, None), End::Forwarded));
        }
    }
    // Past it: no usable keys; a 503 says when the next attempt is; it then succeeds.
    let r = answered(h.decide(&t, T0 + 601_000, None));
    let told = retry_after(&r);
    assert!((1..=30).contains(&told), "{told}");
    let due = h.sched.poll_timeout().unwrap();
    let f = h.poll(due).unwrap();
    let id = paused(h.decide(&t, due + 1, None));
    h.serve(&f, &jwks(&[&k1]), due + 20);
    assert!(matches!(h.wake(id, &t, due + 20), End::Forwarded));
}

#[test]
fn another_process_s_fetch_serves_this_one() {
    // The proxy-wasm filter: one VM fetched, this VM installs its document and ends its own
    // attempt as shared.
    let k1 = Ed::new(1, "k1");
    let t = k1.token(json!({}));
    let mut h = Host::new(json!({}));
    let f = h.poll(T0).unwrap();
    let id = paused(h.decide(&t, T0 + 5, None));
    let rep = h
        .sched
        .handle_document(
            ID,
            &jwks(&[&k1]),
            Some("max-age=120"),
            NOW,
            T0 + 40,
            &mut h.keys,
        )
        .unwrap();
    assert!(rep.changed);
    assert_eq!(
        h.sched.handle_fetch(
            f.id,
            FetchOutcome::Shared { ok: true },
            T0 + 40,
            &mut h.keys
        ),
        None,
        "nothing to log here: the fetching VM logged it"
    );
    assert!(matches!(h.wake(id, &t, T0 + 40), End::Forwarded));
    assert_eq!(h.sched.poll_timeout(), Some(T0 + 120_000));
    // Another VM's kid-triggered fetch starts the cooldown here too.
    let k2 = Ed::new(2, "k2");
    h.sched.handle_kid_fetch_elsewhere(ID, T0 + 50_000);
    assert_eq!(
        answered(h.decide(&k2.token(json!({})), T0 + 60_000, None)).status,
        401
    );
    assert!(matches!(
        h.decide(&k2.token(json!({})), T0 + 80_000, None),
        End::Paused(_)
    ));
}

#[test]
fn cancelled_waiters_are_forgotten_and_stale_answers_ignored() {
    let k1 = Ed::new(1, "k1");
    let t = k1.token(json!({}));
    let mut h = Host::new(json!({}));
    let f = h.poll(T0).unwrap();
    let id = paused(h.decide(&t, T0 + 5, None));
    h.sched.cancel(id);
    h.serve(&f, &jwks(&[&k1]), T0 + 10);
    assert_eq!(h.sched.poll_wake(T0 + 10), None);
    assert!(!h.sched.has_waiters());
    assert!(h
        .sched
        .handle_fetch(
            f.id,
            FetchOutcome::Failed(Failure::Timeout),
            T0 + 20,
            &mut h.keys
        )
        .is_none());
    assert!(matches!(h.decide(&t, T0 + 30, None), End::Forwarded));
}
