// The library as a user gets it: `npm pack` of workers/ (offline), installed into a second
// Worker's node_modules, bundled by wrangler (`deploy --dry-run`), run in workerd.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { mkdirSync, copyFileSync, readdirSync, existsSync } from 'node:fs';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

import { makeKey, jwks } from '../lib/tokens.mjs';
import { startJwksServer } from '../lib/servers.mjs';
import { freePort, parseChallenge, tempDir, ROOT } from '../lib/proc.mjs';
import { send } from '../lib/http.mjs';
import { startWorkerdWith, bundleModules } from './launch.mjs';
import { workerConfig, tokenFor, bearer, streamingGet, eventTimes } from './helpers.mjs';

const run = promisify(execFile);
const FIXTURE = join(ROOT, 'tests', 'workers', 'fixtures', 'library-app');
const quietEnv = (dir) => ({
  ...process.env,
  WRANGLER_SEND_METRICS: 'false',
  WRANGLER_SEND_ERROR_REPORTS: 'false',
  CI: 'true',
  NO_UPDATE_NOTIFIER: '1',
  XDG_CONFIG_HOME: join(dir, 'xdg'),
  npm_config_cache: join(dir, 'npm-cache'),
});

/** Packs workers/, installs the tarball into a copy of the fixture app and bundles it. */
async function buildApp() {
  const dir = tempDir('mea-lib-');
  const env = quietEnv(dir);
  const { stdout } = await run('npm', ['pack', '--offline', '--silent', '--pack-destination', dir], { cwd: join(ROOT, 'workers'), env });
  const tgz = join(dir, stdout.trim().split('\n').pop());
  const app = join(dir, 'app');
  const pkg = join(app, 'node_modules', 'mcp-edge-auth-worker');
  mkdirSync(pkg, { recursive: true });
  await run('tar', ['xzf', tgz, '-C', pkg, '--strip-components=1']);
  for (const f of ['index.js', 'wrangler.toml']) copyFileSync(join(FIXTURE, f), join(app, f));
  const out = join(dir, 'out');
  await run(join(ROOT, 'node_modules', '.bin', 'wrangler'), ['deploy', '--dry-run', '--outdir', out], { cwd: app, env, timeout: 120000 });
  return { pkg, out };
}

