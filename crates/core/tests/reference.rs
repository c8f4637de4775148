//! The reference §5 cases the core decides (shared/reference/resource-server-requirements.md),
//! each with tokens minted here, at a fixed time.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::*;
use jwt_simple::prelude::*;
use mcp_edge_auth_core::{Reason, Request, Verdict};
use serde_json::json;

fn ed() -> Ed {
    Ed::new(1, "k-ed")
}

#[test]
fn no_credentials_gets_401_with_metadata_and_scope_but_no_error() {
    let mut w = World::standard(&ed());
    let r = respond(w.request("POST", "/mcp", &[], NOW));
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("www-authenticate"),
        Some(format!("Bearer resource_metadata=\"{METADATA_URL}\", scope=\"mcp:read\"").as_str())
    );
    assert_eq!(r.reason, Reason::Missing);
}

#[test]
fn valid_tokens_of_each_algorithm_are_forwarded() {
    let e = ed();
    let rs = rsa();
    let es = es256();
    let other = Ed::new(99, "k-other");
    let mut w = World::new(&config(
        &[e.jwk(), rsa_jwk(&rs), es256_jwk(&es)],
        &[other.jwk()],
        json!({}),
    ));

    let f = forward(w.with_token(&e.token(json!({}))));
    assert_eq!(f.reason, Reason::Allowed);
    assert!(f.remove_headers.contains(&"authorization".to_string()));
    assert!(f.remove_headers.contains(&"x-mcp-subject".to_string()));
    assert_eq!(
        f.add_headers.to_vec(),
        vec![("x-mcp-subject".to_string(), "user-1".to_string())]
    );
    let id = f.identity.unwrap();
    assert_eq!(id.issuer, ISSUER);
    assert_eq!(id.subject.as_deref(), Some("user-1"));
    assert_eq!(id.client_id.as_deref(), Some("client-1"));
    assert_eq!(id.scopes, vec!["mcp:read", "mcp:write"]);

    let t = rs
        .sign_with_options(js_claims(json!({})), &at_jwt())
        .unwrap();
    assert_eq!(forward(w.with_token(&t)).reason, Reason::Allowed);
    let t = es
        .sign_with_options(js_claims(json!({})), &at_jwt())
        .unwrap();
    assert_eq!(forward(w.with_token(&t)).reason, Reason::Allowed);
}

#[test]
fn unsigned_tokens_are_refused() {
    let mut w = World::standard(&ed());
    let payload = b64(default_claims().to_string().as_bytes());
    for header in [
        r#"{"alg":"none","typ":"at+jwt"}"#,
        r#"{"alg":"None","typ":"at+jwt"}"#,
        r#"{"alg":"NONE"}"#,
    ] {
        let t = format!("{}.{payload}.", b64(header.as_bytes()));
        assert_invalid(w.with_token(&t));
        let t = format!("{}.{payload}.c2ln", b64(header.as_bytes()));
        assert_invalid(w.with_token(&t));
    }
    // A real EdDSA header with the signature cut off.
    let t = ed().token(json!({}));
    let cut = &t[..t.rfind('.').unwrap() + 1];
    assert_invalid(w.with_token(cut));
}

#[test]
fn hs256_signed_with_the_public_key_is_refused() {
    let rs = rsa();
    let mut w = World::new(&config(
        &[rsa_jwk(&rs)],
        &[Ed::new(99, "o").jwk()],
        json!({}),
    ));
    let pem = rs.public_key().to_pem().unwrap();
    for secret in [pem.as_bytes(), rsa_jwk(&rs).to_string().as_bytes()] {
        let key = HS256Key::from_bytes(secret).with_key_id("k-rs");
        let t = key.authenticate(js_claims(json!({}))).unwrap();
        let r = assert_invalid(w.with_token(&t));
        assert_eq!(
            param(&r, "error_description").as_deref(),
            Some("Symmetric signature algorithms are not accepted")
        );
    }
}

#[test]
fn altered_payload_is_refused() {
    let e = ed();
    let mut w = World::standard(&e);
    let t = e.token(json!({}));
    let parts: Vec<&str> = t.split('.').collect();
    let forged = merge(
        default_claims(),
        json!({"sub": "admin", "scope": "mcp:read mcp:admin"}),
    );
    let t2 = format!(
        "{}.{}.{}",
        parts[0],
        b64(forged.to_string().as_bytes()),
        parts[2]
    );
    let r = assert_invalid(w.with_token(&t2));
    assert_eq!(
        param(&r, "error_description").as_deref(),
        Some("The access token signature is invalid")
    );
}

