//! Bearer token extraction (RFC 6750 §2.1, OAuth 2.1 §5.1).
//!
//! Only the `Authorization` header counts. A token in the query string (`access_token=`) or a
//! form body is never accepted; the gateway strips it before forwarding. The scheme is
//! case-insensitive, the credentials must be `token68`, and two credentials are a malformed
//! request (400), because different components picking different ones is how confusion
//! attacks start.

use crate::http::Request;

/// Result of looking for bearer credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bearer<'a> {
    /// No bearer credentials (no header, or another scheme such as `Basic`).
    None,
    /// A syntactically valid bearer token.
    Token(&'a str),
    /// Malformed: the reason is a fixed text for `error_description`.
    Malformed(&'static str),
}

/// The token68 characters before the padding, as a table: this check runs over every byte
/// of every token on every request, cache hits included (a table lookup per byte instead of
/// range comparisons; it showed in profiles of the native module).
// Evaluated at compile time: an index out of range would fail the build, never a request.
#[allow(clippy::indexing_slicing)]
const TOKEN68: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~' | b'+' | b'/');
        b += 1;
    }
    t
};

/// RFC 7235 token68: `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
pub fn is_token68(s: &str) -> bool {
    let body = s.trim_end_matches('=');
    !body.is_empty()
        && body
            .bytes()
            .all(|b| TOKEN68.get(usize::from(b)).copied().unwrap_or(false))
}

/// Finds the bearer token of a request.
pub fn extract<'a>(req: &Request<'a>) -> Bearer<'a> {
    match credentials(req) {
        Bearer::Token(t) if !is_token68(t) => {
            Bearer::Malformed("The bearer credentials are malformed")
        }
        b => b,
    }
}

/// [`extract`] without its last check, that the credentials are `token68`: the gateway
/// looks the token up in its cache first, and a token found there was checked when it was
/// cached (the check reads every byte of a ~1 KB token: it showed in cache-hit profiles).
/// A token not found there must pass [`is_token68`] before anything else is done with it.
pub(crate) fn credentials<'a>(req: &Request<'a>) -> Bearer<'a> {
    let value = match req.single_header("authorization") {
        Err(_) => return Bearer::Malformed("Only one Authorization header is allowed"),
        Ok(None) => return Bearer::None,
        Ok(Some(v)) => v,
    };
    let value = value.trim_matches(|c| c == ' ' || c == '\t');
    let (scheme, rest) = match value.split_once([' ', '\t']) {
        Some((s, r)) => (s, r.trim_start_matches([' ', '\t'])),
        None => (value, ""),
    };
    if !scheme.eq_ignore_ascii_case("bearer") {
        if scheme.is_empty() {
            return Bearer::Malformed("The Authorization header is malformed");
        }
        return Bearer::None;
    }
    if rest.is_empty() {
        return Bearer::Malformed("The bearer credentials are empty");
    }
    Bearer::Token(rest)
}

/// Removes `access_token` parameters from a path's query, returning the new path when any
/// were present. Tokens in URLs leak into logs and upstream; we never accept them and never
/// forward them.
pub fn strip_query_token(path: &str) -> Option<alloc::string::String> {
    let (p, q) = path.split_once('?')?;
    let is_token = |kv: &str| {
        let k = kv.split_once('=').map_or(kv, |(k, _)| k);
        k == "access_token"
    };
    if !q.split('&').any(is_token) {
        return None;
    }
    let kept: alloc::vec::Vec<&str> = q.split('&').filter(|kv| !is_token(kv)).collect();
    let mut out = alloc::string::String::from(p);
    if !kept.is_empty() {
        out.push('?');
        out.push_str(&kept.join("&"));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req<'a>(headers: &'a [(&'a str, &'a str)]) -> Request<'a> {
        Request::new("GET", "https", "h", "/", headers)
    }

    #[test]
    fn extraction() {
        assert_eq!(extract(&req(&[])), Bearer::None);
        assert_eq!(
            extract(&req(&[("Authorization", "Bearer abc.def-_~+/==")])),
            Bearer::Token("abc.def-_~+/==")
        );
        assert_eq!(
            extract(&req(&[("authorization", "bearer abc")])),
            Bearer::Token("abc")
        );
        assert_eq!(
            extract(&req(&[("authorization", "BEARER   abc")])),
            Bearer::Token("abc")
        );
        assert_eq!(
            extract(&req(&[("authorization", "Basic dXNlcjpwdw==")])),
            Bearer::None
        );
        assert!(matches!(
            extract(&req(&[("authorization", "Bearer")])),
            Bearer::Malformed(_)
        ));
        assert!(matches!(
            extract(&req(&[("authorization", "Bearer ")])),
            Bearer::Malformed(_)
        ));
        assert!(matches!(
            extract(&req(&[("authorization", "Bearer a b")])),
            Bearer::Malformed(_)
        ));
        assert!(matches!(
            extract(&req(&[("authorization", "Bearer a,Bearer b")])),
            Bearer::Malformed(_)
        ));
        assert!(matches!(
            extract(&req(&[("authorization", "Bearer ===")])),
            Bearer::Malformed(_)
        ));
        assert!(matches!(
            extract(&req(&[("authorization", "Bearer \"x\"")])),
            Bearer::Malformed(_)
        ));
        assert!(matches!(
            extract(&req(&[
                ("authorization", "Bearer a"),
                ("Authorization", "Bearer b")
            ])),
            Bearer::Malformed(_)
        ));
    }

    #[test]
    fn query_tokens_are_stripped() {
        assert_eq!(strip_query_token("/mcp"), None);
        assert_eq!(strip_query_token("/mcp?a=1"), None);
        assert_eq!(
            strip_query_token("/mcp?access_token=x").as_deref(),
            Some("/mcp")
        );
        assert_eq!(
            strip_query_token("/mcp?a=1&access_token=x&b=2").as_deref(),
            Some("/mcp?a=1&b=2")
        );
        assert_eq!(
            strip_query_token("/mcp?access_token").as_deref(),
            Some("/mcp")
        );
        assert_eq!(strip_query_token("/mcp?xaccess_token=1"), None);
    }
}

#[cfg(test)]
mod token68_tests {
    use super::is_token68;

    #[test]
    fn the_table_is_rfc_7235_token68() {
        for b in 0..=255u8 {
            let allowed =
                b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/');
            let s = [b'a', b];
            let s = core::str::from_utf8(&s).unwrap_or("a\u{0}");
            assert_eq!(is_token68(s), allowed || b == b'=', "byte {b:#04x}");
        }
        assert!(is_token68("abc=="));
        assert!(!is_token68("=="));
        assert!(!is_token68("a=b"));
        assert!(!is_token68(""));
    }
}
