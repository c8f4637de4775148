//! Wycheproof ECDSA P-256 / SHA-256 vectors, and a differential test against `ring`.
//!
//! * `ecdsa_secp256r1_sha256_p1363`: IEEE P1363 signatures (`r || s`), exactly the JWS format.
//! * `ecdsa_secp256r1_sha256`: DER signatures, converted to `r || s` by a strict DER parser
//!   written here (a BER/non-minimal encoding is a rejection, as the vectors require); the
//!   same vectors also go through `ring`'s ASN.1 verifier as a cross-check.
//!
//! Every `valid` vector must verify and every `invalid` one must fail. `acceptable` vectors
//! (none in these two sets at the time of writing) are counted and reported, not asserted.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use mcp_edge_auth_p256::VerifyingKey;
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{self, EcdsaKeyPair, KeyPair, UnparsedPublicKey};
use wycheproof::ecdsa::{TestName, TestSet};
use wycheproof::{HashFunction, TestResult};

#[derive(Debug, Default)]
struct Counts {
    valid: usize,
    invalid: usize,
    acceptable: usize,
    acceptable_accepted: usize,
    groups: usize,
    keys_rejected: usize,
}

/// Runs one set; `to_p1363` turns the vector's signature into `r || s` (or `None` when the
/// encoding itself must be rejected). Returns the counts; panics listing every mismatch.
fn run(
    name: TestName,
    to_p1363: fn(&[u8]) -> Option<Vec<u8>>,
    ring_alg: &'static dyn signature::VerificationAlgorithm,
) -> Counts {
    let set = TestSet::load(name).unwrap();
    let mut counts = Counts::default();
    let mut failures = Vec::new();
    for group in &set.test_groups {
        counts.groups += 1;
        assert_eq!(group.hash, HashFunction::Sha2_256);
        let sec1: &[u8] = &group.key.key;
        let key = VerifyingKey::from_sec1_uncompressed(sec1);
        if key.is_none() {
            counts.keys_rejected += 1;
        }
        for test in &group.tests {
            let msg: &[u8] = &test.msg;
            let sig: &[u8] = &test.sig;
            let ours = match (&key, to_p1363(sig)) {
                (Some(key), Some(fixed)) => key.verify(msg, &fixed),
                _ => false,
            };
            // ring on the vector's own encoding, as a cross-check of the vectors' reading.
            let theirs = UnparsedPublicKey::new(ring_alg, sec1)
                .verify(msg, sig)
                .is_ok();
            match test.result {
                TestResult::Valid => {
                    counts.valid += 1;
                    if !ours {
                        failures.push(format!(
                            "tc {} (valid, {}) rejected",
                            test.tc_id, test.comment
                        ));
                    }
                }
                TestResult::Invalid => {
                    counts.invalid += 1;
                    if ours {
                        failures.push(format!(
                            "tc {} (invalid, {}) accepted",
                            test.tc_id, test.comment
                        ));
                    }
                }
                TestResult::Acceptable => {
                    counts.acceptable += 1;
                    counts.acceptable_accepted += usize::from(ours);
                    println!(
                        "acceptable tc {} ({}, {:?}): ours {ours}, ring {theirs}",
                        test.tc_id, test.comment, test.flags
                    );
                }
            }
            if ours != theirs && test.result != TestResult::Acceptable {
                failures.push(format!(
                    "tc {} ({}): ours {ours}, ring {theirs}",
                    test.tc_id, test.comment
                ));
            }
        }
    }
    assert_eq!(
        counts.valid + counts.invalid + counts.acceptable,
        set.number_of_tests
    );
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    counts
}

fn p1363(sig: &[u8]) -> Option<Vec<u8>> {
    Some(sig.to_vec())
}

/// Strict DER `SEQUENCE { INTEGER r, INTEGER s }` to `r || s`: definite short-form lengths
/// (a P-256 signature is at most 72 bytes), minimal positive integers of at most 32
/// significant bytes, nothing trailing.
fn der_to_p1363(der: &[u8]) -> Option<Vec<u8>> {
    fn integer(input: &[u8]) -> Option<(&[u8], &[u8])> {
        let (&tag, rest) = input.split_first()?;
        let (&len, rest) = rest.split_first()?;
        if tag != 0x02 || len >= 0x80 || rest.len() < usize::from(len) {
            return None;
        }
        let (value, rest) = rest.split_at(usize::from(len));
        let (&first, tail) = value.split_first()?;
        if first & 0x80 != 0 {
            return None; // negative
        }
        let magnitude = if first == 0 {
            match tail.first() {
                Some(b) if b & 0x80 != 0 => tail, // required sign byte
                Some(_) => return None,           // non-minimal
                None => value,                    // the integer 0
            }
        } else {
            value
        };
        (magnitude.len() <= 32).then_some((magnitude, rest))
    }
    let (&tag, rest) = der.split_first()?;
    let (&len, body) = rest.split_first()?;
    if tag != 0x30 || len >= 0x80 || body.len() != usize::from(len) {
        return None;
    }
    let (r, rest) = integer(body)?;
    let (s, rest) = integer(rest)?;
    if !rest.is_empty() {
        return None;
    }
    let mut out = vec![0u8; 64];
    out[32 - r.len()..32].copy_from_slice(r);
    out[64 - s.len()..].copy_from_slice(s);
    Some(out)
}

