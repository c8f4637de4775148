//! `resources[].upstream_token`: RFC 8693 token exchange toward the MCP server, validated
//! and turned into the request the gateway sends (see [`crate::exchange`]).
//!
//! Everything that does not depend on the subject token is computed here once: the client
//! authentication (an `Authorization: Basic` value, or the `client_id`/`client_secret` form
//! fields), and the form fields naming the target, scope and requested token type.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use super::raw::RawUpstreamToken;
use super::{check_scopes, check_web_uri, endpoint, is_header_name, ConfigError, RESERVED_HEADERS};
use crate::form;
use crate::uri;

/// RFC 8693 §3: the token type of an OAuth 2.0 access token.
pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";

/// RFC 8693 §2.1: the `grant_type` of a token exchange.
pub const TOKEN_EXCHANGE_GRANT: &str = "urn:ietf:params:oauth:grant-type:token-exchange";

/// How the gateway authenticates at the token endpoint (RFC 6749 §2.3.1).
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum ClientAuth {
    /// `client_secret_basic`: this `Authorization` header value.
    Basic(String),
    /// `client_secret_post`: these form fields (`&client_id=…&client_secret=…`).
    Post(String),
}

/// A validated `upstream_token` section.
#[derive(Clone)]
pub struct UpstreamToken {
    /// Token endpoint URL.
    pub uri: String,
    /// `host[:port]` of the endpoint.
    pub authority: String,
    /// Path and query of the endpoint.
    pub path: String,
    /// Envoy cluster that reaches it.
    pub cluster: Option<String>,
    /// Timeout of one exchange, in milliseconds.
    pub timeout_ms: u32,
    pub(crate) client_auth: ClientAuth,
    /// The form after the subject token: `&subject_token_type=…&requested_token_type=…`
    /// plus every `audience`, `resource` and `scope`.
    pub(crate) form_tail: String,
    /// The token type asked for (and required of `issued_token_type`).
    pub requested_token_type: String,
    /// The request header the upstream gets the token in (lowercase).
    pub header: String,
    /// Longest `Retry-After` (and back-off) after the endpoint failed, in seconds.
    pub retry_after: u32,
    /// The configured target, for logs (`audience` values, then `resource` values).
    pub target: Vec<String>,
}

impl UpstreamToken {
    /// The value of [`UpstreamToken::header`] for an exchanged `token`: `Bearer <token>` in
    /// `authorization`, the bare token in any other header.
    pub(crate) fn header_value(&self, token: &str) -> String {
        if self.header == "authorization" {
            format!("Bearer {token}")
        } else {
            token.to_string()
        }
    }
}

