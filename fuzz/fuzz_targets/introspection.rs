//! Introspection answers: whatever the endpoint says, never a panic, and an inactive or
//! non-200 answer never forwards.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mcp_edge_auth_core::crypto::DeferredProvider;
use mcp_edge_auth_core::{Config, Gateway, KeyStore, Request, Verdict};

const CONFIG: &str = r#"{"resources":[{"resource":"https://mcp.example.com/mcp","authorization_servers":["https://as.example.com"],
  "issuers":[{"issuer":"https://as.example.com","introspection":{"http_uri":{"uri":"https://as.example.com/i"},"client_id":"gw","client_secret":"s"}}]}]}"#;

fuzz_target!(|data: (u16, &[u8], u64)| {
    let (status, body, now) = data;
    let config = Config::from_json(CONFIG.as_bytes()).expect("fixed config");
    let keys = KeyStore::new(&config, Box::new(DeferredProvider)).expect("fixed config");
    let gw = Gateway::new(config);
    let mut cache = gw.new_cache();
    let headers = [("authorization", "Bearer opaque")];
    let req = Request::new("GET", "https", "mcp.example.com", "/mcp", &headers);
    let Verdict::Introspect(job) = gw.decide(&req, now, &keys, &mut cache) else {
        panic!("introspection expected")
    };
    if let mcp_edge_auth_core::Decision::Forward(_) =
        gw.resume_introspection(job, Some((status, body)), now, &mut cache)
    {
        assert_eq!(status, 200);
        let v: serde_json::Value = serde_json::from_slice(body).expect("forwarded on JSON only");
        assert_eq!(v["active"], serde_json::Value::Bool(true));
    }
});
