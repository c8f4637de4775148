//! The JSON shapes of the configuration, exactly as users write them.
//!
//! These types mirror `schema/config.schema.json`; a test checks that every example config
//! in the repository validates against that schema *and* parses here, so the two cannot
//! drift. Unknown fields are refused, so a typo is an error that names the field instead of
//! a silently ignored setting. Field names follow Envoy's `jwt_authn` where one exists
//! (`issuer`, `audiences`, `remote_jwks.http_uri`, `local_jwks.inline_string`,
//! `clock_skew_seconds`, `forward`, `claim_to_headers`).

use alloc::string::String;
use alloc::vec::Vec;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    pub resources: Vec<RawResource>,
    #[serde(default)]
    pub unmatched_requests: Option<String>,
    #[serde(default)]
    pub token_cache: Option<RawTokenCache>,
    #[serde(default)]
    pub max_token_bytes: Option<u32>,
    #[serde(default)]
    pub envoy_wasm: Option<RawEnvoyWasm>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawEnvoyWasm {
    #[serde(default)]
    pub allow_on_headers_stop_iteration: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTokenCache {
    #[serde(default)]
    pub max_entries: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawResource {
    pub resource: String,
    #[serde(default)]
    pub hosts: Option<Vec<String>>,
    pub authorization_servers: Vec<String>,
    #[serde(default)]
    pub scopes_supported: Option<Vec<String>>,
    #[serde(default)]
    pub required_scopes: Option<Vec<String>>,
    #[serde(default)]
    pub resource_name: Option<String>,
    #[serde(default)]
    pub resource_documentation: Option<String>,
    #[serde(default)]
    pub resource_policy_uri: Option<String>,
    #[serde(default)]
    pub resource_tos_uri: Option<String>,
    #[serde(default)]
    pub bearer_methods_supported: Option<Vec<String>>,
    #[serde(default)]
    pub jwks_uri: Option<String>,
    #[serde(default)]
    pub audiences: Option<Vec<String>>,
    #[serde(default)]
    pub audience_ignore_origin_trailing_slash: Option<bool>,
    pub issuers: Vec<RawIssuer>,
    #[serde(default)]
    pub forward: Option<bool>,
    #[serde(default)]
    pub claim_to_headers: Option<Vec<RawClaimToHeader>>,
    #[serde(default)]
    pub allowed_origins: Option<Vec<String>>,
    #[serde(default)]
    pub metadata_max_age_seconds: Option<u32>,
    #[serde(default)]
    pub preflight_max_age_seconds: Option<u32>,
    #[serde(default)]
    pub scope_hierarchy: Option<alloc::collections::BTreeMap<String, Vec<String>>>,
    #[serde(default)]
    pub mcp: Option<RawMcp>,
    #[serde(default)]
    pub upstream_token: Option<RawUpstreamToken>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMcp {
    #[serde(default)]
    pub rules: Option<Vec<RawRule>>,
    #[serde(default)]
    pub max_body_bytes: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRule {
    pub method: String,
    #[serde(default)]
    pub name: Option<String>,
    pub scopes: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawIssuer {
    pub issuer: String,
    #[serde(default)]
    pub algorithms: Option<Vec<String>>,
    #[serde(default)]
    pub local_jwks: Option<RawLocalJwks>,
    #[serde(default)]
    pub remote_jwks: Option<RawRemoteJwks>,
    #[serde(default)]
    pub introspection: Option<RawIntrospection>,
    #[serde(default)]
    pub typ: Option<String>,
    #[serde(default)]
    pub clock_skew_seconds: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLocalJwks {
    #[serde(default)]
    pub inline_string: Option<String>,
    #[serde(default)]
    pub keys: Option<Vec<serde_json::Value>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRemoteJwks {
    pub http_uri: RawHttpUri,
    #[serde(default)]
    pub cache_duration_seconds: Option<u32>,
    #[serde(default)]
    pub min_cache_duration_seconds: Option<u32>,
    #[serde(default)]
    pub max_cache_duration_seconds: Option<u32>,
    #[serde(default)]
    pub max_staleness_seconds: Option<u32>,
    #[serde(default)]
    pub refetch_cooldown_seconds: Option<u32>,
    #[serde(default)]
    pub retry_after_seconds: Option<u32>,
    #[serde(default)]
    pub max_body_bytes: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHttpUri {
    pub uri: String,
    #[serde(default)]
    pub cluster: Option<String>,
    #[serde(default)]
    pub timeout_ms: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawClaimToHeader {
    pub header_name: String,
    pub claim_name: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawIntrospection {
    pub http_uri: RawHttpUri,
    pub client_id: String,
    pub client_secret: String,
    #[serde(default)]
    pub cache_max_seconds: Option<u32>,
    #[serde(default)]
    pub retry_after_seconds: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawUpstreamToken {
    pub http_uri: RawHttpUri,
    pub client_id: String,
    pub client_secret: String,
    #[serde(default)]
    pub client_auth: Option<String>,
    #[serde(default)]
    pub audience: Option<Vec<String>>,
    #[serde(default)]
    pub resource: Option<Vec<String>>,
    #[serde(default)]
    pub scope: Option<String>,
    #[serde(default)]
    pub requested_token_type: Option<String>,
    #[serde(default)]
    pub header: Option<String>,
    #[serde(default)]
    pub retry_after_seconds: Option<u32>,
}
