//! The JSON shapes of the configuration, exactly as users write them.
//!
//! These types mirror `schema/config.schema.json`; a test checks that every example config
//! in the repository validates against that schema *and* parses here, so the two cannot
//! drift. Each type is read from the document's tree by its `read` ([`super::walk`]: the
//! field's path in every error). Unknown fields are refused, so a typo is an error that names the field instead of
//! a silently ignored setting. Field names follow Envoy's `jwt_authn` where one exists
//! (`issuer`, `audiences`, `remote_jwks.http_uri`, `local_jwks.inline_string`,
//! `clock_skew_seconds`, `forward`, `claim_to_headers`).

use alloc::string::String;
use alloc::vec::Vec;
use serde_json::Value;

use super::walk::Obj;
use super::ConfigError;

#[derive(Debug)]
pub(crate) struct RawConfig {
    pub resources: Vec<RawResource>,
    pub unmatched_requests: Option<String>,
    pub token_cache: Option<RawTokenCache>,
    pub max_token_bytes: Option<u32>,
    pub envoy_wasm: Option<RawEnvoyWasm>,
}

#[derive(Debug)]
pub(crate) struct RawEnvoyWasm {
    pub allow_on_headers_stop_iteration: Option<bool>,
}

#[derive(Debug)]
pub(crate) struct RawTokenCache {
    pub max_entries: Option<u32>,
}

#[derive(Debug)]
pub(crate) struct RawResource {
    pub resource: String,
    pub hosts: Option<Vec<String>>,
    pub authorization_servers: Vec<String>,
    pub scopes_supported: Option<Vec<String>>,
    pub required_scopes: Option<Vec<String>>,
    pub resource_name: Option<String>,
    pub resource_documentation: Option<String>,
    pub resource_policy_uri: Option<String>,
    pub resource_tos_uri: Option<String>,
    pub bearer_methods_supported: Option<Vec<String>>,
    pub jwks_uri: Option<String>,
    pub audiences: Option<Vec<String>>,
    pub audience_ignore_origin_trailing_slash: Option<bool>,
    pub issuers: Vec<RawIssuer>,
    pub forward: Option<bool>,
    pub claim_to_headers: Option<Vec<RawClaimToHeader>>,
    pub allowed_origins: Option<Vec<String>>,
    pub metadata_max_age_seconds: Option<u32>,
    pub preflight_max_age_seconds: Option<u32>,
    pub scope_hierarchy: Option<alloc::collections::BTreeMap<String, Vec<String>>>,
    pub mcp: Option<RawMcp>,
    pub upstream_token: Option<RawUpstreamToken>,
}

#[derive(Debug)]
pub(crate) struct RawMcp {
    pub rules: Option<Vec<RawRule>>,
    pub max_body_bytes: Option<u32>,
    pub filter_lists: Option<bool>,
    pub max_list_bytes: Option<u32>,
}

#[derive(Debug)]
pub(crate) struct RawRule {
    pub method: String,
    pub name: Option<String>,
    pub scopes: Vec<String>,
}

#[derive(Debug)]
pub(crate) struct RawIssuer {
    pub issuer: String,
    pub algorithms: Option<Vec<String>>,
    pub local_jwks: Option<RawLocalJwks>,
    pub remote_jwks: Option<RawRemoteJwks>,
    pub introspection: Option<RawIntrospection>,
    pub typ: Option<String>,
    pub clock_skew_seconds: Option<u32>,
}

#[derive(Debug)]
pub(crate) struct RawLocalJwks {
    pub inline_string: Option<String>,
    pub keys: Option<Vec<serde_json::Value>>,
}

#[derive(Debug)]
pub(crate) struct RawRemoteJwks {
    pub http_uri: RawHttpUri,
    pub cache_duration_seconds: Option<u32>,
    pub min_cache_duration_seconds: Option<u32>,
    pub max_cache_duration_seconds: Option<u32>,
    pub max_staleness_seconds: Option<u32>,
    pub refetch_cooldown_seconds: Option<u32>,
    pub retry_after_seconds: Option<u32>,
    pub max_body_bytes: Option<u32>,
}

#[derive(Debug)]
pub(crate) struct RawHttpUri {
    pub uri: String,
    pub cluster: Option<String>,
    pub timeout_ms: Option<u32>,
}

#[derive(Debug)]
pub(crate) struct RawClaimToHeader {
    pub header_name: String,
    pub claim_name: String,
}

#[derive(Debug)]
pub(crate) struct RawIntrospection {
    pub http_uri: RawHttpUri,
    pub client_id: String,
    pub client_secret: String,
    pub cache_max_seconds: Option<u32>,
    pub retry_after_seconds: Option<u32>,
}

