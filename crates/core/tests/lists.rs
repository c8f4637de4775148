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
use mcp_edge_auth_core::lists::{private_cache_control, ListBody, ListFilter, Shape, Unfilterable};
use mcp_edge_auth_core::{Body, Identity, Request, Verdict};
use serde_json::{json, Value};
use std::sync::Arc;

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
fn identity(w: &mut World, ed: &Ed, scope: &str, body: &str) -> Arc<Identity> {
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

/// The list filter of a forwarded POST carrying `request`.
fn filter_of(w: &World, id: &Arc<Identity>, request: &str) -> Option<ListFilter> {
    let mut req = Request::new("POST", "https", "mcp.example.com", "/mcp", &[]);
    req.body = Body::Bytes(request.as_bytes());
    w.gw.list_filter(&req, id)
}

/// What the client gets when the upstream answers `chunks` with `content_type`.
fn run(w: &World, f: ListFilter, content_type: &str, chunks: &[&[u8]]) -> (Vec<u8>, ListBody) {
    let mut body = f
        .response(200, Some(content_type), None)
        .expect("a filtered answer");
    let mut out = Vec::new();
    for c in chunks {
        body.push(&w.gw, c, &mut out);
    }
    body.finish(&w.gw, &mut out);
    (out, body)
}

/// A JSON answer to `request`, filtered for `id`.
fn filtered(w: &World, id: &Arc<Identity>, request: &str, response: &Value) -> Value {
    let f = filter_of(w, id, request).expect("a list request");
    let bytes = response.to_string();
    let (out, _) = run(w, f, "application/json", &[bytes.as_bytes()]);
    serde_json::from_slice(&out).unwrap()
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
    let out = filtered(&w, &reader, LIST, &tools());
    assert_eq!(names(&out, "tools", "name"), ["whoami", "echo"]);
    assert_eq!(out["result"]["nextCursor"], "page-2", "pagination kept");
    assert_eq!(
        out["result"]["tools"][0]["inputSchema"],
        json!({}),
        "entries kept whole"
    );

    let admin = identity(&mut w, &ed, "mcp:read mcp:admin", LIST);
    let out = filtered(&w, &admin, LIST, &tools());
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
    let out = filtered(&w, &reader, batch, &answers);
    assert_eq!(names(&out[0], "prompts", "name"), ["hello"]);
    assert_eq!(names(&out[1], "resources", "uri"), ["file:///public/a"]);
    // Not the answer to a list request: left as it was.
    assert_eq!(out[2], answers[2]);
    // Answers to none of the ids pass byte for byte.
    let f = filter_of(&w, &reader, batch).unwrap();
    assert_eq!(f.len(), 2);
    let unrelated =
        json!({"jsonrpc":"2.0","id":99,"result":{"tools":[{"name":"admin_reset"}]}}).to_string();
    let (out, body) = run(&w, f, "application/json", &[unrelated.as_bytes()]);
    assert_eq!(out, unrelated.as_bytes());
    assert_eq!(body.hidden(), 0);
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
    let out = filtered(&w, &reader, LIST, &answer);
    assert_eq!(names(&out, "tools", "name"), ["echo"]);
}

const NOTE: &str = "event: message\nid: 1\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"params\":{\"data\":\"tick\"}}\n\n";

#[test]
fn an_event_stream_is_rewritten_event_by_event_and_other_events_pass_at_once() {
    let (mut w, ed) = world();
    let reader = identity(&mut w, &ed, "mcp:read", LIST);
    let f = filter_of(&w, &reader, LIST).unwrap();
    let mut body = f
        .response(200, Some("text/event-stream; charset=utf-8"), None)
        .unwrap();
    assert_eq!(body.shape(), Shape::EventStream);
    assert!(!body.holds_headers(), "a stream is never held");
    let mut out = Vec::new();
    // A notification before the answer, byte by byte: it goes on as soon as its blank line is in.
    for (i, b) in NOTE.as_bytes().iter().enumerate() {
        body.push(&w.gw, core::slice::from_ref(b), &mut out);
        if i + 1 < NOTE.len() {
            assert!(out.is_empty(), "nothing before the event is complete");
        }
    }
    assert_eq!(out, NOTE.as_bytes(), "another event passes unchanged");
    out.clear();
    // The answer, with CRLF line ends and its JSON over two data lines.
    let answer = tools().to_string();
    let (a, b) = answer.split_at(answer.find("\"result\"").unwrap());
    let event = format!("event: message\r\nid: 2\r\ndata: {a}\r\ndata: {b}\r\n\r\n");
    let (first, second) = event.as_bytes().split_at(10);
    body.push(&w.gw, first, &mut out);
    assert!(out.is_empty());
    body.push(&w.gw, second, &mut out);
    let text = String::from_utf8(out.clone()).unwrap();
    assert!(text.starts_with("event: message\nid: 2\ndata: "), "{text}");
    assert!(text.ends_with("\n\n"));
    // As a client reads it: the data lines joined with LF.
    let joined: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .collect();
    assert_eq!(
        joined.len(),
        2,
        "the JSON's own line break kept as two data lines: {text}"
    );
    let data: Value = serde_json::from_str(&joined.join("\n")).unwrap();
    assert_eq!(names(&data, "tools", "name"), ["whoami", "echo"]);
    assert_eq!(body.hidden(), 1);
    // Answered: the rest passes untouched, even what looks like a list.
    assert!(body.is_passing());
    out.clear();
    let later = format!("data: {}\n\n", tools());
    body.push(&w.gw, later.as_bytes(), &mut out);
    body.finish(&w.gw, &mut out);
    assert_eq!(out, later.as_bytes());
}

#[test]
fn what_cannot_be_filtered_is_answered_with_errors_never_forwarded() {
    let (mut w, ed) = world();
    let reader = identity(&mut w, &ed, "mcp:read", LIST);
    let small = json!({"mcp": {"max_list_bytes": 1024, "rules": [
        {"method": "tools/call", "name": "admin_*", "scopes": ["mcp:admin"]}
    ]}});
    let mut tiny = World::new(&config(&[ed.jwk()], &[Ed::new(98, "k-o").jwk()], small));
    let reader_tiny = identity(&mut tiny, &ed, "mcp:read", LIST);
    let big = json!({"jsonrpc":"2.0","id":7,"result":{"tools":
        (0..100).map(|i| json!({"name": format!("tool_{i}"), "description": "x".repeat(20)})).collect::<Vec<_>>()
    }})
    .to_string();
    // JSON over the limit, in chunks: one error for the request, nothing of the list.
    let f = filter_of(&tiny, &reader_tiny, LIST).unwrap();
    let chunks: Vec<&[u8]> = big.as_bytes().chunks(300).collect();
    let (out, body) = run(&tiny, f, "application/json", &chunks);
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["id"], 7);
    assert_eq!(v["error"]["code"], -32603);
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("max_list_bytes"));
    assert!(!String::from_utf8_lossy(&out).contains("tool_1"));
    assert_eq!(body.refused(), Some(Unfilterable::TooLarge));
    // The host's log line, once: why and the setting, nothing of the answer.
    let mut body = body;
    let line = body.take_refusal().unwrap();
    assert!(
        line.contains("too_large") && line.contains("mcp.max_list_bytes (1024)"),
        "{line}"
    );
    assert!(!line.contains("tool_"), "{line}");
    assert_eq!(body.take_refusal(), None, "reported once");
    // The same as one SSE event: an error event, and the rest of the stream dropped.
    let f = filter_of(&tiny, &reader_tiny, LIST).unwrap();
    let event = format!("event: message\ndata: {big}\n\n");
    let (out, _) = run(
        &tiny,
        f,
        "text/event-stream",
        &[NOTE.as_bytes(), event.as_bytes(), NOTE.as_bytes()],
    );
    let text = String::from_utf8(out).unwrap();
    assert!(text.starts_with(NOTE), "events before it went on");
    let rest = text.strip_prefix(NOTE).unwrap();
    assert!(rest.starts_with("event: message\ndata: {"), "{rest}");
    assert!(
        rest.contains("\"code\":-32603") && rest.contains("\"id\":7"),
        "{rest}"
    );
    assert_eq!(
        rest.matches("\n\n").count(),
        1,
        "nothing after the error: {rest}"
    );

    // A batch over the limit: an error per list request, as a batch.
    let batch = r#"[{"jsonrpc":"2.0","id":1,"method":"tools/list"},{"jsonrpc":"2.0","id":2,"method":"prompts/list"}]"#;
    let f = filter_of(&tiny, &reader_tiny, batch).unwrap();
    let (out, _) = run(&tiny, f, "application/json", &[big.as_bytes()]);
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 2);
    assert_eq!(
        (v[0]["id"].clone(), v[1]["id"].clone()),
        (json!(1), json!(2))
    );

    // Compressed: refused, and the plain errors lose the encoding header.
    let f = filter_of(&w, &reader, LIST).unwrap();
    let mut body = f
        .response(200, Some("application/json"), Some("gzip"))
        .unwrap();
    let edits = body.header_edits(None);
    assert!(edits.remove.contains(&"content-encoding") && edits.remove.contains(&"content-length"));
    let mut out = Vec::new();
    body.push(&w.gw, b"\x1f\x8b compressed", &mut out);
    body.finish(&w.gw, &mut out);
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(
        (v["id"].clone(), v["error"]["code"].clone()),
        (json!(7), json!(-32603))
    );
    assert_eq!(body.refused(), Some(Unfilterable::Encoded));

    // Not JSON: refused too.
    let f = filter_of(&w, &reader, LIST).unwrap();
    let (out, body) = run(&w, f, "application/json", &[b"{\"jsonrpc\": "]);
    assert_eq!(body.refused(), Some(Unfilterable::Malformed));
    assert_eq!(serde_json::from_slice::<Value>(&out).unwrap()["id"], 7);
    let mut body = body;
    assert!(body.take_refusal().unwrap().contains("not valid JSON"));

    // A filtered answer has nothing to report.
    let f = filter_of(&w, &reader, LIST).unwrap();
    let answer = tools().to_string();
    let (_, mut body) = run(&w, f, "application/json", &[answer.as_bytes()]);
    assert_eq!(body.hidden(), 1);
    assert_eq!(body.take_refusal(), None);
}

