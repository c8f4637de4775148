//! The signature provider interface, in the manner of `rustls`'s `CryptoProvider`.
//!
//! The core decides *which* key may verify *which* token with *which* algorithm; a provider
//! only does the arithmetic. A provider turns a public key into a [`SignatureVerifier`] once,
//! when keys are installed (so per-key precomputation happens off the request path), and the
//! verifier answers [`Verification::Valid`] or [`Verification::Invalid`] per request, or
//! [`Verification::Deferred`] when the host's crypto is asynchronous (WebCrypto in a Worker):
//! the gateway then hands the host a [`crate::SignatureJob`] to carry out.

#[cfg(feature = "jwt-simple")]
pub mod jwt_simple;
#[cfg(feature = "ring")]
pub mod ring;

use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;

/// The JWS algorithms the core accepts (RFC 7518, RFC 8037). `none` and the HMAC family are
/// absent on purpose: a resource server holds only public keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[allow(missing_docs)]
pub enum Algorithm {
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    ES256,
    ES384,
    EdDSA,
}

impl Algorithm {
    /// Every supported algorithm.
    pub const ALL: [Algorithm; 9] = [
        Algorithm::RS256,
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::PS256,
        Algorithm::PS384,
        Algorithm::PS512,
        Algorithm::ES256,
        Algorithm::ES384,
        Algorithm::EdDSA,
    ];

    /// Looks up an `alg` value. JWS algorithm names are case-sensitive (RFC 7515 §4.1.1), so
    /// `rs256` is not `RS256`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.name() == name)
    }

    /// The registered name.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::RS256 => "RS256",
            Algorithm::RS384 => "RS384",
            Algorithm::RS512 => "RS512",
            Algorithm::PS256 => "PS256",
            Algorithm::PS384 => "PS384",
            Algorithm::PS512 => "PS512",
            Algorithm::ES256 => "ES256",
            Algorithm::ES384 => "ES384",
            Algorithm::EdDSA => "EdDSA",
        }
    }

    /// Whether a key of this shape can carry this algorithm.
    pub fn fits(self, key: &PublicKey) -> bool {
        matches!(
            (self, key),
            (
                Algorithm::RS256
                    | Algorithm::RS384
                    | Algorithm::RS512
                    | Algorithm::PS256
                    | Algorithm::PS384
                    | Algorithm::PS512,
                PublicKey::Rsa { .. },
            ) | (
                Algorithm::ES256,
                PublicKey::Ec {
                    curve: Curve::P256,
                    ..
                }
            ) | (
                Algorithm::ES384,
                PublicKey::Ec {
                    curve: Curve::P384,
                    ..
                }
            ) | (Algorithm::EdDSA, PublicKey::Ed25519 { .. })
        )
    }

    fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

/// A small set of algorithms (an issuer's allow-list).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AlgSet(u16);

impl AlgSet {
    /// No algorithm.
    pub fn empty() -> Self {
        AlgSet(0)
    }
    /// Every supported algorithm.
    pub fn all() -> Self {
        let mut s = AlgSet(0);
        for a in Algorithm::ALL {
            s.insert(a);
        }
        s
    }
    /// Adds one.
    pub fn insert(&mut self, a: Algorithm) {
        self.0 |= a.bit();
    }
    /// Membership.
    pub fn contains(self, a: Algorithm) -> bool {
        self.0 & a.bit() != 0
    }
    /// The members, in [`Algorithm::ALL`] order.
    pub fn iter(self) -> impl Iterator<Item = Algorithm> {
        Algorithm::ALL
            .into_iter()
            .filter(move |a| self.contains(*a))
    }
}

/// Elliptic curves for ECDSA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Curve {
    /// NIST P-256 (ES256).
    P256,
    /// NIST P-384 (ES384).
    P384,
}

/// Public key material decoded from a JWK (big-endian byte strings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublicKey {
    /// `kty: RSA`.
    Rsa {
        /// Modulus.
        n: Vec<u8>,
        /// Public exponent.
        e: Vec<u8>,
    },
    /// `kty: EC`.
    Ec {
        /// Curve.
        curve: Curve,
        /// Affine x coordinate.
        x: Vec<u8>,
        /// Affine y coordinate.
        y: Vec<u8>,
    },
    /// `kty: OKP`, `crv: Ed25519`.
    Ed25519 {
        /// The 32-byte public key.
        x: Vec<u8>,
    },
}

/// What a verifier is given per request.
#[derive(Debug, Clone, Copy)]
pub struct VerifyInput<'a> {
    /// The whole compact token (for providers whose API verifies tokens, like `jwt-simple`).
    pub token: &'a str,
    /// `BASE64URL(header) || '.' || BASE64URL(payload)`.
    pub signing_input: &'a [u8],
    /// The decoded signature.
    pub signature: &'a [u8],
    /// Host time, seconds since the Unix epoch. A provider that checks claims itself must use
    /// this, never a clock of its own.
    pub now: u64,
    /// Leeway the core applied to time claims.
    pub clock_skew: u64,
}

/// A verifier's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verification {
    /// The signature is valid for this key and algorithm.
    Valid,
    /// It is not.
    Invalid,
    /// The host verifies asynchronously; the gateway returns a [`crate::SignatureJob`].
    Deferred,
}

/// Verifies signatures for one key bound to one algorithm.
/// `Send + Sync`: a native host (the Envoy dynamic module) shares one key store across its
/// worker threads; verifiers only read their key material.
pub trait SignatureVerifier: Send + Sync {
    /// Checks one signature.
    fn verify(&self, input: &VerifyInput<'_>) -> Verification;
}

/// Why a provider refused a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRejected(pub String);

/// Builds verifiers from public keys.
/// `Send + Sync` for the same reason as [`SignatureVerifier`].
pub trait CryptoProvider: Send + Sync {
    /// Prepares a verifier for `key` bound to `alg`. Called when keys are installed, never
    /// per request, so this is the place for per-key precomputation.
    fn verifier(
        &self,
        key: &PublicKey,
        alg: Algorithm,
    ) -> Result<Box<dyn SignatureVerifier>, KeyRejected>;
}

/// A provider for hosts that verify asynchronously: every verifier answers
/// [`Verification::Deferred`], and the host verifies the [`crate::SignatureJob`] itself
/// (for example with WebCrypto's `crypto.subtle.verify`).
#[derive(Debug, Clone, Copy, Default)]
pub struct DeferredProvider;

struct DeferredVerifier;

impl SignatureVerifier for DeferredVerifier {
    fn verify(&self, _input: &VerifyInput<'_>) -> Verification {
        Verification::Deferred
    }
}

impl CryptoProvider for DeferredProvider {
    fn verifier(
        &self,
        _key: &PublicKey,
        _alg: Algorithm,
    ) -> Result<Box<dyn SignatureVerifier>, KeyRejected> {
        Ok(Box::new(DeferredVerifier))
    }
}

/// The fast provider for hosts that can build `ring` (Envoy): see [`ring::RingProvider`].
#[cfg(feature = "ring")]
pub fn ring_provider() -> ring::RingProvider {
    ring::RingProvider
}

/// The provider a host gets when it does not choose: `jwt-simple` where the feature is on.
#[cfg(feature = "jwt-simple")]
pub fn default_provider() -> jwt_simple::JwtSimpleProvider {
    jwt_simple::JwtSimpleProvider
}
