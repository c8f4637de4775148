//! MCP-aware authorization: per-method and per-tool scopes with step-up, batches, the
//! `Mcp-Method`/`Mcp-Name` headers against the body, body limits, scope hierarchy.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::*;
use mcp_edge_auth_core::Reason;
use serde_json::json;

fn world(extra: serde_json::Value) -> (World, Ed) {
    let e = Ed::new(1, "k-ed");
    let rules = json!({
        "scope_hierarchy": {"mcp:admin": ["mcp:write"], "mcp:write": ["mcp:read"]},
        "mcp": {"max_body_bytes": 2048, "rules": [
            {"method": "tools/call", "name": "admin_*", "scopes": ["mcp:admin"]},
            {"method": "tools/call", "scopes": ["mcp:tools"]},
            {"method": "resources/read", "name": "file:///secret/*", "scopes": ["mcp:secret"]}
        ]}
    });
    let w = World::new(&config(
        &[e.jwk()],
        &[Ed::new(9, "o").jwk()],
        merge(rules, extra),
    ));
    (w, e)
}

fn call(tool: &str) -> String {
    json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name": tool, "arguments": {}}})
        .to_string()
}

#[test]
fn tool_level_step_up() {
    let (mut w, e) = world(json!({}));
    let weak = format!("Bearer {}", e.token(json!({"scope": "mcp:read mcp:tools"})));
    forward(w.post("/mcp", &[("authorization", &weak)], &call("echo")));
    let r = respond(w.post("/mcp", &[("authorization", &weak)], &call("admin_reset")));
    assert_eq!((r.status, r.reason), (403, Reason::Scope));
    assert_eq!(param(&r, "error").as_deref(), Some("insufficient_scope"));
    assert_eq!(param(&r, "scope").as_deref(), Some("mcp:read mcp:admin"));
    assert_eq!(
        param(&r, "resource_metadata").as_deref(),
        Some(METADATA_URL)
    );
    let strong = format!("Bearer {}", e.token(json!({"scope": "mcp:admin"})));
    // mcp:admin implies mcp:write implies mcp:read: the base scope is met through the hierarchy.
    forward(w.post("/mcp", &[("authorization", &strong)], &call("admin_reset")));
    // Methods no rule names need only the base scopes.
    let list = json!({"jsonrpc":"2.0","id":2,"method":"tools/list"}).to_string();
    let base_only = format!("Bearer {}", e.token(json!({"scope": "mcp:read"})));
    forward(w.post("/mcp", &[("authorization", &base_only)], &list));
    forward(w.post(
        "/mcp",
        &[("authorization", &base_only)],
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
    ));
    // Resources by URI glob.
    let secret = json!({"jsonrpc":"2.0","id":3,"method":"resources/read","params":{"uri":"file:///secret/x"}}).to_string();
    assert_eq!(
        respond(w.post("/mcp", &[("authorization", &base_only)], &secret)).status,
        403
    );
}

#[test]
fn batches_need_every_entry() {
    let (mut w, e) = world(json!({}));
    let t = format!("Bearer {}", e.token(json!({"scope": "mcp:read mcp:tools"})));
    let ok = format!(
        "[{},{}]",
        call("echo"),
        json!({"jsonrpc":"2.0","id":9,"method":"tools/list"})
    );
    forward(w.post("/mcp", &[("authorization", &t)], &ok));
    let bad = format!("[{},{}]", call("echo"), call("admin_x"));
    let r = respond(w.post("/mcp", &[("authorization", &t)], &bad));
    assert_eq!(r.status, 403);
    assert_eq!(
        param(&r, "scope").as_deref(),
        Some("mcp:read mcp:tools mcp:admin")
    );
}

#[test]
fn headers_must_agree_with_the_body() {
    let (mut w, e) = world(json!({}));
    let t = format!(
        "Bearer {}",
        e.token(json!({"scope": "mcp:admin mcp:tools"}))
    );
    forward(w.post(
        "/mcp",
        &[
            ("authorization", &t),
            ("mcp-method", "tools/call"),
            ("mcp-name", "echo"),
        ],
        &call("echo"),
    ));
    for h in [("mcp-method", "tools/list"), ("mcp-name", "echo")] {
        let r = respond(w.post("/mcp", &[("authorization", &t), h], &call("admin_reset")));
        assert_eq!((r.status, r.reason), (400, Reason::BadBody), "{h:?}");
    }
}

#[test]
fn bodies_that_are_not_json_rpc_or_too_large() {
    let (mut w, e) = world(json!({}));
    let t = format!("Bearer {}", e.token(json!({})));
    for body in [
        "",
        "not json",
        "{}",
        "[]",
        r#"{"jsonrpc":"2.0","method":5}"#,
    ] {
        let r = respond(w.post("/mcp", &[("authorization", &t)], body));
        assert_eq!((r.status, r.reason), (400, Reason::BadBody), "{body:?}");
    }
    let big = json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"x":"y".repeat(4096)}}}).to_string();
    let r = respond(w.post("/mcp", &[("authorization", &t)], &big));
    assert_eq!((r.status, r.reason), (413, Reason::BodyTooLarge));
    // No credentials: 401 first, whatever the body.
    assert_eq!(respond(w.post("/mcp", &[], "garbage")).status, 401);
    // GET (the SSE stream) has no JSON-RPC body: base scopes.
    let h = format!("Bearer {}", e.token(json!({"scope": "mcp:read"})));
    forward(w.request("GET", "/mcp", &[("authorization", &h)], NOW));
    // A host that was asked for the body and did not read it: refused, never waved through.
    let r = respond(w.request("POST", "/mcp", &[("authorization", &h)], NOW));
    assert_eq!(r.status, 400);
}

#[test]
fn body_limit_is_only_asked_where_rules_apply() {
    let (w, _) = world(json!({}));
    let req = |m, p| mcp_edge_auth_core::Request::new(m, "https", "mcp.example.com", p, &[]);
    assert_eq!(w.gw.body_limit(&req("POST", "/mcp")), Some(2048));
    assert_eq!(w.gw.body_limit(&req("GET", "/mcp")), None);
    assert_eq!(
        w.gw.body_limit(&req("POST", "/.well-known/oauth-protected-resource/mcp")),
        None
    );
    let plain = World::standard(&Ed::new(1, "k"));
    assert_eq!(plain.gw.body_limit(&req("POST", "/mcp")), None);
}

#[test]
fn hierarchy_cycles_are_config_errors() {
    let cfg = config(
        &[Ed::new(1, "k").jwk()],
        &[],
        json!({"scope_hierarchy": {"a": ["b"], "b": ["a"]}}),
    );
    let e = mcp_edge_auth_core::Config::from_json(cfg.to_string().as_bytes()).unwrap_err();
    assert!(e.path.starts_with("resources[0].scope_hierarchy"), "{e}");
    assert!(e.message.contains("cycle"));
}