#[test]
fn key_of_another_issuer_is_refused() {
    let e = ed();
    let other = Ed::new(99, "k-other");
    let mut w = World::standard(&e);
    // Issuer 1's claims, signed with issuer 2's key under issuer 1's kid.
    let t = other.sign(
        json!({"alg":"EdDSA","typ":"at+jwt","kid":"k-ed"}),
        default_claims(),
    );
    assert_invalid(w.with_token(&t));
    // Issuer 1's claims, signed with issuer 2's key under its own kid: not among issuer 1's keys.
    let t = other.token(json!({}));
    assert_invalid(w.with_token(&t));
    // Issuer 2's claims signed with issuer 1's key.
    let t = e.token(json!({"iss": ISSUER2}));
    assert_invalid(w.with_token(&t));
}

#[test]
fn implausible_kids_are_refused_without_lookup() {
    let e = ed();
    let mut w = World::standard(&e);
    for kid in [
        "../../etc/passwd",
        "a\"b",
        "k'",
        &"k".repeat(2000),
        "a b",
        "k\u{0}",
    ] {
        let t = e.sign(
            json!({"alg":"EdDSA","typ":"at+jwt","kid": kid}),
            default_claims(),
        );
        let r = assert_invalid(w.with_token(&t));
        assert_eq!(
            param(&r, "error_description").as_deref(),
            Some("The access token was signed with an unknown key")
        );
    }
}

#[test]
fn embedded_keys_and_key_urls_are_never_trusted() {
    let e = ed();
    let attacker = Ed::new(66, "k-ed");
    let mut w = World::standard(&e);
    let t = attacker.sign(
        json!({"alg":"EdDSA","typ":"at+jwt","kid":"k-ed","jwk": attacker.jwk(),
               "jku":"https://evil.example/jwks","x5u":"https://evil.example/x5u"}),
        default_claims(),
    );
    assert_invalid(w.with_token(&t));
}

#[test]
fn time_claims() {
    let e = ed();
    let mut w = World::standard(&e);
    let r = assert_invalid(w.with_token(&e.token(json!({"exp": NOW - 61}))));
    assert_eq!(r.reason, Reason::Expired);
    assert_eq!(
        param(&r, "error_description").as_deref(),
        Some("The access token has expired")
    );
    forward(w.with_token(&e.token(json!({"exp": NOW - 30}))));
    let r = assert_invalid(w.with_token(&e.token(json!({"nbf": NOW + 120}))));
    assert_eq!(r.reason, Reason::Expired);
    forward(w.with_token(&e.token(json!({"nbf": NOW + 30}))));
    let r = assert_invalid(w.with_token(&e.token(json!({"exp": null}))));
    assert_eq!(
        param(&r, "error_description").as_deref(),
        Some("The access token has no expiry")
    );
    for bad in [json!("1800000300"), json!(1.8e9), json!(-5), json!(true)] {
        assert_invalid(w.with_token(&e.token(json!({"exp": bad}))));
    }
    assert_invalid(w.with_token(&e.token(json!({"nbf": "0"}))));
}

#[test]
fn issuer_is_compared_exactly() {
    let e = ed();
    let mut w = World::standard(&e);
    for iss in [
        "https://auth.example.com/",
        "https://AUTH.example.com",
        "HTTPS://auth.example.com",
        "https://auth.example.com:443",
        "auth.example.com",
    ] {
        let r = assert_invalid(w.with_token(&e.token(json!({"iss": iss}))));
        assert_eq!(r.reason, Reason::Invalid);
    }
    assert_invalid(w.with_token(&e.token(json!({"iss": null}))));
    assert_invalid(w.with_token(&e.token(json!({"iss": ["https://auth.example.com"]}))));
}

#[test]
fn audience_rule() {
    let e = ed();
    let mut w = World::standard(&e);
    for aud in [
        json!("https://other.example.com/mcp"),
        json!("https://mcp.example.com/mc"),
        json!("https://mcp.example.com/mcp/x"),
        json!("https://mcp.example.com/mcpx"),
        json!("https://mcp.example.com/MCP"),
        json!("https://mcp.example.com"),
        json!("https://mcp.example.com/%6Dcp"),
        json!("https://mcp.example.com/./mcp"),
        json!("http://mcp.example.com/mcp"),
        json!(["https://mcp.example.com/mcp", 1]),
        json!({"aud": RESOURCE}),
        json!([]),
        json!(null),
    ] {
        let r = assert_invalid(w.with_token(&e.token(json!({"aud": aud.clone()}))));
        assert_eq!(r.reason, Reason::Audience, "{aud}");
        assert_eq!(
            param(&r, "error_description").as_deref(),
            Some("The access token was not issued for this resource")
        );
    }
    for aud in [
        json!(["https://other.example.com", RESOURCE]),
        json!("https://MCP.EXAMPLE.COM/mcp"),
        json!("HTTPS://mcp.example.com:443/mcp"),
    ] {
        forward(w.with_token(&e.token(json!({"aud": aud}))));
    }
}

