//! The MCP 2026-07-28 standard request headers (`Mcp-Method`, `Mcp-Name`) against the body:
//! base64 sentinel decoding, required headers by protocol version, the JSON-RPC
//! `HeaderMismatch` answer, and older clients unchanged.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::*;
use mcp_edge_auth_core::mcp::{decode_header_value, requires_headers, HeaderError};
use mcp_edge_auth_core::{Reason, Response};
use serde_json::{json, Value};

fn world() -> (World, String) {
    let e = Ed::new(1, "k-ed");
    let rules = json!({"mcp": {"rules": [
        {"method": "tools/call", "name": "admin_*", "scopes": ["mcp:admin"]}
    ]}});
    let w = World::new(&config(&[e.jwk()], &[Ed::new(9, "o").jwk()], rules));
    let t = format!("Bearer {}", e.token(json!({"scope": "mcp:read mcp:admin"})));
    (w, t)
}

fn call(tool: &str) -> String {
    json!({"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name": tool}}).to_string()
}

fn b64(s: &str) -> String {
    use base64::Engine as _;
    format!(
        "=?base64?{}?=",
        base64::engine::general_purpose::STANDARD.encode(s)
    )
}

/// Asserts the JSON-RPC HeaderMismatch answer, with the request's id.
fn mismatch(r: &Response, id: Value) {
    assert_eq!((r.status, r.reason), (400, Reason::BadBody), "{r:?}");
    assert_eq!(r.header("content-type"), Some("application/json"));
    let v: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["jsonrpc"], "2.0");
    assert_eq!(v["id"], id);
    assert_eq!(v["error"]["code"], -32020);
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("Header mismatch"));
    assert!(r.header("www-authenticate").is_none());
}

#[test]
fn an_encoded_name_is_decoded_before_the_comparison() {
    let (mut w, t) = world();
    let v = "2026-07-28";
    let h = |name: &str| {
        vec![
            ("authorization".to_string(), t.clone()),
            ("mcp-protocol-version".to_string(), v.to_string()),
            ("mcp-method".to_string(), "tools/call".to_string()),
            ("mcp-name".to_string(), name.to_string()),
        ]
    };
    let post = |w: &mut World, hs: &[(String, String)], body: &str| {
        let hs: Vec<(&str, &str)> = hs.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        w.post("/mcp", &hs, body)
    };
    forward(post(&mut w, &h(&b64("echo")), &call("echo")));
    forward(post(&mut w, &h(&b64("héllo")), &call("héllo")));
    forward(post(&mut w, &h("echo"), &call("echo")));
    // Encoded, but of another name: mismatch. Encoded step-up target: scopes still from the body.
    mismatch(
        &respond(post(&mut w, &h(&b64("echo")), &call("admin_reset"))),
        json!(7),
    );
    // Markers are case-sensitive: an upper-case sentinel is a plain (non-matching) value.
    let upper = b64("echo").replace("base64", "BASE64");
    mismatch(&respond(post(&mut w, &h(&upper), &call("echo"))), json!(7));
    // Not base64, or not UTF-8: refused.
    mismatch(
        &respond(post(&mut w, &h("=?base64?not base64!?="), &call("echo"))),
        json!(7),
    );
    let not_utf8 = {
        use base64::Engine as _;
        format!(
            "=?base64?{}?=",
            base64::engine::general_purpose::STANDARD.encode([0xff, 0xfe])
        )
    };
    mismatch(
        &respond(post(&mut w, &h(&not_utf8), &call("echo"))),
        json!(7),
    );
}

#[test]
fn decoding_is_strict_and_bounded() {
    assert_eq!(decode_header_value("plain").unwrap(), "plain");
    assert_eq!(decode_header_value("=?base64?ZWNobw==?=").unwrap(), "echo");
    assert_eq!(
        decode_header_value("=?base64?SGVsbG8sIOS4lueVjA==?=").unwrap(),
        "Hello, 世界"
    );
    assert_eq!(
        decode_header_value("=?base64?PT9iYXNlNjQ/bGl0ZXJhbD89?=").unwrap(),
        "=?base64?literal?="
    );
    for bad in [
        "=?base64?ZWNobw?=",
        "=?base64?ZWNobw=?=",
        "=?base64?ZW=Nobw==?=",
        "=?base64?ZWNob x==?=",
        "=?base64?_-8=?=",
    ] {
        assert_eq!(
            decode_header_value(bad),
            Err(HeaderError::BadEncoding),
            "{bad}"
        );
    }
    assert_eq!(
        decode_header_value("=?base64?//4=?="),
        Err(HeaderError::BadEncoding),
        "0xff 0xfe is not UTF-8"
    );
    let huge = format!("=?base64?{}?=", "A".repeat(9000));
    assert_eq!(decode_header_value(&huge), Err(HeaderError::TooLarge));
}