describe('library: imported by another Worker', () => {
  let keys;
  let jwksServer;
  let host;
  let port;
  let built;

  before(async () => {
    built = await buildApp();
    keys = { rs: await makeKey('RS256', 'lib-rs'), ed: await makeKey('EdDSA', 'lib-ed') };
    jwksServer = await startJwksServer(jwks(keys.rs, keys.ed));
    port = await freePort();
    host = await startWorkerdWith({ port, modules: bundleModules(built.out, 'index.js'), config: workerConfig({ port, jwksUrl: jwksServer.url }) });
  });
  after(async () => {
    await host?.stop();
    await jwksServer?.stop();
  });

  it('the packed package holds the module, its types and the wasm', () => {
    for (const f of ['package.json', 'README.md', 'lib/index.js', 'lib/index.d.ts', 'lib/wasm/mcp_edge_auth_worker.js', 'lib/wasm/mcp_edge_auth_worker_bg.wasm', 'src/proxy.js']) {
      assert.ok(existsSync(join(built.pkg, f)), f);
    }
    assert.ok(readdirSync(built.out).some((f) => f.endsWith('.wasm')), 'wrangler bundled the wasm as a module');
  });

  it('serves the metadata document', async () => {
    const res = await send(`http://127.0.0.1:${port}/.well-known/oauth-protected-resource/mcp`);
    assert.equal(res.status, 200);
    assert.equal(res.json().resource, `http://localhost:${port}/mcp`);
  });

  it('answers a request without a token with the challenge', async () => {
    const res = await send(`http://127.0.0.1:${port}/mcp`, { method: 'POST', body: '{}' });
    assert.equal(res.status, 401);
    const ch = parseChallenge(res.headers['www-authenticate']);
    assert.equal(ch.params.resource_metadata, `http://localhost:${port}/.well-known/oauth-protected-resource/mcp`);
    assert.equal(ch.params.error, undefined);
  });

  it('refuses a token for another audience', async () => {
    const t = await tokenFor(keys.rs, port, { aud: 'https://other.example/mcp' });
    const res = await send(`http://127.0.0.1:${port}/mcp`, { method: 'POST', headers: bearer(t), body: '{}' });
    assert.equal(res.status, 401);
    assert.equal(parseChallenge(res.headers['www-authenticate']).params.error, 'invalid_token');
  });

  it('hands the verified identity and the cleaned request to the app', async () => {
    const t = await tokenFor(keys.ed, port, { sub: 'bob', scope: 'mcp:read mcp:write' });
    const res = await send(`http://127.0.0.1:${port}/mcp?access_token=${t}&x=1`, {
      method: 'POST',
      headers: [...bearer(t), ['x-mcp-subject', 'mallory'], ['origin', 'https://app.example.com']],
      body: '{"jsonrpc":"2.0","id":1,"method":"ping"}',
    });
    assert.equal(res.status, 200, res.body);
    const seen = res.json();
    assert.equal(seen.identity.subject, 'bob');
    assert.equal(seen.identity.clientId, 'client-1');
    assert.deepEqual(seen.identity.scopes, ['mcp:read', 'mcp:write']);
    assert.equal(seen.identity.issuer, 'http://127.0.0.1:9/worker-issuer');
    const headers = Object.fromEntries(seen.headers);
    assert.equal(headers.authorization, undefined);
    assert.equal(headers['x-mcp-subject'], 'bob');
    assert.equal(seen.url, `http://127.0.0.1:${port}/mcp?x=1`);
    assert.equal(seen.body, '{"jsonrpc":"2.0","id":1,"method":"ping"}');
    // respond() added CORS for the allowed origin; the app's own headers stay.
    assert.equal(res.headers['access-control-allow-origin'], 'https://app.example.com');
    assert.match(res.headers['access-control-expose-headers'], /www-authenticate/i);
    assert.equal(res.headers['x-app'], 'yes');
  });

  it('many callers, each token reused: every request carries its own identity (kept verdicts)', async () => {
    // The engine sends a cached token's forward again as a slot of verdicts the library keeps
    // (1,024 slots): with callers colliding in slots, in an interleaved order and concurrently, no
    // request may ever be handed another caller's identity.
    const callers = [];
    for (let i = 0; i < 300; i += 1) {
      const sub = `caller-${i}`;
      callers.push({ sub, token: await tokenFor(i % 2 ? keys.rs : keys.ed, port, { sub, client_id: `app-${i}` }) });
    }
    let x = 12345;
    const order = [];
    for (let i = 0; i < 1200; i += 1) {
      x = (x * 1103515245 + 12345) % 2147483648;
      // Half the requests from 8 frequent callers, half from all of them.
      order.push(callers[x % (i % 2 ? 8 : callers.length)]);
    }
    for (let at = 0; at < order.length; at += 8) {
      const batch = order.slice(at, at + 8);
      const seen = await Promise.all(batch.map(async (c) => {
        const res = await send(`http://127.0.0.1:${port}/mcp`, { method: 'POST', headers: [...bearer(c.token), ['x-mcp-subject', 'mallory']], body: '{"jsonrpc":"2.0","id":1,"method":"ping"}' });
        assert.equal(res.status, 200, res.body);
        return res.json();
      }));
      batch.forEach((c, k) => {
        const got = seen[k];
        assert.equal(got.identity.subject, c.sub);
        assert.equal(got.identity.clientId, c.sub.replace('caller', 'app'));
        const headers = Object.fromEntries(got.headers);
        assert.equal(headers['x-mcp-subject'], c.sub);
        assert.equal(headers.authorization, undefined);
      });
    }
  });

  it('an app that changes the identity it was handed changes nothing for the next request', async () => {
    const t = await tokenFor(keys.rs, port, { sub: 'carol' });
    const call = async (tamper) => {
      const res = await send(`http://127.0.0.1:${port}/mcp`, { method: 'POST', headers: [...bearer(t), ...(tamper ? [['x-tamper', '1']] : [])], body: '{}' });
      assert.equal(res.status, 200, res.body);
      return res.json();
    };
    // Verified, then served from the cache (kept), then sent again as the kept verdict.
    for (const tamper of [true, true, true]) await call(tamper);
    const seen = await call(false);
    assert.equal(seen.identity.subject, 'carol');
    assert.deepEqual(seen.identity.scopes, ['mcp:read']);
    const headers = Object.fromEntries(seen.headers);
    assert.equal(headers['x-mcp-subject'], 'carol');
    assert.equal(headers['x-admin'], undefined);
  });

  it('streams the app\'s SSE response through respond()', async () => {
    const t = await tokenFor(keys.rs, port);
    const res = await streamingGet(`http://127.0.0.1:${port}/mcp/sse`, { headers: [...bearer(t), ['origin', 'https://app.example.com']] });
    assert.equal(res.status, 200);
    assert.equal(res.headers['access-control-allow-origin'], 'https://app.example.com');
    const times = eventTimes(res.chunks);
    assert.equal(times.length, 3, res.body);
    assert.ok(times[2] - times[0] >= 400, `events spread over ${times[2] - times[0]} ms`);
  });

  it('too little scope: 403 naming the scope', async () => {
    const t = await tokenFor(keys.rs, port, { scope: 'mcp:write' });
    const res = await send(`http://127.0.0.1:${port}/mcp`, { method: 'POST', headers: bearer(t), body: '{}' });
    assert.equal(res.status, 403);
    const ch = parseChallenge(res.headers['www-authenticate']);
    assert.equal(ch.params.error, 'insufficient_scope');
    assert.equal(ch.params.scope, 'mcp:read');
  });
});
