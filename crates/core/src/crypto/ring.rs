//! A provider on `ring`: raw signature verification over the signing input, with no second
//! parse of the token. Under V8 (Envoy's Wasm runtime) it measured several times faster than
//! the `jwt-simple` provider (RS256 0.24 ms vs 1.06 ms per verify, EdDSA 0.10 ms vs 0.27 ms;
//! see BENCHMARKS.md), and it is `no_std` + `alloc`. Building it for `wasm32-wasip1` needs a C compiler for that target
//! (`CC_wasm32_wasip1=clang`).
//!
//! With the feature `p256-tables`, ES256 keys are verified by `mcp-edge-auth-p256` instead:
//! per-key fixed-base tables built here, at key installation, make a verification about 4×
//! faster than ring's in Wasm (~150 µs against ~650 µs under V8; natively ring's assembly is
//! faster, so native hosts leave the feature off). ring still hashes the signing input.
//!
//! With the feature `rsa-limbs32`, RS*/PS* keys are verified by `mcp-edge-auth-rsa`: 32-bit
//! limbs (Wasm multiplies 32×32→64 natively, ring's 64-bit limbs are emulated there) and
//! Montgomery constants computed at key installation, about 2× ring's speed under V8
//! (crates/rsa-limbs32/examples/speed.rs). Native hosts keep ring's assembly.
//!
//! ring's public API parses a public key inside each `verify` (there is no pre-parsed public
//! key type), so a malformed curve point is only noticed per request, as an invalid
//! signature: the JWKS parser has already bounded lengths and shapes.

use alloc::boxed::Box;
use alloc::vec::Vec;

#[cfg(not(feature = "rsa-limbs32"))]
use ring::signature::RsaPublicKeyComponents;
use ring::signature::{self, UnparsedPublicKey, VerificationAlgorithm};

use super::{
    Algorithm, CryptoProvider, Curve, KeyRejected, PublicKey, SignatureVerifier, Verification,
    VerifyInput,
};

/// Verifies with `ring` (feature `ring`).
#[derive(Debug, Clone, Copy, Default)]
pub struct RingProvider;

enum Key {
    #[cfg(not(feature = "rsa-limbs32"))]
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
        params: &'static signature::RsaParameters,
    },
    Other {
        alg: &'static dyn VerificationAlgorithm,
        bytes: Vec<u8>,
    },
    /// ES256 with per-key tables (feature `p256-tables`).
    #[cfg(feature = "p256-tables")]
    P256(Box<mcp_edge_auth_p256::VerifyingKey>),
    /// RS*/PS* on 32-bit limbs with per-key Montgomery constants (feature `rsa-limbs32`).
    #[cfg(feature = "rsa-limbs32")]
    Rsa32 {
        key: Box<mcp_edge_auth_rsa::PublicKey>,
        hash: mcp_edge_auth_rsa::Hash,
        pss: bool,
    },
}

impl SignatureVerifier for Key {
    fn verify(&self, input: &VerifyInput<'_>) -> Verification {
        let ok = match self {
            #[cfg(not(feature = "rsa-limbs32"))]
            Key::Rsa { n, e, params } => RsaPublicKeyComponents { n, e }
                .verify(params, input.signing_input, input.signature)
                .is_ok(),
            Key::Other { alg, bytes } => UnparsedPublicKey::new(*alg, bytes)
                .verify(input.signing_input, input.signature)
                .is_ok(),
            #[cfg(feature = "rsa-limbs32")]
            Key::Rsa32 { key, hash, pss } => {
                let (msg, sig) = (input.signing_input, input.signature);
                if *pss {
                    key.verify_pss_with(*hash, msg, sig, &ring_digest)
                } else {
                    key.verify_pkcs1_with(*hash, msg, sig, &ring_digest)
                }
            }
            #[cfg(feature = "p256-tables")]
            Key::P256(key) => {
                let digest = ring::digest::digest(&ring::digest::SHA256, input.signing_input);
                <&[u8; 32]>::try_from(digest.as_ref())
                    .is_ok_and(|d| key.verify_prehashed(d, input.signature))
            }
        };
        if ok {
            Verification::Valid
        } else {
            Verification::Invalid
        }
    }
}

