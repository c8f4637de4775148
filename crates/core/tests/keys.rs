//! Key lifecycle as the core sees it: remote keys that must be fetched, the refetch cooldown,
//! maximum staleness, `Cache-Control`, the verified-token cache and its invalidation, and the
//! deferred (asynchronous) signature round trip used by the Worker.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::*;
use mcp_edge_auth_core::crypto::{DeferredProvider, PublicKey};
use mcp_edge_auth_core::{Config, Gateway, IssuerId, KeyStore, Verdict};
use serde_json::{json, Value};

fn remote_config(extra: Value) -> Value {
    let remote = merge(
        json!({"http_uri": {"uri": "https://auth.example.com/jwks", "cluster": "auth"},
               "refetch_cooldown_seconds": 30, "max_staleness_seconds": 3600, "retry_after_seconds": 9}),
        extra,
    );
    json!({"resources":[{
        "resource": RESOURCE, "authorization_servers": [ISSUER], "required_scopes": ["mcp:read"],
        "issuers": [{"issuer": ISSUER, "remote_jwks": remote}]
    }]})
}

fn jwks(keys: &[Value]) -> Vec<u8> {
    json!({ "keys": keys }).to_string().into_bytes()
}

const ID: IssuerId = IssuerId(0);

#[test]
fn no_keys_yet_makes_a_token_wait_for_keys() {
    // What happens next (wait, fetch, 503 with a truthful Retry-After) is the key schedule's:
    // tests/schedule.rs.
    let e = Ed::new(1, "k1");
    let mut w = World::new(&remote_config(json!({})));
    let t = e.token(json!({}));
    match w.with_token(&t) {
        Verdict::AwaitKeys(need) => {
            assert_eq!(need.issuer, ID);
            assert!(!need.unknown_kid);
        }
        v => panic!("{v:?}"),
    }
    // Requests without a token are still challenged, and metadata still served.
    assert_eq!(respond(w.request("GET", "/mcp", &[], NOW)).status, 401);
    assert_eq!(
        respond(w.request("GET", "/.well-known/oauth-protected-resource/mcp", &[], NOW)).status,
        200
    );
    let report = w
        .keys
        .install_jwks(ID, &jwks(&[e.jwk()]), Some("max-age=120"), NOW)
        .unwrap();
    assert!(report.changed);
    assert_eq!(report.refresh_at, NOW + 120);
    forward(w.with_token(&t));
}

#[test]
fn an_unknown_kid_asks_for_keys_and_an_implausible_one_is_refused() {
    let e1 = Ed::new(1, "k1");
    let e2 = Ed::new(2, "k2");
    let mut w = World::new(&remote_config(json!({})));
    w.keys
        .install_jwks(ID, &jwks(&[e1.jwk()]), None, NOW)
        .unwrap();
    match w.with_token(&e2.token(json!({}))) {
        Verdict::AwaitKeys(need) => assert!(need.unknown_kid),
        v => panic!("{v:?}"),
    }
    let weird = Ed::new(2, "../../etc/passwd");
    let r = assert_invalid(w.with_token(&weird.token(json!({}))));
    assert_eq!(
        param(&r, "error_description").as_deref(),
        Some("The access token was signed with an unknown key")
    );
}

#[test]
fn cached_keys_serve_through_an_outage_up_to_max_staleness() {
    let e = Ed::new(1, "k1");
    let mut w = World::new(&remote_config(
        json!({"max_staleness_seconds": 600, "cache_duration_seconds": 300}),
    ));
    w.keys
        .install_jwks(ID, &jwks(&[e.jwk()]), None, NOW)
        .unwrap();
    let h = format!("Bearer {}", e.token(json!({"exp": NOW + 10_000})));
    // Past the refresh time the keys are due, and still serve while fetches fail.
    assert_eq!(w.keys.refresh_at(ID), Some(NOW + 300));
    forward(w.request("POST", "/mcp", &[("authorization", &h)], NOW + 500));
    forward(w.request("POST", "/mcp", &[("authorization", &h)], NOW + 600));
    // Beyond the staleness bound, the cache does not help either: keys are needed.
    assert!(!w.keys.usable(ID, NOW + 601));
    assert!(matches!(
        w.request("POST", "/mcp", &[("authorization", &h)], NOW + 601),
        Verdict::AwaitKeys(_)
    ));
}