#[derive(Debug)]
pub(crate) struct RawUpstreamToken {
    pub http_uri: RawHttpUri,
    pub client_id: String,
    pub client_secret: String,
    pub client_auth: Option<String>,
    pub audience: Option<Vec<String>>,
    pub resource: Option<Vec<String>>,
    pub scope: Option<String>,
    pub requested_token_type: Option<String>,
    pub header: Option<String>,
    pub retry_after_seconds: Option<u32>,
}

impl RawConfig {
    pub(super) fn read(v: &Value, path: String) -> Result<Self, ConfigError> {
        let o = Obj::new(
            v,
            path,
            &[
                "resources",
                "unmatched_requests",
                "token_cache",
                "max_token_bytes",
                "envoy_wasm",
            ],
        )?;
        Ok(RawConfig {
            resources: o.req_objs("resources", RawResource::read)?,
            unmatched_requests: o.str("unmatched_requests")?,
            token_cache: o.obj("token_cache", RawTokenCache::read)?,
            max_token_bytes: o.u32("max_token_bytes")?,
            envoy_wasm: o.obj("envoy_wasm", RawEnvoyWasm::read)?,
        })
    }
}

impl RawEnvoyWasm {
    pub(super) fn read(v: &Value, path: String) -> Result<Self, ConfigError> {
        let o = Obj::new(v, path, &["allow_on_headers_stop_iteration"])?;
        Ok(RawEnvoyWasm {
            allow_on_headers_stop_iteration: o.bool("allow_on_headers_stop_iteration")?,
        })
    }
}

impl RawTokenCache {
    pub(super) fn read(v: &Value, path: String) -> Result<Self, ConfigError> {
        let o = Obj::new(v, path, &["max_entries"])?;
        Ok(RawTokenCache {
            max_entries: o.u32("max_entries")?,
        })
    }
}

impl RawResource {
    pub(super) fn read(v: &Value, path: String) -> Result<Self, ConfigError> {
        let o = Obj::new(
            v,
            path,
            &[
                "resource",
                "hosts",
                "authorization_servers",
                "scopes_supported",
                "required_scopes",
                "resource_name",
                "resource_documentation",
                "resource_policy_uri",
                "resource_tos_uri",
                "bearer_methods_supported",
                "jwks_uri",
                "audiences",
                "audience_ignore_origin_trailing_slash",
                "issuers",
                "forward",
                "claim_to_headers",
                "allowed_origins",
                "metadata_max_age_seconds",
                "preflight_max_age_seconds",
                "scope_hierarchy",
                "mcp",
                "upstream_token",
            ],
        )?;
        Ok(RawResource {
            resource: o.req_str("resource")?,
            hosts: o.strs("hosts")?,
            authorization_servers: o.req_strs("authorization_servers")?,
            scopes_supported: o.strs("scopes_supported")?,
            required_scopes: o.strs("required_scopes")?,
            resource_name: o.str("resource_name")?,
            resource_documentation: o.str("resource_documentation")?,
            resource_policy_uri: o.str("resource_policy_uri")?,
            resource_tos_uri: o.str("resource_tos_uri")?,
            bearer_methods_supported: o.strs("bearer_methods_supported")?,
            jwks_uri: o.str("jwks_uri")?,
            audiences: o.strs("audiences")?,
            audience_ignore_origin_trailing_slash: o
                .bool("audience_ignore_origin_trailing_slash")?,
            issuers: o.req_objs("issuers", RawIssuer::read)?,
            forward: o.bool("forward")?,
            claim_to_headers: o.objs("claim_to_headers", RawClaimToHeader::read)?,
            allowed_origins: o.strs("allowed_origins")?,
            metadata_max_age_seconds: o.u32("metadata_max_age_seconds")?,
            preflight_max_age_seconds: o.u32("preflight_max_age_seconds")?,
            scope_hierarchy: o.string_lists("scope_hierarchy")?,
            mcp: o.obj("mcp", RawMcp::read)?,
            upstream_token: o.obj("upstream_token", RawUpstreamToken::read)?,
        })
    }
}

impl RawMcp {
    pub(super) fn read(v: &Value, path: String) -> Result<Self, ConfigError> {
        let o = Obj::new(
            v,
            path,
            &["rules", "max_body_bytes", "filter_lists", "max_list_bytes"],
        )?;
        Ok(RawMcp {
            rules: o.objs("rules", RawRule::read)?,
            max_body_bytes: o.u32("max_body_bytes")?,
            filter_lists: o.bool("filter_lists")?,
            max_list_bytes: o.u32("max_list_bytes")?,
        })
    }
}

impl RawRule {
    pub(super) fn read(v: &Value, path: String) -> Result<Self, ConfigError> {
        let o = Obj::new(v, path, &["method", "name", "scopes"])?;
        Ok(RawRule {
            method: o.req_str("method")?,
            name: o.str("name")?,
            scopes: o.req_strs("scopes")?,
        })
    }
}

