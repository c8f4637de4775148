// Core features that need the Worker to do more IO: MCP rules (the POST body is read, bounded,
// handed to the core and then forwarded as read) and RFC 7662 introspection of opaque tokens
// (the Worker posts the core's request to a local endpoint; an outage is a 503, never a pass).
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';

import { makeKey, jwks, mint } from '../lib/tokens.mjs';

const mintFor = (key, aud) => mint(key, { iss: ISSUER, aud, sub: 'u', scope: 'mcp:read' });
import { startJwksServer, startUpstream } from '../lib/servers.mjs';
import { freePort, parseChallenge, sleep } from '../lib/proc.mjs';
import { send } from '../lib/http.mjs';
import { startWorkerdWith } from './launch.mjs';
import { workerConfig, tokenFor, bearer, ISSUER, logEvents, readLog } from './helpers.mjs';

const rpc = (method, params = {}) => JSON.stringify({ jsonrpc: '2.0', id: 1, method, params });

describe('workerd: MCP rules read the body', () => {
  let keys;
  let jwksServer;
  let upstream;
  let host;
  let port;

  before(async () => {
    keys = { es: await makeKey('ES256', 'rules-es') };
    jwksServer = await startJwksServer(jwks(keys.es));
    upstream = await startUpstream();
    port = await freePort();
    const config = workerConfig({
      port,
      jwksUrl: jwksServer.url,
      resource: { mcp: { rules: [{ method: 'tools/call', name: 'delete_*', scopes: ['mcp:admin'] }], max_body_bytes: 2048 } },
    });
    host = await startWorkerdWith({ port, config, upstreamPort: upstream.port });
  });
  after(async () => {
    await host?.stop();
    await jwksServer?.stop();
    await upstream?.stop();
  });

  const post = async (claims, body) =>
    send(`http://127.0.0.1:${port}/mcp`, {
      method: 'POST',
      headers: [...bearer(await tokenFor(keys.es, port, claims)), ['content-type', 'application/json']],
      body,
    });

  it('a tool call a rule guards needs the rule\'s scope: 403 naming every scope needed', async () => {
    upstream.clear();
    const res = await post({}, rpc('tools/call', { name: 'delete_everything', arguments: {} }));
    assert.equal(res.status, 403);
    const ch = parseChallenge(res.headers['www-authenticate']);
    assert.equal(ch.params.error, 'insufficient_scope');
    assert.match(ch.params.scope, /mcp:admin/);
    assert.equal(upstream.seen.length, 0);
  });

  it('with the scope it is forwarded, body intact', async () => {
    upstream.clear();
    const body = rpc('tools/call', { name: 'delete_everything', arguments: { really: true } });
    const res = await post({ scope: 'mcp:read mcp:admin' }, body);
    assert.equal(res.status, 200, res.body);
    assert.equal(upstream.last().body, body);
    assert.equal(upstream.last().headers['content-length'], String(Buffer.byteLength(body)));
  });

  it('other calls need only the resource\'s scopes', async () => {
    upstream.clear();
    const res = await post({}, rpc('tools/list'));
    assert.equal(res.status, 200, res.body);
    assert.equal(upstream.seen.length, 1);
  });

  it('a body over mcp.max_body_bytes: 413, nothing forwarded', async () => {
    upstream.clear();
    const res = await post({ scope: 'mcp:read mcp:admin' }, rpc('tools/call', { name: 'x', arguments: { pad: 'x'.repeat(4096) } }));
    assert.equal(res.status, 413);
    assert.equal(upstream.seen.length, 0);
  });

  it('Mcp-Method / Mcp-Name headers that disagree with the body: 400, nothing forwarded', async () => {
    upstream.clear();
    const t = await tokenFor(keys.es, port, { scope: 'mcp:read mcp:admin' });
    for (const h of [['mcp-method', 'tools/list'], ['mcp-name', 'harmless']]) {
      const res = await send(`http://127.0.0.1:${port}/mcp`, {
        method: 'POST',
        headers: [...bearer(t), ['content-type', 'application/json'], h],
        body: rpc('tools/call', { name: 'delete_everything' }),
      });
      assert.equal(res.status, 400, h.join(': '));
    }
    const agree = await send(`http://127.0.0.1:${port}/mcp`, {
      method: 'POST',
      headers: [...bearer(t), ['content-type', 'application/json'], ['mcp-method', 'tools/call'], ['mcp-name', 'delete_everything']],
      body: rpc('tools/call', { name: 'delete_everything' }),
    });
    assert.equal(agree.status, 200, agree.body);
    assert.equal(upstream.seen.length, 1);
  });

  it('a batch with one forbidden entry: 403 for the whole batch', async () => {
    upstream.clear();
    const batch = `[${rpc('tools/list')},${rpc('tools/call', { name: 'delete_everything' })}]`;
    const res = await post({}, batch);
    assert.equal(res.status, 403);
    assert.equal(parseChallenge(res.headers['www-authenticate']).params.scope, 'mcp:read mcp:admin');
    assert.equal(upstream.seen.length, 0);
    const ok = await post({ scope: 'mcp:read mcp:admin' }, batch);
    assert.equal(ok.status, 200, ok.body);
    assert.equal(upstream.last().body, batch);
  });

  it('a body that is not JSON-RPC: 400', async () => {
    const res = await post({}, 'not json');
    assert.equal(res.status, 400);
  });

  it('GET (SSE) requests are not read', async () => {
    const t = await tokenFor(keys.es, port);
    const res = await send(`http://127.0.0.1:${port}/mcp/sse`, { headers: bearer(t) });
    assert.equal(res.status, 200);
  });
});

