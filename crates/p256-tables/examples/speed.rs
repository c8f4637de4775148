//! Times ES256 verification: ring (the baseline) against this crate, for several window widths,
//! plus per-key table build time and memory. Natively:
//!
//! ```sh
//! cargo run --release -p mcp-edge-auth-p256 --example speed
//! ```
//!
//! Under V8, as Envoy runs a filter (ring needs a C compiler for the Wasm target):
//!
//! ```sh
//! CC_wasm32_wasip1=clang AR_wasm32_wasip1=llvm-ar \
//!   cargo build --release -p mcp-edge-auth-p256 --example speed --target wasm32-wasip1
//! node --no-liftoff bench/wasm-run.mjs target/wasm32-wasip1/release/examples/speed.wasm
//! ```
//!
//! An optional argument scales the measuring time per case (default 1.0 ≈ 0.4 s).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use mcp_edge_auth_p256::{verify_with_tables, Table, VerifyingKey, G_WINDOW, Q_WINDOW};
use p256::ProjectivePoint;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair, UnparsedPublicKey};
use sha2::Digest as _;

/// Time per call of `f`, in µs: the fastest of five batches (each at least `budget / 5`, after
/// one warm-up call), so that other processes on a shared machine inflate it less.
fn time<T>(budget: Duration, mut f: impl FnMut() -> T) -> f64 {
    black_box(f());
    let mut best = f64::INFINITY;
    for _ in 0..5 {
        let mut calls = 0u32;
        let start = Instant::now();
        while start.elapsed() < budget / 5 || calls < 2 {
            black_box(f());
            calls += 1;
        }
        best = best.min(start.elapsed().as_secs_f64() * 1e6 / f64::from(calls));
    }
    best
}

fn main() {
    let scale: f64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1.0);
    let budget = Duration::from_secs_f64(0.4 * scale);
    let target = if cfg!(target_family = "wasm") {
        "wasm32 (V8)"
    } else {
        "native"
    };

    let rng = SystemRandom::new();
    let alg = &signature::ECDSA_P256_SHA256_FIXED_SIGNING;
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
    let pair = EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).unwrap();
    let public = pair.public_key().as_ref().to_vec();
    // A JWS signing input of typical access-token size.
    let msg = vec![b'a'; 400];
    let sig = pair.sign(&rng, &msg).unwrap().as_ref().to_vec();
    let digest: [u8; 32] = sha2::Sha256::digest(&msg).into();

    println!("ES256 verify, {target}, µs per call");
    let ring_us = time(budget, || {
        UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, &public)
            .verify(&msg, &sig)
            .is_ok()
    });
    println!("  ring 0.17 (baseline)                    {ring_us:8.1}");

    let t0 = Instant::now();
    let key = VerifyingKey::from_sec1_uncompressed(&public).unwrap(); // also builds the G table
    let first_key_ms = t0.elapsed().as_secs_f64() * 1e3;
    assert!(key.verify(&msg, &sig));
    let ours_us = time(budget, || key.verify(&msg, &sig));
    let ours_pre_us = time(budget, || key.verify_prehashed(&digest, &sig));
    let sha_us = time(budget, || sha2::Sha256::digest(black_box(&msg)));
    println!(
        "  this crate, default (G w={G_WINDOW}, Q w={Q_WINDOW}) {ours_us:8.1}   (prehashed {ours_pre_us:.1}; SHA-256 of {} bytes {sha_us:.1})",
        msg.len()
    );
    println!(
        "  speed-up vs ring                        {:8.2}x",
        ring_us / ours_us
    );
    let build_key_ms = time(budget, || {
        VerifyingKey::from_sec1_uncompressed(&public).unwrap()
    }) / 1e3;
    println!(
        "  VerifyingKey::from_*: {build_key_ms:.2} ms per key, {} KiB table per key; first key (with the G table) {first_key_ms:.2} ms",
        key.table_bytes() / 1024
    );

    let q_point = ProjectivePoint::from(p256::AffinePoint::from(
        p256::PublicKey::from_sec1_bytes(&public).unwrap(),
    ));
    println!("\nwindow sweep (prehashed verify µs; table build ms and KiB)");
    macro_rules! g_table {
        ($wg:literal) => {{
            let t0 = Instant::now();
            let g = Table::<$wg>::new(&ProjectivePoint::GENERATOR);
            let ms = t0.elapsed().as_secs_f64() * 1e3;
            println!(
                "  G table w={}: {:7.2} ms, {:4} KiB",
                $wg,
                ms,
                g.memory_bytes() / 1024
            );
            g
        }};
    }
    let g4 = g_table!(4);
    let g5 = g_table!(5);
    let g6 = g_table!(6);
    let g7 = g_table!(7);
    let g8 = g_table!(8);
    macro_rules! q_case {
        ($wq:literal, $(($wg:literal, $g:ident)),*) => {{
            let build_ms = time(budget, || Table::<$wq>::new(&q_point)) / 1e3;
            let q = Table::<$wq>::new(&q_point);
            print!("  Q w={}: build {:6.2} ms, {:4} KiB per key; verify with", $wq, build_ms, q.memory_bytes() / 1024);
            $(
                assert!(verify_with_tables(&$g, &q, &digest, &sig));
                let us = time(budget, || verify_with_tables(&$g, &q, &digest, &sig));
                print!("  G w={}: {:6.1}", $wg, us);
            )*
            println!();
        }};
    }
    q_case!(4, (4, g4), (8, g8));
    q_case!(5, (5, g5), (8, g8));
    q_case!(6, (6, g6), (8, g8));
    q_case!(7, (7, g7), (8, g8));
    q_case!(8, (8, g8));
}