#[test]
fn only_200_json_and_event_streams_are_filtered_and_answers_turn_private() {
    let (mut w, ed) = world();
    let reader = identity(&mut w, &ed, "mcp:read", LIST);
    let f = || filter_of(&w, &reader, LIST).unwrap();
    assert!(f().response(202, Some("application/json"), None).is_none());
    assert!(f().response(500, Some("application/json"), None).is_none());
    assert!(f().response(200, Some("text/plain"), None).is_none());
    assert!(f().response(200, None, None).is_none());
    let body = f()
        .response(
            200,
            Some("Application/JSON; charset=utf-8"),
            Some("identity"),
        )
        .unwrap();
    assert!(body.holds_headers());
    let edits = body.header_edits(Some("public, max-age=60"));
    assert_eq!(edits.remove, &["content-length"]);
    assert_eq!(edits.cache_control, "private, max-age=60");
    assert_eq!(private_cache_control(None), "private");
    assert_eq!(private_cache_control(Some("no-store")), "no-store");
    assert_eq!(
        private_cache_control(Some("s-maxage=5, no-cache")),
        "private, no-cache"
    );
    assert_eq!(
        private_cache_control(Some("private, max-age=1")),
        "private, max-age=1"
    );
}

#[test]
fn a_list_request_asks_the_upstream_for_identity_encoding_and_filter_lists_false_turns_it_off() {
    let (mut w, ed) = world();
    let t = ed.token(json!({"scope": "mcp:read"}));
    let auth = format!("Bearer {t}");
    let h = [
        ("authorization", auth.as_str()),
        ("accept-encoding", "gzip, br"),
    ];
    let forward = |w: &mut World, body: &str| {
        let mut req = Request::new("POST", "https", "mcp.example.com", "/mcp", &h);
        req.body = Body::Bytes(body.as_bytes());
        match w.gw.decide(&req, NOW, &w.keys, &mut w.cache) {
            Verdict::Forward(f) => f,
            other => panic!("{other:?}"),
        }
    };
    let f = forward(&mut w, LIST);
    assert!(f.remove_headers.iter().any(|h| h == "accept-encoding"));
    assert!(f
        .add_headers
        .iter()
        .any(|(n, v)| n == "accept-encoding" && v == "identity"));
    let call = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}}"#;
    let f = forward(&mut w, call);
    assert!(
        !f.remove_headers.iter().any(|h| h == "accept-encoding"),
        "not a list: compression kept"
    );

    let off = json!({"mcp": {"filter_lists": false, "rules": [
        {"method": "tools/call", "name": "admin_*", "scopes": ["mcp:admin"]}
    ]}});
    let mut w = World::new(&config(&[ed.jwk()], &[Ed::new(98, "k-o").jwk()], off));
    let f = forward(&mut w, LIST);
    assert!(!f.remove_headers.iter().any(|h| h == "accept-encoding"));
    let reader = f.identity.unwrap();
    assert!(
        filter_of(&w, &reader, LIST).is_none(),
        "filter_lists: false"
    );
}

