//! JWKS documents, through parsing and key installation with the default provider.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mcp_edge_auth_core::crypto::{default_provider, AlgSet};
use mcp_edge_auth_core::{Config, IssuerId, KeyStore};

const CONFIG: &str = r#"{"resources":[{"resource":"https://mcp.example.com/mcp","authorization_servers":["https://as.example.com"],
  "issuers":[{"issuer":"https://as.example.com","remote_jwks":{"http_uri":{"uri":"https://as.example.com/jwks","cluster":"as"}}}]}]}"#;

fuzz_target!(|data: &[u8]| {
    let _ = mcp_edge_auth_core::jwks::parse(data, AlgSet::all());
    let config = Config::from_json(CONFIG.as_bytes()).expect("fixed config");
    let mut keys = KeyStore::new(&config, Box::new(default_provider())).expect("fixed config");
    let _ = keys.install_jwks(
        IssuerId(0),
        data,
        std::str::from_utf8(data).ok(),
        1_800_000_000,
    );
});
