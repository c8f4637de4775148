//! Every algorithm, through every provider, through the whole gateway: a valid signature
//! passes, a flipped bit, a signature by another key, or a key of the wrong algorithm fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::*;
use jwt_simple::prelude::*;
use mcp_edge_auth_core::crypto::{
    jwt_simple::JwtSimpleProvider, ring::RingProvider, CryptoProvider,
};
use mcp_edge_auth_core::{Config, Gateway, KeyStore, Request, Verdict};
use serde_json::{json, Value};

const PEM: &str = include_str!("fixtures/rsa2048.pem");

/// (alg, kid, jwk, token signer)
type Signer = Box<dyn Fn(JWTClaims<serde_json::Map<String, Value>>) -> String>;

fn signers() -> Vec<(&'static str, Value, Signer)> {
    fn rsa_jwk(n: &[u8], e: &[u8], kid: &str, alg: &str) -> Value {
        json!({"kty":"RSA","n": b64(n),"e": b64(e),"kid": kid,"alg": alg})
    }
    let mut v: Vec<(&'static str, Value, Signer)> = Vec::new();
    macro_rules! rsa {
        ($alg:literal, $ty:ty) => {{
            let kp = <$ty>::from_pem(PEM)
                .unwrap()
                .with_key_id(concat!("k-", $alg));
            let c = kp.public_key().to_components();
            v.push((
                $alg,
                rsa_jwk(&c.n, &c.e, concat!("k-", $alg), $alg),
                Box::new(move |cl| kp.sign_with_options(cl, &at_jwt()).unwrap()),
            ));
        }};
    }
    rsa!("RS256", RS256KeyPair);
    rsa!("RS384", RS384KeyPair);
    rsa!("RS512", RS512KeyPair);
    rsa!("PS256", PS256KeyPair);
    rsa!("PS384", PS384KeyPair);
    rsa!("PS512", PS512KeyPair);
    let es = es256();
    v.push((
        "ES256",
        es256_jwk(&es),
        Box::new(move |cl| es.sign_with_options(cl, &at_jwt()).unwrap()),
    ));
    let es384 = ES384KeyPair::from_bytes(&[9u8; 48])
        .unwrap()
        .with_key_id("k-ES384");
    let pt = es384.public_key().public_key().to_bytes_uncompressed();
    let jwk = json!({"kty":"EC","crv":"P-384","x": b64(&pt[1..49]),"y": b64(&pt[49..97]),"kid":"k-ES384","alg":"ES384"});
    v.push((
        "ES384",
        jwk,
        Box::new(move |cl| es384.sign_with_options(cl, &at_jwt()).unwrap()),
    ));
    let ed = Ed::new(5, "k-EdDSA");
    let edjwk = ed.jwk();
    v.push((
        "EdDSA",
        edjwk,
        Box::new(move |cl| {
            let payload = serde_json::to_string(&cl).unwrap();
            ed.sign_raw(
                r#"{"alg":"EdDSA","typ":"at+jwt","kid":"k-EdDSA"}"#,
                &payload,
            )
        }),
    ));
    v
}

fn run(provider: fn() -> Box<dyn CryptoProvider>) {
    let signers = signers();
    let jwks: Vec<Value> = signers.iter().map(|s| s.1.clone()).collect();
    let cfg = json!({"resources":[{"resource": RESOURCE, "authorization_servers":[ISSUER],
        "issuers":[{"issuer": ISSUER, "local_jwks": {"keys": jwks}}]}]});
    let config = Config::from_json(cfg.to_string().as_bytes()).unwrap();
    let keys = KeyStore::new(&config, provider()).unwrap();
    let gw = Gateway::new(config);
    for (alg, _, sign) in &signers {
        let mut cache = mcp_edge_auth_core::TokenCache::new(0);
        let mut check = |token: &str| {
            let h = format!("Bearer {token}");
            let headers = [("authorization", h.as_str())];
            gw.decide(
                &Request::new("GET", "https", "mcp.example.com", "/mcp", &headers),
                NOW,
                &keys,
                &mut cache,
            )
        };
        let t = sign(js_claims(json!({})));
        assert!(matches!(check(&t), Verdict::Forward(_)), "{alg} valid");
        // Flip one bit of the signature.
        let (head, sig) = t.rsplit_once('.').unwrap();
        let mut raw =
            base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, sig).unwrap();
        let mid = raw.len() / 2;
        raw[mid] ^= 1;
        let forged = format!("{head}.{}", b64(&raw));
        assert!(
            matches!(check(&forged), Verdict::Respond(r) if r.status == 401),
            "{alg} flipped bit"
        );
        // Flip one bit of the payload.
        let (h, rest) = t.split_once('.').unwrap();
        let (p, s) = rest.split_once('.').unwrap();
        let mut pb =
            base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, p).unwrap();
        let last = pb.len() - 2;
        pb[last] ^= 1;
        let forged = format!("{h}.{}.{s}", b64(&pb));
        assert!(
            matches!(check(&forged), Verdict::Respond(r) if r.status == 401),
            "{alg} altered payload"
        );
    }
}

#[test]
fn jwt_simple_provider_all_algorithms() {
    run(|| Box::new(JwtSimpleProvider));
}

#[test]
fn ring_provider_all_algorithms() {
    run(|| Box::new(RingProvider));
}