impl CryptoProvider for RingProvider {
    fn verifier(
        &self,
        key: &PublicKey,
        alg: Algorithm,
    ) -> Result<Box<dyn SignatureVerifier>, KeyRejected> {
        let k = match (alg, key) {
            (Algorithm::RS256, PublicKey::Rsa { n, e }) => {
                rsa_key(&signature::RSA_PKCS1_2048_8192_SHA256, 256, false, n, e)?
            }
            (Algorithm::RS384, PublicKey::Rsa { n, e }) => {
                rsa_key(&signature::RSA_PKCS1_2048_8192_SHA384, 384, false, n, e)?
            }
            (Algorithm::RS512, PublicKey::Rsa { n, e }) => {
                rsa_key(&signature::RSA_PKCS1_2048_8192_SHA512, 512, false, n, e)?
            }
            (Algorithm::PS256, PublicKey::Rsa { n, e }) => {
                rsa_key(&signature::RSA_PSS_2048_8192_SHA256, 256, true, n, e)?
            }
            (Algorithm::PS384, PublicKey::Rsa { n, e }) => {
                rsa_key(&signature::RSA_PSS_2048_8192_SHA384, 384, true, n, e)?
            }
            (Algorithm::PS512, PublicKey::Rsa { n, e }) => {
                rsa_key(&signature::RSA_PSS_2048_8192_SHA512, 512, true, n, e)?
            }
            (
                Algorithm::ES256,
                PublicKey::Ec {
                    curve: Curve::P256,
                    x,
                    y,
                },
            ) => p256_key(x, y)?,
            (
                Algorithm::ES384,
                PublicKey::Ec {
                    curve: Curve::P384,
                    x,
                    y,
                },
            ) => Key::Other {
                alg: &signature::ECDSA_P384_SHA384_FIXED,
                bytes: sec1(x, y),
            },
            (Algorithm::EdDSA, PublicKey::Ed25519 { x }) => Key::Other {
                alg: &signature::ED25519,
                bytes: x.clone(),
            },
            _ => {
                return Err(KeyRejected(alloc::format!(
                    "the key cannot carry {}",
                    alg.name()
                )))
            }
        };
        Ok(Box::new(k))
    }
}

/// ring's SHA-2 for the 32-bit-limb RSA verifier (the filter links it already).
#[cfg(feature = "rsa-limbs32")]
fn ring_digest(hash: mcp_edge_auth_rsa::Hash, parts: &[&[u8]]) -> Vec<u8> {
    let alg = match hash {
        mcp_edge_auth_rsa::Hash::Sha256 => &ring::digest::SHA256,
        mcp_edge_auth_rsa::Hash::Sha384 => &ring::digest::SHA384,
        mcp_edge_auth_rsa::Hash::Sha512 => &ring::digest::SHA512,
    };
    let mut ctx = ring::digest::Context::new(alg);
    for p in parts {
        ctx.update(p);
    }
    ctx.finish().as_ref().to_vec()
}

/// An RSA key: with `rsa-limbs32`, the 32-bit-limb verifier with its Montgomery constants
/// (a modulus or exponent ring would refuse is refused here, at installation); otherwise
/// ring's components, checked per verification. `sha` is the hash's bit length.
#[cfg(feature = "rsa-limbs32")]
fn rsa_key(
    _params: &'static signature::RsaParameters,
    sha: u16,
    pss: bool,
    n: &[u8],
    e: &[u8],
) -> Result<Key, KeyRejected> {
    use mcp_edge_auth_rsa::Hash;
    let hash = match sha {
        256 => Hash::Sha256,
        384 => Hash::Sha384,
        _ => Hash::Sha512,
    };
    mcp_edge_auth_rsa::PublicKey::new(n, e)
        .map(|key| Key::Rsa32 {
            key: Box::new(key),
            hash,
            pss,
        })
        .map_err(|err| KeyRejected(alloc::format!("the RSA key is not usable: {err:?}")))
}

#[cfg(not(feature = "rsa-limbs32"))]
fn rsa_key(
    params: &'static signature::RsaParameters,
    _sha: u16,
    _pss: bool,
    n: &[u8],
    e: &[u8],
) -> Result<Key, KeyRejected> {
    Ok(Key::Rsa {
        n: n.to_vec(),
        e: e.to_vec(),
        params,
    })
}

/// An ES256 key: with `p256-tables`, its table (a point off the curve is refused here, at
/// installation, rather than per request).
#[cfg(feature = "p256-tables")]
fn p256_key(x: &[u8], y: &[u8]) -> Result<Key, KeyRejected> {
    let (Ok(x), Ok(y)) = (<&[u8; 32]>::try_from(x), <&[u8; 32]>::try_from(y)) else {
        return Err(KeyRejected("a P-256 coordinate is not 32 bytes".into()));
    };
    mcp_edge_auth_p256::VerifyingKey::from_coordinates(x, y)
        .map(|k| Key::P256(Box::new(k)))
        .ok_or_else(|| KeyRejected("the P-256 point is not on the curve".into()))
}

#[cfg(not(feature = "p256-tables"))]
fn p256_key(x: &[u8], y: &[u8]) -> Result<Key, KeyRejected> {
    Ok(Key::Other {
        alg: &signature::ECDSA_P256_SHA256_FIXED,
        bytes: sec1(x, y),
    })
}

fn sec1(x: &[u8], y: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(1 + x.len() + y.len());
    v.push(0x04);
    v.extend_from_slice(x);
    v.extend_from_slice(y);
    v
}
