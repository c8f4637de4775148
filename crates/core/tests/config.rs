//! Configuration errors name their field; the metadata document is built as configured.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::*;
use mcp_edge_auth_core::{Config, Reason};
use serde_json::{json, Value};

fn base() -> Value {
    json!({"resources":[{
        "resource": RESOURCE,
        "authorization_servers": [ISSUER],
        "issuers": [
            {"issuer": ISSUER, "remote_jwks": {"http_uri": {"uri": "https://auth.example.com/jwks", "cluster": "c"}}},
            {"issuer": ISSUER2, "remote_jwks": {"http_uri": {"uri": "https://other-auth.example.com/jwks"}}}
        ]
    }]})
}

fn err(cfg: &Value) -> (String, String) {
    let e = Config::from_json(cfg.to_string().as_bytes()).unwrap_err();
    (e.path, e.message)
}

fn set(path: &[&str], value: Value) -> Value {
    let mut cfg = base();
    let mut cur = &mut cfg;
    for (i, p) in path.iter().enumerate() {
        let last = i == path.len() - 1;
        cur = match p.parse::<usize>() {
            Ok(n) => &mut cur[n],
            Err(_) if last => {
                if value.is_null() {
                    cur.as_object_mut().unwrap().remove(*p);
                    return cfg;
                }
                &mut cur[*p]
            }
            Err(_) => &mut cur[*p],
        };
    }
    *cur = value;
    cfg
}

#[test]
fn errors_name_the_field() {
    let cases: Vec<(Value, &str, &str)> = vec![
        (
            set(
                &["resources", "0", "resource"],
                json!("http://mcp.example.com/mcp"),
            ),
            "resources[0].resource",
            "loopback",
        ),
        (
            set(
                &["resources", "0", "resource"],
                json!("https://mcp.example.com/mcp#x"),
            ),
            "resources[0].resource",
            "fragment",
        ),
        (
            set(&["resources", "0", "resource"], json!("/mcp")),
            "resources[0].resource",
            "absolute",
        ),
        (
            set(&["resources", "0", "resource"], json!(7)),
            "resources[0].resource",
            "invalid type",
        ),
        (
            set(&["resources", "0", "authorization_servers"], json!([])),
            "resources[0].authorization_servers",
            "at least one",
        ),
        (
            set(
                &["resources", "0", "authorization_servers"],
                json!(["ftp://x"]),
            ),
            "resources[0].authorization_servers[0]",
            "https",
        ),
        (
            set(
                &[
                    "resources",
                    "0",
                    "issuers",
                    "1",
                    "remote_jwks",
                    "http_uri",
                    "uri",
                ],
                json!("http://jwks.example.com/"),
            ),
            "resources[0].issuers[1].remote_jwks.http_uri.uri",
            "https",
        ),
        (
            set(
                &[
                    "resources",
                    "0",
                    "issuers",
                    "1",
                    "remote_jwks",
                    "http_uri",
                    "timeout_ms",
                ],
                json!(5),
            ),
            "resources[0].issuers[1].remote_jwks.http_uri.timeout_ms",
            "between",
        ),
        (
            set(
                &[
                    "resources",
                    "0",
                    "issuers",
                    "1",
                    "remote_jwks",
                    "http_uri",
                    "urii",
                ],
                json!("x"),
            ),
            "resources[0].issuers[1].remote_jwks.http_uri.urii",
            "unknown field",
        ),
        (
            set(
                &["resources", "0", "issuers", "0", "algorithms"],
                json!(["HS256"]),
            ),
            "resources[0].issuers[0].algorithms[0]",
            "unsupported algorithm",
        ),
        (
            set(
                &["resources", "0", "issuers", "0", "algorithms"],
                json!(["none"]),
            ),
            "resources[0].issuers[0].algorithms[0]",
            "unsupported algorithm",
        ),
        (
            set(&["resources", "0", "issuers", "0", "typ"], json!("JWT")),
            "resources[0].issuers[0].typ",
            "at+jwt",
        ),
        (
            set(
                &["resources", "0", "issuers", "0", "local_jwks"],
                json!({"keys": []}),
            ),
            "resources[0].issuers[0]",
            "exactly one of local_jwks and remote_jwks",
        ),
        (
            set(
                &["resources", "0", "issuers", "0", "remote_jwks"],
                Value::Null,
            ),
            "resources[0].issuers[0]",
            "exactly one",
        ),
        (
            set(&["resources", "0", "issuers", "1", "issuer"], json!(ISSUER)),
            "resources[0].issuers[1].issuer",
            "twice",
        ),
        (
            set(&["resources", "0", "issuers"], json!([])),
            "resources[0].issuers",
            "at least one",
        ),
        (
            set(&["resources", "0", "required_scopes"], json!(["a b"])),
            "resources[0].required_scopes[0]",
            "scope token",
        ),
        (
            set(
                &["resources", "0", "scopes_supported"],
                json!(["ok", "bad\""]),
            ),
            "resources[0].scopes_supported[1]",
            "scope token",
        ),
        (
            set(
                &["resources", "0", "claim_to_headers"],
                json!([{"header_name": "Authorization", "claim_name": "sub"}]),
            ),
            "resources[0].claim_to_headers[0].header_name",
            "authorization",
        ),
        (
            set(
                &["resources", "0", "claim_to_headers"],
                json!([{"header_name": "x y", "claim_name": "sub"}]),
            ),
            "resources[0].claim_to_headers[0].header_name",
            "header name",
        ),
        (
            set(
                &["resources", "0", "bearer_methods_supported"],
                json!(["query"]),
            ),
            "resources[0].bearer_methods_supported",
            "never accepted",
        ),
        (
            set(
                &["resources", "0", "allowed_origins"],
                json!(["https://app.example.com/path"]),
            ),
            "resources[0].allowed_origins[0]",
            "origin",
        ),
        (
            set(&["resources", "0", "audiences"], json!([])),
            "resources[0].audiences",
            "not be empty",
        ),
        (
            set(&["resources", "0", "unknown"], json!(1)),
            "resources[0].unknown",
            "unknown field",
        ),
        (
            set(&["unmatched_requests"], json!("maybe")),
            "unmatched_requests",
            "deny",
        ),
        (
            set(&["max_token_bytes"], json!(10)),
            "max_token_bytes",
            "between",
        ),
        (set(&["resources"], json!([])), "resources", "at least one"),
        (
            set(&["resources"], Value::Null),
            "",
            "missing field `resources`",
        ),
    ];
    for (cfg, path, msg) in cases {
        let (p, m) = err(&cfg);
        assert_eq!(p, path, "{m}");
        assert!(m.contains(msg), "{path}: {m:?} should mention {msg:?}");
        let shown = Config::from_json(cfg.to_string().as_bytes())
            .unwrap_err()
            .to_string();
        assert!(
            shown.starts_with(&format!("config: {path}")) || path.is_empty(),
            "{shown}"
        );
    }
    assert!(Config::from_json(b"not json").is_err());
    assert!(Config::from_json(base().to_string().as_bytes()).is_ok());
    let two =
        json!({"resources": [base()["resources"][0].clone(), base()["resources"][0].clone()]});
    assert_eq!(err(&two).0, "resources[1].resource");
}

