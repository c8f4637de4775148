//! Code-size probe: ring's ES256 and this crate's, both exported. See `size_ours.rs`.
#![allow(clippy::missing_safety_doc)]

/// ring: `input` = `04 || x || y` (65 bytes) `|| r || s` (64 bytes) `|| message`.
#[no_mangle]
pub unsafe extern "C" fn probe(ptr: *const u8, len: usize) -> u32 {
    let input = unsafe { core::slice::from_raw_parts(ptr, len) };
    let Some((key, rest)) = input.split_at_checked(65) else {
        return 2;
    };
    let Some((sig, msg)) = rest.split_at_checked(64) else {
        return 2;
    };
    let key =
        ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_FIXED, key);
    u32::from(key.verify(msg, sig).is_ok())
}

/// This crate, same input.
#[no_mangle]
pub unsafe extern "C" fn probe_ours(ptr: *const u8, len: usize) -> u32 {
    let input = unsafe { core::slice::from_raw_parts(ptr, len) };
    let Some((key, rest)) = input.split_at_checked(65) else {
        return 2;
    };
    let Some((sig, msg)) = rest.split_at_checked(64) else {
        return 2;
    };
    match mcp_edge_auth_p256::VerifyingKey::from_sec1_uncompressed(key) {
        Some(key) => u32::from(verify(&key, msg, sig)),
        None => 3,
    }
}

/// With the `sha2` feature off, the digest comes from ring (already linked for its own ES256).
#[cfg(not(feature = "sha2"))]
fn verify(key: &mcp_edge_auth_p256::VerifyingKey, msg: &[u8], sig: &[u8]) -> bool {
    let digest = ring::digest::digest(&ring::digest::SHA256, msg);
    digest
        .as_ref()
        .try_into()
        .is_ok_and(|d| key.verify_prehashed(d, sig))
}

#[cfg(feature = "sha2")]
fn verify(key: &mcp_edge_auth_p256::VerifyingKey, msg: &[u8], sig: &[u8]) -> bool {
    key.verify(msg, sig)
}
