//! Per-caller discovery on any upstream answer: any bytes, as JSON or as an event stream, in
//! any chunking. Never a panic; what the client gets never shows it a hidden entry: in the
//! first answer to each tracked list request (as a JSON parser reads it, last duplicate
//! winning), no tool named `admin_*` and no prompt named `secret`; and an answer that
//! `serde_json` reads is never refused as malformed.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mcp_edge_auth_core::lists::Unfilterable;
use mcp_edge_auth_core::{Body, Config, Gateway, Identity, Request};
use serde_json::{json, Value};

const CONFIG: &str = r#"{"resources":[
 {"resource":"https://mcp.example.com/mcp","authorization_servers":["https://as.example.com"],
  "issuers":[{"issuer":"https://as.example.com",
    "introspection":{"http_uri":{"uri":"https://as.example.com/introspect"},"client_id":"gw","client_secret":"s"}}],
  "mcp":{"max_list_bytes":4096,"rules":[
    {"method":"tools/call","name":"admin_*","scopes":["mcp:admin"]},
    {"method":"prompts/get","name":"secret","scopes":["mcp:admin"]}]}}
]}"#;

/// The tracked requests: (id, the result member, the hidden name test).
fn tracked(batch: bool) -> Vec<(Value, &'static str)> {
    if batch {
        vec![(json!(1), "tools"), (json!("p"), "prompts")]
    } else {
        vec![(json!(7), "tools")]
    }
}

fn hidden(member: &str, name: &str) -> bool {
    match member {
        "tools" => name.starts_with("admin_"),
        _ => name == "secret",
    }
}

/// Checks one JSON text the client reads; `seen` holds the ids already answered.
fn check(text: &[u8], batch: bool, seen: &mut Vec<Value>) {
    let Ok(v) = serde_json::from_slice::<Value>(text) else {
        return;
    };
    let items = match v {
        Value::Array(a) => a,
        one => vec![one],
    };
    for item in items {
        let Some(id) = item.get("id") else { continue };
        let Some((_, member)) = tracked(batch).into_iter().find(|(t, _)| t == id) else {
            continue;
        };
        if seen.contains(id) {
            continue;
        }
        seen.push(id.clone());
        let entries = item
            .get("result")
            .and_then(|r| r.get(member))
            .and_then(Value::as_array);
        for e in entries.into_iter().flatten() {
            if let Some(n) = e.get("name").and_then(Value::as_str) {
                assert!(!hidden(member, n), "hidden {member} entry shown: {n}");
            }
        }
    }
}

/// The events of a stream as a client dispatches them (LF, CRLF or CR line ends; an
/// incomplete last event dropped): their data.
fn events(bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut data: Option<Vec<u8>> = None;
    let mut rest = bytes;
    loop {
        let Some(i) = rest.iter().position(|b| *b == b'\n' || *b == b'\r') else {
            break;
        };
        let line = &rest[..i];
        let skip = if rest[i] == b'\r' && rest.get(i + 1) == Some(&b'\n') { 2 } else { 1 };
        rest = &rest[i + skip..];
        if line.is_empty() {
            if let Some(d) = data.take() {
                out.push(d);
            }
            continue;
        }
        let (field, value) = match line.iter().position(|b| *b == b':') {
            Some(c) => (&line[..c], &line[c + 1..]),
            None => (line, &[][..]),
        };
        if field == b"data" {
            let value = value.strip_prefix(b" ").unwrap_or(value);
            match &mut data {
                Some(d) => {
                    d.push(b'\n');
                    d.extend_from_slice(value);
                }
                None => data = Some(value.to_vec()),
            }
        }
    }
    out
}

fn depth(v: &Value) -> usize {
    match v {
        Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        Value::Object(o) => 1 + o.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

fuzz_target!(|data: (bool, bool, u8, &[u8])| {
    let (sse, batch, chunk, answer) = data;
    let gateway = Gateway::new(Config::from_json(CONFIG.as_bytes()).unwrap());
    let request = if batch {
        r#"[{"jsonrpc":"2.0","id":1,"method":"tools/list"},{"jsonrpc":"2.0","id":"p","method":"prompts/list"}]"#
    } else {
        r#"{"jsonrpc":"2.0","id":7,"method":"tools/list"}"#
    };
    let mut req = Request::new("POST", "https", "mcp.example.com", "/mcp", &[]);
    req.body = Body::Bytes(request.as_bytes());
    let identity = std::sync::Arc::new(Identity {
        scopes: vec!["mcp:read".into()],
        ..Identity::default()
    });
    let filter = gateway.list_filter(&req, &identity).expect("list requests are tracked");
    let content_type = if sse { "text/event-stream" } else { "application/json" };
    let (mut body, _) = filter
        .open(200, &[("content-type", content_type)])
        .expect("a 200 JSON or SSE answer is filtered");
    let mut out = Vec::new();
    let size = usize::from(chunk).max(1);
    for c in answer.chunks(size) {
        body.push(&gateway, c, &mut out);
    }
    body.finish(&gateway, &mut out);
    let mut seen = Vec::new();
    if sse {
        for e in events(&out) {
            check(&e, batch, &mut seen);
        }
    } else {
        check(&out, batch, &mut seen);
        if let Ok(v) = serde_json::from_slice::<Value>(answer) {
            if depth(&v) < 100 && answer.len() <= 4096 {
                assert_ne!(body.refused(), Some(Unfilterable::Malformed), "valid JSON refused");
            }
        }
    }
});