impl RawIssuer {
    pub(super) fn read(v: &Value, path: String) -> Result<Self, ConfigError> {
        let o = Obj::new(
            v,
            path,
            &[
                "issuer",
                "algorithms",
                "local_jwks",
                "remote_jwks",
                "introspection",
                "typ",
                "clock_skew_seconds",
            ],
        )?;
        Ok(RawIssuer {
            issuer: o.req_str("issuer")?,
            algorithms: o.strs("algorithms")?,
            local_jwks: o.obj("local_jwks", RawLocalJwks::read)?,
            remote_jwks: o.obj("remote_jwks", RawRemoteJwks::read)?,
            introspection: o.obj("introspection", RawIntrospection::read)?,
            typ: o.str("typ")?,
            clock_skew_seconds: o.u32("clock_skew_seconds")?,
        })
    }
}

impl RawLocalJwks {
    pub(super) fn read(v: &Value, path: String) -> Result<Self, ConfigError> {
        let o = Obj::new(v, path, &["inline_string", "keys"])?;
        Ok(RawLocalJwks {
            inline_string: o.str("inline_string")?,
            keys: o.values("keys")?,
        })
    }
}

impl RawRemoteJwks {
    pub(super) fn read(v: &Value, path: String) -> Result<Self, ConfigError> {
        let o = Obj::new(
            v,
            path,
            &[
                "http_uri",
                "cache_duration_seconds",
                "min_cache_duration_seconds",
                "max_cache_duration_seconds",
                "max_staleness_seconds",
                "refetch_cooldown_seconds",
                "retry_after_seconds",
                "max_body_bytes",
            ],
        )?;
        Ok(RawRemoteJwks {
            http_uri: o.req_obj("http_uri", RawHttpUri::read)?,
            cache_duration_seconds: o.u32("cache_duration_seconds")?,
            min_cache_duration_seconds: o.u32("min_cache_duration_seconds")?,
            max_cache_duration_seconds: o.u32("max_cache_duration_seconds")?,
            max_staleness_seconds: o.u32("max_staleness_seconds")?,
            refetch_cooldown_seconds: o.u32("refetch_cooldown_seconds")?,
            retry_after_seconds: o.u32("retry_after_seconds")?,
            max_body_bytes: o.u32("max_body_bytes")?,
        })
    }
}

impl RawHttpUri {
    pub(super) fn read(v: &Value, path: String) -> Result<Self, ConfigError> {
        let o = Obj::new(v, path, &["uri", "cluster", "timeout_ms"])?;
        Ok(RawHttpUri {
            uri: o.req_str("uri")?,
            cluster: o.str("cluster")?,
            timeout_ms: o.u32("timeout_ms")?,
        })
    }
}

impl RawClaimToHeader {
    pub(super) fn read(v: &Value, path: String) -> Result<Self, ConfigError> {
        let o = Obj::new(v, path, &["header_name", "claim_name"])?;
        Ok(RawClaimToHeader {
            header_name: o.req_str("header_name")?,
            claim_name: o.req_str("claim_name")?,
        })
    }
}

impl RawIntrospection {
    pub(super) fn read(v: &Value, path: String) -> Result<Self, ConfigError> {
        let o = Obj::new(
            v,
            path,
            &[
                "http_uri",
                "client_id",
                "client_secret",
                "cache_max_seconds",
                "retry_after_seconds",
            ],
        )?;
        Ok(RawIntrospection {
            http_uri: o.req_obj("http_uri", RawHttpUri::read)?,
            client_id: o.req_str("client_id")?,
            client_secret: o.req_str("client_secret")?,
            cache_max_seconds: o.u32("cache_max_seconds")?,
            retry_after_seconds: o.u32("retry_after_seconds")?,
        })
    }
}

impl RawUpstreamToken {
    pub(super) fn read(v: &Value, path: String) -> Result<Self, ConfigError> {
        let o = Obj::new(
            v,
            path,
            &[
                "http_uri",
                "client_id",
                "client_secret",
                "client_auth",
                "audience",
                "resource",
                "scope",
                "requested_token_type",
                "header",
                "retry_after_seconds",
            ],
        )?;
        Ok(RawUpstreamToken {
            http_uri: o.req_obj("http_uri", RawHttpUri::read)?,
            client_id: o.req_str("client_id")?,
            client_secret: o.req_str("client_secret")?,
            client_auth: o.str("client_auth")?,
            audience: o.strs("audience")?,
            resource: o.strs("resource")?,
            scope: o.str("scope")?,
            requested_token_type: o.str("requested_token_type")?,
            header: o.str("header")?,
            retry_after_seconds: o.u32("retry_after_seconds")?,
        })
    }
}
