//! Shared fixtures for the core's integration tests: deterministic keys, raw token minting,
//! a standard config, and a small driver around `Gateway::decide`. No test reads the wall
//! clock: every decision runs at `NOW`.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jwt_simple::prelude::*;
use mcp_edge_auth_core::crypto::default_provider;
use mcp_edge_auth_core::{
    Config, Forward, Gateway, KeyStore, Request, Response, TokenCache, Verdict, READ_HEADERS,
};
use serde_json::{json, Value};

pub const NOW: u64 = 1_800_000_000;
pub const RESOURCE: &str = "https://mcp.example.com/mcp";
pub const ISSUER: &str = "https://auth.example.com";
pub const ISSUER2: &str = "https://other-auth.example.com";
pub const METADATA_URL: &str = "https://mcp.example.com/.well-known/oauth-protected-resource/mcp";

pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Ed25519 key from a fixed seed.
pub struct Ed {
    pub kp: ed25519_compact::KeyPair,
    pub kid: String,
}

impl Ed {
    pub fn new(seed: u8, kid: &str) -> Self {
        let kp = ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new([seed; 32]));
        Ed {
            kp,
            kid: kid.into(),
        }
    }
    pub fn jwk(&self) -> Value {
        json!({"kty":"OKP","crv":"Ed25519","x": b64(self.kp.pk.as_ref()),"kid": self.kid,"alg":"EdDSA","use":"sig"})
    }
    /// Signs arbitrary header and payload JSON (as given, byte for byte).
    pub fn sign_raw(&self, header: &str, payload: &str) -> String {
        let input = format!("{}.{}", b64(header.as_bytes()), b64(payload.as_bytes()));
        let sig = self.kp.sk.sign(input.as_bytes(), None);
        format!("{input}.{}", b64(sig.as_ref()))
    }
    pub fn sign(&self, header: Value, payload: Value) -> String {
        self.sign_raw(&header.to_string(), &payload.to_string())
    }
    /// A standard access token, with `claims` merged over the defaults (`null` removes one).
    pub fn token(&self, claims: Value) -> String {
        self.sign(
            json!({"alg":"EdDSA","typ":"at+jwt","kid": self.kid}),
            merge(default_claims(), claims),
        )
    }
}

pub fn default_claims() -> Value {
    json!({
        "iss": ISSUER,
        "aud": RESOURCE,
        "sub": "user-1",
        "client_id": "client-1",
        "scope": "mcp:read mcp:write",
        "iat": NOW - 10,
        "exp": NOW + 300,
    })
}

pub fn merge(mut base: Value, over: Value) -> Value {
    if let (Some(b), Some(o)) = (base.as_object_mut(), over.as_object()) {
        for (k, v) in o {
            if v.is_null() {
                b.remove(k);
            } else {
                b.insert(k.clone(), v.clone());
            }
        }
    }
    base
}

pub fn rsa() -> RS256KeyPair {
    RS256KeyPair::from_pem(include_str!("../fixtures/rsa2048.pem"))
        .unwrap()
        .with_key_id("k-rs")
}

pub fn rsa_jwk(kp: &RS256KeyPair) -> Value {
    let c = kp.public_key().to_components();
    json!({"kty":"RSA","n": b64(&c.n),"e": b64(&c.e),"kid":"k-rs","use":"sig"})
}

pub fn es256() -> ES256KeyPair {
    ES256KeyPair::from_bytes(&[7u8; 32])
        .unwrap()
        .with_key_id("k-es")
}

pub fn es256_jwk(kp: &ES256KeyPair) -> Value {
    let pt = kp.public_key().public_key().to_bytes_uncompressed();
    json!({"kty":"EC","crv":"P-256","x": b64(&pt[1..33]),"y": b64(&pt[33..65]),"kid":"k-es","alg":"ES256"})
}

/// Claims for a jwt-simple-minted token.
pub fn js_claims(extra: Value) -> JWTClaims<serde_json::Map<String, Value>> {
    let mut custom = serde_json::Map::new();
    custom.insert("scope".into(), json!("mcp:read"));
    if let Some(o) = extra.as_object() {
        custom.extend(o.clone());
    }
    let mut c = Claims::with_custom_claims(custom, jwt_simple::prelude::Duration::from_secs(300))
        .with_issuer(ISSUER)
        .with_audience(RESOURCE)
        .with_subject("user-1");
    c.issued_at = Some(jwt_simple::prelude::Duration::from_secs(NOW - 10));
    c.expires_at = Some(jwt_simple::prelude::Duration::from_secs(NOW + 300));
    c.invalid_before = None;
    c
}

pub fn at_jwt() -> HeaderOptions {
    HeaderOptions {
        signature_type: Some("at+jwt".into()),
        ..Default::default()
    }
}

