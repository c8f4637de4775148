// The proxy Worker beyond the shared table: streaming both ways (SSE events arrive as the MCP
// server sends them), a service binding instead of MCP_ORIGIN, fail-closed configuration,
// logs without tokens, and `wrangler deploy --dry-run` of the shipped wrangler.toml.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { readdirSync, statSync, readFileSync } from 'node:fs';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

import { makeKey, jwks } from '../lib/tokens.mjs';
import { startJwksServer, startUpstream } from '../lib/servers.mjs';
import { freePort, parseChallenge, tempDir, ROOT } from '../lib/proc.mjs';
import { send } from '../lib/http.mjs';
import { startWorkerdWith, bundleModules } from './launch.mjs';
import { workerConfig, tokenFor, bearer, streamingGet, eventTimes, readLog, logEvents } from './helpers.mjs';

const run = promisify(execFile);

describe('workerd: proxy Worker', () => {
  let keys;
  let jwksServer;
  let upstream;
  let host;
  let port;
  const tokensSent = [];

  before(async () => {
    keys = { es: await makeKey('ES256', 'px-es') };
    jwksServer = await startJwksServer(jwks(keys.es));
    upstream = await startUpstream();
    port = await freePort();
    host = await startWorkerdWith({
      port,
      config: workerConfig({ port, jwksUrl: jwksServer.url }),
      upstreamPort: upstream.port,
      vars: { MCP_EDGE_AUTH_LOG: 'requests' },
    });
  });
  after(async () => {
    await host?.stop();
    await jwksServer?.stop();
    await upstream?.stop();
  });

  const token = async (claims) => {
    const t = await tokenFor(keys.es, port, claims);
    tokensSent.push(t);
    return t;
  };

  it('streams an SSE response: events arrive as the MCP server sends them', async () => {
    const t = await token();
    const res = await streamingGet(`http://127.0.0.1:${port}/mcp/sse`, { headers: [...bearer(t), ['accept', 'text/event-stream']] });
    assert.equal(res.status, 200);
    assert.match(res.headers['content-type'], /^text\/event-stream/);
    const times = eventTimes(res.chunks);
    assert.equal(times.length, 3, res.body);
    // The upstream pauses 300 ms between events: buffered, all three would arrive together.
    assert.ok(times[2] - times[0] >= 400, `events spread over ${times[2] - times[0]} ms`);
    assert.ok(times[1] - times[0] >= 100 && times[2] - times[1] >= 100, `gaps ${times[1] - times[0]} and ${times[2] - times[1]} ms`);
    assert.equal(upstream.last().headers.authorization, undefined);
  });

  it('streams a large request body to the origin unchanged', async () => {
    const t = await token();
    const body = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { blob: 'x'.repeat(2 * 1024 * 1024) } });
    upstream.clear();
    const res = await send(`http://127.0.0.1:${port}/mcp`, { method: 'POST', headers: [...bearer(t), ['content-type', 'application/json']], body });
    assert.equal(res.status, 200);
    assert.equal(upstream.seen.length, 1);
    assert.equal(upstream.last().body.length, body.length);
    assert.equal(upstream.last().body, body);
    assert.equal(upstream.last().headers['content-type'], 'application/json');
  });

  it('forwards what the origin needs and nothing it must not see', async () => {
    const t = await token({ sub: 'alice' });
    upstream.clear();
    const res = await send(`http://127.0.0.1:${port}/mcp/tools?x=1&access_token=${t}`, {
      method: 'DELETE',
      headers: [...bearer(t), ['mcp-session-id', 'sess-1'], ['x-mcp-subject', 'mallory'], ['x-forwarded-host', 'evil.example']],
    });
    assert.equal(res.status, 200);
    assert.equal(res.headers['x-upstream'], 'yes', 'origin response headers pass through');
    const u = upstream.last();
    assert.equal(u.method, 'DELETE');
    assert.equal(u.url, '/mcp/tools?x=1');
    assert.equal(u.headers.authorization, undefined);
    assert.equal(u.headers['x-mcp-subject'], 'alice');
    assert.equal(u.headers['mcp-session-id'], 'sess-1');
    assert.equal(u.headers['x-forwarded-host'], `127.0.0.1:${port}`);
    assert.ok(!JSON.stringify(u).includes(t), 'the token reaches the origin nowhere');
  });

  it('keeps the rest of a query as the URL has it when it strips the token (a query ending in "?")', async () => {
    const t = await token();
    upstream.clear();
    const res = await send(`http://127.0.0.1:${port}/mcp?access_token=${t}&x=1?`, { headers: bearer(t) });
    assert.equal(res.status, 200, res.body);
    assert.equal(upstream.last().url, '/mcp?x=1?');
  });

  it('HEAD on the metadata answers without a body', async () => {
    const res = await send(`http://127.0.0.1:${port}/.well-known/oauth-protected-resource/mcp`, { method: 'HEAD' });
    assert.equal(res.status, 200);
    assert.equal(res.body, '');
  });

  it('logs one line per request without tokens or query strings', async () => {
    await new Promise((r) => setTimeout(r, 200));
    const log = readLog(host.log);
    const requests = logEvents(host.log).filter((e) => e.event === 'request');
    assert.ok(requests.length >= 3, `request lines: ${requests.length}`);
    assert.ok(requests.some((e) => e.reason === 'allowed'));
    for (const t of tokensSent) {
      assert.ok(!log.includes(t), 'no token in the log');
      assert.ok(!log.includes(t.split('.')[2]), 'no signature in the log');
    }
    assert.ok(!log.includes('access_token'), 'no query string in the log');
  });
});

