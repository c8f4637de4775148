//! Code-size probe: this crate's ES256 (key parsing, table building, verification, SHA-256).
//!
//! ```sh
//! CC_wasm32_wasip1=clang AR_wasm32_wasip1=llvm-ar cargo build -p mcp-edge-auth-p256 \
//!   --target wasm32-wasip1 --profile filter \
//!   --example size_empty --example size_ours --example size_ring --example size_both
//! ls -l target/wasm32-wasip1/filter/examples/size_*.wasm
//! ```
//!
//! `size_both - size_ring` is what the crate adds to a filter that already links ring's ECDSA.
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
    match mcp_edge_auth_p256::VerifyingKey::from_sec1_uncompressed(key) {
        Some(key) => u32::from(key.verify(msg, sig)),
        None => 3,
    }
}
