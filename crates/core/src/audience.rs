//! The audience rule (RFC 8707 resource indicators, RFC 9068 §4, MCP token handling).
//!
//! A token must name this resource in `aud` (a string, or an array of strings). Comparison
//! is exact after the only normalisations the reference allows: lowercase scheme and host,
//! default port dropped, and optionally an origin with and without trailing `/` made equal
//! ([`crate::uri::audience_form`]). Never a prefix match, never percent-decoding, never
//! dot-segment resolution, never path case-folding: each would let a token minted for a
//! neighbouring resource in.

use serde_json::Value;

use crate::uri::audience_form;

/// Outcome of the audience check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    /// One of the accepted audiences is named.
    Accepted,
    /// `aud` is missing, empty, or names only other resources.
    NotForUs,
    /// `aud` is neither a string nor an array of strings.
    Malformed,
}

/// Checks `aud` against the accepted audiences (already in [`audience_form`]).
pub fn check(
    aud: Option<&Value>,
    accepted: &[alloc::string::String],
    fold_origin_slash: bool,
) -> Audience {
    // An `aud` spelled exactly as an accepted form needs no normalising: the form of a
    // form is itself (`uri::tests::audience_form_is_idempotent`). Most tokens name the
    // resource so, and this spares them a parse and an allocation.
    let is_ours = |s: &str| {
        accepted.iter().any(|a| a == s) || accepted.contains(&audience_form(s, fold_origin_slash))
    };
    match aud {
        None => Audience::NotForUs,
        Some(Value::String(s)) => {
            if is_ours(s) {
                Audience::Accepted
            } else {
                Audience::NotForUs
            }
        }
        Some(Value::Array(items)) => {
            if !items.iter().all(Value::is_string) {
                return Audience::Malformed;
            }
            if items.iter().filter_map(Value::as_str).any(is_ours) {
                Audience::Accepted
            } else {
                Audience::NotForUs
            }
        }
        Some(_) => Audience::Malformed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::String;
    use alloc::vec;
    use serde_json::json;

    fn ours() -> alloc::vec::Vec<String> {
        vec![audience_form("https://mcp.example.com/mcp", true)]
    }

    #[test]
    fn audience_rule() {
        let a = ours();
        let c = |v: Value| check(Some(&v), &a, true);
        assert_eq!(c(json!("https://mcp.example.com/mcp")), Audience::Accepted);
        assert_eq!(c(json!("https://MCP.EXAMPLE.COM/mcp")), Audience::Accepted);
        assert_eq!(
            c(json!("HTTPS://mcp.example.com:443/mcp")),
            Audience::Accepted
        );
        assert_eq!(
            c(json!(["https://other", "https://mcp.example.com/mcp"])),
            Audience::Accepted
        );
        assert_eq!(c(json!("https://mcp.example.com/MCP")), Audience::NotForUs);
        assert_eq!(c(json!("https://mcp.example.com/mcp/")), Audience::NotForUs);
        assert_eq!(c(json!("https://mcp.example.com/mc")), Audience::NotForUs);
        assert_eq!(c(json!("https://mcp.example.com/mcpx")), Audience::NotForUs);
        assert_eq!(c(json!("https://mcp.example.com")), Audience::NotForUs);
        assert_eq!(
            c(json!("https://mcp.example.com/%6dcp")),
            Audience::NotForUs
        );
        assert_eq!(
            c(json!("https://mcp.example.com/x/../mcp")),
            Audience::NotForUs
        );
        assert_eq!(
            c(json!("https://mcp.example.com:8443/mcp")),
            Audience::NotForUs
        );
        assert_eq!(c(json!("http://mcp.example.com/mcp")), Audience::NotForUs);
        assert_eq!(c(json!([])), Audience::NotForUs);
        assert_eq!(
            c(json!(["https://mcp.example.com/mcp", 1])),
            Audience::Malformed
        );
        assert_eq!(c(json!(7)), Audience::Malformed);
        assert_eq!(check(None, &a, true), Audience::NotForUs);
    }

    #[test]
    fn origin_trailing_slash() {
        let a = vec![audience_form("https://mcp.example.com", true)];
        assert_eq!(
            check(Some(&json!("https://mcp.example.com/")), &a, true),
            Audience::Accepted
        );
        let strict = vec![audience_form("https://mcp.example.com", false)];
        assert_eq!(
            check(Some(&json!("https://mcp.example.com/")), &strict, false),
            Audience::NotForUs
        );
    }
}
