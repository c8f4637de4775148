// A paired A/B of the Worker library (make bench-ab-workers; not part of make bench): this
// tree's library against the one of another commit (BENCH_AB_BASE, default HEAD), served side
// by side by one workerd and measured in interleaved rounds, cache on and off, both workloads.
// For each pair it prints the median of the per-round req/s ratios (this tree ÷ base) with
// their range, and the median per-round difference in workerd CPU per request.
//
// Why: `make bench-workers` compares against jose and the floor, and its medians move by ±0.1
// between runs on a shared VM; two builds in one process, the two sides of each pair back to
// back, resolve a few percent. Two copies of one build measured this way (2026-12-07, a busy
// afternoon): req/s ratios 1.007–1.026, CPU differences −1.8 to +0.2 µs per request. Trust a
// difference beyond that; run it before keeping or dropping a change made for speed.
//
// The base is built from `git archive BENCH_AB_BASE` the way make worker-build builds this
// tree (cargo into target/ab-base, wasm-bindgen, wasm-opt: WASM_BINDGEN, WASM_OPT and
// WASM_OPT_FEATURES come from the make target). Knobs: BENCH_AB_ROUNDS (20),
// BENCH_AB_SECONDS (1). Prints; writes nothing.
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { tempDir } from '../tests/lib/proc.mjs';
import { ROOT, knob, log, median, shuffled } from './lib.mjs';
import { startWorkersBench } from './workers.mjs';

const BASE = process.env.BENCH_AB_BASE || 'HEAD';
const ROUNDS = knob('BENCH_AB_ROUNDS', 20);
const SECONDS = knob('BENCH_AB_SECONDS', 1);
const PAIRS = [['ours_cache', 'base_cache'], ['ours_nocache', 'base_nocache']];

function need(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set (run make bench-ab-workers)`);
  return v;
}

/** Builds the library of commit `rev` into `dir` (lib/…, and ours.js importing it). */
function buildBase(rev, dir) {
  const src = join(dir, 'src');
  mkdirSync(src, { recursive: true });
  const sha = execFileSync('git', ['-C', ROOT, 'rev-parse', '--short', rev]).toString().trim();
  execFileSync('sh', ['-c', `git -C "${ROOT}" archive "${sha}" | tar -x -C "${src}"`]);
  log(`ab-workers: building the base library of ${sha}`);
  const run = (cmd, args) => execFileSync(cmd, args, { cwd: src, stdio: ['ignore', 'inherit', 'inherit'] });
  run('cargo', ['build', '-q', '-p', 'mcp-edge-auth-worker', '--target', 'wasm32-unknown-unknown', '--release', '--target-dir', join(ROOT, 'target', 'ab-base')]);
  const bindgen = join(dir, 'bindgen');
  run(need('WASM_BINDGEN'), ['--target', 'web', '--out-dir', bindgen, join(ROOT, 'target', 'ab-base', 'wasm32-unknown-unknown', 'release', 'mcp_edge_auth_worker.wasm')]);
  const lib = join(dir, 'lib');
  mkdirSync(join(lib, 'wasm'), { recursive: true });
  run(need('WASM_OPT'), ['-O3', '--strip-debug', '--strip-producers', ...need('WASM_OPT_FEATURES').split(/\s+/).filter(Boolean),
    join(bindgen, 'mcp_edge_auth_worker_bg.wasm'), '-o', join(lib, 'wasm', 'mcp_edge_auth_worker_bg.wasm')]);
  copyFileSync(join(bindgen, 'mcp_edge_auth_worker.js'), join(lib, 'wasm', 'mcp_edge_auth_worker.js'));
  copyFileSync(join(src, 'workers', 'lib', 'index.js'), join(lib, 'index.js'));
  // This tree's benchmark Worker, importing the base library.
  const ours = readFileSync(join(ROOT, 'bench', 'workers', 'ours.js'), 'utf8');
  if (!ours.includes("'../../workers/lib/index.js'")) throw new Error('bench/workers/ours.js no longer imports ../../workers/lib/index.js');
  writeFileSync(join(dir, 'ours.js'), ours.replace("'../../workers/lib/index.js'", "'./lib/index.js'"));
  rmSync(src, { recursive: true, force: true });
  return sha;
}

async function main() {
  const dir = tempDir('mea-bench-ab-');
  const sha = buildBase(BASE, dir);
  const { proc, run } = await startWorkersBench({ base: dir });
  const rounds = {};
  // The two sides of a pair run back to back (in either order), so that a disturbance of the
  // shared machine, which lasts seconds, mostly falls on both.
  const pairs = [];
  for (const workload of ['one', 'zipf']) for (const pair of PAIRS) pairs.push(pair.map((variant) => ({ variant, alg: 'RS256', workload })));
  try {
    log(`ab-workers: this tree against ${sha}, ${ROUNDS} rounds of ${SECONDS} s`);
    for (const pair of pairs) for (const cell of pair) await run(cell, 1);
    for (let r = 0; r < ROUNDS; r += 1) {
      for (const [i, pair] of shuffled(pairs, 8100 + r).entries()) {
        for (const cell of (r + i) % 2 === 0 ? pair : [...pair].reverse()) {
          (rounds[`${cell.variant}/${cell.workload}`] ??= []).push(await run(cell, SECONDS));
        }
      }
    }
  } finally {
    await proc.stop();
  }
  rmSync(dir, { recursive: true, force: true });
  const fmt = (x, d = 3) => x.toFixed(d);
  console.log(`\nthis tree ÷ ${sha} (RS256; ${ROUNDS} interleaved rounds of ${SECONDS} s; medians of per-round values)\n`);
  console.log('| workload | cache | req/s ratio (min–max) | CPU µs/req, this tree − base | CPU µs/req, this tree / base |');
  console.log('|---|---|---|---|---|');
  for (const workload of ['one', 'zipf']) {
    for (const [a, b] of PAIRS) {
      const A = rounds[`${a}/${workload}`];
      const B = rounds[`${b}/${workload}`];
      const ratios = A.map((x, i) => x.rps / B[i].rps);
      const deltas = A.map((x, i) => x.cpu_us_per_req - B[i].cpu_us_per_req);
      console.log(`| ${workload} | ${a.endsWith('_cache') ? 'on' : 'off'} | **${fmt(median(ratios))}** (${fmt(Math.min(...ratios), 2)}–${fmt(Math.max(...ratios), 2)}) | ${fmt(median(deltas), 1)} | ${fmt(median(A.map((x) => x.cpu_us_per_req)), 1)} / ${fmt(median(B.map((x) => x.cpu_us_per_req)), 1)} |`);
    }
  }
}

await main();
