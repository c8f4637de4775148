//! The default provider: `jwt-simple` with its pure-Rust backends.
//!
//! `jwt-simple` verifies whole tokens, not bare signatures, so this provider hands it the
//! token and pins every claim check it makes to what the core already decided: the host's
//! time (`artificial_time`, never `std::time`), the core's leeway, and no requirements of its
//! own on issuer, audience, subject or key id. The core has already checked every claim
//! before a verifier runs; `jwt-simple`'s own checks can only make it stricter, never looser.

use alloc::boxed::Box;
use alloc::format;

use jwt_simple::prelude::*;

use super::{
    Algorithm, CryptoProvider, Curve, KeyRejected, PublicKey as Jwk, SignatureVerifier,
    Verification, VerifyInput,
};

/// Verifies with `jwt-simple` (feature `jwt-simple`, on by default).
#[derive(Debug, Clone, Copy, Default)]
pub struct JwtSimpleProvider;

enum Key {
    Rs256(RS256PublicKey),
    Rs384(RS384PublicKey),
    Rs512(RS512PublicKey),
    Ps256(PS256PublicKey),
    Ps384(PS384PublicKey),
    Ps512(PS512PublicKey),
    Es256(ES256PublicKey),
    Es384(ES384PublicKey),
    EdDsa(Ed25519PublicKey),
}

struct Verifier(Key);

fn rejected(e: impl core::fmt::Display) -> KeyRejected {
    KeyRejected(format!("key refused by jwt-simple: {e}"))
}

fn sec1(x: &[u8], y: &[u8]) -> alloc::vec::Vec<u8> {
    let mut v = alloc::vec::Vec::with_capacity(1 + x.len() + y.len());
    v.push(0x04);
    v.extend_from_slice(x);
    v.extend_from_slice(y);
    v
}

impl CryptoProvider for JwtSimpleProvider {
    fn verifier(
        &self,
        key: &Jwk,
        alg: Algorithm,
    ) -> Result<Box<dyn SignatureVerifier>, KeyRejected> {
        let k = match (alg, key) {
            (Algorithm::RS256, Jwk::Rsa { n, e }) => {
                Key::Rs256(RS256PublicKey::from_components(n, e).map_err(rejected)?)
            }
            (Algorithm::RS384, Jwk::Rsa { n, e }) => {
                Key::Rs384(RS384PublicKey::from_components(n, e).map_err(rejected)?)
            }
            (Algorithm::RS512, Jwk::Rsa { n, e }) => {
                Key::Rs512(RS512PublicKey::from_components(n, e).map_err(rejected)?)
            }
            (Algorithm::PS256, Jwk::Rsa { n, e }) => {
                Key::Ps256(PS256PublicKey::from_components(n, e).map_err(rejected)?)
            }
            (Algorithm::PS384, Jwk::Rsa { n, e }) => {
                Key::Ps384(PS384PublicKey::from_components(n, e).map_err(rejected)?)
            }
            (Algorithm::PS512, Jwk::Rsa { n, e }) => {
                Key::Ps512(PS512PublicKey::from_components(n, e).map_err(rejected)?)
            }
            (
                Algorithm::ES256,
                Jwk::Ec {
                    curve: Curve::P256,
                    x,
                    y,
                },
            ) => Key::Es256(ES256PublicKey::from_bytes(&sec1(x, y)).map_err(rejected)?),
            (
                Algorithm::ES384,
                Jwk::Ec {
                    curve: Curve::P384,
                    x,
                    y,
                },
            ) => Key::Es384(ES384PublicKey::from_bytes(&sec1(x, y)).map_err(rejected)?),
            (Algorithm::EdDSA, Jwk::Ed25519 { x }) => {
                Key::EdDsa(Ed25519PublicKey::from_bytes(x).map_err(rejected)?)
            }
            _ => {
                return Err(KeyRejected(format!(
                    "a {} key cannot carry {}",
                    kind(key),
                    alg.name()
                )))
            }
        };
        Ok(Box::new(Verifier(k)))
    }
}

fn kind(key: &Jwk) -> &'static str {
    match key {
        Jwk::Rsa { .. } => "RSA",
        Jwk::Ec { .. } => "EC",
        Jwk::Ed25519 { .. } => "Ed25519",
    }
}

impl SignatureVerifier for Verifier {
    fn verify(&self, input: &VerifyInput<'_>) -> Verification {
        let options = VerificationOptions {
            accept_future: true,
            time_tolerance: Some(Duration::from_secs(input.clock_skew)),
            artificial_time: Some(Duration::from_secs(input.now)),
            max_token_length: None,
            ..Default::default()
        };
        let t = input.token;
        let o = Some(options);
        let ok = match &self.0 {
            Key::Rs256(k) => k.verify_token::<NoCustomClaims>(t, o).is_ok(),
            Key::Rs384(k) => k.verify_token::<NoCustomClaims>(t, o).is_ok(),
            Key::Rs512(k) => k.verify_token::<NoCustomClaims>(t, o).is_ok(),
            Key::Ps256(k) => k.verify_token::<NoCustomClaims>(t, o).is_ok(),
            Key::Ps384(k) => k.verify_token::<NoCustomClaims>(t, o).is_ok(),
            Key::Ps512(k) => k.verify_token::<NoCustomClaims>(t, o).is_ok(),
            Key::Es256(k) => k.verify_token::<NoCustomClaims>(t, o).is_ok(),
            Key::Es384(k) => k.verify_token::<NoCustomClaims>(t, o).is_ok(),
            Key::EdDsa(k) => k.verify_token::<NoCustomClaims>(t, o).is_ok(),
        };
        if ok {
            Verification::Valid
        } else {
            Verification::Invalid
        }
    }
}
