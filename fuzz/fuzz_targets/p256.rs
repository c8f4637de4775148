//! ES256 with per-key tables (`mcp-edge-auth-p256`): keys from fuzzed private scalars,
//! genuine signatures (RFC 6979, `p256`'s signer), tampered and raw fuzzed signatures. Never a
//! panic, a genuine signature always verifies, and every answer equals ring's.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mcp_edge_auth_p256::VerifyingKey;
use p256::ecdsa::{signature::Signer, Signature, SigningKey};
use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_FIXED};

fuzz_target!(
    |input: ([u8; 32], &[u8], Option<(u8, u8)>, Option<[u8; 64]>)| {
        let (secret, msg, tamper, raw) = input;
        let Ok(signer) = SigningKey::from_bytes(&secret.into()) else {
            return;
        };
        let point = signer.verifying_key().to_sec1_point(false);
        let sec1 = point.as_bytes();
        let key =
            VerifyingKey::from_sec1_uncompressed(sec1).expect("a real public key is accepted");
        let ring_key = UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, sec1);

        let genuine: Signature = signer.sign(msg);
        let mut sig: [u8; 64] = genuine.to_bytes().into();
        assert!(key.verify(msg, &sig), "a genuine signature failed");
        if let Some((at, xor)) = tamper {
            if let Some(b) = sig.get_mut(usize::from(at) % 64) {
                *b ^= xor;
            }
        }
        if let Some(r) = raw {
            sig = r;
        }
        let ours = key.verify(msg, &sig);
        let theirs = ring_key.verify(msg, &sig).is_ok();
        assert_eq!(ours, theirs, "ES256 answer differs from ring");
    }
);
