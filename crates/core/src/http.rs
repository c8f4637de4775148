//! The request parts a host hands in, and the responses and forwarding instructions it gets
//! back. Plain data: hosts map these onto their own HTTP types.

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

/// A header that must appear once appeared more than once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repeated;

/// The request headers (besides the pseudo headers) that [`crate::Gateway`] reads, lowercase.
/// A host that can fetch single headers more cheaply than all of them may hand the core only
/// these (every value of each, in order: repeats are how duplicates are refused). The core's
/// tests decide every case twice, with all headers and with only these, and require the same
/// verdict.
pub const READ_HEADERS: &[&str] = &[
    "authorization",
    "origin",
    "access-control-request-method",
    "mcp-method",
    "mcp-name",
    "mcp-protocol-version",
];

/// The parts of an incoming request the core looks at.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// `GET`, `POST`, …
    pub method: &'a str,
    /// `https` or `http`, as the host received it.
    pub scheme: &'a str,
    /// `host[:port]` (`:authority` / `Host`).
    pub authority: &'a str,
    /// Path and query, as received (not decoded).
    pub path: &'a str,
    /// All headers, repeats kept, names in any case.
    pub headers: &'a [(&'a str, &'a str)],
    /// The body, when [`crate::Gateway::body_limit`] asked the host to read it.
    pub body: Body<'a>,
}

/// What the host knows of the request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Body<'a> {
    /// Not read (the gateway did not ask for it).
    #[default]
    NotRead,
    /// The whole body.
    Bytes(&'a [u8]),
    /// Longer than [`crate::Gateway::body_limit`]: answered with 413.
    TooLarge,
}

impl<'a> Request<'a> {
    /// A request without a body.
    pub fn new(
        method: &'a str,
        scheme: &'a str,
        authority: &'a str,
        path: &'a str,
        headers: &'a [(&'a str, &'a str)],
    ) -> Self {
        Request {
            method,
            scheme,
            authority,
            path,
            headers,
            body: Body::NotRead,
        }
    }

    /// Every value of a header, by case-insensitive name.
    pub fn header_values<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'a str> + 's {
        self.headers
            .iter()
            .filter(move |(n, _)| same_name(n, name))
            .map(|(_, v)| *v)
    }

    /// The value of a header that must appear at most once: `Ok(None)` when absent,
    /// `Err(Repeated)` when it appears more than once.
    pub fn single_header(&self, name: &str) -> Result<Option<&'a str>, Repeated> {
        // A plain loop: the iterator's filter closure stayed an out-of-line call per header
        // in the size-optimised Wasm filter (a cache hit looks up several headers).
        let mut found = None;
        for &(n, v) in self.headers {
            if same_name(n, name) {
                if found.is_some() {
                    return Err(Repeated);
                }
                found = Some(v);
            }
        }
        Ok(found)
    }

    /// The path without its query.
    pub fn path_only(&self) -> &'a str {
        match self.path.split_once('?') {
            Some((p, _)) => p,
            None => self.path,
        }
    }
}

/// Whether two header names are the same, case-insensitively. The length is compared
/// first, inline: most names a request carries differ from the one looked for in length,
/// and `eq_ignore_ascii_case` is an out-of-line call (the standard library's) in Wasm.
#[inline]
fn same_name(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.eq_ignore_ascii_case(b)
}

/// A request a host keeps, to decide it later (while its body is read, or while it waits for
/// keys). Its `Debug` shows no header values (they hold the token).
#[derive(Clone, Default)]
pub struct OwnedRequest {
    /// As [`Request::method`].
    pub method: String,
    /// As [`Request::scheme`].
    pub scheme: String,
    /// As [`Request::authority`].
    pub authority: String,
    /// As [`Request::path`].
    pub path: String,
    /// As [`Request::headers`].
    pub headers: Vec<(String, String)>,
    /// What the host knows of the body.
    pub body: OwnedBody,
}

/// The owned form of [`Body`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum OwnedBody {
    /// Not read.
    #[default]
    NotRead,
    /// The whole body.
    Bytes(Vec<u8>),
    /// Longer than the limit.
    TooLarge,
}

impl core::fmt::Debug for OwnedRequest {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("OwnedRequest")
            .field("method", &self.method)
            .field("path", &"<redacted>")
            .field("headers", &self.headers.len())
            .finish_non_exhaustive()
    }
}

