// Soak: wrk through a real Envoy with the filter, for SOAK_SECONDS, with a mix of valid
// (1,000 distinct, Zipf-skewed), forged, expired and missing tokens. Passes when every
// response had its expected status, no 5xx came from the filter, Envoy's RSS stayed flat
// after warm-up, and the verified-token cache stayed within its bound.
// Run: node tests/soak/soak.mjs [seconds]   (make soak: 600 s; make test runs 30 s)
import { writeFileSync, readFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { execFile } from 'node:child_process';

import { ROOT, freePort, tempDir, sleep } from '../lib/proc.mjs';
import { makeKey, jwks, mint, nowSeconds, tamper } from '../lib/tokens.mjs';
import { startJwksServer, startUpstream } from '../lib/servers.mjs';
import { startEnvoy } from '../envoy/launch.mjs';

const ISSUER = 'http://127.0.0.1:9/soak-issuer';
const CACHE_MAX = 256;

function rssKiB(pid) {
  const m = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : 0;
}

export async function soak({ seconds = 30, sampleEvery = 10, threads = 2, log = console.log } = {}) {
  const key = await makeKey('ES256', 'soak-1');
  const jwksServer = await startJwksServer(jwks(key));
  const upstream = await startUpstream();
  upstream.seen.push = () => 0; // do not keep millions of records
  const port = await freePort();
  const resource = `http://localhost:${port}/mcp`;
  const config = {
    token_cache: { max_entries: CACHE_MAX },
    resources: [{
      resource,
      authorization_servers: [ISSUER],
      required_scopes: ['mcp:read'],
      issuers: [{ issuer: ISSUER, remote_jwks: { http_uri: { uri: jwksServer.url, cluster: 'jwks' } } }],
      claim_to_headers: [{ header_name: 'x-mcp-subject', claim_name: 'sub' }],
    }],
  };
  const envoy = await startEnvoy({ port, config, jwksPort: jwksServer.port, upstreamPort: upstream.port, logLevel: 'info' });
  const dir = tempDir('mea-soak-');
  const exp = nowSeconds() + 3600 + seconds;
  const valid = [];
  for (let i = 0; i < 1000; i += 1) valid.push(await mint(key, { iss: ISSUER, aud: resource, sub: `client-${i}`, scope: 'mcp:read', exp }));
  const forged = valid.slice(0, 50).map((t) => tamper(t, { sub: 'admin' }));
  const expired = [];
  for (let i = 0; i < 50; i += 1) expired.push(await mint(key, { iss: ISSUER, aud: resource, sub: `old-${i}`, scope: 'mcp:read', exp: nowSeconds() - 3600 }));
  writeFileSync(join(dir, 'valid.txt'), valid.join('\n'));
  writeFileSync(join(dir, 'forged.txt'), forged.join('\n'));
  writeFileSync(join(dir, 'expired.txt'), expired.join('\n'));

  const pid = envoy.proc.child.pid;
  const samples = [{ t: 0, rss_kib: rssKiB(pid) }];
  const started = Date.now();
  const sampler = setInterval(() => samples.push({ t: Math.round((Date.now() - started) / 1000), rss_kib: rssKiB(pid) }), sampleEvery * 1000);
  const wrk = await new Promise((resolve) => {
    execFile('wrk', ['-t', String(threads), '-c', String(threads), '-d', `${seconds}s`, '--timeout', '5s', '-s', join(ROOT, 'tests/soak/mix.lua'), `http://127.0.0.1:${port}/mcp`, '--', dir],
      { maxBuffer: 1 << 20 }, (err, stdout, stderr) => resolve({ err, stdout, stderr }));
  });
  clearInterval(sampler);
  samples.push({ t: Math.round((Date.now() - started) / 1000), rss_kib: rssKiB(pid) });
  const stats = await envoy.stats();
  await envoy.stop();
  await jwksServer.stop();
  await upstream.stop();

  const line = /SOAK_RESULT (\{.*\})/.exec(wrk.stdout);
  if (!line) throw new Error(`wrk gave no result: ${wrk.err?.message ?? ''}\n${wrk.stdout}\n${wrk.stderr}`);
  const result = JSON.parse(line[1]);
  const warm = samples.filter((s) => s.t >= Math.min(10, seconds / 3));
  const growth = warm.length > 1 ? warm[warm.length - 1].rss_kib - warm[0].rss_kib : 0;
  // In flight at the end: at most one request per connection.
  const slack = threads;
  result.wrong = result.got_other
    + Math.max(0, Math.abs(result.got_200 - result.sent_valid) - slack)
    + Math.max(0, Math.abs(result.got_401 - result.sent_invalid_or_missing) - slack);
  result.ok = result.got_200 + result.got_401;
  const report = { seconds, ...result, rps: Math.round(result.requests / seconds), samples, rss_growth_after_warmup_kib: growth, filter_stats: stats, cache_bound_per_vm: CACHE_MAX };
  log(JSON.stringify(report, null, 1));
  mkdirSync(join(ROOT, '.build'), { recursive: true });
  writeFileSync(join(ROOT, '.build', `soak-${seconds}s.json`), JSON.stringify(report, null, 1));
  return report;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const seconds = Number(process.argv[2] ?? 600);
  const r = await soak({ seconds, sampleEvery: 10 });
  const bad = r.wrong !== 0 || r.errors_connect + r.errors_read + r.errors_write + r.errors_timeout !== 0;
  console.log(`soak ${seconds}s: ${r.requests} requests (${r.rps}/s), ${r.ok} as expected, ${r.wrong} not; RSS ${r.samples[0].rss_kib} → ${r.samples.at(-1).rss_kib} KiB (growth after warm-up ${r.rss_growth_after_warmup_kib} KiB)`);
  process.exit(bad ? 1 : 0);
}
