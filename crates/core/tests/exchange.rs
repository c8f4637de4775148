//! RFC 8693 token exchange toward the upstream: the request the host sends, one exchange for
//! concurrent requests with the same token, the cache (never past the subject's `exp` or
//! `expires_in`), and what every kind of answer or failure makes of the request.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::*;
use mcp_edge_auth_core::exchange::{ExchangeCall, ExchangeOutcome, ExchangeReport};
use mcp_edge_auth_core::keys::schedule::Failure;
use mcp_edge_auth_core::{
    Begin, Config, ExchangeNeed, Exchanges, Forward, Reason, Response, Verdict,
};
use serde_json::{json, Value};

const T0: u64 = NOW * 1000;

fn upstream(extra: Value) -> Value {
    merge(
        json!({
            "http_uri": {"uri": "https://auth.example.com/token", "cluster": "auth", "timeout_ms": 1000},
            "client_id": "gate way", "client_secret": "s3cr+t",
            "audience": ["urn:upstream"], "scope": "mcp:read",
            "retry_after_seconds": 8
        }),
        extra,
    )
}

struct X {
    w: World,
    ex: Exchanges,
    ed: Ed,
}

fn world(extra: Value) -> X {
    let ed = Ed::new(1, "k-ed");
    let other = Ed::new(99, "k-other");
    let cfg = config(
        &[ed.jwk()],
        &[other.jwk()],
        json!({"upstream_token": upstream(extra)}),
    );
    let w = World::new(&cfg);
    let ex = Exchanges::new(w.gw.config());
    X { w, ex, ed }
}

impl X {
    fn need(&mut self, token: &str) -> ExchangeNeed {
        match self.w.with_token(token) {
            Verdict::Exchange(n) => n,
            other => panic!("expected an exchange, got {other:?}"),
        }
    }
    fn begin(
        &mut self,
        token: &str,
        previous: Option<mcp_edge_auth_core::ExchangeWait>,
        now_ms: u64,
    ) -> Begin {
        let n = self.need(token);
        self.ex.begin(n, previous, now_ms)
    }
    fn call(&mut self) -> ExchangeCall {
        self.ex.poll_send().expect("an exchange to send")
    }
    fn ok(&mut self, call: &ExchangeCall, body: Value, now_ms: u64) -> ExchangeReport {
        let b = body.to_string();
        self.ex
            .handle_response(
                call.id,
                ExchangeOutcome::Response {
                    status: 200,
                    body: b.as_bytes(),
                },
                now_ms,
            )
            .expect("a report")
    }
}

fn issued(token: &str, expires_in: u64) -> Value {
    json!({"access_token": token, "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
           "token_type": "Bearer", "expires_in": expires_in})
}

fn paused(b: Begin) -> mcp_edge_auth_core::ExchangeWait {
    match b {
        Begin::Paused(w) => w,
        other => panic!("expected a pause, got {other:?}"),
    }
}

fn forwarded(b: Begin) -> (Forward, bool) {
    match b {
        Begin::Forward { forward, cached } => (forward, cached),
        other => panic!("expected a forward, got {other:?}"),
    }
}

fn answered(b: Begin) -> Response {
    match b {
        Begin::Respond(r) => r,
        other => panic!("expected an answer, got {other:?}"),
    }
}

fn upstream_auth(f: &Forward) -> Option<&str> {
    f.add_headers
        .iter()
        .find(|(n, _)| n == "authorization")
        .map(|(_, v)| v.as_str())
}