impl OwnedRequest {
    /// Copies a request.
    pub fn copy(req: &Request<'_>) -> OwnedRequest {
        use alloc::string::ToString;
        OwnedRequest {
            method: req.method.to_string(),
            scheme: req.scheme.to_string(),
            authority: req.authority.to_string(),
            path: req.path.to_string(),
            headers: req
                .headers
                .iter()
                .map(|(n, v)| ((*n).to_string(), (*v).to_string()))
                .collect(),
            body: match req.body {
                Body::NotRead => OwnedBody::NotRead,
                Body::Bytes(b) => OwnedBody::Bytes(b.to_vec()),
                Body::TooLarge => OwnedBody::TooLarge,
            },
        }
    }

    /// Runs `f` on the core's view of this request.
    pub fn with<R>(&self, f: impl FnOnce(&Request<'_>) -> R) -> R {
        let pairs: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let mut req = Request::new(
            &self.method,
            &self.scheme,
            &self.authority,
            &self.path,
            &pairs,
        );
        req.body = match &self.body {
            OwnedBody::NotRead => Body::NotRead,
            OwnedBody::Bytes(b) => Body::Bytes(b),
            OwnedBody::TooLarge => Body::TooLarge,
        };
        f(&req)
    }
}

/// Why the gateway answered or forwarded as it did; hosts count these as metrics and may log
/// them (they never contain request data).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// Forwarded with a valid token.
    Allowed,
    /// Forwarded: no resource covers the path and `unmatched_requests` is `allow`.
    Unprotected,
    /// Served the protected resource metadata.
    Metadata,
    /// Answered a CORS preflight.
    Preflight,
    /// Wrong method on the metadata endpoint.
    MethodNotAllowed,
    /// No bearer credentials.
    Missing,
    /// Malformed request (repeated or unparsable `Authorization`).
    Malformed,
    /// Token invalid (signature, issuer, algorithm, format, type).
    Invalid,
    /// Token expired or not yet valid.
    Expired,
    /// Token not issued for this resource.
    Audience,
    /// Token lacks a required scope.
    Scope,
    /// Disallowed `Origin`.
    Origin,
    /// Body not JSON-RPC, or `Mcp-*` headers that disagree with it.
    BadBody,
    /// Body over the configured limit.
    BodyTooLarge,
    /// No usable keys (JWKS endpoint down and nothing cached).
    KeysUnavailable,
    /// No configured resource covers the request and `unmatched_requests` is `deny`.
    Unmatched,
    /// The upstream token could not be obtained (token endpoint failing): 503.
    ExchangeUnavailable,
    /// The authorization server refused to exchange the token for the upstream: 401/403.
    ExchangeRefused,
}

impl Reason {
    /// The counter hosts count this decision under, after their own prefix: what was let
    /// through, what was served, and what was refused and why (`requests_denied.<reason>`).
    /// One naming for every host, so that dashboards work on any of them.
    pub fn counter_name(self) -> String {
        match self {
            Reason::Allowed => "requests_allowed".into(),
            Reason::Unprotected => "requests_unprotected".into(),
            Reason::Metadata => "metadata_served".into(),
            Reason::Preflight => "preflight_served".into(),
            other => alloc::format!("requests_denied.{}", other.as_str()),
        }
    }

    /// A stable snake_case name (metric suffix, log field).
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Allowed => "allowed",
            Reason::Unprotected => "unprotected",
            Reason::Metadata => "metadata",
            Reason::Preflight => "preflight",
            Reason::MethodNotAllowed => "method_not_allowed",
            Reason::Missing => "missing",
            Reason::Malformed => "malformed",
            Reason::Invalid => "invalid",
            Reason::Expired => "expired",
            Reason::Audience => "audience",
            Reason::Scope => "scope",
            Reason::Origin => "origin",
            Reason::BadBody => "bad_body",
            Reason::BodyTooLarge => "body_too_large",
            Reason::KeysUnavailable => "keys_unavailable",
            Reason::Unmatched => "unmatched",
            Reason::ExchangeUnavailable => "exchange_unavailable",
            Reason::ExchangeRefused => "exchange_refused",
        }
    }

    /// Every reason, for hosts that pre-register metrics.
    pub const ALL: [Reason; 18] = [
        Reason::Allowed,
        Reason::Unprotected,
        Reason::Metadata,
        Reason::Preflight,
        Reason::MethodNotAllowed,
        Reason::Missing,
        Reason::Malformed,
        Reason::Invalid,
        Reason::Expired,
        Reason::Audience,
        Reason::Scope,
        Reason::Origin,
        Reason::BadBody,
        Reason::BodyTooLarge,
        Reason::KeysUnavailable,
        Reason::Unmatched,
        Reason::ExchangeUnavailable,
        Reason::ExchangeRefused,
    ];
}

