// Core microbenchmarks (make bench-micro): the cases of crates/bench, three ways:
//   criterion   natively (cargo bench -p mcp-edge-auth-bench), short warm-up/measurement
//   loop        the plain timing loop of crates/bench/src/main.rs, natively
//   wasm        the same loop built for wasm32-wasip1, under Node's V8 with --no-liftoff
// Every run is pinned to one CPU (BENCH_MICRO_CPU, default 1). Knobs: BENCH_MICRO_MS (per
// case for the loop, default 500), BENCH_CRITERION_WARMUP (0.3 s), BENCH_CRITERION_SECONDS
// (1 s). Expects the native and wasm binaries built (bench/bench.mk does). Writes
// .build/bench/micro.json.
import { execFileSync, spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, rmSync, existsSync, statSync } from 'node:fs';
import { join } from 'node:path';

import { ROOT, OUT, knob, writeResult, loadAvg, log, commit } from './lib.mjs';

const CPU = process.env.BENCH_MICRO_CPU ?? '1';
const MS = knob('BENCH_MICRO_MS', 500);
const WARMUP = knob('BENCH_CRITERION_WARMUP', 0.3);
const SECONDS = knob('BENCH_CRITERION_SECONDS', 1);
const NATIVE = join(ROOT, 'target', 'release', 'mcp-edge-auth-bench');
const WASM = join(ROOT, 'target', 'wasm32-wasip1', 'release', 'mcp-edge-auth-bench.wasm');
const CRITERION_HOME = join(OUT, 'criterion');

function jsonLines(text) {
  return text.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l));
}

function loop(cmd, args) {
  const r = spawnSync('taskset', ['-c', CPU, cmd, ...args, '--json', '--budget-ms', String(MS)], { encoding: 'utf8', maxBuffer: 16 << 20 });
  if (r.status !== 0) throw new Error(`${cmd} failed (${r.status}):\n${r.stderr}`);
  process.stderr.write(r.stderr);
  return Object.fromEntries(jsonLines(r.stdout).map((s) => [s.id, s]));
}

function criterionResults(dir) {
  const out = {};
  const walk = (d) => {
    for (const f of readdirSync(d)) {
      const p = join(d, f);
      if (!statSync(p).isDirectory()) continue;
      if (f === 'new' && existsSync(join(p, 'benchmark.json'))) {
        const b = JSON.parse(readFileSync(join(p, 'benchmark.json'), 'utf8'));
        const e = JSON.parse(readFileSync(join(p, 'estimates.json'), 'utf8'));
        out[b.full_id] = { ns_median: e.median.point_estimate, ns_low: e.median.confidence_interval.lower_bound, ns_high: e.median.confidence_interval.upper_bound };
      } else walk(p);
    }
  };
  if (existsSync(dir)) walk(dir);
  return out;
}

const result = { started: new Date().toISOString(), commit: commit(), load_before: loadAvg(), settings: { loop_ms_per_case: MS, criterion_warmup_s: WARMUP, criterion_measurement_s: SECONDS, cpu: CPU } };
result.node_version = process.version;
result.node_v8 = process.versions.v8;
result.rustc = execFileSync('rustc', ['--version']).toString().trim();

log('criterion (native)');
rmSync(CRITERION_HOME, { recursive: true, force: true });
const c = spawnSync('taskset', ['-c', CPU, 'cargo', 'bench', '-q', '-p', 'mcp-edge-auth-bench', '--bench', 'core', '--',
  '--warm-up-time', String(WARMUP), '--measurement-time', String(SECONDS), '--noplot'],
{ cwd: ROOT, encoding: 'utf8', env: { ...process.env, CRITERION_HOME }, stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 16 << 20 });
if (c.status !== 0) throw new Error(`cargo bench failed (${c.status})\n${c.stdout}`);
result.criterion = criterionResults(CRITERION_HOME);

log('timing loop (native)');
result.native = loop(NATIVE, []);
log('timing loop (wasm32-wasip1 under node --no-liftoff)');
result.wasm = loop('node', ['--no-liftoff', '--no-warnings', join(ROOT, 'bench', 'wasm-run.mjs'), WASM]);
result.load_after = loadAvg();
log(`wrote ${writeResult('micro.json', result)}`);
