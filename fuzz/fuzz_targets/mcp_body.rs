//! JSON-RPC bodies and MCP headers through the rule engine.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mcp_edge_auth_core::mcp::{check_headers, glob, needed_scopes, parse_body, Rule};

fuzz_target!(|data: (&[u8], Option<&str>, Option<&str>, &str, &str)| {
    let (body, m, n, pattern, text) = data;
    let _ = glob(pattern, text);
    let rules = [
        Rule { method: "tools/call".into(), name: Some(pattern.into()), scopes: vec!["a".into()] },
        Rule { method: "*".into(), name: None, scopes: vec!["b".into()] },
    ];
    if let Ok(msgs) = parse_body(body) {
        let _ = check_headers(&msgs, m, n);
        let _ = needed_scopes(&rules, &msgs);
    }
});
