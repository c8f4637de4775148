// `make demo` keeps working: runs `node demo/run.mjs --check` (start everything, run the
// printed copy-paste commands with bash and curl, check their output, stop everything) on
// free ports, stateless and stateful (DEMO_STATEFUL=1: the GET SSE stream through both
// gateways), and checks that nothing it started is left listening. Also: an up-to-date tree
// is not rebuilt, and demo/client.mjs explains a failure instead of crashing.
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { join } from 'node:path';

import { ROOT, freePort, tempDir } from '../lib/proc.mjs';
import { send } from '../lib/http.mjs';
import { startAuthServer } from '../../demo/as.mjs';
import { startMcpServer } from '../../demo/mcp-server.mjs';
import { startHost } from '../envoy/launch.mjs';
import { gatewayConfig, urls, resourcesOf } from '../../demo/config.mjs';

const hasCurl = (() => { try { execFileSync('curl', ['--version'], { stdio: 'ignore' }); return true; } catch { return false; } })();

/** Runs a child to its end: { code, out }. */
function run(cmd, args, env) {
  const child = spawn(cmd, args, { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (c) => { out += c; });
  child.stderr.on('data', (c) => { out += c; });
  return new Promise((r) => child.on('exit', (code) => r({ code, out })));
}

for (const [stateful, exchange] of [[false, false], [true, false], [false, true]]) {
  it(`make demo${stateful ? ' (DEMO_STATEFUL=1)' : ''}${exchange ? ' (DEMO_EXCHANGE=1)' : ''}: starts AS, MCP server, Envoy and the Worker; the printed commands work; it stops everything`, { skip: !hasCurl && 'curl is not installed', timeout: 120000 }, async () => {
    const ports = { DEMO_AS_PORT: await freePort(), DEMO_MCP_PORT: await freePort(), DEMO_ENVOY_PORT: await freePort(), ENVOY_ADMIN_PORT: await freePort(), DEMO_WORKER_PORT: await freePort() };
    const env = { ...process.env, DEMO_LOG_DIR: tempDir('mea-demo-'), ...(stateful ? { DEMO_STATEFUL: '1' } : {}), ...(exchange ? { DEMO_EXCHANGE: '1' } : {}) };
    for (const [k, v] of Object.entries(ports)) env[k] = String(v);
    const { code, out } = await run(process.execPath, [join(ROOT, 'demo', 'run.mjs'), '--check'], env);
    assert.equal(code, 0, out);
    const expected = [`http://localhost:${ports.DEMO_ENVOY_PORT}/mcp`, `http://localhost:${ports.DEMO_WORKER_PORT}/mcp`, 'TOKEN=$(curl', 'ok   Envoy: token + tools/list', 'ok   the Worker: token + tools/list', 'SDK client step-up', `admin: http://127.0.0.1:${ports.ENVOY_ADMIN_PORT}/stats`];
    if (exchange) expected.push('ok   Envoy: token + whoami', 'ok   the Worker: token + whoami', 'the token the gateway exchanged');
    if (stateful) expected.push('SID=$(curl', 'ok   Envoy: the GET SSE stream through the gateway', 'ok   the Worker: the GET SSE stream through the gateway');
    for (const what of expected) assert.ok(out.includes(what), `output mentions ${what}\n${out}`);
    assert.ok(!/FAIL/.test(out), out);
    // Everything it started is gone.
    for (const port of Object.values(ports)) {
      await assert.rejects(send(`http://127.0.0.1:${port}/`), `port ${port} is closed again`);
    }
  });
}

it('make demo on an up-to-date tree builds nothing: the filter and the Worker wasm are file targets', () => {
  const r = spawnSync('make', ['-n', 'envoy-wasm', 'worker-build'], { cwd: ROOT, encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.doesNotMatch(r.stdout, /cargo build|wasm-opt|wasm-bindgen --target/, r.stdout);
});

it('demo/client.mjs with the authorization server on another port and no --issuer: a clear error naming the fix, no stack trace', { timeout: 60000 }, async () => {
  const port = await freePort();
  const as = await startAuthServer({ resources: resourcesOf(port) });
  const mcp = await startMcpServer({ privilegedPaths: ['/mcp'] });
  const envoy = await startHost({ port, config: gatewayConfig({ port, issuer: as.issuer, jwksUrl: as.jwksUrl }), jwksPort: as.port, upstreamPort: mcp.port });
  try {
    const { code, out } = await run(process.execPath, [join(ROOT, 'demo', 'client.mjs'), urls(port).resource], { ...process.env, DEMO_AS_PORT: '1' });
    assert.equal(code, 1, out);
    assert.match(out, /^failed: /m);
    assert.ok(out.includes(`pass --issuer ${as.issuer}`), out);
    assert.doesNotMatch(out, /^\s+at /m, 'no stack trace');
  } finally {
    await envoy.stop();
    await mcp.stop();
    await as.stop();
  }
});