/** A local RFC 7662 endpoint: `good-*` tokens are active, `down` mode answers 500. */
async function startIntrospection(port) {
  const state = { mode: 'up', hits: 0, auth: [], bodies: [] };
  const server = createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      state.hits += 1;
      const body = Buffer.concat(chunks).toString();
      state.auth.push(req.headers.authorization);
      state.bodies.push(body);
      if (state.mode === 'down') {
        res.writeHead(500).end();
        return;
      }
      const token = new URLSearchParams(body).get('token') ?? '';
      const now = Math.floor(Date.now() / 1000);
      const doc = token.startsWith('good-')
        ? { active: true, iss: ISSUER, aud: `http://localhost:${port}/mcp`, sub: 'opaque-user', client_id: 'c-9', scope: 'mcp:read', exp: now + 600 }
        : { active: false };
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(doc));
    });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return {
    state,
    url: `http://127.0.0.1:${server.address().port}/introspect`,
    stop: () => new Promise((r) => server.close(() => r())),
  };
}

describe('workerd: opaque tokens (RFC 7662 introspection)', () => {
  let keys;
  let jwksServer;
  let upstream;
  let intro;
  let host;
  let port;

  before(async () => {
    keys = { es: await makeKey('ES256', 'intro-es') };
    jwksServer = await startJwksServer(jwks(keys.es));
    upstream = await startUpstream();
    port = await freePort();
    intro = await startIntrospection(port);
    const config = workerConfig({ port, jwksUrl: jwksServer.url });
    config.resources[0].issuers[0].introspection = {
      http_uri: { uri: intro.url, timeout_ms: 1000 },
      client_id: 'gateway',
      client_secret: 's3cret',
      retry_after_seconds: 9,
    };
    host = await startWorkerdWith({ port, config, upstreamPort: upstream.port, vars: { MCP_EDGE_AUTH_LOG: 'requests' } });
  });
  after(async () => {
    await host?.stop();
    await jwksServer?.stop();
    await upstream?.stop();
    await intro?.stop();
  });

  const call = (token) => send(`http://127.0.0.1:${port}/mcp`, { method: 'POST', headers: bearer(token), body: '{}' });

  it('an active opaque token is forwarded with its identity; the answer is cached', async () => {
    upstream.clear();
    const token = `good-${Math.random().toString(36).slice(2)}`;
    const res = await call(token);
    assert.equal(res.status, 200, res.body);
    assert.equal(upstream.last().headers['x-mcp-subject'], 'opaque-user');
    assert.equal(upstream.last().headers.authorization, undefined);
    assert.equal(intro.state.auth.at(-1), `Basic ${Buffer.from('gateway:s3cret').toString('base64')}`);
    assert.equal(new URLSearchParams(intro.state.bodies.at(-1)).get('token'), token);
    const hits = intro.state.hits;
    assert.equal((await call(token)).status, 200);
    assert.equal(intro.state.hits, hits, 'second use answered from the cache');
  });

  it('an inactive token: 401 invalid_token', async () => {
    const res = await call('revoked-token');
    assert.equal(res.status, 401);
    assert.equal(parseChallenge(res.headers['www-authenticate']).params.error, 'invalid_token');
  });

  it('JWTs are still verified locally, not introspected', async () => {
    const hits = intro.state.hits;
    const res = await call(await tokenFor(keys.es, port));
    assert.equal(res.status, 200);
    assert.equal(intro.state.hits, hits);
  });

  it('introspection down: 503 with Retry-After, never allow', async () => {
    intro.state.mode = 'down';
    upstream.clear();
    const res = await call(`good-${Math.random().toString(36).slice(2)}`);
    assert.equal(res.status, 503);
    assert.equal(res.headers['retry-after'], '9');
    assert.equal(upstream.seen.length, 0);
    intro.state.mode = 'up';
  });

  it('no opaque token reaches the log', async () => {
    await sleep(200);
    const log = readLog(host.log);
    assert.ok(logEvents(host.log).some((e) => e.event === 'request'));
    assert.ok(!/good-[a-z0-9]+|revoked-token/.test(log), 'tokens are never logged');
    assert.ok(!log.includes('s3cret') && !log.includes(Buffer.from('gateway:s3cret').toString('base64')), 'client secret never logged');
  });
});

