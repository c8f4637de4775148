// The Workers benchmark (make bench-workers): one workerd process, one socket per variant,
// every variant answering an allowed request with the same fixed 200:
//
//   plain         no authorization (bench/workers/plain.js)
//   floor         no authorization, but the request work of an authorizing proxy: the
//                 headers the core reads, each read by name, the upstream request rebuilt
//                 without the token and with x-mcp-subject (bench/workers/floor.js): the
//                 floor of our cache hit
//   ours_cache    the mcp-edge-auth Worker library (bench/workers/ours.js: authorize() from
//                 workers/lib, Rust core in Wasm + WebCrypto), default token cache
//   ours_nocache  the same with token_cache.max_entries 0: every request verifies
//   jose          the same checks in JavaScript with `jose` (bench/workers/jose.js)
//
// Same keys and tokens for all; workloads "one" and "zipf" as in the Envoy benchmark (wrk
// scripts in bench/wrk/). workerd on CPU 0, wrk on CPU 1 (BENCH_CPUS_WORKERD,
// BENCH_CPUS_WRK). Knobs: BENCH_WORKER_SECONDS or BENCH_SECONDS (1), BENCH_WORKER_ROUNDS or
// BENCH_ROUNDS (20), BENCH_WORKER_ALGS (RS256;
// e.g. RS256,ES256,EdDSA), BENCH_TOKENS (1000), BENCH_WORKER_CONNECTIONS (8),
// BENCH_WARMUP_SECONDS (1). Writes .build/bench/workers.json.
import { writeFileSync, readdirSync, statSync, existsSync, rmSync } from 'node:fs';
import { join, relative } from 'node:path';
import { pathToFileURL } from 'node:url';
import { execFileSync } from 'node:child_process';

import { freePort, startProcess, tempDir, waitFor } from '../tests/lib/proc.mjs';
import { send } from '../tests/lib/http.mjs';
import { makeKey, jwks as jwksOf, mint, nowSeconds, tamper } from '../tests/lib/tokens.mjs';
import { benchConfig, makeTokenSets, ROOT, knob, listKnob, runWrk, shuffled, writeResult, loadAvg, log, commit } from './lib.mjs';

const WORKERD = join(ROOT, 'node_modules', '.bin', 'workerd');
const COMPATIBILITY_DATE = '2025-09-01'; // as tests/workers/launch.mjs
// Rounds of 1 s rather than of 2 s: on a shared 2-core VM a disturbance lasts seconds, and
// runs closer in time with more pairs give steadier per-round ratios (the 2026-12-07 make
// bench had one cell ranging over 100 µs in five rounds). Twenty rather than ten: two runs of
// ten on one build gave the reuse ratio as 1.53x and 1.50x and the uncached one as 0.87x and
// 0.82x, with single rounds from 0.4x to 2x; the median of twenty moves less (about 4 min).
const SECONDS = knob('BENCH_WORKER_SECONDS', knob('BENCH_SECONDS', 1));
const ROUNDS = knob('BENCH_WORKER_ROUNDS', knob('BENCH_ROUNDS', 20));
const ALGS = listKnob('BENCH_WORKER_ALGS', ['RS256']);
const N_TOKENS = knob('BENCH_TOKENS', 1000);
const CONNECTIONS = knob('BENCH_WORKER_CONNECTIONS', 8);
const WARMUP_SECONDS = knob('BENCH_WARMUP_SECONDS', 1);
const CPUS_WORKERD = process.env.BENCH_CPUS_WORKERD ?? '0';
const CPUS_WRK = process.env.BENCH_CPUS_WRK ?? '1';

const ISSUER = 'https://auth.bench.example';
const RESOURCE = 'https://mcp.bench.example/mcp';
const VARIANTS = ['plain', 'floor', 'ours_nocache', 'ours_cache', 'jose'];
/** Variants that answer every request (no authorization): one cell each, alg `any`. */
const OPEN = ['plain', 'floor'];
const WASM_DIR = join(ROOT, 'workers', 'lib', 'wasm');

const capnpString = (s) => `"${String(s).replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')}"`;

function filesUnder(dir) {
  const out = [];
  for (const f of readdirSync(dir)) {
    const p = join(dir, f);
    if (statSync(p).isDirectory()) out.push(...filesUnder(p));
    else if (f.endsWith('.js')) out.push(p);
  }
  return out;
}

