// The Envoy benchmark (make bench-envoy): one Envoy process per --concurrency setting, one
// listener per variant, every listener answering with the same `direct_response`, so only
// the HTTP filter in front of the router differs:
//
//   nofilter      no HTTP filter but the router
//   jwt_nocache   Envoy's native jwt_authn, JWT cache off
//   jwt_cache     jwt_authn with jwt_cache_config { jwt_cache_size: 4096 }
//   ours_nocache  the mcp-edge-auth filter (Wasm, V8), token_cache.max_entries 0
//   ours_cache    the mcp-edge-auth filter with its default token cache (4096 entries)
//   native_nocache / native_cache
//                 the same core as a native Envoy dynamic module (crates/envoy-module,
//                 `make envoy-module`), cache off / default cache
//
// Both filters get the same inline JWKS (RS256, ES256 and EdDSA keys), the same issuer and
// audience, strip the token and put `sub` in x-mcp-subject. (Ours also checks `typ` and the
// required scope, which jwt_authn cannot.) Workloads, with wrk:
//   one    one token repeated (bench/wrk/one.lua)
//   zipf   token reuse as MCP clients do it: BENCH_TOKENS (1,000) distinct valid tokens
//          drawn with a Zipf(1) skew (bench/wrk/zipf.lua)
// Each round runs every cell once, in a new (seeded) order; BENCH_ROUNDS rounds per
// concurrency. Then, at concurrency 1, a latency pass: one connection, one token repeated,
// no filter and the two cached variants, so p50 and p99 are per-request latency without
// queueing. Last, at concurrency 1, the floor pass (issue 16): the Wasm filter's cache hit
// beside `floor_headers` (the same host calls, no core; sent the same tokens) and jwt_authn
// cached, BENCH_FLOOR_ROUNDS (32) rounds of BENCH_FLOOR_SECONDS (1) per cell, each round
// one workload's cells in a new order then the other's, so that the cells compared were
// measured seconds apart: the main rounds (40 cells each, minutes apart) cannot resolve 2 µs
// on a shared VM. And, outside Envoy, the filter's own Wasm time of a cache hit beside the
// floor's (bench/filter-host.mjs).
//
// CPU placement on a 2-core machine: --concurrency 1: Envoy (all threads) on CPU 0, wrk on
// CPU 1, so the load generator never takes Envoy's core. --concurrency 2: Envoy on both
// CPUs and wrk (2 threads) too; there is no free core left, so these numbers include the
// load generator's share of the machine. Override with BENCH_CPUS_ENVOY_<c> /
// BENCH_CPUS_WRK_<c> (taskset lists).
//
// Knobs: BENCH_SECONDS (2) per cell, BENCH_ROUNDS (5), BENCH_CONCURRENCY (1,2),
// BENCH_ALGS (RS256,ES256,EdDSA), BENCH_TOKENS (1000), BENCH_CONNECTIONS_PER_WORKER (8),
// BENCH_LATENCY_SECONDS (1; 0 skips the latency pass), BENCH_WARMUP_SECONDS (1),
// BENCH_FLOOR_ROUNDS (32; 0 skips the floor pass), BENCH_FLOOR_SECONDS (1).
// Writes .build/bench/envoy.json; bench/report.mjs turns it into tables.
import { writeFileSync, existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { execFileSync } from 'node:child_process';

import { freePort, startProcess, tempDir, waitFor } from '../tests/lib/proc.mjs';
import { send } from '../tests/lib/http.mjs';
import { makeKey, jwks as jwksOf, mint, nowSeconds, tamper } from '../tests/lib/tokens.mjs';
import { moduleFilter, ENVOY_MODULE } from '../tests/envoy-module/launch.mjs';
import { benchConfig, makeTokenSets, ROOT, OUT, knob, listKnob, runWrk, shuffled, writeResult, loadAvg, log, commit } from './lib.mjs';

const ENVOY = process.env.ENVOY ?? join(ROOT, '.venv', 'bin', 'envoy');
const ENVOY_WASM = process.env.ENVOY_WASM ?? join(ROOT, '.build', 'envoy', 'mcp_edge_auth_envoy.wasm');
// The proxy-wasm floor (crates/bench/examples/floor_filter.rs, `make bench-build-floor`,
// which drops the SDK exports the shipped filter drops): a filter that does nothing
// (floor_noop) or only the header host calls of a cache hit (floor_headers): what any Wasm
// filter pays, beside the others in every run.
export const FLOOR_WASM = join(OUT, 'floor_filter.wasm');
export const FLOORS = ['floor_noop', 'floor_headers'];
const SECONDS = knob('BENCH_SECONDS', 2);
const ROUNDS = knob('BENCH_ROUNDS', 5);
const CONCURRENCY = listKnob('BENCH_CONCURRENCY', ['1', '2']).map(Number);
const ALGS = listKnob('BENCH_ALGS', ['RS256', 'ES256', 'EdDSA']);
const N_TOKENS = knob('BENCH_TOKENS', 1000);
const PER_WORKER = knob('BENCH_CONNECTIONS_PER_WORKER', 8);
const LATENCY_SECONDS = process.env.BENCH_LATENCY_SECONDS === '0' ? 0 : knob('BENCH_LATENCY_SECONDS', 1);
const WARMUP_SECONDS = knob('BENCH_WARMUP_SECONDS', 1);
const FLOOR_ROUNDS = process.env.BENCH_FLOOR_ROUNDS === '0' ? 0 : knob('BENCH_FLOOR_ROUNDS', 32);
const FLOOR_SECONDS = knob('BENCH_FLOOR_SECONDS', 1);
const JWT_CACHE_SIZE = 4096; // = our default token_cache.max_entries

const ISSUER = 'https://auth.bench.example';
const RESOURCE = 'https://mcp.bench.example/mcp';
export const VARIANTS = ['nofilter', 'jwt_nocache', 'jwt_cache', 'ours_nocache', 'ours_cache', 'native_nocache', 'native_cache'];

const cpusFor = (c) => ({
  envoy: process.env[`BENCH_CPUS_ENVOY_${c}`] ?? (c === 1 ? '0' : '0,1'),
  wrk: process.env[`BENCH_CPUS_WRK_${c}`] ?? (c === 1 ? '1' : '0,1'),
});

const ROUTER = { name: 'envoy.filters.http.router', typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router' } };

function jwtAuthn(jwksJson, cached) {
  return {
    name: 'envoy.filters.http.jwt_authn',
    typed_config: {
      '@type': 'type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication',
      providers: {
        bench: {
          issuer: ISSUER,
          audiences: [RESOURCE],
          local_jwks: { inline_string: jwksJson },
          forward: false,
          clock_skew_seconds: 60,
          claim_to_headers: [{ header_name: 'x-mcp-subject', claim_name: 'sub' }],
          ...(cached ? { jwt_cache_config: { jwt_cache_size: JWT_CACHE_SIZE } } : {}),
        },
      },
      rules: [{ match: { prefix: '/' }, requires: { provider_name: 'bench' } }],
    },
  };
}

/** A Wasm HTTP filter as envoy/envoy.yaml configures ours. */
export function wasmFilter({ vmId, file, configuration }) {
  return {
    name: 'mcp_edge_auth',
    typed_config: {
      '@type': 'type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm',
      config: {
        name: 'mcp_edge_auth',
        root_id: 'mcp_edge_auth',
        fail_open: false,
        // As envoy/envoy.yaml ships it (only matters for MCP body rules, unused here).
        allow_on_headers_stop_iteration: true,
        vm_config: { vm_id: vmId, runtime: 'envoy.wasm.runtime.v8', code: { local: { filename: file } } },
        configuration: { '@type': 'type.googleapis.com/google.protobuf.StringValue', value: configuration },
      },
    },
  };
}

function ours(jwks, cached) {
  const config = benchConfig({ resource: RESOURCE, issuer: ISSUER, jwks, cached });
  return wasmFilter({ vmId: cached ? 'mea_cache' : 'mea_nocache', file: ENVOY_WASM, configuration: JSON.stringify(config) });
}

function native(jwks, cached) {
  return moduleFilter(JSON.stringify(benchConfig({ resource: RESOURCE, issuer: ISSUER, jwks, cached })));
}

function listener(name, port, filters) {
  return {
    name,
    address: { socket_address: { address: '127.0.0.1', port_value: port } },
    filter_chains: [{
      filters: [{
        name: 'envoy.filters.network.http_connection_manager',
        typed_config: {
          '@type': 'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager',
          stat_prefix: name,
          route_config: {
            virtual_hosts: [{ name: 'all', domains: ['*'], routes: [{ match: { prefix: '/' }, direct_response: { status: 200, body: { inline_string: 'ok' } } }] }],
          },
          http_filters: [...filters, ROUTER],
        },
      }],
    }],
  };
}

/** The floor listeners' filters. */
export function floorFilters() {
  return {
    floor_noop: [wasmFilter({ vmId: 'floor_noop', file: FLOOR_WASM, configuration: 'noop' })],
    floor_headers: [wasmFilter({ vmId: 'floor_headers', file: FLOOR_WASM, configuration: 'headers' })],
  };
}

/** The bootstrap: one listener per variant (and per `extra` name: a list of HTTP filters;
 * the floor listeners too when `ports` has theirs). */
export function benchBootstrap({ ports, adminPort, jwks, extra = {} }) {
  const jwksJson = JSON.stringify(jwks);
  const filters = {
    nofilter: [],
    jwt_nocache: [jwtAuthn(jwksJson, false)],
    jwt_cache: [jwtAuthn(jwksJson, true)],
    ours_nocache: [ours(jwks, false)],
    ours_cache: [ours(jwks, true)],
    native_nocache: [native(jwks, false)],
    native_cache: [native(jwks, true)],
  };
  if (ports.floor_noop) extra = { ...floorFilters(), ...extra };
  return {
    admin: { address: { socket_address: { address: '127.0.0.1', port_value: adminPort } } },
    static_resources: {
      listeners: [...VARIANTS.map((v) => listener(v, ports[v], filters[v])), ...Object.entries(extra).map(([v, f]) => listener(v, ports[v], f))],
    },
  };
}

async function startBenchEnvoy({ concurrency, ports, jwks, dir }) {
  const adminPort = await freePort();
  const file = join(dir, `envoy-c${concurrency}.json`);
  writeFileSync(file, JSON.stringify(benchBootstrap({ ports, adminPort, jwks }), null, 1));
  const { envoy: cpus } = cpusFor(concurrency);
  const proc = startProcess('taskset', ['-c', cpus, ENVOY, '-c', file, '--concurrency', String(concurrency),
    '--base-id', String(20_000 + (process.pid % 40_000) + concurrency), '--disable-hot-restart', '-l', 'warn'],
  { logFile: join(dir, `envoy-c${concurrency}.log`) });
  const adminUrl = `http://127.0.0.1:${adminPort}`;
  await waitFor(async () => {
    if (proc.exited) throw new Error(`Envoy exited:\n${readFileSync(proc.log, 'utf8').slice(-3000)}`);
    return (await send(`${adminUrl}/ready`)).status === 200;
  }, { ms: 30000, what: 'Envoy' });
  return { proc, adminUrl, pid: proc.child.pid };
}

/** Every listener answers a valid token with 200, and every filter refuses a bad one. */
async function sanityCheck(ports, tokens) {
  for (const v of FLOORS) {
    const r = await send(`http://127.0.0.1:${ports[v]}/mcp`, { headers: { authorization: `Bearer ${tokens[ALGS[0]][0]}` } });
    if (r.status !== 200) throw new Error(`${v}: got ${r.status} ${r.body}`);
  }
  for (const v of VARIANTS) {
    const url = `http://127.0.0.1:${ports[v]}/mcp`;
    for (const alg of ALGS) {
      const ok = await send(url, { headers: { authorization: `Bearer ${tokens[alg][0]}` } });
      if (ok.status !== 200) throw new Error(`${v} ${alg}: a valid token got ${ok.status} ${ok.body}`);
      if (v === 'nofilter') continue;
      const forged = await send(url, { headers: { authorization: `Bearer ${tamper(tokens[alg][0], { sub: 'admin' })}` } });
      if (forged.status !== 401) throw new Error(`${v} ${alg}: a forged token got ${forged.status}`);
    }
    if (v !== 'nofilter') {
      const none = await send(url);
      if (none.status !== 401) throw new Error(`${v}: no token got ${none.status}`);
    }
  }
}

async function statsOf(adminUrl) {
  const r = await send(`${adminUrl}/stats`);
  const out = {};
  for (const line of r.body.split('\n')) {
    const m = /^(\S+): (\d+)$/.exec(line.trim());
    if (m && /jwt_authn|mcp_edge_auth|wasm|dynamic_module/.test(m[1]) && Number(m[2]) > 0) out[m[1]] = Number(m[2]);
  }
  return out;
}

function cells() {
  const out = [];
  for (const workload of ['one', 'zipf']) {
    // No filter: the token does not matter; RS256 tokens are the largest requests.
    out.push({ variant: 'nofilter', alg: 'any', workload });
    for (const variant of FLOORS) out.push({ variant, alg: 'any', workload });
    for (const variant of VARIANTS.slice(1)) for (const alg of ALGS) out.push({ variant, alg, workload });
  }
  return out;
}
const cellId = (c) => `${c.variant}/${c.alg}/${c.workload}`;

/** The floor pass's cells of one workload: per algorithm, the floor, ours cached and
 * jwt_authn cached, all three sent that algorithm's tokens (a request's size alone moves
 * Envoy's CPU per request: an RS256 token is 256 bytes longer than an ES256 one). */
function floorCells(workload) {
  const out = [];
  for (const alg of ALGS) for (const variant of ['floor_headers', 'ours_cache', 'jwt_cache']) out.push({ variant, alg, workload });
  return out;
}

/** The filter's own Wasm time of a cache hit and the floor filter's, outside Envoy
 * (bench/filter-host.mjs, Node's V8 without Liftoff as Envoy runs it, pinned to `cpus`). */
function filterHost(cpus) {
  const run = (args) => {
    const out = execFileSync('taskset', ['-c', cpus, process.execPath, '--no-liftoff', '--no-warnings', join(ROOT, 'bench', 'filter-host.mjs'), ...args]);
    const line = out.toString().trim().split('\n').pop();
    return JSON.parse(line);
  };
  const floor = [];
  const ours = [];
  // Alternated, three each: the medians go in the report.
  for (let i = 0; i < 3; i += 1) {
    floor.push(run([FLOOR_WASM, 'headers']).ns_med);
    ours.push(run([ENVOY_WASM]).ns_med);
  }
  return { runtime: `Node ${process.version}`, floor_headers_ns: floor, ours_ns: ours };
}

async function main() {
  if (!existsSync(ENVOY)) throw new Error(`no Envoy at ${ENVOY}: run make setup-python`);
  if (!existsSync(ENVOY_WASM)) throw new Error(`no filter at ${ENVOY_WASM}: run make envoy-wasm`);
  if (!existsSync(ENVOY_MODULE)) throw new Error(`no module at ${ENVOY_MODULE}: run make envoy-module`);
  if (!existsSync(FLOOR_WASM)) throw new Error(`no floor filter at ${FLOOR_WASM}: run make bench-build-floor`);
  const dir = tempDir('mea-bench-envoy-');
  const { keys, jwks, tokens, files } = await makeTokenSets({ algs: ALGS, n: N_TOKENS, issuer: ISSUER, resource: RESOURCE, dir });
  const tokenBytes = Object.fromEntries(ALGS.map((a) => [a, tokens[a][0].length]));
  log(`tokens: ${N_TOKENS} per algorithm, sizes ${JSON.stringify(tokenBytes)} bytes`);

  const result = {
    started: new Date().toISOString(),
    envoy_version: execFileSync(ENVOY, ['--version']).toString().trim().split('\n').pop().trim(),
    wrk_version: execFileSync('sh', ['-c', `${process.env.WRK ?? 'wrk'} --version 2>&1 | head -1 || true`]).toString().trim(),
    filter_wasm: ENVOY_WASM,
    filter_module: ENVOY_MODULE,
    settings: { seconds: SECONDS, rounds: ROUNDS, algs: ALGS, tokens: N_TOKENS, connections_per_worker: PER_WORKER, latency_seconds: LATENCY_SECONDS, warmup_seconds: WARMUP_SECONDS, jwt_cache_size: JWT_CACHE_SIZE, token_bytes: tokenBytes },
    commit: commit(),
    load_before: loadAvg(),
    concurrency: {},
  };

  if (FLOOR_ROUNDS > 0) {
    result.filter_host = filterHost(cpusFor(1).wrk);
    log(`filter's Wasm per cache hit outside Envoy: ${JSON.stringify(result.filter_host)}`);
  }
  for (const c of CONCURRENCY) {
    const ports = {};
    for (const v of [...VARIANTS, ...FLOORS]) ports[v] = await freePort();
    const envoy = await startBenchEnvoy({ concurrency: c, ports, jwks, dir });
    const { wrk: wrkCpus, envoy: envoyCpus } = cpusFor(c);
    const run = (cell, { seconds, connections, threads }) => runWrk({
      url: `http://127.0.0.1:${ports[cell.variant]}/mcp`,
      seconds, threads, connections,
      script: join(ROOT, 'bench', 'wrk', `${cell.workload}.lua`),
      scriptArgs: [files[cell.alg]],
      cpus: wrkCpus,
      pid: envoy.pid,
    });
    const load = { threads: c, connections: c * PER_WORKER };
    const out = { envoy_cpus: envoyCpus, wrk_cpus: wrkCpus, threads: load.threads, connections: load.connections, cells: {}, latency: null };
    result.concurrency[c] = out;
    try {
      await sanityCheck(ports, tokens);
      log(`concurrency ${c}: Envoy on CPUs ${envoyCpus}, wrk on ${wrkCpus} (${load.threads} threads, ${load.connections} connections); warming up`);
      // Warm-up: every listener and token set once (fills the caches, lets V8 settle).
      for (const cell of cells().filter((x) => x.workload === 'zipf')) await run(cell, { ...load, seconds: WARMUP_SECONDS });
      const all = cells();
      for (let r = 0; r < ROUNDS; r += 1) {
        const t0 = Date.now();
        for (const cell of shuffled(all, 1000 * c + r)) {
          const res = await run(cell, { ...load, seconds: SECONDS });
          (out.cells[cellId(cell)] ??= { ...cell, rounds: [] }).rounds.push(res);
        }
        log(`concurrency ${c}: round ${r + 1}/${ROUNDS} in ${Math.round((Date.now() - t0) / 1000)} s`);
      }
      if (c === 1 && LATENCY_SECONDS > 0) {
        // Latency without queueing: one connection, one request in flight.
        out.latency = { threads: 1, connections: 1, cells: {} };
        const lat = cells().filter((x) => x.workload === 'one' && ['nofilter', 'jwt_cache', 'ours_cache', 'native_cache'].includes(x.variant));
        for (let r = 0; r < ROUNDS; r += 1) {
          for (const cell of shuffled(lat, 5000 + r)) {
            const res = await run(cell, { threads: 1, connections: 1, seconds: LATENCY_SECONDS });
            (out.latency.cells[cellId(cell)] ??= { ...cell, rounds: [] }).rounds.push(res);
          }
        }
        log('concurrency 1: latency pass done');
      }
      if (c === 1 && FLOOR_ROUNDS > 0) {
        out.floor = { seconds: FLOOR_SECONDS, rounds: FLOOR_ROUNDS, cells: {} };
        const t0 = Date.now();
        for (let r = 0; r < FLOOR_ROUNDS; r += 1) {
          for (const w of r % 2 ? ['zipf', 'one'] : ['one', 'zipf']) {
            for (const cell of shuffled(floorCells(w), 9000 + 10 * r + (w === 'one' ? 0 : 1))) {
              const res = await run(cell, { ...load, seconds: FLOOR_SECONDS });
              (out.floor.cells[cellId(cell)] ??= { ...cell, rounds: [] }).rounds.push(res);
            }
          }
        }
        log(`concurrency 1: floor pass done in ${Math.round((Date.now() - t0) / 1000)} s`);
      }
      out.stats = await statsOf(envoy.adminUrl);
    } finally {
      await envoy.proc.stop();
    }
  }
  result.load_after = loadAvg();
  result.finished = new Date().toISOString();
  log(`wrote ${writeResult('envoy.json', result)}`);
  rmSync(dir, { recursive: true, force: true }); // kept on failure: Envoy's logs are there
}

// Run when invoked as a script (bench/profile.mjs imports the bootstrap).
if (import.meta.url === pathToFileURL(process.argv[1]).href) await main();
