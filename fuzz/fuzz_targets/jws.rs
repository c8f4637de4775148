//! Compact JWS parsing: segments, base64url, header and payload JSON.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|token: &str| {
    if let Ok(j) = mcp_edge_auth_core::jws::parse(token) {
        assert!(token.starts_with(j.signing_input));
        assert!(!j.signature.is_empty());
    }
});
