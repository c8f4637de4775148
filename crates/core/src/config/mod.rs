//! The one configuration format, shared by every host (Envoy filter config, Istio
//! `WasmPlugin.pluginConfig`, Worker variable), and its validation.
//!
//! [`Config::from_json`] either returns a fully checked configuration or a [`ConfigError`]
//! that names the offending field by its path (`resources[0].issuers[1].remote_jwks.http_uri.uri`).
//! There is no half-configured state: a host that cannot load its config must refuse to
//! start, so that no request is ever let through unchecked. Everything that can be computed
//! once (the metadata document, the metadata URL, normalised audiences, header names) is
//! computed here, not per request.

pub mod host;
mod path;
mod raw;
pub(crate) mod upstream_token;
mod walk;

pub use host::{load, Host, Loaded};
pub use upstream_token::{UpstreamToken, ACCESS_TOKEN_TYPE, TOKEN_EXCHANGE_GRANT};

use alloc::borrow::ToOwned;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use crate::crypto::{AlgSet, Algorithm};
use crate::keys::IssuerId;
use crate::metadata;
use crate::uri;

/// A configuration error, naming the field it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Path of the field, e.g. `resources[0].issuers[1].remote_jwks.http_uri.uri`; empty for
    /// the document itself.
    pub path: String,
    /// What is wrong with it.
    pub message: String,
}

impl ConfigError {
    pub(crate) fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "config: {}", self.message)
        } else {
            write!(f, "config: {}: {}", self.path, self.message)
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for ConfigError {}

/// What to do with a request that no configured resource covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unmatched {
    /// Refuse it (403). The default: a path the filter does not recognise is not let through.
    Deny,
    /// Pass it upstream untouched (for health checks and public paths on the same host).
    Allow,
}

/// Whether the JOSE `typ` header is enforced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TypPolicy {
    /// Require `at+jwt` or `application/at+jwt`, case-insensitively (RFC 9068 §4).
    AtJwt,
    /// Accept any `typ` (some identity providers still send `JWT`).
    Any,
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub(crate) resources: Vec<Resource>,
    pub(crate) issuers: Vec<Issuer>,
    pub(crate) unmatched: Unmatched,
    pub(crate) token_cache_max_entries: usize,
    pub(crate) max_token_bytes: usize,
    pub(crate) wasm_holds_headers: bool,
}

/// One protected resource (one MCP endpoint).
#[derive(Debug, Clone)]
pub struct Resource {
    /// The canonical resource identifier exactly as configured (and as published).
    pub resource: String,
    pub(crate) hosts: Option<Vec<String>>,
    /// Path prefix this resource protects, without a trailing `/` (empty for the origin).
    pub(crate) route_prefix: String,
    /// Path of the path-inserted well-known metadata URL.
    pub(crate) metadata_path: String,
    /// Absolute metadata URL, as advertised in `resource_metadata`.
    pub(crate) metadata_url: String,
    /// The serialized RFC 9728 document.
    pub(crate) metadata_body: String,
    pub(crate) audiences: Vec<String>,
    pub(crate) fold_origin_slash: bool,
    pub(crate) issuers: Vec<IssuerId>,
    pub(crate) required_scopes: Vec<String>,
    /// `scope` value of the no-credentials challenge, if any.
    pub(crate) challenge_scope: Option<String>,
    pub(crate) claim_to_headers: Vec<(String, String)>,
    /// What a forward removes from the request: the client's copies of the claim headers,
    /// and `Authorization` unless `forward`; built once, shared by every forward.
    pub(crate) strip_headers: Arc<[String]>,
    /// The same and `accept-encoding` (a forward that asks for an uncompressed answer).
    pub(crate) strip_headers_encoding: Arc<[String]>,
    pub(crate) allowed_origins: Vec<String>,
    pub(crate) metadata_max_age: u32,
    pub(crate) preflight_max_age: u32,
    /// For each scope, every scope it implies (transitively), from `scope_hierarchy`.
    pub(crate) implied_scopes: Vec<(String, Vec<String>)>,
    /// MCP-aware rules; `None` when the resource has none (the body is then never read).
    pub(crate) mcp: Option<McpRules>,
    /// RFC 8693 token exchange toward the upstream (`upstream_token`), if configured.
    pub(crate) upstream_token: Option<UpstreamToken>,
}

