//! Times RS256 verification: ring against this crate, natively or under V8:
//!
//! ```sh
//! cargo run --release -p mcp-edge-auth-rsa --example speed
//! CC_wasm32_wasip1=clang AR_wasm32_wasip1=llvm-ar \
//!   cargo build --release -p mcp-edge-auth-rsa --example speed --target wasm32-wasip1
//! node --no-liftoff bench/wasm-run.mjs target/wasm32-wasip1/release/examples/speed.wasm
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use mcp_edge_auth_rsa::{Hash, PublicKey};
use ring::rand::SystemRandom;
use ring::signature::{self, RsaKeyPair, RsaPublicKeyComponents};

fn time<T>(budget: Duration, mut f: impl FnMut() -> T) -> f64 {
    black_box(f());
    let mut best = f64::INFINITY;
    for _ in 0..5 {
        let mut calls = 0u32;
        let start = Instant::now();
        while start.elapsed() < budget / 5 {
            black_box(f());
            calls += 1;
        }
        best = best.min(start.elapsed().as_secs_f64() * 1e6 / f64::from(calls));
    }
    best
}

fn main() {
    let budget = Duration::from_millis(400);
    let rng = SystemRandom::new();
    for (bits, der) in [
        (2048, &include_bytes!("../tests/keys/rsa2048-1.der")[..]),
        (3072, &include_bytes!("../tests/keys/rsa3072-3.der")[..]),
        (4096, &include_bytes!("../tests/keys/rsa4096-4.der")[..]),
    ] {
        let kp = RsaKeyPair::from_der(der).unwrap();
        let c: RsaPublicKeyComponents<Vec<u8>> = kp.public().into();
        let msg = b"eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ1c2VyIn0";
        let mut sig = vec![0u8; kp.public().modulus_len()];
        kp.sign(&signature::RSA_PKCS1_SHA256, &rng, msg, &mut sig)
            .unwrap();
        let key = PublicKey::new(&c.n, &c.e).unwrap();
        assert!(key.verify_pkcs1(Hash::Sha256, msg, &sig));
        let ring_key = RsaPublicKeyComponents { n: &c.n, e: &c.e };
        let ring = time(budget, || {
            ring_key
                .verify(&signature::RSA_PKCS1_2048_8192_SHA256, msg, &sig)
                .is_ok()
        });
        let ours = time(budget, || key.verify_pkcs1(Hash::Sha256, msg, &sig));
        let setup = time(budget, || PublicKey::new(&c.n, &c.e).is_ok());
        println!("RS256 {bits}: ring {ring:.1} µs, 32-bit limbs {ours:.1} µs ({:.2}× ring); key setup {setup:.1} µs", ring / ours);
    }
}
