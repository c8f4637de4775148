//! Per-caller discovery (issue 15, core part): list answers keep only what the token may use,
//! decided by the same rules and scope check as the request side.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::*;
use mcp_edge_auth_core::{Body, Identity, Request, Verdict};
use serde_json::{json, Value};

fn world() -> (World, Ed) {
    let ed = Ed::new(1, "k-ed");
    let other = Ed::new(99, "k-other");
    let w = World::new(&config(
        &[ed.jwk()],
        &[other.jwk()],
        json!({"mcp": {"rules": [
            {"method": "tools/call", "name": "admin_*", "scopes": ["mcp:admin"]},
            {"method": "prompts/get", "name": "secret", "scopes": ["mcp:admin"]},
            {"method": "resources/read", "name": "file:///private/*", "scopes": ["mcp:admin"]}
        ]}}),
    ));
    (w, ed)
}

/// The identity the gateway verified for `scope`, as a forward carries it.
fn identity(w: &mut World, ed: &Ed, scope: &str, body: &str) -> Identity {
    let t = ed.token(json!({"scope": scope}));
    let auth = format!("Bearer {t}");
    let h = [("authorization", auth.as_str())];
    let mut req = Request::new("POST", "https", "mcp.example.com", "/mcp", &h);
    req.body = Body::Bytes(body.as_bytes());
    match w.gw.decide(&req, NOW, &w.keys, &mut w.cache) {
        Verdict::Forward(f) => f.identity.unwrap(),
        other => panic!("{other:?}"),
    }
}

fn filtered(w: &World, id: &Identity, request: &str, response: &Value) -> Option<Value> {
    let mut req = Request::new("POST", "https", "mcp.example.com", "/mcp", &[]);
    req.body = Body::Bytes(request.as_bytes());
    let f = w.gw.list_filter(&req, id)?;
    f.filter(&w.gw, response.to_string().as_bytes())
        .map(|b| serde_json::from_slice(&b).unwrap())
}

fn names(v: &Value, member: &str, key: &str) -> Vec<String> {
    v["result"][member]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e[key].as_str().unwrap().to_string())
        .collect()
}

const LIST: &str = r#"{"jsonrpc":"2.0","id":7,"method":"tools/list"}"#;

fn tools() -> Value {
    json!({"jsonrpc":"2.0","id":7,"result":{"tools":[
        {"name":"whoami","inputSchema":{}},{"name":"admin_reset","inputSchema":{}},{"name":"echo"}
    ],"nextCursor":"page-2"}})
}

#[test]
fn a_token_without_the_scope_lists_every_tool_but_the_privileged_one() {
    let (mut w, ed) = world();
    let reader = identity(&mut w, &ed, "mcp:read", LIST);
    let out = filtered(&w, &reader, LIST, &tools()).expect("a tracked answer");
    assert_eq!(names(&out, "tools", "name"), ["whoami", "echo"]);
    assert_eq!(out["result"]["nextCursor"], "page-2", "pagination kept");
    assert_eq!(
        out["result"]["tools"][0]["inputSchema"],
        json!({}),
        "entries kept whole"
    );

    let admin = identity(&mut w, &ed, "mcp:read mcp:admin", LIST);
    let out = filtered(&w, &admin, LIST, &tools()).unwrap();
    assert_eq!(
        names(&out, "tools", "name"),
        ["whoami", "admin_reset", "echo"]
    );
    // The request side agrees: the same name is what may_call refuses.
    assert!(!w.gw.may_call(0, &reader, "tools/call", "admin_reset"));
    assert!(w.gw.may_call(0, &reader, "tools/call", "whoami"));
    assert!(w.gw.may_call(0, &admin, "tools/call", "admin_reset"));
}

#[test]
fn a_batch_is_filtered_entry_by_entry_and_other_answers_pass_untouched() {
    let (mut w, ed) = world();
    let batch = r#"[{"jsonrpc":"2.0","id":1,"method":"prompts/list"},{"jsonrpc":"2.0","id":"r","method":"resources/list"},{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"echo"}}]"#;
    let reader = identity(&mut w, &ed, "mcp:read", batch);
    let answers = json!([
        {"jsonrpc":"2.0","id":1,"result":{"prompts":[{"name":"hello"},{"name":"secret"}]}},
        {"jsonrpc":"2.0","id":"r","result":{"resources":[{"uri":"file:///public/a"},{"uri":"file:///private/b"}]}},
        {"jsonrpc":"2.0","id":3,"result":{"tools":[{"name":"admin_reset"}]}}
    ]);
    let out = filtered(&w, &reader, batch, &answers).unwrap();
    assert_eq!(names(&out[0], "prompts", "name"), ["hello"]);
    assert_eq!(names(&out[1], "resources", "uri"), ["file:///public/a"]);
    // Not the answer to a list request: left as it was.
    assert_eq!(out[2], answers[2]);
    // An SSE event answering none of the ids: None (the host passes it on as it is).
    let note = json!({"jsonrpc":"2.0","method":"notifications/message","params":{"data":"tick"}});
    let mut req = Request::new("POST", "https", "mcp.example.com", "/mcp", &[]);
    req.body = Body::Bytes(batch.as_bytes());
    let f = w.gw.list_filter(&req, &reader).unwrap();
    assert_eq!(f.len(), 2);
    assert!(f.filter(&w.gw, note.to_string().as_bytes()).is_none());
    assert!(f.filter(&w.gw, b"not json").is_none());
    let unrelated = json!({"jsonrpc":"2.0","id":99,"result":{"tools":[{"name":"admin_reset"}]}});
    assert!(f.filter(&w.gw, unrelated.to_string().as_bytes()).is_none());
}

#[test]
fn no_list_request_or_no_rules_means_no_filter() {
    let (mut w, ed) = world();
    let call = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}}"#;
    let reader = identity(&mut w, &ed, "mcp:read", call);
    let mut req = Request::new("POST", "https", "mcp.example.com", "/mcp", &[]);
    req.body = Body::Bytes(call.as_bytes());
    assert!(w.gw.list_filter(&req, &reader).is_none());

    let mut plain = World::standard(&ed);
    let id = identity(&mut plain, &ed, "mcp:read", LIST);
    let mut req = Request::new("POST", "https", "mcp.example.com", "/mcp", &[]);
    req.body = Body::Bytes(LIST.as_bytes());
    assert!(
        plain.gw.list_filter(&req, &id).is_none(),
        "no MCP rules: nothing to hide"
    );
}

#[test]
fn entries_without_a_name_are_not_shown() {
    let (mut w, ed) = world();
    let reader = identity(&mut w, &ed, "mcp:read", LIST);
    let answer = json!({"jsonrpc":"2.0","id":7,"result":{"tools":[{"name":"echo"},{"title":"nameless"},{"name":5}]}});
    let out = filtered(&w, &reader, LIST, &answer).unwrap();
    assert_eq!(names(&out, "tools", "name"), ["echo"]);
}