#[test]
fn a_bad_jwks_never_replaces_good_keys() {
    let e = Ed::new(1, "k1");
    let mut w = World::new(&remote_config(json!({})));
    w.keys
        .install_jwks(ID, &jwks(&[e.jwk()]), None, NOW)
        .unwrap();
    let gen = w.keys.generation(ID);
    assert!(w
        .keys
        .install_jwks(ID, b"<html>oops</html>", None, NOW)
        .is_err());
    assert!(w
        .keys
        .install_jwks(ID, br#"{"keys":[]}"#, None, NOW)
        .is_err());
    assert!(w
        .keys
        .install_jwks(ID, br#"{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}"#, None, NOW)
        .is_err());
    assert_eq!(w.keys.generation(ID), gen);
    forward(w.with_token(&e.token(json!({}))));
}

#[test]
fn the_cache_remembers_verified_tokens_and_forgets_on_rotation_and_expiry() {
    let e = Ed::new(1, "k1");
    let mut w = World::new(&remote_config(json!({})));
    w.keys
        .install_jwks(ID, &jwks(&[e.jwk()]), None, NOW)
        .unwrap();
    let t = e.token(json!({"exp": NOW + 100}));
    let first = forward(w.with_token(&t));
    assert!(!first.cache_hit);
    let second = forward(w.with_token(&t));
    assert!(second.cache_hit);
    assert_eq!(first.add_headers, second.add_headers);
    assert_eq!(first.identity, second.identity);
    assert_eq!(w.cache.len(), 1);
    // A hit skips the `token68` check (the cached token passed it): a token that is not
    // the cached one, however close, is still refused as malformed, 400, not a hit.
    for bad in [format!("{t}!"), format!("{t}=x"), t.replacen('.', "*", 1)] {
        let r = respond(w.with_token(&bad));
        assert_eq!(r.status, 400, "{bad:?}");
        assert!(r.body.contains("malformed"), "{}", r.body);
    }
    // Same keys refetched: entries stay valid.
    w.keys
        .install_jwks(ID, &jwks(&[e.jwk()]), None, NOW + 1)
        .unwrap();
    assert!(forward(w.with_token(&t)).cache_hit);
    // Key set changed: the entry is void and the token is verified again.
    let e2 = Ed::new(2, "k2");
    w.keys
        .install_jwks(ID, &jwks(&[e.jwk(), e2.jwk()]), None, NOW + 2)
        .unwrap();
    assert!(!forward(w.with_token(&t)).cache_hit);
    // Key withdrawn: the cached token no longer passes (after the one refetch its unknown
    // kid earns).
    w.keys
        .install_jwks(ID, &jwks(&[e2.jwk()]), None, NOW + 3)
        .unwrap();
    assert!(matches!(
        w.with_token(&t),
        Verdict::AwaitKeys(need) if need.unknown_kid
    ));
    // Expiry is checked on every hit (exp + 60 s leeway).
    w.keys
        .install_jwks(ID, &jwks(&[e.jwk()]), None, NOW + 4)
        .unwrap();
    let h = format!("Bearer {t}");
    forward(w.request("POST", "/mcp", &[("authorization", &h)], NOW + 5));
    assert!(forward(w.request("POST", "/mcp", &[("authorization", &h)], NOW + 159)).cache_hit);
    assert_invalid(w.request("POST", "/mcp", &[("authorization", &h)], NOW + 160));
    // Scope is checked on every hit.
    let narrow = e.token(json!({"scope": "other"}));
    assert_eq!(respond(w.with_token(&narrow)).status, 403);
    assert_eq!(respond(w.with_token(&narrow)).status, 403);
}

#[test]
fn the_cache_is_bounded() {
    let e = Ed::new(1, "k1");
    let cfg = merge(
        remote_config(json!({})),
        json!({"token_cache": {"max_entries": 8}}),
    );
    let mut w = World::new(&cfg);
    w.keys
        .install_jwks(ID, &jwks(&[e.jwk()]), None, NOW)
        .unwrap();
    for i in 0..100 {
        // String `jti`: jwt-simple (the default provider) refuses other types.
        forward(w.with_token(&e.token(json!({"jti": format!("{i}")}))));
        assert!(w.cache.len() <= 8);
    }
    assert_eq!(w.cache.len(), 8);
}

#[test]
fn deferred_signatures_round_trip() {
    let e = Ed::new(1, "k1");
    let cfg = Config::from_json(remote_config(json!({})).to_string().as_bytes()).unwrap();
    let mut keys = KeyStore::new(&cfg, Box::new(DeferredProvider)).unwrap();
    keys.install_jwks(ID, &jwks(&[e.jwk()]), None, NOW).unwrap();
    let gw = Gateway::new(cfg);
    let mut cache = gw.new_cache();
    let t = e.token(json!({}));
    let h = format!("Bearer {t}");
    let headers = [("authorization", h.as_str())];
    let req =
        mcp_edge_auth_core::Request::new("POST", "https", "mcp.example.com", "/mcp", &headers);
    let job = match gw.decide(&req, NOW, &keys, &mut cache) {
        Verdict::VerifySignature(j) => j,
        v => panic!("{v:?}"),
    };
    assert_eq!(job.candidates, vec![0]);
    assert!(t.starts_with(&job.signing_input));
    // The host verifies with its own crypto (here: ed25519-compact standing in for WebCrypto).
    let Some(PublicKey::Ed25519 { x }) = keys.key(job.issuer, 0).map(|k| k.key.clone()) else {
        panic!()
    };
    let pk = ed25519_compact::PublicKey::from_slice(&x).unwrap();
    let sig = ed25519_compact::Signature::from_slice(&job.signature).unwrap();
    let valid = pk.verify(job.signing_input.as_bytes(), &sig).is_ok();
    assert!(valid);
    let f = forward(gw.resume(job.clone(), true, NOW, &keys, &mut cache));
    assert_eq!(f.identity.unwrap().subject.as_deref(), Some("user-1"));
    // Cached: the second request needs no signature at all.
    assert!(forward(gw.decide(&req, NOW, &keys, &mut cache)).cache_hit);
    // A failed verification is a 401.
    let r = respond(gw.resume(job, false, NOW, &keys, &mut cache));
    assert_eq!(r.status, 401);
}

#[test]
fn inline_jwks_problems_are_config_errors() {
    let cfg = json!({"resources":[{"resource": RESOURCE, "authorization_servers":[ISSUER],
        "issuers":[{"issuer": ISSUER, "local_jwks": {"inline_string": "{\"keys\":[]}"}}]}]});
    let c = Config::from_json(cfg.to_string().as_bytes()).unwrap();
    let err =
        KeyStore::new(&c, Box::new(mcp_edge_auth_core::crypto::default_provider())).unwrap_err();
    assert_eq!(err.path, "resources[0].issuers[0].local_jwks");
    assert!(err.message.contains("no usable key"), "{err}");
}

#[test]
fn the_cooldown_is_never_zero() {
    let cfg = remote_config(json!({"refetch_cooldown_seconds": 0}));
    let err = Config::from_json(cfg.to_string().as_bytes()).unwrap_err();
    assert_eq!(
        err.path,
        "resources[0].issuers[0].remote_jwks.refetch_cooldown_seconds"
    );
}
