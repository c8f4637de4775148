//! The core microbenchmarks under criterion (natively): the cases of
//! `mcp_edge_auth_bench::cases`, the same ones the timing loop runs natively and in Wasm.
//! `make bench-micro` runs this with short warm-up and measurement times;
//! `cargo bench -p mcp-edge-auth-bench` with criterion's defaults.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};

fn core_cases(c: &mut Criterion) {
    let cases = match mcp_edge_auth_bench::cases() {
        Ok(cases) => cases,
        Err(e) => {
            eprintln!("bench setup failed: {e}");
            std::process::exit(1);
        }
    };
    for mut case in cases {
        let mut group = c.benchmark_group(case.group);
        let name = case.name.clone();
        group.bench_function(name, |b| b.iter(|| black_box(case.run())));
        group.finish();
    }
}

criterion_group!(benches, core_cases);
criterion_main!(benches);