/// MCP-aware authorization rules of a resource.
#[derive(Debug, Clone)]
pub struct McpRules {
    pub(crate) rules: Vec<crate::mcp::Rule>,
    pub(crate) max_body_bytes: usize,
    /// Whether list answers keep only what the token may use ([`crate::lists`]); only ever
    /// true with rules (without them every entry may be used).
    pub(crate) filter_lists: bool,
    /// The largest list answer (JSON body, or one SSE event) the gateway filters; larger
    /// ones are answered with a JSON-RPC error instead of being forwarded unfiltered.
    pub(crate) max_list_bytes: usize,
}

/// A trusted issuer of one resource.
#[derive(Debug, Clone)]
pub struct Issuer {
    /// The `iss` value, compared exactly.
    pub issuer: String,
    /// The resource this issuer belongs to (index into the config's resources).
    pub resource: usize,
    pub(crate) algorithms: AlgSet,
    /// Where its keys come from.
    pub source: KeySource,
    pub(crate) typ: TypPolicy,
    pub(crate) clock_skew: u64,
    /// RFC 7662 introspection for tokens that are not JWTs.
    pub introspection: Option<Introspection>,
}

/// Where an issuer's keys come from.
#[derive(Debug, Clone)]
pub enum KeySource {
    /// A JWKS document given in the config.
    Local(String),
    /// A JWKS document the host fetches.
    Remote(RemoteJwks),
    /// No keys: the issuer's tokens are opaque and introspected.
    None,
}

/// How to reach an RFC 7662 introspection endpoint.
#[derive(Clone)]
pub struct Introspection {
    /// Endpoint URL.
    pub uri: String,
    /// `host[:port]` of the endpoint.
    pub authority: String,
    /// Path and query of the endpoint.
    pub path: String,
    /// Envoy cluster that reaches it.
    pub cluster: Option<String>,
    /// Timeout in milliseconds.
    pub timeout_ms: u32,
    /// `Authorization: Basic …` value (client_secret_basic, RFC 7662 §2.1).
    pub(crate) authorization: String,
    /// Longest time an introspection result is cached (never past the token's `exp`).
    pub cache_max_seconds: u32,
    /// `Retry-After` of the 503 sent when the endpoint fails.
    pub retry_after: u32,
}

