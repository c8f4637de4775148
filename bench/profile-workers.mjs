// Where the Worker's time goes (make bench-profile-workers; not part of make bench): `perf`
// samples workerd while wrk drives one Worker of the Workers benchmark (bench/workers.mjs:
// the floor Worker, ours with and without the verified-token cache, the jose Worker; RS256,
// one token repeated unless BENCH_PROFILE_WORKLOAD says otherwise), and splits workerd's CPU per request by where the code lives: the
// core's Wasm, JavaScript, V8's runtime, workerd's own C++ and Rust, the crypto library, the
// allocator, the kernel. For our Worker it also names the core's hottest Wasm functions (the
// module is a build that keeps its name section: BENCH_PROFILE_WASM, made by the make target).
//
// BENCH_PROFILE_WORKLOAD (one; or zipf, the reuse workload). BENCH_PROFILE_TOP (8): how many
// Wasm functions to name. BENCH_PROFILE_TOP_OTHER (0): how many of the hottest symbols outside
// the core to list, every Worker side by side (where one spends more than another in V8,
// workerd, the allocator or the kernel). Each cell runs BENCH_PROFILE_ROUNDS (3) interleaved
// rounds of BENCH_PROFILE_SECONDS (3): once
// without perf for the CPU per request, once with perf (999 Hz, no call graphs) for the split;
// a group's µs per request is its share of the samples times the CPU per request without perf
// (medians over rounds). Needs perf (Debian's linux-perf) and root or perf_event_paranoid <= 1.
// Prints; writes nothing. The figures are for finding where to look: sampling disturbs
// workerd, and a group's share is only as exact as a few thousand samples make it.
import { spawn } from 'node:child_process';
import { readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';

import { knob, log, median, perfReport, shuffled } from './lib.mjs';
import { startWorkersBench } from './workers.mjs';

const SECONDS = knob('BENCH_PROFILE_SECONDS', 3);
const ROUNDS = knob('BENCH_PROFILE_ROUNDS', 3);
const WASM = process.env.BENCH_PROFILE_WASM;
const WORKLOAD = process.env.BENCH_PROFILE_WORKLOAD ?? 'one';
if (!['one', 'zipf'].includes(WORKLOAD)) throw new Error('BENCH_PROFILE_WORKLOAD: one or zipf');
const CELLS = ['floor', 'ours_cache', 'ours_nocache', 'jose'].map((variant) => ({ variant, alg: variant === 'floor' ? 'any' : 'RS256', workload: WORKLOAD }));
const TOP_WASM = knob('BENCH_PROFILE_TOP', 8);
const TOP_OTHER = knob('BENCH_PROFILE_TOP_OTHER', 0);

/** perf's self time per symbol: [{ pct, kernel, name }] ("[k] name" is kernel code). */
function perfSymbols(data) {
  return perfReport(data, 'sym').map(({ pct, name }) => {
    const m = /^\[(.)\]\s+(.*)$/.exec(name);
    return { pct, kernel: m?.[1] === 'k', name: m ? m[2] : name };
  });
}

/** V8's names (--perf-basic-prof): Wasm functions end in their tier; JavaScript names a file. */
const isWasm = (name) => /^JS:.*-(turbofan|liftoff|maglev)$/.test(name) && !/\.m?js:\d+:\d+/.test(name);

/** The group a sampled symbol belongs to. */
function groupOf({ kernel, name }) {
  if (kernel) return 'kernel';
  if (isWasm(name)) return 'core (Wasm)';
  if (name.startsWith('JS:')) return 'JavaScript';
  if (/tcmalloc|^TCMalloc|malloc|free\b/.test(name)) return 'allocator (tcmalloc)';
  if (/^(bn_|BN_|__bn_|bssl::|EVP_|RSA_|SHA\d|sha\d|ecp_nistz|ec_GFp|x25519|ED25519|CRYPTO_)/.test(name)) return 'crypto (BoringSSL)';
  if (/^(Builtins_|v8::|cppgc::|heap::|Stub:)/.test(name)) return 'V8 (runtime, builtins, GC)';
  if (/workerd|kj|capnp|hyper|tokio|futures|cxx/.test(name)) return 'workerd (C++ and Rust)';
  return 'other';
}

async function main() {
  if (!WASM) throw new Error('BENCH_PROFILE_WASM: the core module with names (make bench-profile-workers builds it)');
  // workerd's V8 writes /tmp/perf-PID.map; remove only the ones made here.
  const maps = () => new Set(readdirSync(tmpdir()).filter((f) => /^perf-\d+\.map$/.test(f)));
  const before = maps();
  const { dir, proc, run } = await startWorkersBench({ wasm: WASM, v8Flags: ['--perf-basic-prof'] });
  const runs = {};
  try {
    log('profile-workers: warming up');
    for (const cell of CELLS) await run(cell, 1);
    for (let r = 0; r < ROUNDS; r += 1) {
      for (const cell of shuffled(CELLS, 9500 + r)) {
        const plain = await run(cell, SECONDS);
        const data = join(dir, `${cell.variant}-${r}.perf`);
        const perf = spawn('perf', ['record', '-q', '-F', '999', '-p', String(proc.child.pid), '-o', data], { stdio: 'ignore' });
        await new Promise((res) => setTimeout(res, 300));
        await run(cell, SECONDS);
        perf.kill('SIGINT');
        await new Promise((res) => perf.on('exit', res));
        const symbols = perfSymbols(data);
        rmSync(data, { force: true });
        const groups = {};
        for (const s of symbols) groups[groupOf(s)] = (groups[groupOf(s)] ?? 0) + s.pct;
        const wasm = symbols.filter((s) => isWasm(s.name));
        (runs[cell.variant] ??= []).push({ cpu: plain.cpu_us_per_req, rps: plain.rps, groups, wasm, symbols });
      }
      log(`profile-workers: round ${r + 1}/${ROUNDS}`);
    }
  } finally {
    await proc.stop();
    for (const f of maps()) if (!before.has(f)) rmSync(join(tmpdir(), f), { force: true });
  }
  rmSync(dir, { recursive: true, force: true });

  const names = [...new Set(Object.values(runs).flatMap((rs) => rs.flatMap((x) => Object.keys(x.groups))))].sort();
  const us = (rs, pctOf) => median(rs.map((x) => (pctOf(x) / 100) * x.cpu));
  const fmt = (v) => (Number.isFinite(v) ? v.toFixed(1) : '–');
  console.log(`\nworkerd CPU per request (µs), RS256, ${WORKLOAD === 'one' ? 'one token repeated' : 'token reuse (1,000 tokens, Zipf)'}; ${ROUNDS} rounds of ${SECONDS} s, medians\n`);
  console.log(`| group | ${CELLS.map((c) => c.variant).join(' | ')} |`);
  console.log(`|---|${CELLS.map(() => '---').join('|')}|`);
  console.log(`| **all** (without perf) | ${CELLS.map((c) => fmt(median(runs[c.variant].map((x) => x.cpu)))).join(' | ')} |`);
  for (const g of names) console.log(`| ${g} | ${CELLS.map((c) => fmt(us(runs[c.variant], (x) => x.groups[g] ?? 0))).join(' | ')} |`);
  for (const variant of ['ours_cache', 'ours_nocache']) {
    const rs = runs[variant];
    const fns = new Map();
    for (const x of rs) for (const s of x.wasm) fns.set(s.name, (fns.get(s.name) ?? 0) + 1);
    const top = [...fns.keys()]
      .map((name) => ({ name, us: us(rs, (x) => x.wasm.find((s) => s.name === name)?.pct ?? 0) }))
      .sort((a, b) => b.us - a.us)
      .slice(0, TOP_WASM);
    console.log(`\n${variant}: the core's hottest Wasm functions (self time, µs per request)\n`);
    for (const f of top) console.log(`  ${fmt(f.us).padStart(6)}  ${f.name.replace(/^JS:/, '').replace(/-(turbofan|liftoff|maglev)$/, '').slice(0, 110)}`);
  }
  if (TOP_OTHER > 0) {
    // The hottest symbols outside the core, side by side: where one Worker spends more than
    // another in the runtime (V8, workerd, the allocator, the kernel).
    const all = new Set(CELLS.flatMap((c) => runs[c.variant].flatMap((x) => x.symbols.filter((s) => !isWasm(s.name)).map((s) => s.name))));
    const per = (variant, name) => us(runs[variant], (x) => x.symbols.find((s) => s.name === name)?.pct ?? 0);
    const rows = [...all].map((name) => ({ name, v: CELLS.map((c) => per(c.variant, name)) }));
    rows.sort((a, b) => Math.max(...b.v) - Math.max(...a.v));
    console.log(`
the hottest symbols outside the core (self time, µs per request)
`);
    console.log(`| symbol | ${CELLS.map((c) => c.variant).join(' | ')} |`);
    console.log(`|---|${CELLS.map(() => '---').join('|')}|`);
    for (const r of rows.slice(0, TOP_OTHER)) console.log(`| ${r.name.replace(/\|/g, '/').slice(0, 90)} | ${r.v.map(fmt).join(' | ')} |`);
  }
}

await main();
