//! Opaque tokens validated by RFC 7662 introspection: the request the host sends, and what
//! the gateway makes of every kind of answer (inactive, foreign audience, expired, endpoint
//! down), with results cached by token hash, never past `exp`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::*;
use mcp_edge_auth_core::{IntrospectionJob, Reason, Verdict};
use serde_json::json;

fn world() -> World {
    let e = Ed::new(1, "k-ed");
    World::new(&json!({"resources":[{
        "resource": RESOURCE, "authorization_servers": [ISSUER], "required_scopes": ["mcp:read"],
        "claim_to_headers": [{"header_name": "x-mcp-subject", "claim_name": "sub"}],
        "issuers": [{"issuer": ISSUER, "local_jwks": {"keys": [e.jwk()]},
            "introspection": {"http_uri": {"uri": "https://auth.example.com/token/introspection", "cluster": "auth"},
                              "client_id": "gateway", "client_secret": "s3cr+t", "cache_max_seconds": 60}}]
    }]}))
}

fn job(w: &mut World, token: &str) -> IntrospectionJob {
    match w.with_token(token) {
        Verdict::Introspect(j) => j,
        v => panic!("{v:?}"),
    }
}

fn active(extra: serde_json::Value) -> String {
    merge(
        json!({"active": true, "iss": ISSUER, "aud": RESOURCE, "sub": "user-7", "scope": "mcp:read", "exp": NOW + 600}),
        extra,
    )
    .to_string()
}

#[test]
fn the_request_is_rfc7662() {
    let mut w = world();
    let j = job(&mut w, "opaque+token/==");
    assert_eq!(j.cluster.as_deref(), Some("auth"));
    assert_eq!(j.authority, "auth.example.com");
    assert_eq!(j.path, "/token/introspection");
    assert_eq!(
        j.body,
        "token=opaque%2Btoken%2F%3D%3D&token_type_hint=access_token"
    );
    assert!(j
        .headers
        .contains(&("content-type", "application/x-www-form-urlencoded".into())));
    // client_secret_basic with form-encoded id and secret (RFC 6749 §2.3.1).
    assert!(j
        .headers
        .contains(&("authorization", "Basic Z2F0ZXdheTpzM2NyJTJCdA==".into())));
    assert!(
        !format!("{j:?}").contains("opaque"),
        "Debug never shows the token"
    );
}

#[test]
fn active_token_is_forwarded_and_cached_within_bounds() {
    let mut w = world();
    let j = job(&mut w, "tok1");
    let f = forward(w.gw.resume_introspection(
        j,
        Some((200, active(json!({})).as_bytes())),
        NOW,
        &mut w.cache,
    ));
    assert_eq!(
        f.identity.as_ref().unwrap().subject.as_deref(),
        Some("user-7")
    );
    assert_eq!(
        f.add_headers.to_vec(),
        vec![("x-mcp-subject".to_string(), "user-7".to_string())]
    );
    // Cached: no second introspection, until cache_max_seconds (60) passes.
    assert!(forward(w.with_token("tok1")).cache_hit);
    let h = "Bearer tok1";
    assert!(forward(w.request("POST", "/mcp", &[("authorization", h)], NOW + 59)).cache_hit);
    assert!(matches!(
        w.request("POST", "/mcp", &[("authorization", h)], NOW + 60),
        Verdict::Introspect(_)
    ));
    // Never past exp.
    let j = job(&mut w, "tok2");
    forward(w.gw.resume_introspection(
        j,
        Some((200, active(json!({"exp": NOW + 10})).as_bytes())),
        NOW,
        &mut w.cache,
    ));
    assert!(matches!(
        w.request(
            "POST",
            "/mcp",
            &[("authorization", "Bearer tok2")],
            NOW + 10
        ),
        Verdict::Introspect(_)
    ));
}

#[test]
fn refusals() {
    let mut w = world();
    let cases = [
        (r#"{"active": false}"#.to_string(), Reason::Invalid),
        (active(json!({"active": "true"})), Reason::Invalid),
        (
            active(json!({"aud": "https://other.example/mcp"})),
            Reason::Audience,
        ),
        (active(json!({"aud": null})), Reason::Audience),
        (
            active(json!({"iss": "https://evil.example"})),
            Reason::Invalid,
        ),
        (active(json!({"exp": NOW - 100})), Reason::Expired),
        (active(json!({"exp": null})), Reason::Invalid),
    ];
    for (body, reason) in cases {
        let j = job(&mut w, "tok");
        let r =
            respond(w.gw.resume_introspection(j, Some((200, body.as_bytes())), NOW, &mut w.cache));
        assert_eq!((r.status, r.reason), (401, reason), "{body}");
        assert_eq!(param(&r, "error").as_deref(), Some("invalid_token"));
    }
    let j = job(&mut w, "tok");
    let r = respond(w.gw.resume_introspection(
        j,
        Some((200, active(json!({"scope": "other"})).as_bytes())),
        NOW,
        &mut w.cache,
    ));
    assert_eq!(r.status, 403);
}

#[test]
fn endpoint_failures_are_503_never_allow() {
    let mut w = world();
    for answer in [
        None,
        Some((500u16, &b"{}"[..])),
        Some((200, &b"<html>"[..])),
        Some((401, &b"{\"active\":true}"[..])),
    ] {
        let j = job(&mut w, "tok");
        let r = respond(w.gw.resume_introspection(j, answer, NOW, &mut w.cache));
        assert_eq!((r.status, r.reason), (503, Reason::KeysUnavailable));
        assert_eq!(r.header("retry-after"), Some("10"));
    }
    assert!(w.cache.is_empty());
}

#[test]
fn jwts_still_use_signatures() {
    let e = Ed::new(1, "k-ed");
    let mut w = world();
    forward(w.with_token(&e.token(json!({}))));
}