impl fmt::Debug for UpstreamToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamToken")
            .field("uri", &self.uri)
            .field("cluster", &self.cluster)
            .field("target", &self.target)
            .field("header", &self.header)
            .field("client_auth", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// Validates `upstream_token` at path `p`. `claim_headers`: the resource's claim header
/// names (the token's header may not be one of them); `forward`: the resource's `forward`.
pub(crate) fn parse(
    r: RawUpstreamToken,
    p: &str,
    claim_headers: &[(String, String)],
    forward: bool,
) -> Result<UpstreamToken, ConfigError> {
    if forward {
        return Err(ConfigError::new(
            p,
            "cannot be combined with forward: true (the client's token must never reach the \
             upstream; the exchanged token replaces it)",
        ));
    }
    let (authority, path, timeout_ms) = endpoint(&r.http_uri, p, 3000)?;
    if r.client_id.is_empty() || r.client_id.chars().any(char::is_control) {
        return Err(ConfigError::new(
            format!("{p}.client_id"),
            "must be non-empty, without control characters",
        ));
    }
    let client_auth = match r.client_auth.as_deref() {
        None | Some("client_secret_basic") => {
            ClientAuth::Basic(form::basic_authorization(&r.client_id, &r.client_secret))
        }
        Some("client_secret_post") => ClientAuth::Post(format!(
            "&client_id={}&client_secret={}",
            form::encode(&r.client_id),
            form::encode(&r.client_secret)
        )),
        Some(_) => {
            return Err(ConfigError::new(
                format!("{p}.client_auth"),
                "must be \"client_secret_basic\" or \"client_secret_post\"",
            ))
        }
    };
    let audience = r.audience.unwrap_or_default();
    let resource = r.resource.unwrap_or_default();
    if audience.is_empty() && resource.is_empty() {
        return Err(ConfigError::new(
            p,
            "names no target: give audience and/or resource (RFC 8693 §2.1), the upstream the \
             exchanged token is for",
        ));
    }
    for (i, a) in audience.iter().enumerate() {
        if a.is_empty() || a.chars().any(char::is_control) {
            return Err(ConfigError::new(
                format!("{p}.audience[{i}]"),
                "must be non-empty, without control characters",
            ));
        }
    }
    for (i, res) in resource.iter().enumerate() {
        let rp = format!("{p}.resource[{i}]");
        let parts = uri::parse(res)
            .ok_or_else(|| ConfigError::new(&rp, "must be an absolute URI (RFC 8707 §2)"))?;
        if parts.fragment.is_some() {
            return Err(ConfigError::new(
                &rp,
                "must not contain a fragment (RFC 8707 §2)",
            ));
        }
        check_web_uri(res, &rp)?;
    }
    let mut form_tail = format!("&subject_token_type={}", form::encode(ACCESS_TOKEN_TYPE));
    let requested_token_type = r
        .requested_token_type
        .unwrap_or_else(|| ACCESS_TOKEN_TYPE.to_string());
    if requested_token_type.is_empty()
        || !requested_token_type
            .bytes()
            .all(|b| (0x21..=0x7e).contains(&b))
    {
        return Err(ConfigError::new(
            format!("{p}.requested_token_type"),
            "must be a token type URI (visible ASCII, no spaces)",
        ));
    }
    form_tail.push_str(&format!(
        "&requested_token_type={}",
        form::encode(&requested_token_type)
    ));
    for a in &audience {
        form_tail.push_str(&format!("&audience={}", form::encode(a)));
    }
    for res in &resource {
        form_tail.push_str(&format!("&resource={}", form::encode(res)));
    }
    if let Some(scope) = &r.scope {
        let scopes: Vec<String> = scope.split(' ').map(ToString::to_string).collect();
        check_scopes(&scopes, &format!("{p}.scope"))?;
        form_tail.push_str(&format!("&scope={}", form::encode(scope)));
    }
    let header = r
        .header
        .as_deref()
        .unwrap_or("authorization")
        .to_ascii_lowercase();
    // The reserved headers (routing, framing, MCP transport) except `authorization`, the default.
    if !is_header_name(&header)
        || (header != "authorization" && RESERVED_HEADERS.contains(&header.as_str()))
    {
        return Err(ConfigError::new(
            format!("{p}.header"),
            "must be an HTTP header name other than routing, framing and MCP transport headers",
        ));
    }
    if claim_headers.iter().any(|(h, _)| *h == header) {
        return Err(ConfigError::new(
            format!("{p}.header"),
            "is also a claim_to_headers header",
        ));
    }
    let retry_after = r.retry_after_seconds.unwrap_or(10);
    if !(1..=3600).contains(&retry_after) {
        return Err(ConfigError::new(
            format!("{p}.retry_after_seconds"),
            "must be between 1 and 3600",
        ));
    }
    if let ClientAuth::Post(fields) = &client_auth {
        form_tail.push_str(fields);
    }
    let target = audience.into_iter().chain(resource).collect();
    Ok(UpstreamToken {
        uri: r.http_uri.uri,
        authority,
        path,
        cluster: r.http_uri.cluster,
        timeout_ms,
        client_auth,
        form_tail,
        requested_token_type,
        header,
        retry_after,
        target,
    })
}
