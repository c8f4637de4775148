//! RSA verification (`mcp-edge-auth-rsa`, PKCS#1 v1.5 and PSS, SHA-256/384/512) against ring.
//!
//! Keys are the OpenSSL keys of the crate's differential test (2048, 2049, 3072 and 4096 bits),
//! or a fuzzed modulus/exponent pair; signatures are ring's own over the fuzzed message, then
//! tampered with, or raw fuzzed bytes. Never a panic, a genuine signature always verifies, a
//! key is accepted exactly when ring accepts it, and every verdict equals ring's.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mcp_edge_auth_rsa::{Hash, PublicKey};
use ring::rand::SystemRandom;
use ring::signature::{self, RsaKeyPair, RsaPublicKeyComponents};
use std::sync::OnceLock;

const KEYS: [&[u8]; 5] = [
    include_bytes!("../../crates/rsa-limbs32/tests/keys/rsa2048-1.der"),
    include_bytes!("../../crates/rsa-limbs32/tests/keys/rsa2048-2.der"),
    include_bytes!("../../crates/rsa-limbs32/tests/keys/rsa2049-odd.der"),
    include_bytes!("../../crates/rsa-limbs32/tests/keys/rsa3072-3.der"),
    include_bytes!("../../crates/rsa-limbs32/tests/keys/rsa4096-4.der"),
];

type Scheme = (
    &'static dyn signature::RsaEncoding,
    &'static signature::RsaParameters,
    Hash,
    bool, // PSS
);

const SCHEMES: [Scheme; 6] = [
    (
        &signature::RSA_PKCS1_SHA256,
        &signature::RSA_PKCS1_2048_8192_SHA256,
        Hash::Sha256,
        false,
    ),
    (
        &signature::RSA_PKCS1_SHA384,
        &signature::RSA_PKCS1_2048_8192_SHA384,
        Hash::Sha384,
        false,
    ),
    (
        &signature::RSA_PKCS1_SHA512,
        &signature::RSA_PKCS1_2048_8192_SHA512,
        Hash::Sha512,
        false,
    ),
    (
        &signature::RSA_PSS_SHA256,
        &signature::RSA_PSS_2048_8192_SHA256,
        Hash::Sha256,
        true,
    ),
    (
        &signature::RSA_PSS_SHA384,
        &signature::RSA_PSS_2048_8192_SHA384,
        Hash::Sha384,
        true,
    ),
    (
        &signature::RSA_PSS_SHA512,
        &signature::RSA_PSS_2048_8192_SHA512,
        Hash::Sha512,
        true,
    ),
];

fn pairs() -> &'static [RsaKeyPair] {
    static PAIRS: OnceLock<Vec<RsaKeyPair>> = OnceLock::new();
    PAIRS.get_or_init(|| {
        KEYS.iter()
            .map(|der| RsaKeyPair::from_der(der).expect("the test keys parse"))
            .collect()
    })
}

fn verify(key: &PublicKey, pss: bool, hash: Hash, msg: &[u8], sig: &[u8]) -> bool {
    if pss {
        key.verify_pss(hash, msg, sig)
    } else {
        key.verify_pkcs1(hash, msg, sig)
    }
}

#[derive(arbitrary::Arbitrary, Debug)]
enum Input<'a> {
    /// A test key, ring's signature over `msg`, optionally tampered or replaced.
    Genuine {
        key: u8,
        scheme: u8,
        msg: &'a [u8],
        tamper: Option<(u16, u8)>,
        truncate: Option<u16>,
        raw: Option<&'a [u8]>,
    },
    /// A fuzzed key (modulus and exponent bytes) and a fuzzed signature.
    Fuzzed {
        scheme: u8,
        n: &'a [u8],
        e: &'a [u8],
        msg: &'a [u8],
        sig: &'a [u8],
    },
}

fuzz_target!(|input: Input<'_>| {
    match input {
        Input::Genuine {
            key,
            scheme,
            msg,
            tamper,
            truncate,
            raw,
        } => {
            let Some(kp) = pairs().get(usize::from(key) % KEYS.len()) else {
                return;
            };
            let Some(&(encoding, params, hash, pss)) = SCHEMES.get(usize::from(scheme) % 6) else {
                return;
            };
            let c: RsaPublicKeyComponents<Vec<u8>> = kp.public().into();
            let ours_key = PublicKey::new(&c.n, &c.e).expect("ring's key is ours too");
            let mut sig = vec![0u8; kp.public().modulus_len()];
            kp.sign(encoding, &SystemRandom::new(), msg, &mut sig)
                .expect("ring signs");
            assert!(
                verify(&ours_key, pss, hash, msg, &sig),
                "a genuine signature failed"
            );
            if let Some((at, xor)) = tamper {
                let len = sig.len();
                if let Some(b) = sig.get_mut(usize::from(at) % len) {
                    *b ^= xor;
                }
            }
            if let Some(t) = truncate {
                sig.truncate(usize::from(t));
            }
            let sig = raw.map_or(sig, <[u8]>::to_vec);
            let ring_key = RsaPublicKeyComponents { n: &c.n, e: &c.e };
            let ours = verify(&ours_key, pss, hash, msg, &sig);
            let theirs = ring_key.verify(params, msg, &sig).is_ok();
            assert_eq!(
                ours, theirs,
                "verdict differs from ring ({hash:?}, pss {pss})"
            );
        }
        Input::Fuzzed {
            scheme,
            n,
            e,
            msg,
            sig,
        } => {
            let Some(&(_, params, hash, pss)) = SCHEMES.get(usize::from(scheme) % 6) else {
                return;
            };
            let theirs = RsaPublicKeyComponents { n, e }
                .verify(params, msg, sig)
                .is_ok();
            match PublicKey::new(n, e) {
                Ok(key) => {
                    let ours = verify(&key, pss, hash, msg, sig);
                    assert_eq!(ours, theirs, "verdict differs from ring on a fuzzed key");
                }
                // ring refuses such a key at verification: no signature may pass under it.
                Err(_) => assert!(!theirs, "ring accepted a signature under a key we refuse"),
            }
        }
    }
});
