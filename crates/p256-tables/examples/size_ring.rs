//! Code-size probe: ring's ES256 (`ECDSA_P256_SHA256_FIXED`). See `size_ours.rs`.
#![allow(clippy::missing_safety_doc)]

/// `input` = `04 || x || y` (65 bytes) `|| r || s` (64 bytes) `|| message`.
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