#[test]
fn the_exchange_request_is_rfc_8693_and_the_forward_carries_only_the_new_token() {
    let mut x = world(json!({}));
    let t = x.ed.token(json!({}));
    let wait = paused(x.begin(&t, None, T0));
    let call = x.call();
    assert_eq!(call.cluster.as_deref(), Some("auth"));
    assert_eq!(
        (call.authority.as_str(), call.path.as_str()),
        ("auth.example.com", "/token")
    );
    assert_eq!(call.timeout_ms, 1000);
    let h = |n: &str| {
        call.headers
            .iter()
            .find(|(k, _)| *k == n)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(
        h("content-type").as_deref(),
        Some("application/x-www-form-urlencoded")
    );
    // client_secret_basic: each part form-encoded, then base64 (RFC 6749 §2.3.1).
    assert_eq!(
        h("authorization").as_deref(),
        Some("Basic Z2F0ZSUyMHdheTpzM2NyJTJCdA==")
    );
    let form: Vec<(String, String)> = call
        .body
        .split('&')
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap();
            (k.to_string(), v.replace("%3A", ":").replace("%20", " "))
        })
        .collect();
    let get = |k: &str| {
        form.iter()
            .filter(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        get("grant_type"),
        ["urn:ietf:params:oauth:grant-type:token-exchange"]
    );
    assert_eq!(
        get("subject_token_type"),
        ["urn:ietf:params:oauth:token-type:access_token"]
    );
    assert_eq!(
        get("requested_token_type"),
        ["urn:ietf:params:oauth:token-type:access_token"]
    );
    assert_eq!(get("audience"), ["urn:upstream"]);
    assert_eq!(get("scope"), ["mcp:read"]);
    assert_eq!(get("subject_token").len(), 1);
    assert!(
        get("client_secret").is_empty(),
        "basic auth sends no secret in the form"
    );
    // The body holds the token; Debug does not show it.
    assert!(!format!("{call:?}").contains(&t[..20]));
    assert!(x.ex.poll_send().is_none(), "sent once");

    assert!(x.ok(&call, issued("upstream-token-1", 300), T0 + 50).ok());
    assert_eq!(x.ex.poll_wake(T0 + 50), Some(wait));
    let (f, cached) = forwarded(x.begin(&t, Some(wait), T0 + 50));
    assert!(!cached);
    assert_eq!(upstream_auth(&f), Some("Bearer upstream-token-1"));
    assert!(
        f.remove_headers.iter().any(|h| h == "authorization"),
        "the client's token is removed"
    );
    assert!(
        f.add_headers.iter().all(|(_, v)| !v.contains(&t)),
        "the client's token never goes on"
    );
    assert_eq!(x.ex.stats().ok, 1);
}

#[test]
fn client_secret_post_and_another_header() {
    let mut x = world(
        json!({"client_auth": "client_secret_post", "header": "X-Upstream-Token",
                             "resource": ["https://api.internal.example.com/"], "audience": null}),
    );
    let t = x.ed.token(json!({}));
    let wait = paused(x.begin(&t, None, T0));
    let call = x.call();
    assert!(call.headers.iter().all(|(k, _)| *k != "authorization"));
    assert!(
        call.body
            .contains("&client_id=gate%20way&client_secret=s3cr%2Bt"),
        "{}",
        "<form>"
    );
    assert!(call
        .body
        .contains("&resource=https%3A%2F%2Fapi.internal.example.com%2F"));
    assert!(!call.body.contains("audience="));
    x.ok(&call, issued("u2", 300), T0);
    assert_eq!(x.ex.poll_wake(T0), Some(wait));
    let (f, _) = forwarded(x.begin(&t, Some(wait), T0));
    assert!(f
        .add_headers
        .contains(&("x-upstream-token".into(), "u2".into())));
    assert!(
        f.remove_headers.iter().any(|h| h == "x-upstream-token"),
        "a client-sent copy is removed"
    );
    assert!(f.remove_headers.iter().any(|h| h == "authorization"));
}

#[test]
fn concurrent_requests_share_one_exchange_and_later_ones_hit_the_cache() {
    let mut x = world(json!({}));
    let t = x.ed.token(json!({}));
    let waits: Vec<_> = (0..5).map(|i| paused(x.begin(&t, None, T0 + i))).collect();
    let call = x.call();
    assert!(x.ex.poll_send().is_none(), "five requests, one exchange");
    // Another token gets its own exchange.
    let t2 = x.ed.token(json!({"sub": "someone-else"}));
    let w2 = paused(x.begin(&t2, None, T0));
    let call2 = x.call();
    assert_ne!(call.id, call2.id);

    x.ok(&call, issued("shared", 300), T0 + 100);
    let mut woken = Vec::new();
    while let Some(w) = x.ex.poll_wake(T0 + 100) {
        woken.push(w);
    }
    assert_eq!(woken, waits, "every waiter of that exchange, in order");
    for w in woken {
        let (f, _) = forwarded(x.begin(&t, Some(w), T0 + 100));
        assert_eq!(upstream_auth(&f), Some("Bearer shared"));
    }
    // Later requests: from the cache, no exchange.
    for i in 0..10 {
        let (f, cached) = forwarded(x.begin(&t, None, T0 + 1000 + i));
        assert!(cached);
        assert_eq!(upstream_auth(&f), Some("Bearer shared"));
    }
    assert!(x.ex.poll_send().is_none());
    assert_eq!(x.ex.stats().cache_hits, 10);
    // The other token's waiter is still waiting.
    assert!(x.ex.has_waiters());
    x.ex.cancel(w2);
    assert!(!x.ex.has_waiters());
}