#[test]
fn configured_audiences_replace_the_default() {
    let e = ed();
    let other = Ed::new(99, "o");
    let mut w = World::new(&config(
        &[e.jwk()],
        &[other.jwk()],
        json!({"audiences": ["api://mcp-server", "https://mcp.example.com/"]}),
    ));
    forward(w.with_token(&e.token(json!({"aud": "api://mcp-server"}))));
    forward(w.with_token(&e.token(json!({"aud": "https://mcp.example.com"}))));
    assert_invalid(w.with_token(&e.token(json!({"aud": RESOURCE}))));
}

#[test]
fn typ_policy() {
    let e = ed();
    let mut w = World::standard(&e);
    let claims = default_claims();
    for typ in [json!("JWT"), json!("jwt"), json!(null), json!("at+jwt+x")] {
        let mut h = json!({"alg":"EdDSA","kid":"k-ed"});
        if !typ.is_null() {
            h["typ"] = typ;
        }
        assert_invalid(w.with_token(&e.sign(h, claims.clone())));
    }
    for typ in ["at+jwt", "AT+JWT", "application/at+jwt"] {
        forward(w.with_token(&e.sign(
            json!({"alg":"EdDSA","kid":"k-ed","typ": typ}),
            claims.clone(),
        )));
    }
    let cfg = json!({"resources":[{
        "resource": RESOURCE, "authorization_servers": [ISSUER],
        "issuers": [{"issuer": ISSUER, "typ": "any", "local_jwks": {"keys": [e.jwk()]}}]
    }]});
    let mut lax = World::new(&cfg);
    forward(lax.with_token(&e.sign(json!({"alg":"EdDSA","kid":"k-ed","typ":"JWT"}), claims)));
}

#[test]
fn missing_scope_gets_403_naming_every_needed_scope() {
    let e = ed();
    let other = Ed::new(99, "o");
    let mut w = World::new(&config(
        &[e.jwk()],
        &[other.jwk()],
        json!({"required_scopes": ["mcp:read", "mcp:tools"]}),
    ));
    let r = respond(w.with_token(&e.token(json!({"scope": "mcp:read"}))));
    assert_eq!(r.status, 403);
    assert_eq!(r.reason, Reason::Scope);
    assert_eq!(param(&r, "error").as_deref(), Some("insufficient_scope"));
    assert_eq!(param(&r, "scope").as_deref(), Some("mcp:read mcp:tools"));
    assert_eq!(
        param(&r, "resource_metadata").as_deref(),
        Some(METADATA_URL)
    );
    forward(w.with_token(&e.token(json!({"scope": null, "scp": ["mcp:tools", "mcp:read"]}))));
    // Scope claim of the wrong shape: invalid, not insufficient.
    assert_invalid(w.with_token(&e.token(json!({"scope": ["mcp:read"]}))));
}

#[test]
fn query_tokens_are_ignored_and_stripped() {
    let e = ed();
    let mut w = World::standard(&e);
    let t = e.token(json!({}));
    let path = format!("/mcp?access_token={t}");
    let r = respond(w.request("GET", &path, &[], NOW));
    assert_eq!(r.status, 401);
    assert_eq!(param(&r, "error"), None);
    let h = format!("Bearer {t}");
    let f = forward(w.request(
        "GET",
        &format!("/mcp?x=1&access_token={t}"),
        &[("authorization", &h)],
        NOW,
    ));
    assert_eq!(f.new_path.as_deref(), Some("/mcp?x=1"));
}

