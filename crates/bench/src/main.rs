//! The timing-loop runner of the core microbenchmarks, the same code natively and as
//! `wasm32-wasip1` (run under V8 by `bench/wasm-run.mjs`):
//!
//! ```text
//! mcp-edge-auth-bench [--json] [--budget-ms N] [--batches N] [FILTER…]
//! ```
//!
//! Each case whose id contains one of the FILTERs (all without one) is measured for about
//! `--budget-ms` (default 1000) in `--batches` batches (default 15). Human-readable lines go
//! to stderr; with `--json`, one JSON object per case goes to stdout.

use std::hint::black_box;
use std::process::ExitCode;
use std::time::Instant;

use mcp_edge_auth_bench::{cases, describe, measure};

fn main() -> ExitCode {
    let mut json = false;
    let mut budget_ms: u64 = 1000;
    let mut batches: usize = 15;
    let mut filters: Vec<String> = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--json" => json = true,
            "--budget-ms" => budget_ms = args.next().and_then(|v| v.parse().ok()).unwrap_or(1000),
            "--batches" => batches = args.next().and_then(|v| v.parse().ok()).unwrap_or(15),
            _ => filters.push(a),
        }
    }
    let target = if cfg!(target_family = "wasm") {
        "wasm32-wasip1"
    } else {
        "native"
    };
    let mut all = match cases() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("bench setup failed: {e}");
            return ExitCode::FAILURE;
        }
    };
    let origin = Instant::now();
    let clock = move || u64::try_from(origin.elapsed().as_nanos()).unwrap_or(u64::MAX);
    let mut sink = |v: u64| {
        black_box(v);
    };
    for case in all.iter_mut() {
        let id = case.id();
        if !filters.is_empty() && !filters.iter().any(|f| id.contains(f.as_str())) {
            continue;
        }
        let s = measure(
            case,
            budget_ms.saturating_mul(1_000_000),
            batches,
            &clock,
            &mut sink,
        );
        eprintln!("{target:<14}{}", describe(&s));
        if json {
            println!("{}", s.json(target));
        }
    }
    ExitCode::SUCCESS
}
