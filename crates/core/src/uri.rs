//! Minimal absolute-URI handling for resource identifiers, issuers and audiences.
//!
//! We deliberately do **not** implement full RFC 3986 normalisation: the audience rule
//! (RFC 8707 as profiled by MCP) allows only a few normalisations (lowercase scheme and host,
//! default port dropped, optionally a trailing `/` on an origin). Percent-decoding,
//! dot-segment removal or path case-folding would let a token minted for another resource in.

use alloc::string::{String, ToString};

/// An absolute `scheme://authority/path?query#fragment` URI split into its parts, borrowing
/// from the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UriParts<'a> {
    /// Scheme as written (not lowercased).
    pub scheme: &'a str,
    /// Host as written; IPv6 literals keep their brackets.
    pub host: &'a str,
    /// Port digits, if any.
    pub port: Option<&'a str>,
    /// Path (possibly empty), without query or fragment.
    pub path: &'a str,
    /// Query without `?`.
    pub query: Option<&'a str>,
    /// Fragment without `#`.
    pub fragment: Option<&'a str>,
    /// Whether the authority carried `userinfo@`.
    pub has_userinfo: bool,
}

/// Splits an absolute hierarchical URI. Returns `None` when the string is not of the form
/// `scheme://authority…` (for example a bare API identifier such as `my-api`).
pub fn parse(input: &str) -> Option<UriParts<'_>> {
    let (scheme, rest) = input.split_once("://")?;
    let mut chars = scheme.chars();
    let first = chars.next()?;
    if !first.is_ascii_alphabetic()
        || !chars.all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '-' || c == '.')
    {
        return None;
    }
    let (before_fragment, fragment) = match rest.split_once('#') {
        Some((a, f)) => (a, Some(f)),
        None => (rest, None),
    };
    let (before_query, query) = match before_fragment.split_once('?') {
        Some((a, q)) => (a, Some(q)),
        None => (before_fragment, None),
    };
    let (authority, path) = match before_query.find('/') {
        Some(i) => before_query.split_at(i),
        None => (before_query, ""),
    };
    let (has_userinfo, hostport) = match authority.rsplit_once('@') {
        Some((_, hp)) => (true, hp),
        None => (false, authority),
    };
    let (host, port) = split_host_port(hostport)?;
    if host.is_empty() {
        return None;
    }
    Some(UriParts {
        scheme,
        host,
        port,
        path,
        query,
        fragment,
        has_userinfo,
    })
}

