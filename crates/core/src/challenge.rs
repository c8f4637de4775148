//! `WWW-Authenticate` challenges (RFC 6750 §3, RFC 9728 §5.1, MCP authorization) and the
//! error responses that carry them.
//!
//! Every value placed in a header comes from the validated config (the metadata URL and
//! scopes, whose characters were checked at load) or from the fixed texts in this crate.
//! Nothing from the request ever reaches a header, so there is nothing to escape and no way
//! to inject one.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;

use crate::config::Resource;
use crate::http::{Reason, Response};

/// `error_description` values are limited to these bytes (RFC 6750 §3).
pub fn is_valid_description(s: &str) -> bool {
    s.bytes()
        .all(|b| matches!(b, 0x20..=0x21 | 0x23..=0x5B | 0x5D..=0x7E))
}

fn json_body(error: &str, description: &str) -> String {
    serde_json::json!({ "error": error, "error_description": description }).to_string()
}

fn response(status: u16, reason: Reason, www: Option<String>, body: String) -> Response {
    let mut headers: Vec<(&'static str, String)> = vec![
        ("content-type", "application/json".into()),
        ("cache-control", "no-store".into()),
    ];
    if let Some(w) = www {
        headers.push(("www-authenticate", w));
    }
    Response {
        status,
        headers,
        body,
        reason,
    }
}

/// 401 without an `error` parameter: the client sent no bearer credentials (RFC 6750 §3.1).
pub(crate) fn no_credentials(res: &Resource) -> Response {
    let mut www = format!("Bearer resource_metadata=\"{}\"", res.metadata_url);
    if let Some(scope) = &res.challenge_scope {
        www.push_str(&format!(", scope=\"{scope}\""));
    }
    response(
        401,
        Reason::Missing,
        Some(www),
        json_body(
            "unauthorized",
            "An OAuth access token is required; see resource_metadata in WWW-Authenticate",
        ),
    )
}

/// A challenge with an `error` code and one of our fixed descriptions (RFC 6750 §3).
fn error_challenge(
    res: &Resource,
    status: u16,
    reason: Reason,
    error: &str,
    description: &'static str,
) -> Response {
    debug_assert!(is_valid_description(description));
    let www = format!(
        "Bearer error=\"{error}\", error_description=\"{description}\", resource_metadata=\"{}\"",
        res.metadata_url
    );
    response(status, reason, Some(www), json_body(error, description))
}

/// 401 `invalid_token`.
pub(crate) fn invalid_token(res: &Resource, description: &'static str, reason: Reason) -> Response {
    error_challenge(res, 401, reason, "invalid_token", description)
}

/// 400 `invalid_request`.
pub(crate) fn invalid_request(res: &Resource, description: &'static str) -> Response {
    error_challenge(res, 400, Reason::Malformed, "invalid_request", description)
}

/// 403 `insufficient_scope`, naming every scope the request needs (MCP 2026-07-28: all in
/// one challenge, so a client steps up once).
pub(crate) fn insufficient_scope(res: &Resource, needed: &[String]) -> Response {
    let scope = needed.join(" ");
    let description = "The access token lacks a scope this request needs";
    let www = format!(
        "Bearer error=\"insufficient_scope\", scope=\"{scope}\", error_description=\"{description}\", resource_metadata=\"{}\"",
        res.metadata_url
    );
    response(
        403,
        Reason::Scope,
        Some(www),
        json_body("insufficient_scope", description),
    )
}

/// 503 while no keys are usable: never allow, tell the client when to retry.
pub(crate) fn unavailable(retry_after: u64) -> Response {
    let mut r = response(
        503,
        Reason::KeysUnavailable,
        None,
        json_body(
            "temporarily_unavailable",
            "The access token cannot be checked right now; retry later",
        ),
    );
    r.headers.push(("retry-after", format!("{retry_after}")));
    r
}

/// 503 while the upstream token cannot be obtained (the token endpoint is failing): never
/// forward without it, say when the gateway will try again.
pub(crate) fn exchange_unavailable(retry_after: u64) -> Response {
    let mut r = response(
        503,
        Reason::ExchangeUnavailable,
        None,
        json_body(
            "temporarily_unavailable",
            "A token for the upstream cannot be obtained right now; retry later",
        ),
    );
    r.headers.push(("retry-after", format!("{retry_after}")));
    r
}

/// 403 when the authorization server will not issue a token for the upstream to this caller
/// (target, scope or client not allowed). No `insufficient_scope` challenge: a step-up would
/// not change the authorization server's answer.
pub(crate) fn exchange_refused() -> Response {
    response(
        403,
        Reason::ExchangeRefused,
        None,
        json_body(
            "access_denied",
            "The authorization server does not issue a token for the upstream to this caller",
        ),
    )
}

/// 403 for a browser `Origin` this resource does not allow (DNS-rebinding protection,
/// MCP transports 2025-11-25).
pub(crate) fn forbidden_origin() -> Response {
    response(
        403,
        Reason::Origin,
        None,
        json_body(
            "forbidden_origin",
            "Requests from this Origin are not allowed; to allow a browser client (for example \
             MCP Inspector), add its origin to the resource's allowed_origins",
        ),
    )
}

/// 403 for a path no resource covers, when unmatched requests are denied.
pub(crate) fn unmatched() -> Response {
    response(
        403,
        Reason::Unmatched,
        None,
        json_body(
            "forbidden",
            "No protected resource is configured for this path",
        ),
    )
}

/// 400 for a body that is not JSON-RPC, or `Mcp-*` headers that disagree with it. Not an
/// authentication problem, so no challenge.
pub(crate) fn bad_body(description: &'static str) -> Response {
    response(
        400,
        Reason::BadBody,
        None,
        json_body("invalid_request", description),
    )
}

/// 400 for `Mcp-*` headers that disagree with the body (or are missing or malformed): a
/// JSON-RPC error `HeaderMismatch` (-32020, MCP 2026-07-28) answering the request's `id`,
/// so that an MCP client can tell what happened. The message is fixed text.
pub(crate) fn header_mismatch(id: Option<&serde_json::Value>, message: &'static str) -> Response {
    let body = serde_json::json!({
        "jsonrpc": "2.0",
        "id": id,
        "error": { "code": crate::mcp::HEADER_MISMATCH, "message": message },
    })
    .to_string();
    response(400, Reason::BadBody, None, body)
}

/// 413 for a body over the configured limit.
pub(crate) fn body_too_large() -> Response {
    response(
        413,
        Reason::BodyTooLarge,
        None,
        json_body(
            "request_too_large",
            "The request body is larger than this gateway inspects",
        ),
    )
}