#[test]
fn bearer_extraction_cases() {
    let e = ed();
    let mut w = World::standard(&e);
    let t = e.token(json!({}));
    let r = respond(w.request(
        "POST",
        "/mcp",
        &[("authorization", "Basic dXNlcjpwYXNz")],
        NOW,
    ));
    assert_eq!((r.status, param(&r, "error")), (401, None));
    let lower = format!("bearer {t}");
    forward(w.request("POST", "/mcp", &[("Authorization", &lower)], NOW));
    for bad in [
        "Bearer",
        "Bearer ",
        "Bearer a b",
        "Bearer a,b",
        "Bearer \"x\"",
        "Bearer é",
    ] {
        let r = respond(w.request("POST", "/mcp", &[("authorization", bad)], NOW));
        assert_eq!(r.status, 400, "{bad}");
        assert_eq!(param(&r, "error").as_deref(), Some("invalid_request"));
        assert_eq!(r.reason, Reason::Malformed);
    }
    let h = format!("Bearer {t}");
    let r = respond(w.request(
        "POST",
        "/mcp",
        &[("authorization", &h), ("Authorization", &h)],
        NOW,
    ));
    assert_eq!(r.status, 400);
}

#[test]
fn huge_and_jwe_tokens() {
    let mut w = World::standard(&ed());
    let big = format!("Bearer {}", "a".repeat(64 * 1024));
    let r = respond(w.request("POST", "/mcp", &[("authorization", &big)], NOW));
    assert_eq!(r.status, 401);
    assert_eq!(
        param(&r, "error_description").as_deref(),
        Some("The access token is too large")
    );
    let r = assert_invalid(w.with_token("eyJhbGciOiJSU0EtT0FFUCJ9.a.b.c.d"));
    assert_eq!(
        param(&r, "error_description").as_deref(),
        Some("Encrypted access tokens are not accepted")
    );
    assert_invalid(w.with_token(&"a.".repeat(5000)));
}