/// Splits `host[:port]`, keeping IPv6 brackets on the host. Rejects a non-numeric port.
pub fn split_host_port(hostport: &str) -> Option<(&str, Option<&str>)> {
    let (host, port) = if hostport.starts_with('[') {
        let end = hostport.find(']')?;
        let (h, rest) = hostport.split_at(end + 1);
        match rest.strip_prefix(':') {
            Some(p) => (h, Some(p)),
            None if rest.is_empty() => (h, None),
            None => return None,
        }
    } else {
        match hostport.rsplit_once(':') {
            // A host holds no `:` outside brackets (RFC 3986 §3.2.2): `h:1:443` is no URI
            // authority, and reading it as host `h:1` would make its audience form
            // (`h:1`, port dropped) read differently the second time.
            Some((h, _)) if h.contains(':') => return None,
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    if let Some(p) = port {
        if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
    }
    Some((host, port))
}

/// The port a scheme uses when none is written.
pub fn default_port(scheme_lower: &str) -> Option<&'static str> {
    match scheme_lower {
        "https" => Some("443"),
        "http" => Some("80"),
        _ => None,
    }
}

/// Whether a host names this machine's loopback interface (where plain `http` is acceptable
/// for development, MCP 2025-11-25 "Communication Security").
pub fn is_loopback_host(host: &str) -> bool {
    let h = host.to_ascii_lowercase();
    h == "localhost"
        || h == "[::1]"
        || (h.starts_with("127.")
            && h.split('.').count() == 4
            && h.split('.')
                .all(|o| !o.is_empty() && o.bytes().all(|b| b.is_ascii_digit())))
}

/// The normalised form used to compare audiences: lowercase scheme and host, default port
/// dropped, and (when `fold_origin_slash`) an origin-only URI with and without a trailing `/`
/// made equal. Strings that are not absolute URIs compare exactly as written.
pub fn audience_form(input: &str, fold_origin_slash: bool) -> String {
    let Some(p) = parse(input) else {
        return input.to_string();
    };
    if p.has_userinfo {
        return input.to_string();
    }
    let scheme = p.scheme.to_ascii_lowercase();
    let mut out = String::with_capacity(input.len());
    out.push_str(&scheme);
    out.push_str("://");
    out.push_str(&p.host.to_ascii_lowercase());
    if let Some(port) = p.port {
        if default_port(&scheme) != Some(port) {
            out.push(':');
            out.push_str(port);
        }
    }
    let path = if fold_origin_slash && p.path == "/" && p.query.is_none() {
        ""
    } else {
        p.path
    };
    out.push_str(path);
    if let Some(q) = p.query {
        out.push('?');
        out.push_str(q);
    }
    if let Some(f) = p.fragment {
        out.push('#');
        out.push_str(f);
    }
    out
}

/// Whether `authority` (as a client sent it) names the same host and port as a URI's
/// host/port, comparing host case-insensitively and treating a missing port as the default.
pub fn same_authority(scheme_lower: &str, host: &str, port: Option<&str>, authority: &str) -> bool {
    let Some((ah, ap)) = split_host_port(authority) else {
        return false;
    };
    let dp = default_port(scheme_lower);
    host.eq_ignore_ascii_case(ah) && port.or(dp) == ap.or(dp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_parts() {
        let p = parse("https://Example.COM:8443/mcp/x?y=1#f").unwrap();
        assert_eq!(p.scheme, "https");
        assert_eq!(p.host, "Example.COM");
        assert_eq!(p.port, Some("8443"));
        assert_eq!(p.path, "/mcp/x");
        assert_eq!(p.query, Some("y=1"));
        assert_eq!(p.fragment, Some("f"));
        let v6 = parse("http://[::1]:3000/mcp").unwrap();
        assert_eq!(v6.host, "[::1]");
        assert_eq!(v6.port, Some("3000"));
        assert!(parse("not a uri").is_none());
        assert!(parse("https://h:abc/").is_none());
        assert!(parse("https:///x").is_none());
    }

    #[test]
    fn audience_forms() {
        assert_eq!(
            audience_form("HTTPS://MCP.Example.com:443/mcp", true),
            "https://mcp.example.com/mcp"
        );
        assert_eq!(
            audience_form("https://mcp.example.com/MCP", true),
            "https://mcp.example.com/MCP"
        );
        assert_eq!(
            audience_form("https://mcp.example.com/", true),
            "https://mcp.example.com"
        );
        assert_eq!(
            audience_form("https://mcp.example.com/", false),
            "https://mcp.example.com/"
        );
        assert_eq!(
            audience_form("https://mcp.example.com/mcp/", true),
            "https://mcp.example.com/mcp/"
        );
        assert_eq!(audience_form("api://abc", true), "api://abc");
        assert_eq!(audience_form("my-api", true), "my-api");
        assert_eq!(audience_form("https://h/%6dcp", true), "https://h/%6dcp");
    }

    #[test]
    fn a_host_with_a_colon_is_no_authority() {
        assert!(parse("https://h:1:443/mcp").is_none());
        assert_eq!(
            audience_form("https://h:443:443", true),
            "https://h:443:443"
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config::with_cases(4096))]

        /// The form of a form is itself, which lets the audience check accept an `aud`
        /// spelled exactly as an accepted form without normalising it.
        #[test]
        fn audience_form_is_idempotent(
            s in "(https?|HTTPS|api|1x|)(://)?(u@)?(h|H|h:443|h:80|\\[::1\\]|[a-zA-Z0-9.:\\[\\]]{0,5})(:(443|80|0443|8443|))?(/|/mcp|/MCP/|//)?(\\?q)?(#f)?",
            fold in proptest::bool::ANY,
        ) {
            let form = audience_form(&s, fold);
            proptest::prop_assert_eq!(audience_form(&form, fold), form);
        }
    }

    #[test]
    fn loopback() {
        assert!(is_loopback_host("localhost"));
        assert!(is_loopback_host("127.0.0.1"));
        assert!(is_loopback_host("[::1]"));
        assert!(!is_loopback_host("127.0.0.1.evil.com"));
        assert!(!is_loopback_host("example.com"));
    }
}