/**
 * Modules named by their path under the repository, so relative imports resolve as on disk.
 * `base`: a directory holding another build of the library (`lib/index.js`, `lib/wasm/…`)
 * and its benchmark Worker (`ours.js`), for the `base_*` variants (bench/ab-workers.mjs).
 */
function modulesOf(variant, wasm = join(WASM_DIR, 'mcp_edge_auth_worker_bg.wasm'), base = null) {
  const m = (path, type = 'esModule', name = relative(ROOT, path)) => ({ name, path, type });
  if (variant.startsWith('base_')) {
    const b = (path, type) => m(join(base, path), type, `base/${path}`);
    return [b('ours.js'), b('lib/index.js'), b('lib/wasm/mcp_edge_auth_worker.js'), b('lib/wasm/mcp_edge_auth_worker_bg.wasm', 'wasm')];
  }
  switch (variant) {
    case 'plain':
    case 'floor':
      return [m(join(ROOT, 'bench', 'workers', `${variant}.js`))];
    case 'jose':
      return [m(join(ROOT, 'bench', 'workers', 'jose.js')), ...filesUnder(join(ROOT, 'node_modules', 'jose', 'dist', 'webapi')).map((p) => m(p))];
    default:
      return [
        m(join(ROOT, 'bench', 'workers', 'ours.js')),
        m(join(ROOT, 'workers', 'lib', 'index.js')),
        m(join(WASM_DIR, 'mcp_edge_auth_worker.js')),
        // Named as the library imports it, wherever the module is read from.
        m(wasm, 'wasm', relative(ROOT, join(WASM_DIR, 'mcp_edge_auth_worker_bg.wasm'))),
      ];
  }
}

function ourConfig(jwks, cached) {
  return JSON.stringify(benchConfig({ resource: RESOURCE, issuer: ISSUER, jwks, cached }));
}

function capnpConfig({ dir, ports, jwks, wasm, v8Flags = [], variants, base }) {
  const embed = (file) => `embed ${capnpString(relative(dir, file))}`;
  const bindingsOf = (v) => {
    if (v.endsWith('_cache') || v.endsWith('_nocache')) {
      const file = join(dir, `${v}.json`);
      writeFileSync(file, ourConfig(jwks, v.endsWith('_cache')));
      return [`(name = "MCP_EDGE_AUTH_CONFIG", text = ${embed(file)})`, '(name = "MCP_EDGE_AUTH_LOG", text = "none")'];
    }
    if (v === 'jose') {
      const file = join(dir, 'jose.json');
      writeFileSync(file, JSON.stringify({ issuer: ISSUER, resource: RESOURCE, jwks, scope: 'mcp:read' }));
      return [`(name = "BENCH_CONFIG", text = ${embed(file)})`];
    }
    return [];
  };
  const ident = (v) => `${v.replace(/_(.)/g, (_, c) => c.toUpperCase())}Worker`; // capnp: camelCase
  const workers = variants.map((v) => `const ${ident(v)} :Workerd.Worker = (
  modules = [
    ${modulesOf(v, wasm, base).map((m) => `(name = ${capnpString(m.name)}, ${m.type} = ${embed(m.path)})`).join(',\n    ')}
  ],
  compatibilityDate = "${COMPATIBILITY_DATE}",
  bindings = [
    ${bindingsOf(v).join(',\n    ')}
  ],
);`);
  return `using Workerd = import "/workerd/workerd.capnp";

const config :Workerd.Config = (${v8Flags.length ? `
  v8Flags = [${v8Flags.map(capnpString).join(', ')}],` : ''}
  services = [
    ${variants.map((v) => `(name = "${v}", worker = .${ident(v)})`).join(',\n    ')}
  ],
  sockets = [
    ${variants.map((v) => `(name = "${v}", address = "127.0.0.1:${ports[v]}", http = (), service = "${v}")`).join(',\n    ')}
  ],
);

${workers.join('\n\n')}
`;
}

/**
 * Starts the benchmark's workerd (every variant on its own socket, workerd on
 * BENCH_CPUS_WORKERD) and checks that valid tokens pass and forged or missing ones are refused
 * everywhere. `wasm`: the core's module for our variants (bench/profile-workers.mjs passes a
 * build that keeps function names); `v8Flags`: workerd's V8 flags; `base`: another build of
 * the library, served as `base_nocache` and `base_cache` beside ours (see modulesOf).
 */
