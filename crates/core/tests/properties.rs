//! Property tests: no input panics the gateway, and nothing but a correctly signed token for
//! this resource is ever allowed through. (Coverage-guided fuzzing lives in fuzz/.)
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::*;
use mcp_edge_auth_core::{Config, Reason, Verdict};
use proptest::prelude::*;
use serde_json::json;

fn any_verdict_is_safe(v: &Verdict) {
    match v {
        Verdict::Forward(f) => assert_ne!(
            f.reason,
            Reason::Allowed,
            "allowed without a valid token: {f:?}"
        ),
        Verdict::Respond(r) => {
            for (_, value) in &r.headers {
                assert!(value.bytes().all(|b| (0x20..0x7f).contains(&b)));
            }
        }
        _ => {}
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_requests_never_panic_or_pass(
        method in "[A-Z]{1,8}",
        path in "(/[ -~]{0,40}){0,3}",
        auth in proptest::option::of("[ -~]{0,200}"),
        origin in proptest::option::of("[ -~]{0,60}"),
    ) {
        let mut w = World::standard(&Ed::new(1, "k-ed"));
        let mut headers: Vec<(&str, &str)> = Vec::new();
        if let Some(a) = auth.as_deref() { headers.push(("authorization", a)); }
        if let Some(o) = origin.as_deref() { headers.push(("origin", o)); }
        let v = w.request(&method, &path, &headers, NOW);
        any_verdict_is_safe(&v);
    }

    #[test]
    fn forged_tokens_never_pass(
        header in prop::sample::select(vec![
            r#"{"alg":"EdDSA","typ":"at+jwt","kid":"k-ed"}"#.to_string(),
            r#"{"alg":"EdDSA","typ":"at+jwt"}"#.to_string(),
            r#"{"alg":"none","typ":"at+jwt"}"#.to_string(),
            r#"{"alg":"RS256","typ":"at+jwt","kid":"k-ed"}"#.to_string(),
        ]),
        sub in "[a-z]{0,8}",
        exp in 0u64..3_600_000_000,
        sig in prop::collection::vec(any::<u8>(), 0..80),
    ) {
        use base64::Engine as _;
        let mut w = World::standard(&Ed::new(1, "k-ed"));
        let claims = merge(default_claims(), json!({"sub": sub, "exp": exp}));
        let e = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let t = format!("{}.{}.{}", e.encode(&header), e.encode(claims.to_string()), e.encode(&sig));
        any_verdict_is_safe(&w.with_token(&t));
    }

    #[test]
    fn arbitrary_config_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let _ = Config::from_json(&bytes);
    }

    #[test]
    fn arbitrary_jwks_never_panic(s in "[ -~]{0,300}") {
        let _ = mcp_edge_auth_core::jwks::parse(s.as_bytes(), mcp_edge_auth_core::crypto::AlgSet::all());
    }
}

#[test]
fn valid_token_control() {
    // The control for the properties above: the same world does allow a real token.
    let e = Ed::new(1, "k-ed");
    let mut w = World::standard(&e);
    assert!(matches!(
        w.with_token(&e.token(json!({}))),
        Verdict::Forward(_)
    ));
}