#[test]
fn entries_are_cut_out_of_the_upstream_bytes_and_tricks_do_not_show_a_hidden_tool() {
    let (mut w, ed) = world();
    let reader = identity(&mut w, &ed, "mcp:read", LIST);
    let run_json = |w: &World, text: &str| {
        let f = filter_of(w, &reader, LIST).unwrap();
        let (out, body) = run(w, f, "application/json", &[text.as_bytes()]);
        (String::from_utf8(out).unwrap(), body)
    };
    // Formatting, member order and odd strings are kept byte for byte; only the entry goes.
    let text = "{ \"result\" : {\"tools\": [ {\"name\":\"echo\",\"description\":\"a ] } \\\" , [ trap\"} ,\n {\"description\":\"x\", \"name\":\"admin_reset\"}, {\"name\":\"add\"} ], \"nextCursor\": \"c\"},\n \"jsonrpc\":\"2.0\", \"id\" : 7 }";
    let (out, body) = run_json(&w, text);
    assert_eq!(
        out,
        "{ \"result\" : {\"tools\": [{\"name\":\"echo\",\"description\":\"a ] } \\\" , [ trap\"},{\"name\":\"add\"}], \"nextCursor\": \"c\"},\n \"jsonrpc\":\"2.0\", \"id\" : 7 }"
    );
    assert_eq!(body.hidden(), 1);
    // A name written with escapes is the name it decodes to.
    let (out, _) = run_json(
        &w,
        r#"{"jsonrpc":"2.0","id":7,"result":{"tools":[{"n\u0061me":"admin\u005freset"},{"name":"echo"}]}}"#,
    );
    assert!(!out.contains("admin"), "{out}");
    // A duplicate name: hidden unless every copy may be used.
    let (out, _) = run_json(
        &w,
        r#"{"jsonrpc":"2.0","id":7,"result":{"tools":[{"name":"echo","name":"admin_reset"}]}}"#,
    );
    assert!(!out.contains("admin_reset"), "{out}");
    // A second `result` (parsers take the last one) and a second `tools`: both filtered.
    let (out, _) = run_json(
        &w,
        r#"{"jsonrpc":"2.0","id":7,"result":{"tools":[]},"result":{"tools":[{"name":"echo"}],"tools":[{"name":"admin_reset"}]}}"#,
    );
    assert!(!out.contains("admin_reset"), "{out}");
    // The id written differently but equal as JSON (7 vs "7" are not equal): untouched only when not ours.
    let (out, _) = run_json(
        &w,
        r#"{"jsonrpc":"2.0","id":"7","result":{"tools":[{"name":"admin_reset"}]}}"#,
    );
    assert!(
        out.contains("admin_reset"),
        "another request's answer: {out}"
    );
    // Not JSON, or nested past the parser's limit: refused, never forwarded.
    for bad in [
        r#"{"jsonrpc":"2.0","id":7,"result":{"tools":[{"name":"admin_reset"}]}"#.to_string(),
        r#"{"jsonrpc":"2.0","id":7,"result":{"tools":[{"name":"admin_reset"}]}} x"#.to_string(),
        format!(
            r#"{{"jsonrpc":"2.0","id":7,"result":{{"tools":[{{"name":"admin_reset","x":{}1{}}}]}}}}"#,
            "[".repeat(200),
            "]".repeat(200)
        ),
    ] {
        let (out, body) = run_json(&w, &bad);
        assert_eq!(body.refused(), Some(Unfilterable::Malformed), "{bad}");
        assert!(!out.contains("admin_reset"));
    }
}

#[test]
fn resource_templates_are_filtered_by_the_resources_read_rule_naming_them() {
    let (mut w, ed) = world();
    let req = r#"{"jsonrpc":"2.0","id":3,"method":"resources/templates/list"}"#;
    let reader = identity(&mut w, &ed, "mcp:read", req);
    let answer = json!({"jsonrpc":"2.0","id":3,"result":{"resourceTemplates":[
        {"uriTemplate":"file:///public/{name}","name":"public"},
        {"uriTemplate":"file:///private/{name}","name":"private"}
    ]}});
    let out = filtered(&w, &reader, req, &answer);
    assert_eq!(
        names(&out, "resourceTemplates", "uriTemplate"),
        ["file:///public/{name}"]
    );
    let admin = identity(&mut w, &ed, "mcp:read mcp:admin", req);
    let out = filtered(&w, &admin, req, &answer);
    assert_eq!(
        out["result"]["resourceTemplates"].as_array().unwrap().len(),
        2
    );
}
