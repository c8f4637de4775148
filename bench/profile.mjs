// Where the filter's time goes (make bench-profile; not part of make bench): `perf` samples
//  1. Envoy (the benchmark's bootstrap, --concurrency 1, Envoy on CPU 0, wrk on CPU 1)
//     while wrk drives one listener: the split of Envoy's CPU between its own code (the
//     envoy binary, stripped: proxy-wasm host calls, HTTP, V8's runtime), code V8 compiled
//     from the filter's Wasm (anonymous executable memory), the kernel (loopback TCP) and
//     libc; with the CPU per request of each cell, so the filter's added cost is visible;
//  2. the core microbenchmarks as wasm32-wasip1 under node --perf-basic-prof --no-liftoff:
//     which core functions the cache-hit and uncached paths spend their time in.
// Needs perf (Debian's linux-perf) and root or perf_event_paranoid <= 1… (the sandbox is
// root). Writes .build/bench/profile.json; bench/report.mjs adds it to BENCHMARKS.md.
// Two extra listeners carry crates/bench/examples/floor_filter.rs, a proxy-wasm filter that
// does nothing (floor_noop) or only the header host calls of a cache hit (floor_headers):
// the part of the cost any Wasm filter pays. Cells run in BENCH_PROFILE_ROUNDS (3) interleaved
// rounds of BENCH_PROFILE_SECONDS (3) each (once without perf for req/s and CPU per request,
// once with perf at 999 Hz for the split); medians are reported.
import { execFileSync, spawn } from 'node:child_process';
import { writeFileSync, rmSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';

import { freePort, startProcess, tempDir, waitFor } from '../tests/lib/proc.mjs';
import { send } from '../tests/lib/http.mjs';
import { makeKey, jwks as jwksOf, mint, nowSeconds } from '../tests/lib/tokens.mjs';
import { ROOT, knob, runWrk, writeResult, log, median, shuffled, perfReport } from './lib.mjs';
import { benchBootstrap, VARIANTS, FLOORS } from './envoy.mjs';

const SECONDS = knob('BENCH_PROFILE_SECONDS', 3);
const ROUNDS = knob('BENCH_PROFILE_ROUNDS', 3);
const ENVOY = process.env.ENVOY ?? join(ROOT, '.venv', 'bin', 'envoy');
const WASM = join(ROOT, 'target', 'wasm32-wasip1', 'release', 'mcp-edge-auth-bench.wasm');
const ISSUER = 'https://auth.bench.example';
const RESOURCE = 'https://mcp.bench.example/mcp';

/** Groups Envoy's samples by where the code lives. */
function classify(dsos) {
  const groups = { 'Envoy binary (C++: HTTP, proxy-wasm host calls, V8 runtime)': 0, 'V8-compiled Wasm (anonymous JIT memory)': 0, kernel: 0, libc: 0, other: 0 };
  for (const { pct, name } of dsos) {
    if (/\benvoy$/.test(name)) groups['Envoy binary (C++: HTTP, proxy-wasm host calls, V8 runtime)'] += pct;
    else if (/kernel|vdso/.test(name)) groups.kernel += pct;
    else if (/libc|libm|ld-linux|libpthread/.test(name)) groups.libc += pct;
    else if (/unknown|anon|JIT|perf-\d+\.map|memfd/.test(name)) groups['V8-compiled Wasm (anonymous JIT memory)'] += pct;
    else groups.other += pct;
  }
  return Object.fromEntries(Object.entries(groups).map(([k, v]) => [k, Math.round(v * 10) / 10]));
}

async function profileEnvoy() {
  const dir = tempDir('mea-bench-profile-');
  const keys = { RS256: await makeKey('RS256', 'bench-rs256'), ES256: await makeKey('ES256', 'bench-es256'), EdDSA: await makeKey('EdDSA', 'bench-eddsa') };
  const jwks = jwksOf(...Object.values(keys));
  const files = {};
  for (const [alg, k] of Object.entries(keys)) {
    files[alg] = join(dir, `${alg}.txt`);
    writeFileSync(files[alg], `${await mint(k, { iss: ISSUER, aud: RESOURCE, sub: 'client-0', scope: 'mcp:read', exp: nowSeconds() + 3600 })}\n`);
  }
  // The floor listeners (crates/bench/examples/floor_filter.rs) come with their ports.
  const ports = {};
  for (const v of [...VARIANTS, ...FLOORS]) ports[v] = await freePort();
  const adminPort = await freePort();
  const file = join(dir, 'envoy.json');
  writeFileSync(file, JSON.stringify(benchBootstrap({ ports, adminPort, jwks })));
  const envoy = startProcess('taskset', ['-c', '0', ENVOY, '-c', file, '--concurrency', '1', '--disable-hot-restart', '-l', 'warn'], { logFile: join(dir, 'envoy.log') });
  const cells = [
    ['nofilter', 'RS256'], ['floor_noop', 'RS256'], ['floor_headers', 'RS256'], ['jwt_cache', 'RS256'], ['ours_cache', 'RS256'], ['ours_cache', 'ES256'],
    ['jwt_nocache', 'RS256'], ['ours_nocache', 'RS256'], ['ours_nocache', 'ES256'], ['ours_nocache', 'EdDSA'],
  ];
  const out = {};
  const runs = {};
  try {
    await waitFor(async () => (await send(`http://127.0.0.1:${adminPort}/ready`)).status === 200, { ms: 30000, what: 'Envoy' });
    const pid = envoy.child.pid;
    const script = join(ROOT, 'bench', 'wrk', 'one.lua');
    for (const [variant, alg] of cells) {
      // Warm-up.
      await runWrk({ url: `http://127.0.0.1:${ports[variant]}/mcp`, seconds: 1, threads: 1, connections: 8, script, scriptArgs: [files[alg]], cpus: '1' });
    }
    // Interleaved rounds (the machine is shared): medians per cell. Each cell runs twice a
    // round: without perf for req/s and CPU per request (sampling costs CPU too), then with
    // perf for the split.
    for (let r = 0; r < ROUNDS; r += 1) {
      for (const [variant, alg] of shuffled(cells, 9000 + r)) {
        const url = `http://127.0.0.1:${ports[variant]}/mcp`;
        const plain = await runWrk({ url, seconds: SECONDS, threads: 1, connections: 8, script, scriptArgs: [files[alg]], cpus: '1', pid });
        const data = join(dir, `${variant}-${alg}-${r}.perf`);
        const perf = spawn('perf', ['record', '-q', '-F', '999', '-p', String(pid), '-o', data], { stdio: 'ignore' });
        await new Promise((res) => setTimeout(res, 300));
        await runWrk({ url, seconds: SECONDS, threads: 1, connections: 8, script, scriptArgs: [files[alg]], cpus: '1' });
        perf.kill('SIGINT');
        await new Promise((res2) => perf.on('exit', res2));
        (runs[`${variant}/${alg}`] ??= []).push({ rps: plain.rps, cpu: plain.cpu_us_per_req, split: classify(perfReport(data, 'dso')) });
        rmSync(data, { force: true });
      }
      log(`profile round ${r + 1}/${ROUNDS}`);
    }
    for (const [variant, alg] of cells) {
      const id = `${variant}/${alg}`;
      const rs = runs[id];
      const split = Object.fromEntries(Object.keys(rs[0].split).map((k) => [k, Math.round(median(rs.map((x) => x.split[k])) * 10) / 10]));
      out[id] = { rps: Math.round(median(rs.map((x) => x.rps))), cpu_us_per_req: Math.round(median(rs.map((x) => x.cpu)) * 10) / 10, split };
      log(`${id}: ${out[id].rps} req/s, ${out[id].cpu_us_per_req} µs CPU/req, ${JSON.stringify(split)}`);
    }
  } finally {
    await envoy.stop();
  }
  rmSync(dir, { recursive: true, force: true });
  return out;
}

function profileWasm() {
  const out = {};
  // node --perf-basic-prof writes /tmp/perf-PID.map; remove only the ones made here.
  const maps = () => new Set(readdirSync(tmpdir()).filter((f) => /^perf-\d+\.map$/.test(f)));
  const before = maps();
  for (const c of ['cache-hit/RS256', 'decide-uncached/ring-RS256', 'decide-uncached/ring-ES256']) {
    const tmp = tempDir('mea-bench-wasm-');
    const data = join(tmp, 'perf.data');
    execFileSync('taskset', ['-c', '1', 'perf', 'record', '-q', '-F', '2999', '-o', data, '--', 'node', '--perf-basic-prof', '--no-liftoff', '--no-warnings', join(ROOT, 'bench', 'wasm-run.mjs'), WASM, '--budget-ms', '4000', c], { stdio: 'ignore' });
    const syms = perfReport(data, 'sym').slice(0, 12).map(({ pct, name }) => ({ pct, name: demangle(name) }));
    out[c] = syms;
    rmSync(tmp, { recursive: true, force: true });
    log(`${c}: ${syms.slice(0, 5).map((s) => `${s.pct}% ${s.name}`).join('; ')}`);
  }
  for (const f of maps()) if (!before.has(f)) rmSync(join(tmpdir(), f), { force: true });
  return out;
}

/** "[.] JS:_ZN4sha26sha25611compress25617h…E-324-turbofan" → "sha2::sha256::compress256". */
function demangle(name) {
  let n = name.replace(/^\[[.k]\]\s+/, '').replace(/^JS:/, '').replace(/-\d+-turbofan$/, ' (Wasm)');
  const m = /_ZN((?:\d+[^\d][^E]*?)+)17h[0-9a-f]{16}E/.exec(n);
  if (m) {
    const parts = [];
    let s = m[1];
    while (s.length) {
      const len = /^(\d+)/.exec(s);
      if (!len) break;
      const l = Number(len[1]);
      parts.push(s.slice(len[1].length, len[1].length + l));
      s = s.slice(len[1].length + l);
    }
    n = n.replace(m[0], parts.join('::').replace(/\$LT\$/g, '<').replace(/\$GT\$/g, '>').replace(/\$u20\$/g, ' ').replace(/\$C\$/g, ',').replace(/\.\./g, '::'));
  }
  return n;
}

const result = { measured: new Date().toISOString(), seconds: SECONDS, rounds: ROUNDS };
log('profiling Envoy');
result.envoy = await profileEnvoy();
log('profiling the core in Wasm (node --perf-basic-prof --no-liftoff)');
result.wasm = profileWasm();
log(`wrote ${writeResult('profile.json', result)}`);