/// The standard test config: one resource, issuer 1 with an inline JWKS of `keys`, issuer 2
/// with `keys2`, required scope `mcp:read`.
pub fn config(keys: &[Value], keys2: &[Value], extra: Value) -> Value {
    let base = json!({
        "resources": [{
            "resource": RESOURCE,
            "authorization_servers": [ISSUER],
            "scopes_supported": ["mcp:read", "mcp:write"],
            "required_scopes": ["mcp:read"],
            "issuers": [
                {"issuer": ISSUER, "local_jwks": {"keys": keys}},
                {"issuer": ISSUER2, "local_jwks": {"keys": keys2}}
            ],
            "claim_to_headers": [{"header_name": "x-mcp-subject", "claim_name": "sub"}],
            "allowed_origins": ["https://app.example.com"]
        }]
    });
    let mut res = base["resources"][0].clone();
    res = merge(res, extra);
    json!({"resources": [res]})
}

pub struct World {
    pub gw: Gateway,
    pub keys: KeyStore,
    pub cache: TokenCache,
}

impl World {
    pub fn new(config: &Value) -> Self {
        let cfg = Config::from_json(config.to_string().as_bytes()).unwrap();
        let keys = KeyStore::new(&cfg, Box::new(default_provider())).unwrap();
        let gw = Gateway::new(cfg);
        let cache = gw.new_cache();
        World { gw, keys, cache }
    }

    pub fn standard(ed: &Ed) -> Self {
        let other = Ed::new(99, "k-other");
        Self::new(&config(&[ed.jwk()], &[other.jwk()], json!({})))
    }

    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        now: u64,
    ) -> Verdict {
        // A host may pass only the headers the core reads (READ_HEADERS): same verdict.
        let read: Vec<(&str, &str)> = headers
            .iter()
            .copied()
            .filter(|(n, _)| READ_HEADERS.contains(&n.to_ascii_lowercase().as_str()))
            .collect();
        let only_read = Request::new(method, "https", "mcp.example.com", path, &read);
        let seen = self
            .gw
            .decide(&only_read, now, &self.keys, &mut self.cache.clone());
        let req = Request::new(method, "https", "mcp.example.com", path, headers);
        let v = self.gw.decide(&req, now, &self.keys, &mut self.cache);
        assert_eq!(
            format!("{seen:?}"),
            format!("{v:?}"),
            "a decision depends on a header outside READ_HEADERS"
        );
        v
    }

    /// A POST with a body, read as a host does: only when the gateway asks for it.
    pub fn post(&mut self, path: &str, headers: &[(&str, &str)], body: &str) -> Verdict {
        let mut req = Request::new("POST", "https", "mcp.example.com", path, headers);
        if let Some(limit) = self.gw.body_limit(&req) {
            req.body = if body.len() > limit {
                mcp_edge_auth_core::Body::TooLarge
            } else {
                mcp_edge_auth_core::Body::Bytes(body.as_bytes())
            };
        }
        self.gw.decide(&req, NOW, &self.keys, &mut self.cache)
    }

    pub fn with_token(&mut self, token: &str) -> Verdict {
        let h = format!("Bearer {token}");
        self.request("POST", "/mcp", &[("authorization", &h)], NOW)
    }
}

pub fn respond(v: impl Into<Verdict>) -> Response {
    match v.into() {
        Verdict::Respond(r) => r,
        other => panic!("expected a response, got {other:?}"),
    }
}

pub fn forward(v: impl Into<Verdict>) -> Forward {
    match v.into() {
        Verdict::Forward(f) => f,
        other => panic!("expected a forward, got {other:?}"),
    }
}

/// Parses `Bearer k="v", …` into pairs, failing on a repeated parameter.
pub fn challenge(r: &Response) -> Vec<(String, String)> {
    let v = r.header("www-authenticate").expect("WWW-Authenticate");
    let rest = v.strip_prefix("Bearer ").expect("Bearer scheme");
    let mut out: Vec<(String, String)> = Vec::new();
    for part in rest.split("\", ") {
        let (k, v) = part.split_once("=\"").expect("k=\"v\"");
        let v = v.trim_end_matches('"');
        assert!(!out.iter().any(|(x, _)| x == k), "repeated auth-param {k}");
        out.push((k.to_string(), v.to_string()));
    }
    out
}

pub fn param(r: &Response, name: &str) -> Option<String> {
    challenge(r)
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

/// Asserts a 401 invalid_token with the metadata URL.
pub fn assert_invalid(v: Verdict) -> Response {
    let r = respond(v);
    assert_eq!(r.status, 401, "{r:?}");
    assert_eq!(
        param(&r, "error").as_deref(),
        Some("invalid_token"),
        "{r:?}"
    );
    assert_eq!(
        param(&r, "resource_metadata").as_deref(),
        Some(METADATA_URL)
    );
    r
}