#[test]
fn wycheproof_p1363() {
    let c = run(
        TestName::EcdsaSecp256r1Sha256P1363,
        p1363,
        &signature::ECDSA_P256_SHA256_FIXED,
    );
    println!("ecdsa_secp256r1_sha256_p1363: {c:?}");
    assert!(c.valid > 0 && c.invalid > 0);
}

#[test]
fn wycheproof_der() {
    let c = run(
        TestName::EcdsaSecp256r1Sha256,
        der_to_p1363,
        &signature::ECDSA_P256_SHA256_ASN1,
    );
    println!("ecdsa_secp256r1_sha256 (DER): {c:?}");
    assert!(c.valid > 0 && c.invalid > 0);
}

/// Random keys and messages, signed by ring: ours and ring's verifier must agree on the
/// genuine signature, its low/high-s twin, tampered signatures and messages, a wrong key,
/// random signatures and out-of-range `r`/`s`.
#[test]
fn differential_against_ring() {
    const N_HEX: &str = "ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551";
    let n: Vec<u8> = (0..32)
        .map(|i| u8::from_str_radix(&N_HEX[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    let rng = SystemRandom::new();
    let alg = &signature::ECDSA_P256_SHA256_FIXED_SIGNING;
    let keys: Vec<EcdsaKeyPair> = (0..24)
        .map(|_| {
            let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
            EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).unwrap()
        })
        .collect();
    let ours: Vec<VerifyingKey> = keys
        .iter()
        .map(|k| VerifyingKey::from_sec1_uncompressed(k.public_key().as_ref()).unwrap())
        .collect();
    let random = |len: usize| {
        let mut v = vec![0u8; len];
        rng.fill(&mut v).unwrap();
        v
    };
    let mut checks = 0usize;
    let mut accepted = 0usize;
    let mut check = |key_index: usize, msg: &[u8], sig: &[u8], expect: Option<bool>| {
        let pk = keys[key_index].public_key().as_ref();
        let theirs = UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, pk)
            .verify(msg, sig)
            .is_ok();
        let mine = ours[key_index].verify(msg, sig);
        assert_eq!(
            mine, theirs,
            "key {key_index}, msg {msg:02x?}, sig {sig:02x?}"
        );
        if let Some(expect) = expect {
            assert_eq!(mine, expect, "key {key_index}, sig {sig:02x?}");
        }
        checks += 1;
        accepted += usize::from(mine);
    };
    for round in 0..400 {
        let k = round % keys.len();
        let msg = random(round % 97);
        let sig = keys[k].sign(&rng, &msg).unwrap();
        let sig = sig.as_ref().to_vec();
        check(k, &msg, &sig, Some(true));
        // s -> n - s: the same signature for ECDSA (JWS has no low-s rule).
        let mut twin = sig.clone();
        let mut borrow = 0i16;
        for i in (0..32).rev() {
            let d = i16::from(n[i]) - i16::from(sig[32 + i]) - borrow;
            twin[32 + i] = d.rem_euclid(256) as u8;
            borrow = i16::from(d < 0);
        }
        check(k, &msg, &twin, Some(true));
        // One flipped bit anywhere in the signature.
        let bit = usize::from(random(2)[0]) % 512;
        let mut flipped = sig.clone();
        flipped[bit / 8] ^= 1 << (bit % 8);
        check(k, &msg, &flipped, Some(false));
        // Another message, another key.
        let mut other = msg.clone();
        other.push(0);
        check(k, &other, &sig, Some(false));
        check((k + 1) % keys.len(), &msg, &sig, Some(false));
        // Garbage and boundary values.
        check(k, &msg, &random(64), Some(false));
        let mut r_is_n = sig.clone();
        r_is_n[..32].copy_from_slice(&n);
        check(k, &msg, &r_is_n, Some(false));
        let mut s_is_n = sig.clone();
        s_is_n[32..].copy_from_slice(&n);
        check(k, &msg, &s_is_n, Some(false));
        check(k, &msg, &sig[..63], Some(false));
    }
    println!("differential: {checks} checks, {accepted} accepted, all equal to ring");
}
