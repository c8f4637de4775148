// The filter's own Wasm time per request, without Envoy (make bench-filter-host; not part of
// make bench): a minimal proxy-wasm 0.2.1 host in Node's V8 (TurboFan only: run with
// --no-liftoff) that drives the callbacks Envoy makes for one request (context create,
// request headers, response headers and body, log, done, delete) over and over, with one
// valid RS256 token, so its cache hit is timed. Host calls are as cheap as this host can make
// them (a pre-serialised header map, no-op edits), so what differs between two filters is
// their Wasm: it A/B-tests a change in seconds where the Envoy benchmark takes minutes.
// Envoy's own cost of the host calls is not in it (bench/profile.mjs measures that).
//   node --no-liftoff bench/filter-host.mjs FILTER.wasm (CONFIG.json | headers | noop) [N]
// Without a config file, FILTER.wasm gets a bench config (bench/lib.mjs) of a new key, and a
// token of that key is minted. `headers`/`noop` configure the floor filter
// (crates/bench/examples/floor_filter.rs). Prints one JSON line: the min and median ns per
// request of 7 runs of N requests, and the host calls one request made.
import { readFileSync } from 'node:fs';
import { makeKey, jwks as jwksOf, mint, nowSeconds } from '../tests/lib/tokens.mjs';
import { benchConfig } from './lib.mjs';

const [file, configArg = '', nArg] = process.argv.slice(2);
if (!file) {
  console.error('usage: node --no-liftoff bench/filter-host.mjs FILTER.wasm [CONFIG.json | headers | noop] [N]');
  process.exit(2);
}
const ISSUER = 'https://auth.bench.example';
const RESOURCE = 'https://mcp.bench.example/mcp';
const key = await makeKey('RS256', 'bench-rs256');
const token = await mint(key, { iss: ISSUER, aud: RESOURCE, sub: 'client-0', scope: 'mcp:read', exp: nowSeconds() + 3600 });
const config = configArg.endsWith('.json')
  ? readFileSync(configArg)
  : configArg
    ? Buffer.from(configArg)
    : Buffer.from(JSON.stringify(benchConfig({ resource: RESOURCE, issuer: ISSUER, jwks: jwksOf(key), cached: true })));
