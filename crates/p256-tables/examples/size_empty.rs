//! Code-size probe: the floor (a wasm32 cdylib exporting one function that reads its input).
//! See `size_ours.rs` for how the probes are built and compared.
#![allow(clippy::missing_safety_doc)]

/// Sums the input bytes, so that the probe has an export touching memory like the others.
#[no_mangle]
pub unsafe extern "C" fn probe(ptr: *const u8, len: usize) -> u32 {
    let bytes = unsafe { core::slice::from_raw_parts(ptr, len) };
    bytes.iter().map(|&b| u32::from(b)).sum()
}