describe('workerd: proxy Worker configuration', () => {
  let keys;
  let jwksServer;
  let upstream;

  before(async () => {
    keys = { es: await makeKey('ES256', 'cfg-es') };
    jwksServer = await startJwksServer(jwks(keys.es));
    upstream = await startUpstream();
  });
  after(async () => {
    await jwksServer?.stop();
    await upstream?.stop();
  });

  it('forwards through a service binding (MCP_UPSTREAM) instead of MCP_ORIGIN', async () => {
    const port = await freePort();
    const host = await startWorkerdWith({ port, config: workerConfig({ port, jwksUrl: jwksServer.url }), upstreamPort: upstream.port, upstreamBinding: true });
    try {
      upstream.clear();
      const t = await tokenFor(keys.es, port);
      const res = await send(`http://127.0.0.1:${port}/mcp`, { method: 'POST', headers: bearer(t), body: '{"a":1}' });
      assert.equal(res.status, 200, res.body);
      assert.equal(upstream.last().body, '{"a":1}');
      assert.equal(upstream.last().headers.authorization, undefined);
      assert.equal(upstream.last().headers['x-mcp-subject'], 'user-1');
      const sse = await streamingGet(`http://127.0.0.1:${port}/mcp/sse`, { headers: bearer(t) });
      const times = eventTimes(sse.chunks);
      assert.equal(times.length, 3);
      assert.ok(times[2] - times[0] >= 400, 'SSE streams through a service binding too');
    } finally {
      await host.stop();
    }
  });

  it('an invalid config fails closed: 500 on every request, the log names the field', async () => {
    const port = await freePort();
    const bad = workerConfig({ port, jwksUrl: jwksServer.url });
    bad.resources[0].issuers[0].remote_jwks.http_uri.uri = 'http://jwks.example.com/keys'; // plain http off loopback
    const host = await startWorkerdWith({ port, config: bad, upstreamPort: upstream.port });
    try {
      upstream.clear();
      const t = await tokenFor(keys.es, port);
      for (const path of ['/mcp', '/.well-known/oauth-protected-resource/mcp', '/other']) {
        const res = await send(`http://127.0.0.1:${port}${path}`, { method: 'POST', headers: bearer(t), body: '{}' });
        assert.equal(res.status, 500, path);
      }
      assert.equal(upstream.seen.length, 0);
      const ev = logEvents(host.log).find((e) => e.event === 'config_rejected');
      assert.ok(ev, 'config_rejected logged');
      assert.match(ev.error, /resources\[0\]\.issuers\[0\]\.remote_jwks\.http_uri\.uri/);
    } finally {
      await host.stop();
    }
  });

  it('a missing config or origin fails closed', async () => {
    const port = await freePort();
    const host = await startWorkerdWith({ port, upstreamPort: upstream.port });
    try {
      const res = await send(`http://127.0.0.1:${port}/mcp`);
      assert.equal(res.status, 500);
    } finally {
      await host.stop();
    }
    const port2 = await freePort();
    const host2 = await startWorkerdWith({ port: port2, config: workerConfig({ port: port2, jwksUrl: jwksServer.url }) });
    try {
      const t = await tokenFor(keys.es, port2);
      const res = await send(`http://127.0.0.1:${port2}/mcp`, { method: 'POST', headers: bearer(t), body: '{}' });
      assert.equal(res.status, 500);
      // Metadata and challenges still work without an origin.
      const meta = await send(`http://127.0.0.1:${port2}/.well-known/oauth-protected-resource/mcp`);
      assert.equal(meta.status, 200);
      const ch = await send(`http://127.0.0.1:${port2}/mcp`, { method: 'POST', body: '{}' });
      assert.equal(ch.status, 401);
      assert.ok(parseChallenge(ch.headers['www-authenticate']).params.resource_metadata);
    } finally {
      await host2.stop();
    }
  });

  it('the origin down: 502, no details leaked', async () => {
    const port = await freePort();
    const deadPort = await freePort();
    const host = await startWorkerdWith({ port, config: workerConfig({ port, jwksUrl: jwksServer.url }), upstreamPort: deadPort });
    try {
      const t = await tokenFor(keys.es, port);
      const res = await send(`http://127.0.0.1:${port}/mcp`, { method: 'POST', headers: bearer(t), body: '{}' });
      assert.equal(res.status, 502);
      assert.ok(!res.body.includes(String(deadPort)));
    } finally {
      await host.stop();
    }
  });
});