const N = Number(nArg ?? 100000);
const module = await WebAssembly.compile(readFileSync(file));
let mem, ex;
const calls = new Map();
let FAST = false;
const NOW = BigInt(Date.now()) * 1000000n;
const count = (n) => { if (!FAST) calls.set(n, (calls.get(n) ?? 0) + 1); };
const u8 = () => new Uint8Array(mem.buffer);
const dv = () => new DataView(mem.buffer);
const enc = new TextEncoder();
const dec = new TextDecoder();
const str = (p, l) => dec.decode(u8().subarray(p, p + l));
function give(bytes, retPtr, retLen) {
  const p = ex.proxy_on_memory_allocate(bytes.length || 1);
  u8().set(bytes, p);
  dv().setUint32(retPtr, p, true);
  dv().setUint32(retLen, bytes.length, true);
}
let reqHeaders = [];
let respHeaders = [];
function serialize(map) {
  let size = 4;
  const parts = map.map(([k, v]) => [enc.encode(k), enc.encode(v)]);
  for (const [k, v] of parts) size += 8 + k.length + v.length + 2;
  const b = new Uint8Array(size);
  const d = new DataView(b.buffer);
  d.setUint32(0, parts.length, true);
  let o = 4;
  for (const [k, v] of parts) { d.setUint32(o, k.length, true); d.setUint32(o + 4, v.length, true); o += 8; }
  for (const [k, v] of parts) { b.set(k, o); o += k.length + 1; b.set(v, o); o += v.length + 1; }
  return b;
}
const mapOf = (t) => (t === 0 ? reqHeaders : t === 2 ? respHeaders : []);
const setMap = (t, m) => { if (t === 0) reqHeaders = m; else if (t === 2) respHeaders = m; };
let metricId = 1;
const shared = new Map();
const env = {
  proxy_log: (lvl, p, l) => { count('log'); if (process.env.LOG) console.error('log', lvl, str(p, l)); return 0; },
  proxy_get_log_level: (ret) => { count('get_log_level'); dv().setUint32(ret, 3, true); return 0; },
  proxy_get_current_time_nanoseconds: (ret) => { count('time'); dv().setBigUint64(ret, NOW, true); return 0; },
  proxy_set_tick_period_milliseconds: () => { count('tick'); return 0; },
  proxy_get_buffer_bytes: (t, start, max, rp, rl) => { count('get_buffer'); if (t === 7) { give(config, rp, rl); return 0; } return 1; },
  proxy_get_header_map_pairs: (t, rp, rl) => { count('get_map'); give(FAST ? (t === 0 ? REQ : RESP) : serialize(mapOf(t)), rp, rl); return 0; },
  proxy_get_header_map_value: (t, kp, kl, rp, rl) => { count('get_map_value'); const k = str(kp, kl); const e = mapOf(t).find(([n]) => n === k); if (!e) return 1; give(enc.encode(e[1]), rp, rl); return 0; },
  proxy_add_header_map_value: (t, kp, kl, vp, vl) => { count('add'); if (FAST) return 0; mapOf(t).push([str(kp, kl), str(vp, vl)]); return 0; },
  proxy_replace_header_map_value: (t, kp, kl, vp, vl) => { count('replace'); const k = str(kp, kl); setMap(t, mapOf(t).filter(([n]) => n !== k)); mapOf(t).push([k, str(vp, vl)]); return 0; },
  proxy_remove_header_map_value: (t, kp, kl) => { count('remove'); if (FAST) return 0; const k = str(kp, kl); setMap(t, mapOf(t).filter(([n]) => n !== k)); return 0; },
  proxy_define_metric: (t, np, nl, rp) => { count('define_metric'); dv().setUint32(rp, metricId++, true); return 0; },
  proxy_increment_metric: () => { count('increment_metric'); return 0; },
  proxy_record_metric: () => { count('record_metric'); return 0; },
  proxy_get_metric: (id, rp) => { count('get_metric'); dv().setBigUint64(rp, 0n, true); return 0; },
  proxy_get_shared_data: (kp, kl, rp, rl, cas) => { count('get_shared'); const v = shared.get(str(kp, kl)); if (!v) return 1; give(v, rp, rl); dv().setUint32(cas, 1, true); return 0; },
  proxy_set_shared_data: (kp, kl, vp, vl) => { count('set_shared'); shared.set(str(kp, kl), u8().slice(vp, vp + vl)); return 0; },
  proxy_get_property: () => { count('get_property'); return 1; },
  proxy_set_effective_context: () => { count('set_effective'); return 0; },
  proxy_send_local_response: (status) => { count('send_local_' + status); return 0; },
  proxy_continue_stream: () => { count('continue'); return 0; },
};
const wasi = {
  random_get: (p, l) => { u8().set(crypto.getRandomValues(new Uint8Array(l)), p); return 0; },
  clock_time_get: (id, prec, ret) => { dv().setBigUint64(ret, process.hrtime.bigint(), true); return 0; },
  environ_get: () => 0,
  environ_sizes_get: (a, b) => { dv().setUint32(a, 0, true); dv().setUint32(b, 0, true); return 0; },
  fd_write: (fd, iov, n, ret) => { let t = 0; for (let i = 0; i < n; i++) { const p = dv().getUint32(iov + 8 * i, true); const l = dv().getUint32(iov + 8 * i + 4, true); process.stderr.write(u8().subarray(p, p + l)); t += l; } dv().setUint32(ret, t, true); return 0; },
  proc_exit: (c) => { throw new Error('exit ' + c); },
};
const imports = { env: {}, wasi_snapshot_preview1: {} };
for (const imp of WebAssembly.Module.imports(module)) {
  const table = imp.module === 'env' ? env : wasi;
  const f = table[imp.name] ?? ((...a) => { count('?' + imp.name); return 0; });
  imports[imp.module] ??= {};
  imports[imp.module][imp.name] = f;
}
const inst = await WebAssembly.instantiate(module, imports);
ex = inst.exports;
mem = ex.memory;
if (ex._initialize) ex._initialize();
if (ex._start) ex._start();
const ROOT = 1;
ex.proxy_on_context_create(ROOT, 0);
ex.proxy_on_vm_start(ROOT, 0);
if (!ex.proxy_on_configure(ROOT, config.length)) throw new Error('configure refused');
const base = [[':authority', 'mcp.bench.example'], [':path', '/mcp'], [':method', 'GET'], [':scheme', 'http'],
  ['authorization', `Bearer ${token}`], ['user-agent', 'wrk'], ['x-forwarded-proto', 'http'], ['x-request-id', '2b1f3c1e-6f0e-4c3a-9b1d-3a4b5c6d7e8f']];
let ctx = 100;
// Envoy calls a callback only when the module exports it (a filter built by `make envoy-wasm`
// exports only the ones it implements): so does this host.
const noop = () => 0;
const onResponseBody = ex.proxy_on_response_body ?? noop;
const onLog = ex.proxy_on_log ?? noop;
const onDone = ex.proxy_on_done ?? noop;
function one() {
  const id = ctx++;
  if (!FAST) reqHeaders = base.slice();
  respHeaders = [[':status', '200'], ['content-length', '2'], ['content-type', 'text/plain'], ['date', 'Thu, 03 Dec 2026 20:00:00 GMT'], ['server', 'envoy']];
  ex.proxy_on_context_create(id, ROOT);
  const a = ex.proxy_on_request_headers(id, reqHeaders.length, 1);
  ex.proxy_on_response_headers(id, respHeaders.length, 0);
  onResponseBody(id, 2, 1);
  onLog(id);
  onDone(id);
  ex.proxy_on_delete(id);
  return a;
}
const first = one();
const REQ = serialize(base), RESP = serialize([[':status', '200'], ['content-length', '2'], ['content-type', 'text/plain'], ['date', 'Thu, 03 Dec 2026 20:00:00 GMT'], ['server', 'envoy']]);
const after = reqHeaders.map(([k]) => k).join(',');
for (let i = 0; i < 20000; i++) one();
calls.clear();
for (let i = 0; i < 1000; i++) one();
const calls1 = Object.fromEntries([...calls].map(([k, v]) => [k, v / 1000]));
FAST = true;
for (let i = 0; i < 20000; i++) one();
const best = [];
for (let r = 0; r < 7; r++) {
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < N; i++) one();
  best.push(Number(process.hrtime.bigint() - t0) / N);
}
best.sort((a, b) => a - b);
console.log(JSON.stringify({ action: first, after, ns_min: Math.round(best[0]), ns_med: Math.round(best[3]), calls_per_req: calls1 }));
if (Object.keys(calls1).some((k) => k.startsWith('send_local') || k.startsWith('?'))) {
  console.error(`the filter did not forward the request: ${JSON.stringify(calls1)}`);
  process.exitCode = 1;
}
