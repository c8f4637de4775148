//! The `Authorization` header and query stripping: any bytes, never a panic; whatever is
//! returned as a token is token68.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mcp_edge_auth_core::bearer::{extract, is_token68, strip_query_token, Bearer};
use mcp_edge_auth_core::Request;

fuzz_target!(|data: (&str, &str, bool)| {
    let (value, path, twice) = data;
    let headers = [("authorization", value), ("Authorization", value)];
    let h = if twice { &headers[..] } else { &headers[..1] };
    let req = Request::new("GET", "https", "h", path, h);
    if let Bearer::Token(t) = extract(&req) {
        assert!(!twice);
        assert!(is_token68(t));
    }
    if let Some(p) = strip_query_token(path) {
        // The query starts at the first `?` (RFC 3986 §3.4): later ones are query text.
        let query = p.split_once('?').map_or("", |(_, q)| q);
        assert!(!query
            .split('&')
            .any(|kv| kv == "access_token" || kv.starts_with("access_token=")));
    }
});