#[test]
fn metadata_document_and_locations() {
    let e = Ed::new(1, "k");
    let cfg = config(
        &[e.jwk()],
        &[Ed::new(2, "o").jwk()],
        json!({"resource_name": "Example", "resource_documentation": "https://mcp.example.com/docs", "metadata_max_age_seconds": 120}),
    );
    let mut w = World::new(&cfg);
    let r = respond(w.request("GET", "/.well-known/oauth-protected-resource/mcp", &[], NOW));
    assert_eq!(r.status, 200);
    assert_eq!(r.reason, Reason::Metadata);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("cache-control"), Some("public, max-age=120"));
    assert_eq!(
        r.body,
        r#"{"resource":"https://mcp.example.com/mcp","authorization_servers":["https://auth.example.com"],"scopes_supported":["mcp:read","mcp:write"],"bearer_methods_supported":["header"],"resource_name":"Example","resource_documentation":"https://mcp.example.com/docs"}"#
    );
    // The root form serves the only resource; a query does not matter; other paths do not exist.
    let root = respond(w.request("GET", "/.well-known/oauth-protected-resource", &[], NOW));
    assert_eq!(root.body, r.body);
    assert_eq!(
        respond(w.request(
            "GET",
            "/.well-known/oauth-protected-resource/mcp?x=1",
            &[],
            NOW
        ))
        .body,
        r.body
    );
    assert_eq!(
        respond(w.request(
            "GET",
            "/.well-known/oauth-protected-resource/other",
            &[],
            NOW
        ))
        .status,
        403
    );
    let head = respond(w.request(
        "HEAD",
        "/.well-known/oauth-protected-resource/mcp",
        &[],
        NOW,
    ));
    assert_eq!((head.status, head.body.as_str()), (200, ""));
    let post = respond(w.request(
        "POST",
        "/.well-known/oauth-protected-resource/mcp",
        &[],
        NOW,
    ));
    assert_eq!((post.status, post.reason), (405, Reason::MethodNotAllowed));
    let pre = respond(w.request(
        "OPTIONS",
        "/.well-known/oauth-protected-resource/mcp",
        &[
            ("origin", "https://any.example"),
            ("access-control-request-method", "GET"),
        ],
        NOW,
    ));
    assert_eq!(pre.status, 204);
    assert_eq!(pre.header("access-control-allow-origin"), Some("*"));
}