#[test]
fn duplicate_members_are_refused() {
    let e = ed();
    let mut w = World::standard(&e);
    let claims = default_claims().to_string();
    let dup = format!("{},\"sub\":\"admin\"}}", claims.trim_end_matches('}'));
    assert_invalid(
        w.with_token(&e.sign_raw(r#"{"alg":"EdDSA","typ":"at+jwt","kid":"k-ed"}"#, &dup)),
    );
    assert_invalid(w.with_token(&e.sign_raw(
        r#"{"alg":"EdDSA","typ":"at+jwt","kid":"k-ed","kid":"other"}"#,
        &claims,
    )));
}

#[test]
fn algorithm_allow_list_and_case() {
    let e = ed();
    let cfg = json!({"resources":[{
        "resource": RESOURCE, "authorization_servers": [ISSUER],
        "issuers": [{"issuer": ISSUER, "algorithms": ["ES256"], "local_jwks": {"keys": [es256_jwk(&es256())]}}]
    }]});
    let mut w = World::new(&cfg);
    // EdDSA is not on this issuer's list (and its key was not even loaded).
    let r = assert_invalid(w.with_token(&e.token(json!({}))));
    assert_eq!(
        param(&r, "error_description").as_deref(),
        Some("The access token signature algorithm is not allowed")
    );
    let t = e.sign(json!({"alg":"eddsa","typ":"at+jwt"}), default_claims());
    assert_invalid(w.with_token(&t));
}

#[test]
fn identity_headers_are_owned_by_the_gateway() {
    let e = ed();
    let mut w = World::standard(&e);
    let h = format!("Bearer {}", e.token(json!({})));
    let f = forward(w.request(
        "POST",
        "/mcp",
        &[("authorization", &h), ("X-MCP-Subject", "admin")],
        NOW,
    ));
    assert!(f.remove_headers.contains(&"x-mcp-subject".to_string()));
    assert!(f.remove_headers.contains(&"authorization".to_string()));
    assert_eq!(
        f.add_headers.to_vec(),
        vec![("x-mcp-subject".to_string(), "user-1".to_string())]
    );
    // forward: true keeps the token (for upstreams that re-validate), never the spoofed header.
    let other = Ed::new(99, "o");
    let mut keep = World::new(&config(
        &[e.jwk()],
        &[other.jwk()],
        json!({"forward": true}),
    ));
    let f = forward(keep.request(
        "POST",
        "/mcp",
        &[("authorization", &h), ("x-mcp-subject", "admin")],
        NOW,
    ));
    assert!(!f.remove_headers.contains(&"authorization".to_string()));
    assert!(f.remove_headers.contains(&"x-mcp-subject".to_string()));
}

#[test]
fn a_host_with_every_header_removes_only_those_the_request_carries() {
    let e = ed();
    let mut w = World::standard(&e);
    let h = format!("Bearer {}", e.token(json!({})));
    let removals = |headers: &[(&str, &str)], w: &mut World| {
        let req = Request::new("GET", "https", "mcp.example.com", "/mcp", headers);
        let f = forward(w.gw.decide(&req, NOW, &w.keys, &mut w.cache));
        f.removals_in(&req).map(str::to_string).collect::<Vec<_>>()
    };
    // No identity header sent: only the token goes.
    assert_eq!(
        removals(&[("Authorization", &h)], &mut w),
        ["authorization"]
    );
    // A spoofed one, in any case and repeated, is named (the host removes every copy).
    let spoofed = [
        ("authorization", h.as_str()),
        ("X-Mcp-Subject", "admin"),
        ("x-mcp-subject", "root"),
    ];
    assert_eq!(
        removals(&spoofed, &mut w),
        ["x-mcp-subject", "authorization"]
    );
}

#[test]
fn origin_checks() {
    let e = ed();
    let mut w = World::standard(&e);
    let h = format!("Bearer {}", e.token(json!({})));
    let r = respond(w.request(
        "POST",
        "/mcp",
        &[("authorization", &h), ("origin", "https://evil.example")],
        NOW,
    ));
    assert_eq!((r.status, r.reason), (403, Reason::Origin));
    assert!(r.header("www-authenticate").is_none());
    assert!(!r.body.contains("evil"));
    let f = forward(w.request(
        "POST",
        "/mcp",
        &[("authorization", &h), ("origin", "https://app.example.com")],
        NOW,
    ));
    assert!(f.response_headers.contains(&(
        "access-control-allow-origin",
        "https://app.example.com".into()
    )));
    // The resource's own origin is always allowed.
    forward(w.request(
        "POST",
        "/mcp",
        &[
            ("authorization", &h),
            ("origin", "https://MCP.example.com:443"),
        ],
        NOW,
    ));
    // A 401 to an allowed browser origin exposes the challenge.
    let r = respond(w.request(
        "POST",
        "/mcp",
        &[("origin", "https://app.example.com")],
        NOW,
    ));
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://app.example.com")
    );
    assert!(r
        .header("access-control-expose-headers")
        .unwrap()
        .contains("www-authenticate"));
    // Preflight on the endpoint.
    let r = respond(w.request(
        "OPTIONS",
        "/mcp",
        &[
            ("origin", "https://app.example.com"),
            ("access-control-request-method", "POST"),
        ],
        NOW,
    ));
    assert_eq!((r.status, r.reason), (204, Reason::Preflight));
    assert!(r
        .header("access-control-allow-headers")
        .unwrap()
        .contains("authorization"));
}

#[test]
fn routing_and_unmatched_paths() {
    let e = ed();
    let mut w = World::standard(&e);
    for p in ["/mcp", "/mcp/", "/mcp/x", "/mcp?a=b"] {
        assert_eq!(respond(w.request("GET", p, &[], NOW)).status, 401, "{p}");
    }
    for p in ["/mcpx", "/", "/other", "/MCP", "/%6dcp"] {
        let r = respond(w.request("GET", p, &[], NOW));
        assert_eq!((r.status, r.reason), (403, Reason::Unmatched), "{p}");
    }
    let other = Ed::new(99, "o");
    let mut open = World::new(&json!({
        "unmatched_requests": "allow",
        "resources": [config(&[e.jwk()], &[other.jwk()], json!({}))["resources"][0].clone()]
    }));
    let f = forward(open.request("GET", "/healthz", &[("authorization", "Bearer x")], NOW));
    assert_eq!(f.reason, Reason::Unprotected);
    assert!(f.identity.is_none());
}

#[test]
fn every_error_description_is_rfc6750_clean() {
    // Exercise many refusals and check every header we emit.
    let e = ed();
    let mut w = World::standard(&e);
    let tokens = [
        e.token(json!({"exp": NOW - 1000})),
        e.token(json!({"aud": "x"})),
        e.token(json!({"iss": "x"})),
        "x.y.z".to_string(),
        "a.b.c.d.e".to_string(),
        e.token(json!({"scope": ""})),
    ];
    for t in tokens {
        let v = w.with_token(&t);
        if let Verdict::Respond(r) = v {
            for (name, value) in &r.headers {
                assert!(
                    value.bytes().all(|b| (0x20..0x7f).contains(&b)),
                    "{name}: {value}"
                );
            }
            if let Some(d) = param(&r, "error_description") {
                assert!(mcp_edge_auth_core::challenge::is_valid_description(&d));
            }
        }
    }
}