/// A response for the host to send instead of forwarding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// HTTP status.
    pub status: u16,
    /// Headers (lowercase names).
    pub headers: Vec<(&'static str, String)>,
    /// Body (JSON or empty).
    pub body: String,
    /// Why.
    pub reason: Reason,
}

impl Response {
    /// A header's value, by (lowercase) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Who the verified token speaks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    /// `iss`.
    pub issuer: String,
    /// `sub`, when present.
    pub subject: Option<String>,
    /// `client_id` (RFC 9068), when present.
    pub client_id: Option<String>,
    /// Granted scopes (`scope` or `scp`).
    pub scopes: Vec<String>,
    /// `exp`.
    pub expires_at: u64,
}

/// `list` and then `item`, as a new shared list (the rare forwards that add to a shared
/// list: an exchanged token, an uncompressed answer).
pub(crate) fn appended<T: Clone>(list: &[T], item: T) -> Arc<[T]> {
    let mut v = Vec::with_capacity(list.len().saturating_add(1));
    v.extend_from_slice(list);
    v.push(item);
    v.into()
}

/// Instructions for forwarding a request upstream.
///
/// The header lists and the identity are shared (`Arc`) with the resource's config and the
/// verified-token cache: a cache hit builds its forward without copying a string. (Each
/// copy was an allocation in Wasm; together they were a fifth of the filter's cache hit.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forward {
    /// Headers to remove from the request (lowercase names): the client's `Authorization`
    /// unless `forward` is set, and every client-sent copy of the identity headers we own.
    pub remove_headers: Arc<[String]>,
    /// Headers to add to the request after removal.
    pub add_headers: Arc<[(String, String)]>,
    /// A new `:path` when the original carried `access_token` query parameters (stripped so
    /// that no token reaches upstream or its logs).
    pub new_path: Option<String>,
    /// Headers to add to the upstream's response (CORS for allowed browser origins).
    pub response_headers: Vec<(&'static str, String)>,
    /// The verified identity (`None` for unprotected paths).
    pub identity: Option<Arc<Identity>>,
    /// Allowed or unprotected.
    pub reason: Reason,
    /// Whether the decision came from the verified-token cache.
    pub cache_hit: bool,
    /// The request's list requests, whose answers the host hands to
    /// [`crate::lists::ListFilter::response`] (`None`: pass the answer unchanged).
    pub lists: Option<alloc::boxed::Box<crate::lists::ListFilter>>,
}

impl Forward {
    /// The names of [`Forward::remove_headers`] that `req` carries (case-insensitively): all
    /// that a host has to remove when it handed the core *every* request header (the
    /// proxy-wasm filter), where removing a header the request lacks is a host call that
    /// changes nothing. A host that hands the core only [`READ_HEADERS`] cannot tell which
    /// the request carries, and removes every name.
    pub fn removals_in<'s>(&'s self, req: &'s Request<'_>) -> impl Iterator<Item = &'s str> + 's {
        self.remove_headers
            .iter()
            .map(String::as_str)
            .filter(move |name| req.headers.iter().any(|(h, _)| same_name(h, name)))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_found_by_name_whatever_its_case_and_repeats_are_told() {
        let headers = [
            ("Authorization", "Bearer a"),
            ("x-mcp-subject", "s"),
            ("accept", "*/*"),
            ("AUTHORIZATION", "Bearer b"),
            ("origin", "https://app.example"),
        ];
        let req = Request::new("GET", "https", "mcp.example", "/mcp", &headers);
        assert_eq!(req.single_header("origin"), Ok(Some("https://app.example")));
        assert_eq!(req.single_header("ORIGIN"), Ok(Some("https://app.example")));
        assert_eq!(req.single_header("x-mcp-subjec"), Ok(None));
        assert_eq!(req.single_header("x-mcp-subjectt"), Ok(None));
        assert_eq!(req.single_header("authorization"), Err(Repeated));
        assert_eq!(
            req.header_values("authorization").collect::<Vec<_>>(),
            ["Bearer a", "Bearer b"]
        );
        let forward = Forward {
            remove_headers: Arc::from(
                ["authorization", "x-mcp-subject", "x-mcp-client-id"].map(String::from),
            ),
            add_headers: Arc::from([]),
            new_path: None,
            response_headers: Vec::new(),
            identity: None,
            reason: Reason::Allowed,
            cache_hit: true,
            lists: None,
        };
        assert_eq!(
            forward.removals_in(&req).collect::<Vec<_>>(),
            ["authorization", "x-mcp-subject"]
        );
    }
}