#[test]
fn trailing_slash_and_origin_resources() {
    let e = Ed::new(1, "k");
    for (resource, wk) in [
        (
            "https://mcp.example.com/mcp/",
            "/.well-known/oauth-protected-resource/mcp",
        ),
        (
            "https://mcp.example.com",
            "/.well-known/oauth-protected-resource",
        ),
        (
            "https://mcp.example.com/",
            "/.well-known/oauth-protected-resource",
        ),
        (
            "http://localhost:8080/a/b",
            "/.well-known/oauth-protected-resource/a/b",
        ),
    ] {
        let cfg = json!({"resources":[{"resource": resource, "authorization_servers":[ISSUER],
            "issuers":[{"issuer": ISSUER, "local_jwks": {"keys": [e.jwk()]}}]}]});
        let mut w = World::new(&cfg);
        let r = respond(w.request("GET", wk, &[], NOW));
        assert_eq!(r.status, 200, "{resource}");
        let doc: Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(doc["resource"], resource, "resource is byte-exact");
        let c = respond(w.request("GET", "/a/b/c", &[], NOW));
        if c.status == 401 {
            let origin = resource.split('/').take(3).collect::<Vec<_>>().join("/");
            assert_eq!(
                param(&c, "resource_metadata").unwrap(),
                format!("{origin}{wk}")
            );
        }
    }
}

#[test]
fn several_resources_route_by_longest_prefix_and_host() {
    let e = Ed::new(1, "k");
    let issuer = json!([{"issuer": ISSUER, "local_jwks": {"keys": [e.jwk()]}}]);
    let cfg = json!({"resources":[
        {"resource": "https://mcp.example.com/", "authorization_servers":[ISSUER], "issuers": issuer},
        {"resource": "https://mcp.example.com/tools", "authorization_servers":[ISSUER], "issuers": issuer}
    ]});
    let mut w = World::new(&cfg);
    let t = e.token(json!({"aud": "https://mcp.example.com/tools"}));
    let h = format!("Bearer {t}");
    forward(w.request("POST", "/tools/x", &[("authorization", &h)], NOW));
    // The same token at the other resource: wrong audience.
    let r = assert_invalid_at(&mut w, "/other", &h);
    assert_eq!(
        param(&r, "resource_metadata").unwrap(),
        "https://mcp.example.com/.well-known/oauth-protected-resource"
    );
    // Root form: ambiguous? No: the origin resource owns it.
    let root = respond(w.request("GET", "/.well-known/oauth-protected-resource", &[], NOW));
    assert!(root
        .body
        .contains("\"resource\":\"https://mcp.example.com/\""));
    let tools = respond(w.request(
        "GET",
        "/.well-known/oauth-protected-resource/tools",
        &[],
        NOW,
    ));
    assert!(tools
        .body
        .contains("\"resource\":\"https://mcp.example.com/tools\""));
}

fn assert_invalid_at(w: &mut World, path: &str, h: &str) -> mcp_edge_auth_core::Response {
    let r = respond(w.request("POST", path, &[("authorization", h)], NOW));
    assert_eq!(r.status, 401);
    assert_eq!(r.reason, Reason::Audience);
    r
}

#[test]
fn example_configs_parse() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../config/examples");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|x| x == "json") {
            let bytes = std::fs::read(&path).unwrap();
            let c = Config::from_json(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            mcp_edge_auth_core::KeyStore::new(
                &c,
                Box::new(mcp_edge_auth_core::crypto::default_provider()),
            )
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            n += 1;
        }
    }
    assert!(n >= 2);
}

#[test]
fn envoy_hosts_require_a_cluster_for_every_remote_endpoint() {
    // base(): the first issuer names its cluster, the second does not.
    let cfg = Config::from_json(base().to_string().as_bytes()).unwrap();
    let e = cfg.require_clusters("Envoy filter").unwrap_err();
    assert_eq!(
        e.path,
        "resources[0].issuers[1].remote_jwks.http_uri.cluster"
    );
    assert!(e.message.contains("Envoy filter"), "{}", e.message);
    assert!(
        e.message.contains("https://other-auth.example.com/jwks"),
        "{}",
        e.message
    );
    let mut named = base();
    named["resources"][0]["issuers"][1]["remote_jwks"]["http_uri"]["cluster"] = json!("c2");
    let cfg = Config::from_json(named.to_string().as_bytes()).unwrap();
    assert!(cfg.require_clusters("Envoy module").is_ok());
}
