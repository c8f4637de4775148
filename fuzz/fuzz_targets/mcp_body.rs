//! JSON-RPC bodies and the MCP 2026-07-28 request headers through the rule engine: any
//! bytes, never a panic; a request without `Mcp-*` headers and without a protocol version
//! (an older client) is never refused for its headers; decoding is strict (a value that
//! decodes is valid UTF-8 and re-encodes to the same bytes).
#![no_main]
use libfuzzer_sys::fuzz_target;
use mcp_edge_auth_core::mcp::{
    check_headers, decode_header_value, glob, needed_scopes, parse_body, Rule,
};
use mcp_edge_auth_core::Request;

fuzz_target!(
    |data: (&[u8], Option<&str>, Option<&str>, Option<&str>, &str, &str)| {
        let (body, method, name, version, pattern, text) = data;
        let _ = glob(pattern, text);
        for v in [method, name].into_iter().flatten() {
            if let Ok(decoded) = decode_header_value(v) {
                // Plain values come back as they are; encoded ones decode to UTF-8 text.
                assert!(v.starts_with("=?base64?") || decoded == v);
            }
        }
        let rules = [
            Rule {
                method: "tools/call".into(),
                name: Some(pattern.into()),
                scopes: vec!["a".into()],
            },
            Rule {
                method: "*".into(),
                name: None,
                scopes: vec!["b".into()],
            },
        ];
        let mut headers = Vec::new();
        if let Some(m) = method {
            headers.push(("mcp-method", m));
        }
        if let Some(n) = name {
            headers.push(("mcp-name", n));
        }
        if let Some(v) = version {
            headers.push(("mcp-protocol-version", v));
        }
        let req = Request::new("POST", "https", "h", "/mcp", &headers);
        if let Ok(msgs) = parse_body(body) {
            let verdict = check_headers(&msgs, &req);
            if headers.is_empty() {
                assert!(
                    verdict.is_ok(),
                    "an older client's request refused for headers it did not send"
                );
            }
            let _ = needed_scopes(&rules, &msgs);
        }
    }
);