describe('workerd: two MCP servers behind one Worker', () => {
  let key; let jwksServer; let upstream; let host; let port;
  before(async () => {
    key = await makeKey('ES256', 'two-es');
    jwksServer = await startJwksServer(jwks(key));
    upstream = await startUpstream();
    port = await freePort();
    const issuers = [{ issuer: ISSUER, remote_jwks: { http_uri: { uri: jwksServer.url }, refetch_cooldown_seconds: 1 } }];
    const config = {
      resources: ['a', 'b'].map((n) => ({ resource: `http://localhost:${port}/${n}/mcp`, authorization_servers: [ISSUER], issuers })),
    };
    host = await startWorkerdWith({ port, config, upstreamPort: upstream.port });
  });
  after(async () => {
    await host?.stop();
    await jwksServer?.stop();
    await upstream?.stop();
  });

  it('each has its own metadata, and a token for one is refused by the other', async () => {
    for (const n of ['a', 'b']) {
      const prm = await send(`http://127.0.0.1:${port}/.well-known/oauth-protected-resource/${n}/mcp`);
      assert.equal(prm.status, 200);
      assert.equal(prm.json().resource, `http://localhost:${port}/${n}/mcp`);
    }
    const forA = await mintFor(key, `http://localhost:${port}/a/mcp`);
    const call = (n, t) => send(`http://127.0.0.1:${port}/${n}/mcp`, { method: 'POST', headers: bearer(t), body: rpc('tools/list') });
    assert.equal((await call('a', forA)).status, 200);
    const refused = await call('b', forA);
    assert.equal(refused.status, 401);
    const ch = parseChallenge(refused.headers['www-authenticate']);
    assert.equal(ch.params.error, 'invalid_token');
    assert.equal(ch.params.resource_metadata, `http://localhost:${port}/.well-known/oauth-protected-resource/b/mcp`);
  });
});