impl fmt::Debug for Introspection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Introspection")
            .field("uri", &self.uri)
            .field("cluster", &self.cluster)
            .field("authorization", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// How a host fetches and caches a remote JWKS. Times are in seconds.
#[derive(Debug, Clone)]
pub struct RemoteJwks {
    /// The JWKS URL.
    pub uri: String,
    /// `host[:port]` of [`Self::uri`], for the `:authority` of a proxied fetch.
    pub authority: String,
    /// Path and query of [`Self::uri`].
    pub path: String,
    /// Envoy cluster that reaches the JWKS server (required by the Envoy host).
    pub cluster: Option<String>,
    /// Fetch timeout in milliseconds.
    pub timeout_ms: u32,
    /// Lifetime of fetched keys when the response has no usable `Cache-Control: max-age`.
    pub cache_duration: u32,
    /// Lower bound on a `max-age` (refresh no more often than this).
    pub min_cache_duration: u32,
    /// Upper bound on a `max-age` (refresh at least this often).
    pub max_cache_duration: u32,
    /// How long after the last successful fetch cached keys keep serving while the JWKS
    /// endpoint fails.
    pub max_staleness: u32,
    /// Minimum time between two refetches triggered by an unknown `kid` or a failure.
    pub refetch_cooldown: u32,
    /// `Retry-After` sent with a 503 while no keys are usable.
    pub retry_after: u32,
    /// Largest JWKS body the host accepts.
    pub max_body_bytes: u32,
}

impl Resource {
    /// Where this resource's RFC 9728 metadata is served (the `resource_metadata` of its
    /// challenges).
    pub fn metadata_url(&self) -> &str {
        &self.metadata_url
    }

    /// The audiences a token must name, in normalised form (see `uri::audience_form`).
    pub fn audiences(&self) -> &[String] {
        &self.audiences
    }

    /// The token exchange toward the upstream, if configured.
    pub fn upstream_token(&self) -> Option<&UpstreamToken> {
        self.upstream_token.as_ref()
    }
}

impl Config {
    /// Parses and validates a JSON configuration.
    pub fn from_json(json: &[u8]) -> Result<Self, ConfigError> {
        let mut de = serde_json::Deserializer::from_slice(json);
        let walk::Strict(doc) = serde::Deserialize::deserialize(&mut de).map_err(|e| {
            let path = path::at(json, e.line(), e.column());
            ConfigError::new(path, strip_position(&e.to_string()))
        })?;
        de.end()
            .map_err(|_| ConfigError::new("", "trailing characters after the JSON document"))?;
        let raw = raw::RawConfig::read(&doc, String::new())?;
        Self::from_raw(raw)
    }

    fn from_raw(raw: raw::RawConfig) -> Result<Self, ConfigError> {
        if raw.resources.is_empty() {
            return Err(ConfigError::new(
                "resources",
                "at least one resource is required",
            ));
        }
        let unmatched = match raw.unmatched_requests.as_deref() {
            None | Some("deny") => Unmatched::Deny,
            Some("allow") => Unmatched::Allow,
            Some(_) => {
                return Err(ConfigError::new(
                    "unmatched_requests",
                    "must be \"deny\" or \"allow\"",
                ))
            }
        };
        let max_token_bytes = raw.max_token_bytes.unwrap_or(16 * 1024) as usize;
        if !(512..=65536).contains(&max_token_bytes) {
            return Err(ConfigError::new(
                "max_token_bytes",
                "must be between 512 and 65536",
            ));
        }
        let token_cache_max_entries =
            raw.token_cache.and_then(|t| t.max_entries).unwrap_or(4096) as usize;
        if token_cache_max_entries > 1_000_000 {
            return Err(ConfigError::new(
                "token_cache.max_entries",
                "must be at most 1000000",
            ));
        }

        let mut resources = Vec::with_capacity(raw.resources.len());
        let mut issuers = Vec::new();
        for (i, r) in raw.resources.into_iter().enumerate() {
            let p = format!("resources[{i}]");
            resources.push(resource(r, &p, i, &mut issuers)?);
        }
        for (i, a) in resources.iter().enumerate() {
            for (j, b) in resources.iter().enumerate().skip(i + 1) {
                let hosts_overlap = match (&a.hosts, &b.hosts) {
                    (Some(x), Some(y)) => x.iter().any(|h| y.contains(h)),
                    _ => true,
                };
                if hosts_overlap && a.route_prefix == b.route_prefix {
                    return Err(ConfigError::new(
                        format!("resources[{j}].resource"),
                        format!("protects the same path as resources[{i}]; give them distinct paths or hosts"),
                    ));
                }
            }
        }
        let wasm_holds_headers = raw
            .envoy_wasm
            .and_then(|w| w.allow_on_headers_stop_iteration)
            .unwrap_or(false);
        Ok(Config {
            resources,
            issuers,
            unmatched,
            token_cache_max_entries,
            max_token_bytes,
            wasm_holds_headers,
        })
    }

    /// The configured resources.
    pub fn resources(&self) -> &[Resource] {
        &self.resources
    }

    /// Every issuer of every resource, with the id the [`crate::KeyStore`] knows it by.
    pub fn issuers(&self) -> impl Iterator<Item = (IssuerId, &Issuer)> {
        self.issuers
            .iter()
            .enumerate()
            .map(|(i, iss)| (IssuerId(i), iss))
    }

    /// One issuer by id.
    pub fn issuer(&self, id: IssuerId) -> Option<&Issuer> {
        self.issuers.get(id.0)
    }

    /// The config path of an issuer, `resources[<resource>].issuers[<position>]`, for errors
    /// that name the field.
    pub fn issuer_path(&self, id: IssuerId) -> String {
        let Some(iss) = self.issuer(id) else {
            return String::new();
        };
        let pos = self
            .issuers()
            .filter(|(_, i)| i.resource == iss.resource)
            .position(|(other, _)| other == id)
            .unwrap_or(0);
        format!("resources[{}].issuers[{}]", iss.resource, pos)
    }

    /// For hosts that reach other servers only through named upstreams (Envoy calls
    /// clusters, not URLs): every remote JWKS and introspection endpoint must name its
    /// cluster. `host` names the host in the message. Called at config load.
    pub fn require_clusters(&self, host: &str) -> Result<(), ConfigError> {
        for (id, iss) in self.issuers() {
            let missing = |field: &str, uri: &str| {
                ConfigError::new(
                    format!("{}.{field}", self.issuer_path(id)),
                    format!("is required by the {host}: name the Envoy cluster that reaches {uri}"),
                )
            };
            if let Some(intro) = &iss.introspection {
                if intro.cluster.is_none() {
                    return Err(missing("introspection.http_uri.cluster", &intro.uri));
                }
            }
            if let KeySource::Remote(remote) = &iss.source {
                if remote.cluster.is_none() {
                    return Err(missing("remote_jwks.http_uri.cluster", &remote.uri));
                }
            }
        }
        for (i, res) in self.resources.iter().enumerate() {
            if let Some(u) = res.upstream_token.as_ref().filter(|u| u.cluster.is_none()) {
                return Err(ConfigError::new(
                    format!("resources[{i}].upstream_token.http_uri.cluster"),
                    format!(
                        "is required by the {host}: name the Envoy cluster that reaches {}",
                        u.uri
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Capacity of the verified-token cache (0 disables it).
    pub fn token_cache_max_entries(&self) -> usize {
        self.token_cache_max_entries
    }

    /// `envoy_wasm.allow_on_headers_stop_iteration`: the operator says the Wasm plugin config
    /// sets Envoy's setting of that name, so the proxy-wasm filter may hold a request's headers
    /// while it reads the body for MCP rules (the upstream then sees nothing of a refused
    /// request). Off (the default, and what a stock Istio `WasmPlugin` or Envoy Gateway
    /// `EnvoyExtensionPolicy` gives): the filter checks the token on the headers, lets them
    /// go, and holds the body until the rules decide. Other hosts ignore it.
    pub fn wasm_holds_headers(&self) -> bool {
        self.wasm_holds_headers
    }
}

/// serde_json appends " at line 1 column 42"; the path already says where.
fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg.get(..i).unwrap_or(msg).to_owned(),
        None => msg.to_owned(),
    }
}

// Not inlined into `from_raw`: a config is loaded once, and the Wasm filter's size is
// bounded (512 KiB); inlined, this grew `from_raw` by more than its own size.
#[inline(never)]
fn resource(
    r: raw::RawResource,
    p: &str,
    index: usize,
    issuers_out: &mut Vec<Issuer>,
) -> Result<Resource, ConfigError> {
    let rp = format!("{p}.resource");
    let parts = uri::parse(&r.resource)
        .ok_or_else(|| ConfigError::new(&rp, "must be an absolute URI (https://host/path)"))?;
    check_web_uri(&r.resource, &rp)?;
    if parts.fragment.is_some() {
        return Err(ConfigError::new(
            &rp,
            "must not contain a fragment (RFC 8707 §2)",
        ));
    }
    if parts.query.is_some() {
        return Err(ConfigError::new(&rp, "must not contain a query"));
    }
    let route_prefix = parts.path.trim_end_matches('/').to_string();
    let metadata_path = format!("{}{}", metadata::WELL_KNOWN, route_prefix);
    let origin = r
        .resource
        .strip_suffix(parts.path)
        .unwrap_or(&r.resource)
        .to_string();
    let metadata_url = format!("{origin}{metadata_path}");

    let hosts = match r.hosts {
        None => None,
        Some(h) if h.is_empty() => {
            return Err(ConfigError::new(
                format!("{p}.hosts"),
                "must not be empty when given",
            ))
        }
        Some(h) => {
            let mut out = Vec::with_capacity(h.len());
            for (i, host) in h.iter().enumerate() {
                if uri::split_host_port(host).is_none() || host.is_empty() || host.contains('/') {
                    return Err(ConfigError::new(
                        format!("{p}.hosts[{i}]"),
                        "must be host or host:port",
                    ));
                }
                out.push(host.to_ascii_lowercase());
            }
            Some(out)
        }
    };

    if r.authorization_servers.is_empty() {
        return Err(ConfigError::new(
            format!("{p}.authorization_servers"),
            "MCP requires at least one authorization server",
        ));
    }
    for (i, a) in r.authorization_servers.iter().enumerate() {
        check_web_uri(a, &format!("{p}.authorization_servers[{i}]"))?;
    }
    let scopes_supported = r.scopes_supported.unwrap_or_default();
    check_scopes(&scopes_supported, &format!("{p}.scopes_supported"))?;
    let required_scopes = r.required_scopes.unwrap_or_default();
    check_scopes(&required_scopes, &format!("{p}.required_scopes"))?;
    for (name, v) in [
        ("resource_documentation", &r.resource_documentation),
        ("resource_policy_uri", &r.resource_policy_uri),
        ("resource_tos_uri", &r.resource_tos_uri),
        ("jwks_uri", &r.jwks_uri),
    ] {
        if let Some(v) = v {
            check_web_uri(v, &format!("{p}.{name}"))?;
        }
    }
    if let Some(n) = &r.resource_name {
        if n.is_empty() {
            return Err(ConfigError::new(
                format!("{p}.resource_name"),
                "must not be empty",
            ));
        }
    }
    let bearer_methods = r
        .bearer_methods_supported
        .unwrap_or_else(|| vec!["header".into()]);
    if bearer_methods.iter().any(|m| m != "header") {
        return Err(ConfigError::new(
            format!("{p}.bearer_methods_supported"),
            "only \"header\" is supported: tokens in a query or body are never accepted",
        ));
    }

    let fold_origin_slash = r.audience_ignore_origin_trailing_slash.unwrap_or(true);
    let audiences_raw = r.audiences.unwrap_or_else(|| vec![r.resource.clone()]);
    if audiences_raw.is_empty() {
        return Err(ConfigError::new(
            format!("{p}.audiences"),
            "must not be empty when given",
        ));
    }
    let mut audiences = Vec::with_capacity(audiences_raw.len());
    for (i, a) in audiences_raw.iter().enumerate() {
        if a.is_empty() {
            return Err(ConfigError::new(
                format!("{p}.audiences[{i}]"),
                "must not be empty",
            ));
        }
        audiences.push(uri::audience_form(a, fold_origin_slash));
    }

    if r.issuers.is_empty() {
        return Err(ConfigError::new(
            format!("{p}.issuers"),
            "at least one issuer is required",
        ));
    }
    let mut issuer_ids = Vec::with_capacity(r.issuers.len());
    for (i, iss) in r.issuers.into_iter().enumerate() {
        let ip = format!("{p}.issuers[{i}]");
        let issuer = issuer(iss, &ip, index)?;
        if issuers_out
            .iter()
            .any(|o| o.resource == index && o.issuer == issuer.issuer)
        {
            return Err(ConfigError::new(
                format!("{ip}.issuer"),
                "is listed twice for this resource",
            ));
        }
        issuer_ids.push(IssuerId(issuers_out.len()));
        issuers_out.push(issuer);
    }

    let mut claim_to_headers = Vec::new();
    for (i, c) in r
        .claim_to_headers
        .unwrap_or_default()
        .into_iter()
        .enumerate()
    {
        let hp = format!("{p}.claim_to_headers[{i}]");
        let name = c.header_name.to_ascii_lowercase();
        if !is_header_name(&name) {
            return Err(ConfigError::new(
                format!("{hp}.header_name"),
                "must be an HTTP header name (letters, digits, '-')",
            ));
        }
        if RESERVED_HEADERS.contains(&name.as_str()) {
            return Err(ConfigError::new(
                format!("{hp}.header_name"),
                "must not be a hop-by-hop, routing or authorization header",
            ));
        }
        if c.claim_name.is_empty() {
            return Err(ConfigError::new(
                format!("{hp}.claim_name"),
                "must not be empty",
            ));
        }
        if claim_to_headers.iter().any(|(h, _)| *h == name) {
            return Err(ConfigError::new(
                format!("{hp}.header_name"),
                "is used twice",
            ));
        }
        claim_to_headers.push((name, c.claim_name));
    }

    let mut allowed_origins = Vec::new();
    allowed_origins.push(uri::audience_form(&origin, true));
    for (i, o) in r.allowed_origins.unwrap_or_default().iter().enumerate() {
        let op = format!("{p}.allowed_origins[{i}]");
        let Some(parts) = uri::parse(o) else {
            return Err(ConfigError::new(
                op,
                "must be an origin such as https://app.example.com",
            ));
        };
        if !(parts.path.is_empty() || parts.path == "/")
            || parts.query.is_some()
            || parts.has_userinfo
        {
            return Err(ConfigError::new(
                op,
                "must be an origin (scheme://host[:port]) without a path",
            ));
        }
        allowed_origins.push(uri::audience_form(o, true));
    }

    let challenge_scope = if !required_scopes.is_empty() {
        Some(required_scopes.join(" "))
    } else if !scopes_supported.is_empty() {
        Some(scopes_supported.join(" "))
    } else {
        None
    };

    let metadata_body = metadata::document(&metadata::DocumentFields {
        resource: &r.resource,
        authorization_servers: &r.authorization_servers,
        jwks_uri: r.jwks_uri.as_deref(),
        scopes_supported: &scopes_supported,
        bearer_methods_supported: &bearer_methods,
        resource_name: r.resource_name.as_deref(),
        resource_documentation: r.resource_documentation.as_deref(),
        resource_policy_uri: r.resource_policy_uri.as_deref(),
        resource_tos_uri: r.resource_tos_uri.as_deref(),
    })
    .map_err(|_| ConfigError::new(p, "metadata document could not be serialized"))?;

    let implied_scopes = scope_hierarchy(r.scope_hierarchy, &format!("{p}.scope_hierarchy"))?;
    let mcp = match r.mcp {
        None => None,
        Some(m) => Some(mcp_rules(m, &format!("{p}.mcp"))?),
    };

    let forward = r.forward.unwrap_or(false);
    let upstream_token = match r.upstream_token {
        None => None,
        Some(u) => Some(upstream_token::parse(
            u,
            &format!("{p}.upstream_token"),
            &claim_to_headers,
            forward,
        )?),
    };

    let mut strip: Vec<String> = claim_to_headers.iter().map(|(h, _)| h.clone()).collect();
    if !forward {
        strip.push("authorization".to_string());
    }
    let strip_headers_encoding = crate::http::appended(&strip, "accept-encoding".to_string());
    let strip_headers: Arc<[String]> = strip.into();

    Ok(Resource {
        resource: r.resource,
        hosts,
        route_prefix,
        metadata_path,
        metadata_url,
        metadata_body,
        audiences,
        fold_origin_slash,
        issuers: issuer_ids,
        required_scopes,
        challenge_scope,
        claim_to_headers,
        strip_headers,
        strip_headers_encoding,
        allowed_origins,
        metadata_max_age: r.metadata_max_age_seconds.unwrap_or(3600),
        preflight_max_age: r.preflight_max_age_seconds.unwrap_or(600),
        implied_scopes,
        mcp,
        upstream_token,
    })
}

/// Resolves `scope_hierarchy` (`{"mcp:admin": ["mcp:write"], "mcp:write": ["mcp:read"]}`)
/// into the transitive closure, once, so a request only does lookups.
fn scope_hierarchy(
    raw: Option<alloc::collections::BTreeMap<String, Vec<String>>>,
    p: &str,
) -> Result<Vec<(String, Vec<String>)>, ConfigError> {
    let Some(map) = raw else {
        return Ok(Vec::new());
    };
    for (k, v) in &map {
        check_scopes(core::slice::from_ref(k), &format!("{p}.{k}"))?;
        check_scopes(v, &format!("{p}.{k}"))?;
    }
    let mut out = Vec::with_capacity(map.len());
    for k in map.keys() {
        let mut closure: Vec<String> = Vec::new();
        let mut todo: Vec<&String> = map.get(k).map(|v| v.iter().collect()).unwrap_or_default();
        while let Some(s) = todo.pop() {
            if s == k {
                return Err(ConfigError::new(
                    format!("{p}.{k}"),
                    "scope hierarchy has a cycle",
                ));
            }
            if !closure.contains(s) {
                closure.push(s.clone());
                if let Some(more) = map.get(s) {
                    todo.extend(more.iter());
                }
            }
        }
        out.push((k.clone(), closure));
    }
    Ok(out)
}

fn mcp_rules(m: raw::RawMcp, p: &str) -> Result<McpRules, ConfigError> {
    let max_body_bytes = m.max_body_bytes.unwrap_or(64 * 1024) as usize;
    if !(1024..=16 * 1024 * 1024).contains(&max_body_bytes) {
        return Err(ConfigError::new(
            format!("{p}.max_body_bytes"),
            "must be between 1024 and 16777216",
        ));
    }
    let max_list_bytes = m.max_list_bytes.unwrap_or(1024 * 1024) as usize;
    if !(1024..=16 * 1024 * 1024).contains(&max_list_bytes) {
        return Err(ConfigError::new(
            format!("{p}.max_list_bytes"),
            "must be between 1024 and 16777216",
        ));
    }
    let mut rules = Vec::new();
    for (i, r) in m.rules.unwrap_or_default().into_iter().enumerate() {
        let rp = format!("{p}.rules[{i}]");
        if r.method.is_empty() {
            return Err(ConfigError::new(
                format!("{rp}.method"),
                "must not be empty",
            ));
        }
        if r.name.as_deref() == Some("") {
            return Err(ConfigError::new(
                format!("{rp}.name"),
                "must not be empty when given",
            ));
        }
        check_scopes(&r.scopes, &format!("{rp}.scopes"))?;
        rules.push(crate::mcp::Rule {
            method: r.method,
            name: r.name,
            scopes: r.scopes,
        });
    }
    Ok(McpRules {
        filter_lists: m.filter_lists.unwrap_or(true) && !rules.is_empty(),
        rules,
        max_body_bytes,
        max_list_bytes,
    })
}

fn issuer(r: raw::RawIssuer, p: &str, resource: usize) -> Result<Issuer, ConfigError> {
    if r.issuer.is_empty() {
        return Err(ConfigError::new(format!("{p}.issuer"), "must not be empty"));
    }
    if r.issuer.chars().any(|c| c.is_control()) {
        return Err(ConfigError::new(
            format!("{p}.issuer"),
            "must not contain control characters",
        ));
    }
    let algorithms = match r.algorithms {
        None => AlgSet::all(),
        Some(list) => {
            if list.is_empty() {
                return Err(ConfigError::new(
                    format!("{p}.algorithms"),
                    "must not be empty when given",
                ));
            }
            let mut set = AlgSet::empty();
            for (i, name) in list.iter().enumerate() {
                let Some(alg) = Algorithm::from_name(name) else {
                    return Err(ConfigError::new(
                        format!("{p}.algorithms[{i}]"),
                        format!(
                            "unsupported algorithm; use one of {}",
                            Algorithm::ALL.map(|a| a.name()).join(", ")
                        ),
                    ));
                };
                set.insert(alg);
            }
            set
        }
    };
    let typ = match r.typ.as_deref() {
        None | Some("at+jwt") => TypPolicy::AtJwt,
        Some("any") => TypPolicy::Any,
        Some(_) => {
            return Err(ConfigError::new(
                format!("{p}.typ"),
                "must be \"at+jwt\" or \"any\"",
            ))
        }
    };
    let clock_skew = u64::from(r.clock_skew_seconds.unwrap_or(60));
    if clock_skew > 600 {
        return Err(ConfigError::new(
            format!("{p}.clock_skew_seconds"),
            "must be at most 600",
        ));
    }
    let introspection = match r.introspection {
        None => None,
        Some(i) => Some(introspection(i, &format!("{p}.introspection"))?),
    };
    let source = match (r.local_jwks, r.remote_jwks) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::new(
                p,
                "exactly one of local_jwks and remote_jwks is required",
            ))
        }
        (None, None) if introspection.is_some() => KeySource::None,
        (None, None) => {
            return Err(ConfigError::new(
                p,
                "exactly one of local_jwks and remote_jwks is required (or introspection, for opaque tokens)",
            ))
        }
        (Some(local), None) => {
            let lp = format!("{p}.local_jwks");
            let json = match (local.inline_string, local.keys) {
                (Some(s), None) => s,
                (None, Some(keys)) => serde_json::to_string(&serde_json::json!({ "keys": keys }))
                    .map_err(|_| {
                    ConfigError::new(format!("{lp}.keys"), "could not be serialized")
                })?,
                _ => {
                    return Err(ConfigError::new(
                        lp,
                        "exactly one of inline_string and keys is required",
                    ))
                }
            };
            KeySource::Local(json)
        }
        (None, Some(remote)) => {
            KeySource::Remote(remote_jwks(remote, &format!("{p}.remote_jwks"))?)
        }
    };
    Ok(Issuer {
        issuer: r.issuer,
        resource,
        algorithms,
        source,
        typ,
        clock_skew,
        introspection,
    })
}

fn split_http_uri(uri: &str, p: &str) -> Result<(String, String), ConfigError> {
    check_web_uri(uri, p)?;
    let parts = uri::parse(uri).ok_or_else(|| ConfigError::new(p, "must be an absolute URI"))?;
    let authority = match parts.port {
        Some(port) => format!("{}:{}", parts.host, port),
        None => parts.host.to_string(),
    };
    let path = match (parts.path, parts.query) {
        ("", None) => "/".to_string(),
        ("", Some(q)) => format!("/?{q}"),
        (path, None) => path.to_string(),
        (path, Some(q)) => format!("{path}?{q}"),
    };
    Ok((authority, path))
}

/// An `http_uri` {uri, cluster, timeout_ms} at `p` (`p.http_uri`): its `:authority` and
/// `:path`, and the timeout (`default_timeout_ms` when absent). One check for every endpoint
/// (JWKS, introspection, token exchange).
pub(crate) fn endpoint(
    h: &raw::RawHttpUri,
    p: &str,
    default_timeout_ms: u32,
) -> Result<(String, String, u32), ConfigError> {
    let (authority, path) = split_http_uri(&h.uri, &format!("{p}.http_uri.uri"))?;
    if h.cluster.as_deref() == Some("") {
        return Err(ConfigError::new(
            format!("{p}.http_uri.cluster"),
            "must not be empty",
        ));
    }
    let timeout_ms = h.timeout_ms.unwrap_or(default_timeout_ms);
    if !(100..=60_000).contains(&timeout_ms) {
        return Err(ConfigError::new(
            format!("{p}.http_uri.timeout_ms"),
            "must be between 100 and 60000",
        ));
    }
    Ok((authority, path, timeout_ms))
}

fn introspection(r: raw::RawIntrospection, p: &str) -> Result<Introspection, ConfigError> {
    let (authority, path, timeout_ms) = endpoint(&r.http_uri, p, 3000)?;
    if r.client_id.is_empty() || r.client_id.contains(':') {
        return Err(ConfigError::new(
            format!("{p}.client_id"),
            "must be non-empty and contain no ':'",
        ));
    }
    Ok(Introspection {
        uri: r.http_uri.uri,
        authority,
        path,
        cluster: r.http_uri.cluster,
        timeout_ms,
        authorization: crate::form::basic_authorization(&r.client_id, &r.client_secret),
        cache_max_seconds: r.cache_max_seconds.unwrap_or(300),
        retry_after: r.retry_after_seconds.unwrap_or(10),
    })
}

fn remote_jwks(r: raw::RawRemoteJwks, p: &str) -> Result<RemoteJwks, ConfigError> {
    let (authority, path, timeout_ms) = endpoint(&r.http_uri, p, 5000)?;
    let min_cache_duration = r.min_cache_duration_seconds.unwrap_or(60);
    let max_cache_duration = r.max_cache_duration_seconds.unwrap_or(86_400);
    let cache_duration = r.cache_duration_seconds.unwrap_or(600);
    if min_cache_duration == 0 {
        return Err(ConfigError::new(
            format!("{p}.min_cache_duration_seconds"),
            "must be at least 1",
        ));
    }
    if max_cache_duration < min_cache_duration {
        return Err(ConfigError::new(
            format!("{p}.max_cache_duration_seconds"),
            "must not be less than min_cache_duration_seconds",
        ));
    }
    if !(min_cache_duration..=max_cache_duration).contains(&cache_duration) {
        return Err(ConfigError::new(
            format!("{p}.cache_duration_seconds"),
            "must lie between min_cache_duration_seconds and max_cache_duration_seconds",
        ));
    }
    let max_staleness = r.max_staleness_seconds.unwrap_or(86_400);
    let refetch_cooldown = r.refetch_cooldown_seconds.unwrap_or(30);
    if refetch_cooldown == 0 {
        // Zero would let every request with an unknown `kid` trigger a fetch, and a host
        // that re-decides after a fetch could be asked to fetch again at once.
        return Err(ConfigError::new(
            format!("{p}.refetch_cooldown_seconds"),
            "must be at least 1",
        ));
    }
    let retry_after = r.retry_after_seconds.unwrap_or(10);
    let max_body_bytes = r.max_body_bytes.unwrap_or(256 * 1024);
    if !(1024..=4 * 1024 * 1024).contains(&max_body_bytes) {
        return Err(ConfigError::new(
            format!("{p}.max_body_bytes"),
            "must be between 1024 and 4194304",
        ));
    }
    Ok(RemoteJwks {
        uri: r.http_uri.uri,
        authority,
        path,
        cluster: r.http_uri.cluster,
        timeout_ms,
        cache_duration,
        min_cache_duration,
        max_cache_duration,
        max_staleness,
        refetch_cooldown,
        retry_after,
        max_body_bytes,
    })
}

/// https anywhere, plain http only on loopback (development).
pub(crate) fn check_web_uri(value: &str, path: &str) -> Result<(), ConfigError> {
    let Some(parts) = uri::parse(value) else {
        return Err(ConfigError::new(path, "must be an absolute https:// URI"));
    };
    if parts.has_userinfo {
        return Err(ConfigError::new(path, "must not contain user information"));
    }
    if value
        .chars()
        .any(|c| c.is_ascii_whitespace() || c.is_control() || c == '"' || c == '\\')
    {
        return Err(ConfigError::new(
            path,
            "must not contain spaces, quotes, backslashes or control characters",
        ));
    }
    match parts.scheme.to_ascii_lowercase().as_str() {
        "https" => Ok(()),
        "http" if uri::is_loopback_host(parts.host) => Ok(()),
        "http" => Err(ConfigError::new(
            path,
            "plain http is only allowed for loopback hosts; use https",
        )),
        _ => Err(ConfigError::new(path, "must use https")),
    }
}

/// RFC 6749 §3.3 scope-token characters, which also keeps them safe inside a quoted
/// `scope="…"` challenge parameter.
pub(crate) fn check_scopes(scopes: &[String], path: &str) -> Result<(), ConfigError> {
    for (i, s) in scopes.iter().enumerate() {
        let ok = !s.is_empty()
            && s.bytes()
                .all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b));
        if !ok {
            return Err(ConfigError::new(
                format!("{path}[{i}]"),
                "must be a non-empty scope token (visible ASCII, no space, quote or backslash)",
            ));
        }
    }
    Ok(())
}

pub(crate) fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// Headers the gateway never sets from claims or an exchange: routing, framing, credentials
/// and the MCP transport's own.
pub(crate) const RESERVED_HEADERS: &[&str] = &[
    "authorization",
    "host",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    "upgrade",
    "te",
    "cookie",
    "origin",
    "mcp-session-id",
    "mcp-protocol-version",
    "mcp-method",
    "mcp-name",
];
