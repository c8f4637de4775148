// A small load test of the filter in a real Envoy (not part of `make test`):
//   node tests/envoy/bench.mjs [path/to/filter.wasm]
// Measures requests per second and latency for (a) one token over and over (verified-token
// cache hits), (b) a fresh RS256 token per request (a signature check each), (c) ES256
// likewise, and (d) no token (a 401), all through Envoy with two workers, plus (e) the same
// Envoy route without the filter as a baseline. Load comes from this process over
// keep-alive connections; it shares the machine's cores with Envoy, so compare runs made on
// the same machine, not absolute numbers.
import { Agent, request } from 'node:http';

import { startJwksServer, startUpstream } from '../lib/servers.mjs';
import { makeKey, jwks, mint } from '../lib/tokens.mjs';
import { freePort, startProcess, tempDir, waitFor } from '../lib/proc.mjs';
import { send } from '../lib/http.mjs';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

// The launcher reads ENVOY_WASM when it is loaded, so set it first and load it after.
if (process.argv[2]) process.env.ENVOY_WASM = process.argv[2];
const { startEnvoy, bootstrap, ENVOY, ENVOY_WASM } = await import('./launch.mjs');
const ISSUER = 'http://127.0.0.1:9/issuer';
const CONCURRENCY = 16;

/** CPU time (user + system, ms) the process has used so far. */
function cpuMs(pid) {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return ((Number(f[11]) + Number(f[12])) * 1000) / 100; // clock ticks, normally 100/s
}

async function measure(pid, url, tokens, total) {
  const before = cpuMs(pid);
  const r = await load(url, tokens, total);
  return { ...r, 'envoy cpu µs/req': Math.round(((cpuMs(pid) - before) * 1000) / total) };
}

function load(url, tokens, total) {
  const agent = new Agent({ keepAlive: true, maxSockets: CONCURRENCY });
  const u = new URL(url);
  const lat = [];
  let next = 0;
  let statuses = {};
  const one = () =>
    new Promise((resolve, reject) => {
      const i = next;
      next += 1;
      const t = tokens.length ? tokens[i % tokens.length] : null;
      const headers = t ? { authorization: `Bearer ${t}` } : {};
      const start = process.hrtime.bigint();
      const req = request({ host: u.hostname, port: u.port, path: u.pathname, method: 'GET', headers, agent }, (res) => {
        res.resume();
        res.on('end', () => {
          lat.push(Number(process.hrtime.bigint() - start) / 1e6);
          statuses[res.statusCode] = (statuses[res.statusCode] ?? 0) + 1;
          resolve();
        });
      });
      req.on('error', reject);
      req.end();
    });
  const worker = async () => {
    while (next < total) await one();
  };
  const t0 = Date.now();
  return Promise.all(Array.from({ length: CONCURRENCY }, worker)).then(() => {
    const secs = (Date.now() - t0) / 1000;
    lat.sort((a, b) => a - b);
    agent.destroy();
    return { rps: Math.round(total / secs), p50: lat[Math.floor(lat.length / 2)].toFixed(2), p99: lat[Math.floor(lat.length * 0.99)].toFixed(2), statuses };
  });
}

const rs = await makeKey('RS256', 'k-rs');
const es = await makeKey('ES256', 'k-es');
const jwksServer = await startJwksServer(jwks(rs, es));
const upstream = await startUpstream();
const port = await freePort();
const resource = `http://localhost:${port}/mcp`;
const config = {
  resources: [
    {
      resource,
      authorization_servers: [ISSUER],
      required_scopes: ['mcp:read'],
      issuers: [{ issuer: ISSUER, algorithms: ['RS256', 'ES256'], remote_jwks: { http_uri: { uri: jwksServer.url, cluster: 'jwks' } } }],
      claim_to_headers: [{ header_name: 'x-mcp-subject', claim_name: 'sub' }],
    },
  ],
  token_cache: { max_entries: 100000 },
};
const envoy = await startEnvoy({ port, config, jwksPort: jwksServer.port, upstreamPort: upstream.port, logLevel: 'info' });
const url = `http://127.0.0.1:${port}/mcp`;
const N = Number(process.env.BENCH_N ?? 2000);
const claims = (i) => ({ iss: ISSUER, aud: resource, sub: `u${i}`, scope: 'mcp:read' });
const rsTokens = await Promise.all(Array.from({ length: N }, (_, i) => mint(rs, claims(i))));
const esTokens = await Promise.all(Array.from({ length: N }, (_, i) => mint(es, claims(i))));
upstream.seen.length = 0;
const results = {};
try {
  await load(url, [rsTokens[0]], 200); // warm up
  const pid = envoy.proc.child.pid;
  results['cache hit'] = await measure(pid, url, [rsTokens[0]], N);
  results['RS256 verify'] = await measure(pid, url, rsTokens, N);
  results['ES256 verify'] = await measure(pid, url, esTokens, N);
  results['no token (401)'] = await measure(pid, url, [], N);
} finally {
  await envoy.stop();
}

// Baseline: the same Envoy route without the filter.
const plain = bootstrap({ port, adminPort: await freePort(), configValue: '', upstreamPort: upstream.port });
const hcm = plain.static_resources.listeners[0].filter_chains[0].filters[0].typed_config;
hcm.http_filters = hcm.http_filters.filter((f) => f.name !== 'mcp_edge_auth');
const file = join(tempDir('mea-bench-'), 'plain.json');
writeFileSync(file, JSON.stringify(plain));
const base = startProcess(ENVOY, ['-c', file, '--concurrency', '2', '--use-dynamic-base-id']);
try {
  await waitFor(async () => (await send(url)).status === 200, { what: 'plain Envoy' });
  results['no filter (baseline)'] = await measure(base.child.pid, url, [], N);
} finally {
  await base.stop();
  await jwksServer.stop();
  await upstream.stop();
}
console.log(`${ENVOY_WASM}: ${N} requests each, ${CONCURRENCY} connections`);
console.table(results);