describe('wrangler', () => {
  it('deploy --dry-run of workers/wrangler.toml succeeds offline, without login, and the bundle serves', async () => {
    const out = tempDir('mea-dry-run-');
    const { stdout, stderr } = await run(join(ROOT, 'node_modules', '.bin', 'wrangler'), ['deploy', '--dry-run', '--outdir', out], {
      cwd: join(ROOT, 'workers'),
      env: {
        ...process.env,
        WRANGLER_SEND_METRICS: 'false',
        WRANGLER_SEND_ERROR_REPORTS: 'false',
        CI: 'true',
        NO_UPDATE_NOTIFIER: '1',
        XDG_CONFIG_HOME: tempDir('mea-xdg-'),
        CLOUDFLARE_API_TOKEN: '',
      },
      timeout: 120000,
    });
    const text = stdout + stderr;
    assert.match(text, /--dry-run: exiting now/i);
    const files = readdirSync(out);
    const wasm = files.find((f) => f.endsWith('.wasm'));
    assert.ok(files.includes('proxy.js'), files.join(', '));
    assert.ok(wasm, 'the wasm module is part of the upload');
    assert.ok(statSync(join(out, wasm)).size > 10000);
    assert.match(readFileSync(join(out, 'proxy.js'), 'utf8'), /mcp-edge-auth/);

    // The upload itself runs: wrangler's bundle in workerd, with this test's config.
    const keys = { es: await makeKey('ES256', 'dry-es') };
    const jwksServer = await startJwksServer(jwks(keys.es));
    const upstream = await startUpstream();
    const port = await freePort();
    const host = await startWorkerdWith({ port, modules: bundleModules(out, 'proxy.js'), config: workerConfig({ port, jwksUrl: jwksServer.url }), upstreamPort: upstream.port });
    try {
      const meta = await send(`http://127.0.0.1:${port}/.well-known/oauth-protected-resource/mcp`);
      assert.equal(meta.status, 200);
      assert.equal((await send(`http://127.0.0.1:${port}/mcp`, { method: 'POST', body: '{}' })).status, 401);
      const res = await send(`http://127.0.0.1:${port}/mcp`, { method: 'POST', headers: bearer(await tokenFor(keys.es, port)), body: '{}' });
      assert.equal(res.status, 200, res.body);
      assert.equal(upstream.last().headers['x-mcp-subject'], 'user-1');
    } finally {
      await host.stop();
      await jwksServer.stop();
      await upstream.stop();
    }
  });
});
