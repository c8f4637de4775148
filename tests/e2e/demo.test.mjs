// `make demo` keeps working: runs `node demo/run.mjs --check` (start everything, run the
// printed copy-paste commands with bash and curl, check their output, stop everything) on
// free ports, and checks that nothing it started is left listening.
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { join } from 'node:path';

import { ROOT, freePort, tempDir } from '../lib/proc.mjs';
import { send } from '../lib/http.mjs';

const hasCurl = (() => { try { execFileSync('curl', ['--version'], { stdio: 'ignore' }); return true; } catch { return false; } })();

it('make demo: starts AS, MCP server, Envoy and the Worker; the printed commands work; it stops everything', { skip: !hasCurl && 'curl is not installed', timeout: 90000 }, async () => {
  const ports = { DEMO_AS_PORT: await freePort(), DEMO_MCP_PORT: await freePort(), DEMO_ENVOY_PORT: await freePort(), DEMO_WORKER_PORT: await freePort() };
  const env = { ...process.env, DEMO_LOG_DIR: tempDir('mea-demo-') };
  for (const [k, v] of Object.entries(ports)) env[k] = String(v);
  const child = spawn(process.execPath, [join(ROOT, 'demo', 'run.mjs'), '--check'], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (c) => { out += c; });
  child.stderr.on('data', (c) => { out += c; });
  const code = await new Promise((r) => child.on('exit', (c) => r(c)));
  assert.equal(code, 0, out);
  for (const what of [`http://localhost:${ports.DEMO_ENVOY_PORT}/mcp`, `http://localhost:${ports.DEMO_WORKER_PORT}/mcp`, 'TOKEN=$(curl', 'ok   Envoy: token + tools/list', 'ok   the Worker: token + tools/list', 'SDK client step-up']) {
    assert.ok(out.includes(what), `output mentions ${what}\n${out}`);
  }
  assert.ok(!/FAIL/.test(out), out);
  // Everything it started is gone.
  for (const port of Object.values(ports)) {
    await assert.rejects(send(`http://127.0.0.1:${port}/`), `port ${port} is closed again`);
  }
});