#[test]
fn the_cache_never_outlives_expires_in_or_the_subject_token() {
    let mut x = world(json!({}));
    // expires_in 20 s: reused until 18 s (a tenth early), then exchanged again.
    let t = x.ed.token(json!({}));
    let w = paused(x.begin(&t, None, T0));
    let c = x.call();
    x.ok(&c, issued("short", 20), T0);
    x.ex.poll_wake(T0);
    forwarded(x.begin(&t, Some(w), T0));
    assert!(forwarded(x.begin(&t, None, T0 + 17_000)).1);
    paused(x.begin(&t, None, T0 + 18_500));
    assert!(x.ex.poll_send().is_some(), "expired: a new exchange");

    // The subject token expires in 100 s; the AS says 3600 s: the subject's exp wins.
    let mut x = world(json!({}));
    let t = x.ed.token(json!({"exp": NOW + 100}));
    let w = paused(x.begin(&t, None, T0));
    let c = x.call();
    x.ok(&c, issued("long", 3600), T0);
    x.ex.poll_wake(T0);
    forwarded(x.begin(&t, Some(w), T0));
    assert!(forwarded(x.begin(&t, None, T0 + 85_000)).1);
    paused(x.begin(&t, None, T0 + 91_000));

    // No expires_in: at most a minute.
    let mut x = world(json!({}));
    let t = x.ed.token(json!({}));
    let w = paused(x.begin(&t, None, T0));
    let c = x.call();
    let mut body = issued("no-exp", 1);
    body.as_object_mut().unwrap().remove("expires_in");
    x.ok(&c, body, T0);
    x.ex.poll_wake(T0);
    forwarded(x.begin(&t, Some(w), T0));
    assert!(forwarded(x.begin(&t, None, T0 + 50_000)).1);
    paused(x.begin(&t, None, T0 + 60_000));
}

#[test]
fn a_bad_answer_is_a_503_and_the_next_attempt_backs_off() {
    let cases: Vec<(ExchangeOutcome<'static>, &str)> = vec![
        (ExchangeOutcome::Failed(Failure::Timeout), "no answer in time"),
        (ExchangeOutcome::Failed(Failure::Connection), "connection failed"),
        (ExchangeOutcome::TooLarge, "larger"),
        (ExchangeOutcome::Response { status: 500, body: b"{\"error\":\"server_error\"}" }, "HTTP status 500 (server_error)"),
        (ExchangeOutcome::Response { status: 200, body: b"<html>" }, "not a JSON object"),
        (ExchangeOutcome::Response { status: 200, body: b"{\"access_token\":\"a\",\"access_token\":\"b\",\"issued_token_type\":\"urn:ietf:params:oauth:token-type:access_token\",\"token_type\":\"Bearer\"}" }, "not a JSON object"),
        (ExchangeOutcome::Response { status: 200, body: b"{\"issued_token_type\":\"urn:ietf:params:oauth:token-type:access_token\",\"token_type\":\"Bearer\"}" }, "no access_token"),
        (ExchangeOutcome::Response { status: 200, body: b"{\"access_token\":\"a b\",\"issued_token_type\":\"urn:ietf:params:oauth:token-type:access_token\",\"token_type\":\"Bearer\"}" }, "header-safe"),
        (ExchangeOutcome::Response { status: 200, body: b"{\"access_token\":\"ab\",\"issued_token_type\":\"urn:ietf:params:oauth:token-type:jwt\",\"token_type\":\"Bearer\"}" }, "issued_token_type"),
        (ExchangeOutcome::Response { status: 200, body: b"{\"access_token\":\"ab\",\"issued_token_type\":\"urn:ietf:params:oauth:token-type:access_token\",\"token_type\":\"DPoP\"}" }, "token_type"),
        (ExchangeOutcome::Response { status: 200, body: b"{\"access_token\":\"ab\",\"issued_token_type\":\"urn:ietf:params:oauth:token-type:access_token\",\"token_type\":\"bearer\",\"expires_in\":-5}" }, "expires_in"),
        (ExchangeOutcome::Response { status: 401, body: b"{\"error\":\"invalid_client\",\"error_description\":\"<script>evil\"}" }, "invalid_client"),
        (ExchangeOutcome::Response { status: 400, body: b"{\"error\":\"made_up\"}" }, "unregistered"),
    ];
    for (outcome, why) in cases {
        let mut x = world(json!({}));
        let t = x.ed.token(json!({}));
        let w = paused(x.begin(&t, None, T0));
        let c = x.call();
        let report = x.ex.handle_response(c.id, outcome, T0 + 10).unwrap();
        let ExchangeReport::Failed {
            why: got,
            retry_in_ms,
            ..
        } = &report
        else {
            panic!("{report:?}");
        };
        assert!(got.contains(why), "{got:?} should say {why:?}");
        assert!(!got.contains("evil"), "the AS's text is not repeated");
        assert_eq!(*retry_in_ms, 1000);
        assert_eq!(x.ex.poll_wake(T0 + 10), Some(w));
        let r = answered(x.begin(&t, Some(w), T0 + 10));
        assert_eq!(r.status, 503);
        assert_eq!(r.reason, Reason::ExchangeUnavailable);
        assert_eq!(r.header("retry-after"), Some("1"));
        assert!(!r.body.contains("evil"));
        // During the back-off: answered at once, the truth in Retry-After.
        let r = answered(x.begin(&t, None, T0 + 500));
        assert_eq!((r.status, r.header("retry-after")), (503, Some("1")));
        assert!(x.ex.poll_send().is_none());
    }
}

