//! Protected Resource Metadata (RFC 9728): the document, where it lives, and how it is served.
//!
//! The document is serialized once, at config load. Its location inserts
//! `/.well-known/oauth-protected-resource` between the host and the resource's path, after
//! dropping a trailing `/` (RFC 9728 §3.1): `https://h/mcp` →
//! `https://h/.well-known/oauth-protected-resource/mcp`. MCP clients try that path form
//! first and then the root form (MCP 2025-11-25 §4.2), so the root form is served too
//! wherever it is unambiguous.

use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;

use serde::Serialize;

use crate::config::Resource;
use crate::http::{Reason, Response};

/// The well-known path prefix (RFC 9728 §3).
pub const WELL_KNOWN: &str = "/.well-known/oauth-protected-resource";

/// The fields of the document, borrowed from config. Empty fields are omitted.
#[derive(Serialize)]
pub(crate) struct DocumentFields<'a> {
    pub resource: &'a str,
    pub authorization_servers: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<&'a str>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    pub scopes_supported: &'a [String],
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    pub bearer_methods_supported: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_documentation: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_policy_uri: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_tos_uri: Option<&'a str>,
}

pub(crate) fn document(fields: &DocumentFields<'_>) -> Result<String, serde_json::Error> {
    serde_json::to_string(fields)
}

const PREFLIGHT_HEADERS: &str = "authorization, content-type, mcp-protocol-version";

/// Answers a request for a resource's metadata document.
pub(crate) fn serve(res: &Resource, method: &str) -> Response {
    match method {
        "GET" | "HEAD" => Response {
            status: 200,
            headers: vec![
                ("content-type", "application/json".into()),
                (
                    "cache-control",
                    alloc::format!("public, max-age={}", res.metadata_max_age),
                ),
                ("access-control-allow-origin", "*".into()),
            ],
            body: if method == "GET" {
                res.metadata_body.clone()
            } else {
                String::new()
            },
            reason: Reason::Metadata,
        },
        "OPTIONS" => Response {
            status: 204,
            headers: vec![
                ("access-control-allow-origin", "*".into()),
                ("access-control-allow-methods", "GET, HEAD, OPTIONS".into()),
                ("access-control-allow-headers", PREFLIGHT_HEADERS.into()),
                (
                    "access-control-max-age",
                    alloc::format!("{}", res.preflight_max_age),
                ),
                ("allow", "GET, HEAD, OPTIONS".into()),
            ],
            body: String::new(),
            reason: Reason::Preflight,
        },
        _ => Response {
            status: 405,
            headers: vec![
                ("allow", "GET, HEAD, OPTIONS".into()),
                ("content-type", "application/json".into()),
                ("access-control-allow-origin", "*".into()),
            ],
            body: serde_json::json!({
                "error": "method_not_allowed",
                "error_description": "The metadata document is read with GET"
            })
            .to_string(),
            reason: Reason::MethodNotAllowed,
        },
    }
}

/// Which resource's metadata a well-known path asks for, if any. `hosts_ok(i)` says whether
/// resource `i` answers on the request's authority.
pub(crate) fn lookup<'r>(
    resources: &'r [Resource],
    path: &str,
    hosts_ok: impl Fn(&Resource) -> bool,
) -> Option<&'r Resource> {
    if !path.starts_with(WELL_KNOWN) {
        return None;
    }
    let candidates: Vec<&Resource> = resources.iter().filter(|r| hosts_ok(r)).collect();
    if let Some(r) = candidates.iter().find(|r| r.metadata_path == path) {
        return Some(r);
    }
    // The root form is unambiguous when exactly one resource answers on this host.
    if path == WELL_KNOWN {
        if let [only] = candidates.as_slice() {
            return Some(only);
        }
    }
    None
}
