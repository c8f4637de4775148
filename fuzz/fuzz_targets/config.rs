//! The configuration: any bytes are either a valid config or an error naming a field.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(c) = mcp_edge_auth_core::Config::from_json(data) {
        let _ = mcp_edge_auth_core::KeyStore::new(
            &c,
            Box::new(mcp_edge_auth_core::crypto::default_provider()),
        );
    }
});
