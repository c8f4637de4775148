//! The core's strict base64 (`mcp_edge_auth_core::b64`): any text, never a panic; it accepts
//! exactly what the `base64` crate's strict engines accept (unpadded base64url; standard with
//! canonical padding), decodes it to the same bytes, and encodes those bytes back to the text.
#![no_main]
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use libfuzzer_sys::fuzz_target;
use mcp_edge_auth_core::b64;

fuzz_target!(|text: &str| {
    let url = b64::decode_url(text);
    assert_eq!(url, URL_SAFE_NO_PAD.decode(text).ok());
    if let Some(bytes) = &url {
        // Strict: the one spelling of these bytes is the text itself.
        assert_eq!(b64::encode_url(bytes), text);
    }
    let standard = b64::decode(text);
    assert_eq!(standard, STANDARD.decode(text).ok());
    if let Some(bytes) = &standard {
        assert_eq!(b64::encode(bytes), text);
    }
    // Any bytes (the text's own) encode as the crate encodes them.
    assert_eq!(b64::encode(text.as_bytes()), STANDARD.encode(text));
    assert_eq!(b64::encode_url(text.as_bytes()), URL_SAFE_NO_PAD.encode(text));
});