export async function startWorkersBench({ wasm, v8Flags, base = null } = {}) {
  const variants = base ? [...VARIANTS, 'base_nocache', 'base_cache'] : VARIANTS;
  if (!existsSync(join(WASM_DIR, 'mcp_edge_auth_worker_bg.wasm'))) throw new Error('no Worker wasm: run make worker-build');
  const dir = tempDir('mea-bench-workers-');
  const { tokens, files, jwks } = await makeTokenSets({ algs: ALGS, n: N_TOKENS, issuer: ISSUER, resource: RESOURCE, dir });
  const ports = {};
  for (const v of variants) ports[v] = await freePort();
  const file = join(dir, 'workerd.capnp');
  writeFileSync(file, capnpConfig({ dir, ports, jwks, wasm, v8Flags, variants, base }));
  const proc = startProcess('taskset', ['-c', CPUS_WORKERD, WORKERD, 'serve', file], { cwd: dir, env: { PWD: dir }, logFile: join(dir, 'workerd.log') });
  try {
    for (const v of variants) {
      await waitFor(async () => {
        if (proc.exited) throw new Error(`workerd exited; see ${proc.log}`);
        return (await send(`http://127.0.0.1:${ports[v]}/mcp`)).status > 0;
      }, { ms: 30000, what: `workerd ${v}` });
    }
    for (const v of variants) {
      const url = `http://127.0.0.1:${ports[v]}/mcp`;
      for (const alg of ALGS) {
        const ok = await send(url, { headers: { authorization: `Bearer ${tokens[alg][0]}` } });
        if (ok.status !== 200) throw new Error(`${v} ${alg}: a valid token got ${ok.status} ${ok.body}`);
        if (OPEN.includes(v)) continue;
        const forged = await send(url, { headers: { authorization: `Bearer ${tamper(tokens[alg][0], { sub: 'admin' })}` } });
        if (forged.status !== 401) throw new Error(`${v} ${alg}: a forged token got ${forged.status}`);
      }
      if (!OPEN.includes(v) && (await send(url)).status !== 401) throw new Error(`${v}: no token was not refused`);
    }
  } catch (e) {
    await proc.stop();
    throw e;
  }
  /** One wrk run of `seconds` against a cell ({ variant, alg, workload }). */
  const run = (cell, seconds) => runWrk({
    url: `http://127.0.0.1:${ports[cell.variant]}/mcp`,
    seconds, threads: 1, connections: CONNECTIONS,
    script: join(ROOT, 'bench', 'wrk', `${cell.workload}.lua`),
    scriptArgs: [files[cell.alg]],
    cpus: CPUS_WRK,
    pid: proc.child.pid,
  });
  return { dir, proc, run };
}

async function main() {
  const { dir, proc, run } = await startWorkersBench();
  const result = {
    started: new Date().toISOString(),
    workerd_version: execFileSync(WORKERD, ['--version']).toString().trim(),
    settings: { seconds: SECONDS, rounds: ROUNDS, algs: ALGS, tokens: N_TOKENS, connections: CONNECTIONS, workerd_cpus: CPUS_WORKERD, wrk_cpus: CPUS_WRK },
    commit: commit(),
    load_before: loadAvg(),
    cells: {},
  };
  try {
    const cells = [];
    for (const workload of ['one', 'zipf']) {
      for (const variant of OPEN) cells.push({ variant, alg: 'any', workload });
      for (const variant of VARIANTS.filter((v) => !OPEN.includes(v))) for (const alg of ALGS) cells.push({ variant, alg, workload });
    }
    log(`workers: workerd on CPU ${CPUS_WORKERD}, wrk on ${CPUS_WRK} (${CONNECTIONS} connections); warming up`);
    for (const cell of cells.filter((c) => c.workload === 'zipf')) await run(cell, WARMUP_SECONDS);
    for (let r = 0; r < ROUNDS; r += 1) {
      for (const cell of shuffled(cells, 7000 + r)) {
        const res = await run(cell, SECONDS);
        (result.cells[`${cell.variant}/${cell.alg}/${cell.workload}`] ??= { ...cell, rounds: [] }).rounds.push(res);
      }
      log(`workers: round ${r + 1}/${ROUNDS}`);
    }
  } finally {
    await proc.stop();
  }
  result.load_after = loadAvg();
  result.finished = new Date().toISOString();
  log(`wrote ${writeResult('workers.json', result)}`);
  rmSync(dir, { recursive: true, force: true }); // kept on failure: workerd's log is there
}

// Run when invoked as a script (bench/profile-workers.mjs imports the set-up).
if (import.meta.url === pathToFileURL(process.argv[1]).href) await main();