#[test]
fn back_off_doubles_up_to_retry_after_seconds_and_resets_on_success() {
    let mut x = world(json!({}));
    let t = x.ed.token(json!({}));
    let mut now = T0;
    let mut delays = Vec::new();
    for _ in 0..6 {
        paused(x.begin(&t, None, now));
        let c = x.call();
        let r =
            x.ex.handle_response(c.id, ExchangeOutcome::Failed(Failure::Connection), now)
                .unwrap();
        let ExchangeReport::Failed { retry_in_ms, .. } = r else {
            panic!()
        };
        delays.push(retry_in_ms);
        let refused = answered(x.begin(&t, None, now + 1));
        assert_eq!(
            refused.header("retry-after"),
            Some(format!("{}", retry_in_ms.div_ceil(1000)).as_str())
        );
        now += retry_in_ms;
    }
    assert_eq!(delays, [1000, 2000, 4000, 8000, 8000, 8000]);
    paused(x.begin(&t, None, now));
    let c = x.call();
    x.ok(&c, issued("back", 300), now);
    // A new token after success: no back-off left.
    let t2 = x.ed.token(json!({"sub": "b"}));
    paused(x.begin(&t2, None, now + 1));
    let c2 = x.call();
    let r =
        x.ex.handle_response(c2.id, ExchangeOutcome::Failed(Failure::Timeout), now + 1)
            .unwrap();
    assert!(matches!(
        r,
        ExchangeReport::Failed {
            retry_in_ms: 1000,
            ..
        }
    ));
}

#[test]
fn refusals_are_401_or_403_with_fixed_text() {
    for (error, status) in [
        ("invalid_grant", 401),
        ("invalid_target", 403),
        ("invalid_scope", 403),
        ("unauthorized_client", 403),
        ("access_denied", 403),
    ] {
        let mut x = world(json!({}));
        let t = x.ed.token(json!({}));
        let w = paused(x.begin(&t, None, T0));
        let c = x.call();
        let body =
            json!({"error": error, "error_description": "secret\r\nX-Injected: 1"}).to_string();
        let rep =
            x.ex.handle_response(
                c.id,
                ExchangeOutcome::Response {
                    status: 400,
                    body: body.as_bytes(),
                },
                T0,
            )
            .unwrap();
        assert_eq!(
            rep,
            ExchangeReport::Refused {
                resource: 0,
                error: match error {
                    "invalid_grant" => "invalid_grant",
                    "invalid_target" => "invalid_target",
                    "invalid_scope" => "invalid_scope",
                    "unauthorized_client" => "unauthorized_client",
                    _ => "access_denied",
                }
            }
        );
        x.ex.poll_wake(T0);
        let r = answered(x.begin(&t, Some(w), T0));
        assert_eq!(r.status, status, "{error}");
        assert_eq!(r.reason, Reason::ExchangeRefused);
        assert!(!r.body.contains("secret") && r.headers.iter().all(|(_, v)| !v.contains("secret")));
        if status == 401 {
            assert_eq!(param(&r, "error").as_deref(), Some("invalid_token"));
            assert_eq!(
                param(&r, "resource_metadata").as_deref(),
                Some(METADATA_URL)
            );
        } else {
            assert!(
                r.header("www-authenticate").is_none(),
                "no step-up challenge: a new scope would not help"
            );
        }
        // A refusal does not back off the endpoint: the next request tries again.
        paused(x.begin(&t, None, T0 + 1));
        assert!(x.ex.poll_send().is_some());
    }
}