#[test]
fn the_protocol_version_decides_what_is_required() {
    assert!(requires_headers(Some("2026-07-28")));
    assert!(requires_headers(Some("2027-01-01")));
    for v in [
        None,
        Some("2025-06-18"),
        Some("2025-11-25"),
        Some("draft"),
        Some("2026-7-28"),
        Some(""),
    ] {
        assert!(!requires_headers(v), "{v:?}");
    }
    let (mut w, t) = world();
    let body = call("echo");
    // 2026-07-28 without Mcp-Method: refused; without Mcp-Name on tools/call: refused.
    let r = respond(w.post(
        "/mcp",
        &[
            ("authorization", &t),
            ("mcp-protocol-version", "2026-07-28"),
        ],
        &body,
    ));
    mismatch(&r, json!(7));
    let r = respond(w.post(
        "/mcp",
        &[
            ("authorization", &t),
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/call"),
        ],
        &body,
    ));
    mismatch(&r, json!(7));
    // tools/list needs no Mcp-Name.
    let list = json!({"jsonrpc":"2.0","id":"a","method":"tools/list"}).to_string();
    forward(w.post(
        "/mcp",
        &[
            ("authorization", &t),
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/list"),
        ],
        &list,
    ));
    // A notification needs no header (the revision defines none for notification POSTs).
    let note = json!({"jsonrpc":"2.0","method":"notifications/initialized"}).to_string();
    forward(w.post(
        "/mcp",
        &[
            ("authorization", &t),
            ("mcp-protocol-version", "2026-07-28"),
        ],
        &note,
    ));
    // Older clients: the same request without the headers passes, exactly as before.
    for old in ["2025-06-18", "2025-11-25"] {
        forward(w.post(
            "/mcp",
            &[("authorization", &t), ("mcp-protocol-version", old)],
            &body,
        ));
    }
    forward(w.post("/mcp", &[("authorization", &t)], &body));
    // …but what an old client does send must still match.
    let r = respond(w.post(
        "/mcp",
        &[
            ("authorization", &t),
            ("mcp-protocol-version", "2025-06-18"),
            ("mcp-method", "tools/list"),
        ],
        &body,
    ));
    mismatch(&r, json!(7));
}

#[test]
fn oversized_or_repeated_headers_are_refused_before_decoding() {
    let (mut w, t) = world();
    let big = "x".repeat(8193);
    let r = respond(w.post(
        "/mcp",
        &[("authorization", &t), ("mcp-name", &big)],
        &call("echo"),
    ));
    mismatch(&r, json!(7));
    let r = respond(w.post(
        "/mcp",
        &[
            ("authorization", &t),
            ("mcp-name", "echo"),
            ("mcp-name", "echo"),
        ],
        &call("echo"),
    ));
    mismatch(&r, json!(7));
    // An id that is neither a string nor a number is answered with null.
    let body = json!({"jsonrpc":"2.0","id":{"x":1},"method":"tools/call","params":{"name":"echo"}})
        .to_string();
    let r = respond(w.post(
        "/mcp",
        &[("authorization", &t), ("mcp-method", "tools/list")],
        &body,
    ));
    mismatch(&r, Value::Null);
    // Mcp-Param-* headers are not the gateway's: forwarded untouched.
    let f = forward(w.post(
        "/mcp",
        &[
            ("authorization", &t),
            ("mcp-param-region", "=?base64?bad?="),
            ("mcp-method", "tools/call"),
            ("mcp-name", "echo"),
        ],
        &call("echo"),
    ));
    assert!(!f.remove_headers.iter().any(|h| h.starts_with("mcp-param")));
}
