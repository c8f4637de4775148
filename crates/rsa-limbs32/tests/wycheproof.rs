//! Wycheproof RSA signature vectors: PKCS#1 v1.5 (2048-4096 bits, SHA-256/384/512) and PSS
//! (MGF1 with the signature hash, salt length = hash length, as JWS uses), each also checked
//! against ring's verdict.
//!
//! Every `valid` vector must verify and every `invalid` one must fail. `acceptable` vectors
//! (for example a key shorter than 2048 bits) must give ring's answer. A key this crate
//! refuses must be one ring refuses too.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use mcp_edge_auth_rsa::{Hash, PublicKey};
use ring::signature::{self, RsaPublicKeyComponents};
use wycheproof::{HashFunction, TestResult};

/// Strips the sign byte of a Wycheproof (two's complement) integer.
fn unsigned(v: &[u8]) -> &[u8] {
    let i = v.iter().position(|&b| b != 0).unwrap_or(v.len());
    &v[i..]
}

fn hash_of(h: HashFunction) -> Option<(Hash, usize)> {
    match h {
        HashFunction::Sha2_256 => Some((Hash::Sha256, 32)),
        HashFunction::Sha2_384 => Some((Hash::Sha384, 48)),
        HashFunction::Sha2_512 => Some((Hash::Sha512, 64)),
        _ => None,
    }
}

#[derive(Default, Debug)]
struct Counts {
    valid: usize,
    invalid: usize,
    acceptable: usize,
    keys_refused: usize,
}

fn check(
    counts: &mut Counts,
    failures: &mut Vec<String>,
    ours: Option<bool>,
    ring_ok: bool,
    result: TestResult,
    what: String,
) {
    let Some(ours) = ours else {
        // We refused the key: ring must refuse every signature under it too.
        counts.keys_refused += 1;
        if ring_ok {
            failures.push(format!("{what}: key refused here, ring verifies"));
        }
        return;
    };
    match result {
        TestResult::Valid => {
            counts.valid += 1;
            if !ours {
                failures.push(format!("{what}: valid vector refused"));
            }
        }
        TestResult::Invalid => {
            counts.invalid += 1;
            if ours {
                failures.push(format!("{what}: invalid vector accepted"));
            }
        }
        TestResult::Acceptable => {
            counts.acceptable += 1;
        }
    }
    if ours != ring_ok {
        failures.push(format!("{what}: ours {ours}, ring {ring_ok}"));
    }
}

#[test]
fn pkcs1_v15() {
    use wycheproof::rsa_pkcs1_verify::{TestName, TestSet};
    let sets = [
        (
            TestName::Rsa2048Sha256,
            &signature::RSA_PKCS1_2048_8192_SHA256,
        ),
        (
            TestName::Rsa2048Sha384,
            &signature::RSA_PKCS1_2048_8192_SHA384,
        ),
        (
            TestName::Rsa2048Sha512,
            &signature::RSA_PKCS1_2048_8192_SHA512,
        ),
        (
            TestName::Rsa3072Sha256,
            &signature::RSA_PKCS1_2048_8192_SHA256,
        ),
        (
            TestName::Rsa3072Sha384,
            &signature::RSA_PKCS1_2048_8192_SHA384,
        ),
        (
            TestName::Rsa3072Sha512,
            &signature::RSA_PKCS1_2048_8192_SHA512,
        ),
        (
            TestName::Rsa4096Sha256,
            &signature::RSA_PKCS1_2048_8192_SHA256,
        ),
        (
            TestName::Rsa4096Sha384,
            &signature::RSA_PKCS1_2048_8192_SHA384,
        ),
        (
            TestName::Rsa4096Sha512,
            &signature::RSA_PKCS1_2048_8192_SHA512,
        ),
    ];
    let mut total = Counts::default();
    let mut failures = Vec::new();
    for (name, ring_params) in sets {
        let set = TestSet::load(name).unwrap();
        for group in &set.test_groups {
            let (hash, _) = hash_of(group.hash).expect("a SHA-2 set");
            let (n, e) = (unsigned(&group.key.n), unsigned(&group.key.e));
            let key = PublicKey::new(n, e).ok();
            let ring_key = RsaPublicKeyComponents { n, e };
            for t in &group.tests {
                let ours = key.as_ref().map(|k| k.verify_pkcs1(hash, &t.msg, &t.sig));
                let ring_ok = ring_key.verify(ring_params, &t.msg, &t.sig).is_ok();
                check(
                    &mut total,
                    &mut failures,
                    ours,
                    ring_ok,
                    t.result,
                    format!("{name:?} tc{} {:?}", t.tc_id, t.flags),
                );
            }
        }
    }
    println!("PKCS#1 v1.5: {total:?}");
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(total.valid > 50 && total.invalid > 500, "{total:?}");
}

#[test]
fn pss_salt_equals_hash() {
    use wycheproof::rsa_pss_verify::{TestName, TestSet};
    let sets = [
        TestName::RsaPss2048Sha256Mgf1SaltLen32,
        TestName::RsaPss2048Sha384Mgf1SaltLen48,
        TestName::RsaPss3072Sha256Mgf1SaltLen32,
        TestName::RsaPss4096Sha256Mgf1SaltLen32,
        TestName::RsaPss4096Sha384Mgf1SaltLen48,
        TestName::RsaPss4096Sha512Mgf1SaltLen64,
        TestName::RsaPssmisc,
    ];
    let mut total = Counts::default();
    let mut failures = Vec::new();
    let mut skipped = 0;
    for name in sets {
        let set = TestSet::load(name).unwrap();
        for group in &set.test_groups {
            // JWS PS* is MGF1 with the signature hash and a salt as long as the hash; other
            // groups of the misc set are outside what a JWS verifier accepts.
            let Some((hash, len)) = hash_of(group.hash) else {
                skipped += group.tests.len();
                continue;
            };
            if group.mgf_hash != Some(group.hash) || group.salt_size != len {
                skipped += group.tests.len();
                continue;
            }
            let ring_params = match hash {
                Hash::Sha256 => &signature::RSA_PSS_2048_8192_SHA256,
                Hash::Sha384 => &signature::RSA_PSS_2048_8192_SHA384,
                Hash::Sha512 => &signature::RSA_PSS_2048_8192_SHA512,
            };
            let (n, e) = (unsigned(&group.key.n), unsigned(&group.key.e));
            let key = PublicKey::new(n, e).ok();
            let ring_key = RsaPublicKeyComponents { n, e };
            for t in &group.tests {
                let ours = key.as_ref().map(|k| k.verify_pss(hash, &t.msg, &t.sig));
                let ring_ok = ring_key.verify(ring_params, &t.msg, &t.sig).is_ok();
                check(
                    &mut total,
                    &mut failures,
                    ours,
                    ring_ok,
                    t.result,
                    format!("{name:?} tc{} {:?}", t.tc_id, t.flags),
                );
            }
        }
    }
    println!("PSS: {total:?}, {skipped} vectors of other parameters skipped");
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(total.valid > 20 && total.invalid > 20, "{total:?}");
}