#[test]
fn a_lost_answer_wakes_the_waiters_at_the_deadline() {
    let mut x = world(json!({}));
    let t = x.ed.token(json!({}));
    let w = paused(x.begin(&t, None, T0));
    let c = x.call();
    // timeout 1000 ms + 2000 ms grace.
    assert_eq!(x.ex.poll_timeout(), Some(T0 + 3000));
    assert!(x.ex.poll_overdue(T0 + 2999).is_none());
    assert_eq!(x.ex.poll_wake(T0 + 2999), None);
    let rep = x.ex.poll_overdue(T0 + 3000).unwrap();
    assert!(matches!(rep, ExchangeReport::Failed { .. }));
    assert_eq!(x.ex.poll_wake(T0 + 3000), Some(w));
    assert_eq!(answered(x.begin(&t, Some(w), T0 + 3000)).status, 503);
    // The late answer is ignored.
    let b = issued("late", 300).to_string();
    assert!(x
        .ex
        .handle_response(
            c.id,
            ExchangeOutcome::Response {
                status: 200,
                body: b.as_bytes()
            },
            T0 + 3500
        )
        .is_none());
}

#[test]
fn a_woken_request_with_another_token_is_decided_afresh() {
    let mut x = world(json!({}));
    let t = x.ed.token(json!({}));
    let w = paused(x.begin(&t, None, T0));
    let c = x.call();
    x.ok(&c, issued("for-t", 300), T0);
    x.ex.poll_wake(T0);
    // Not the token that waited: it gets no share of that exchange.
    let other = x.ed.token(json!({"sub": "mallory"}));
    paused(x.begin(&other, Some(w), T0));
    assert!(x.ex.poll_send().is_some());
}

#[test]
fn config_refuses_unsafe_upstream_token_sections() {
    let ed = Ed::new(1, "k-ed");
    let try_cfg = |u: Value, extra: Value| {
        let mut c = config(&[ed.jwk()], &[], merge(json!({"upstream_token": u}), extra));
        c["resources"][0]["issuers"]
            .as_array_mut()
            .unwrap()
            .truncate(1);
        Config::from_json(c.to_string().as_bytes())
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    let cases = [
        (
            upstream(json!({})),
            json!({"forward": true}),
            "resources[0].upstream_token: cannot be combined with forward",
        ),
        (
            upstream(json!({"audience": null})),
            json!({}),
            "names no target",
        ),
        (
            upstream(json!({"client_auth": "private_key_jwt"})),
            json!({}),
            "upstream_token.client_auth",
        ),
        (
            upstream(json!({"header": "host"})),
            json!({}),
            "upstream_token.header",
        ),
        (
            upstream(json!({"header": "x-mcp-subject"})),
            json!({}),
            "also a claim_to_headers",
        ),
        (
            upstream(json!({"scope": "a  b"})),
            json!({}),
            "upstream_token.scope[1]",
        ),
        (
            upstream(json!({"resource": ["https://x/#f"]})),
            json!({}),
            "upstream_token.resource[0]",
        ),
        (
            upstream(json!({"http_uri": {"uri": "http://auth.example.com/token"}})),
            json!({}),
            "upstream_token.http_uri.uri: plain http",
        ),
        (
            upstream(json!({"retry_after_seconds": 0})),
            json!({}),
            "retry_after_seconds",
        ),
        (
            upstream(json!({"grant": "x"})),
            json!({}),
            "unknown field `grant`",
        ),
    ];
    for (u, extra, want) in cases {
        let err = try_cfg(u, extra).expect_err(want);
        assert!(err.contains(want), "{err} should contain {want}");
    }
    assert!(try_cfg(upstream(json!({})), json!({})).is_ok());
    // Envoy hosts need the cluster, naming the field.
    let mut u = upstream(json!({}));
    u["http_uri"].as_object_mut().unwrap().remove("cluster");
    let c = config(&[ed.jwk()], &[], json!({"upstream_token": u}));
    let cfg = Config::from_json(c.to_string().as_bytes()).unwrap();
    let err = cfg
        .require_clusters("Envoy filter")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("resources[0].upstream_token.http_uri.cluster"),
        "{err}"
    );
}

#[test]
fn without_upstream_token_nothing_changes() {
    let ed = Ed::new(1, "k-ed");
    let mut w = World::standard(&ed);
    let t = ed.token(json!({}));
    assert!(matches!(w.with_token(&t), Verdict::Forward(_)));
    assert!(!Exchanges::new(w.gw.config()).enabled());
}
