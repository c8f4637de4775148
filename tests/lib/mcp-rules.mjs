// The MCP-rules cases (`resources[].mcp`) every Envoy build runs on a real Envoy: the host
// holds the headers back while the JSON-RPC body is buffered, decides on the body, and lets
// the request go with its body untouched, or answers 400/403/413 with nothing sent upstream.
// Also: a key fetch and an introspection call after the body was read, and two resources on
// one Envoy, each with its own audience and its own metadata. Used by
// tests/envoy/mcp-rules.test.mjs (the Wasm filter) and tests/envoy-module/mcp-rules.test.mjs
// (the native module); each adds its own host-only cases.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, request } from 'node:http';
import { connect } from 'node:http2';

import { startJwksServer, startUpstream } from './servers.mjs';
import { makeKey, jwks, mint } from './tokens.mjs';
import { freePort, sleep, parseChallenge } from './proc.mjs';
import { send } from './http.mjs';

export const ISSUER = 'http://127.0.0.1:9/issuer-rules';
export const MAX_BODY = 2048;

/**
 * Resources on one Envoy: /a/mcp with MCP rules, /b/mcp without (same issuer, its own
 * audience); with `introspectionPort`, /c/mcp with the same rules for opaque tokens.
 */
export function config(port, jwksUrl, introspectionPort) {
  const resource = (path, extra) => ({
    resource: `http://localhost:${port}${path}`,
    authorization_servers: [ISSUER],
    scopes_supported: ['mcp:read', 'mcp:write', 'mcp:admin'],
    required_scopes: ['mcp:read'],
    issuers: [
      {
        issuer: ISSUER,
        algorithms: ['RS256'],
        remote_jwks: { http_uri: { uri: jwksUrl, cluster: 'jwks', timeout_ms: 1000 }, refetch_cooldown_seconds: 1 },
      },
    ],
    claim_to_headers: [{ header_name: 'x-mcp-subject', claim_name: 'sub' }],
    ...extra,
  });
  return {
    // The hosts running this suite deliver bodies to a filter that holds the headers (the
    // Wasm filter's bootstrap sets allow_on_headers_stop_iteration); the stock-WasmPlugin
    // mode is tests/envoy/mcp-stock.test.mjs.
    envoy_wasm: { allow_on_headers_stop_iteration: true },
    resources: [
      resource('/a/mcp', {
        scope_hierarchy: { 'mcp:admin': ['mcp:write'], 'mcp:write': ['mcp:read'] },
        mcp: {
          max_body_bytes: MAX_BODY,
          rules: [
            { method: 'tools/call', name: 'admin_*', scopes: ['mcp:admin'] },
            { method: 'tools/call', scopes: ['mcp:write'] },
          ],
        },
      }),
      resource('/b/mcp', {}),
      ...(introspectionPort
        ? [
          resource('/c/mcp', {
            issuers: [
              {
                issuer: ISSUER,
                introspection: {
                  http_uri: { uri: `http://127.0.0.1:${introspectionPort}/introspect`, cluster: 'introspection', timeout_ms: 1000 },
                  client_id: 'gw',
                  client_secret: 'gw-secret',
                },
              },
            ],
            mcp: { rules: [{ method: 'tools/call', name: 'admin_*', scopes: ['mcp:admin'] }] },
          }),
        ]
        : []),
    ],
  };
}

export const rpc = (method, params, id = 1) => JSON.stringify({ jsonrpc: '2.0', id, method, ...(params ? { params } : {}) });
export const call = (name, args = {}) => rpc('tools/call', { name, arguments: args });

/**
 * A POST whose body goes out as separate chunks (`Transfer-Encoding: chunked`), `gap` ms
 * apart. Resolves with the response as soon as it comes (the filter may answer before the
 * body is complete); write errors after that are ignored.
 */
export function chunked(url, { headers = {}, chunks, gap = 50 }) {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    let answered = false;
    const req = request({ host: u.hostname, port: u.port, path: u.pathname, method: 'POST', headers }, (res) => {
      answered = true;
      const parts = [];
      res.on('data', (c) => parts.push(c));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(parts).toString() }));
    });
    req.on('error', (e) => { if (!answered) reject(e); });
    (async () => {
      for (const c of chunks) {
        if (answered || req.destroyed) return;
        req.write(c);
        await sleep(gap);
      }
      req.end();
    })().catch(() => {});
  });
}

/** An HTTP/2 (h2c) POST whose body is two DATA frames followed by trailers. */
export function h2WithTrailers(base, path, headers, parts) {
  return new Promise((resolve, reject) => {
    const session = connect(base);
    session.on('error', reject);
    const stream = session.request({ ':method': 'POST', ':path': path, ...headers }, { waitForTrailers: true });
    stream.on('wantTrailers', () => stream.sendTrailers({ 'x-checksum': 'ok' }));
    let status;
    const out = [];
    stream.on('response', (h) => { status = h[':status']; });
    stream.on('data', (c) => out.push(c));
    stream.on('end', () => { session.close(); resolve({ status, body: Buffer.concat(out).toString() }); });
    stream.on('error', reject);
    (async () => {
      for (const p of parts) { stream.write(p); await sleep(30); }
      stream.end();
    })();
  });
}

/**
 * The shared suite. `start(opts)` starts the host (as tests/envoy/launch.mjs's startEnvoy:
 * port, config, jwksPort, upstreamPort, clusters) and resolves to { stop, stats, log };
 * `counters` is the host's own check of its counters and log after the cases ran:
 * { title, check(envoy) }.
 */
export function mcpRulesSuite(hostName, start, { counters }) {
  describe(`${hostName}: MCP rules on the JSON-RPC body`, () => {
    let rs;
    let jwksServer;
    let upstream;
    let envoy;
    let port;
    let base;
    let intro;
    const aud = (path) => `http://localhost:${port}${path}`;
    const token = (scope, path = '/a/mcp', claims = {}, key = rs) => mint(key, { iss: ISSUER, aud: aud(path), sub: 'rules-user', scope, ...claims });
    // With its Content-Length (tests/lib/http.mjs would send the body chunked).
    const post = (t, body, headers = []) =>
      send(`${base}/a/mcp`, {
        method: 'POST',
        headers: [...(t ? [['authorization', `Bearer ${t}`]] : []), ['content-type', 'application/json'], ['content-length', String(Buffer.byteLength(body))], ...headers],
        body,
      });

    before(async () => {
      rs = await makeKey('RS256', 'rules-1');
      jwksServer = await startJwksServer(jwks(rs));
      upstream = await startUpstream();
      port = await freePort();
      base = `http://127.0.0.1:${port}`;
      // Opaque tokens for /c/mcp, by the scopes they carry.
      const opaqueScopes = { 'opaque-read': 'mcp:read', 'opaque-admin': 'mcp:read mcp:admin', 'opaque-other': 'other' };
      intro = createServer((req, res) => {
        let body = '';
        req.on('data', (c) => { body += c; });
        req.on('end', () => {
          const t = new URLSearchParams(body).get('token') ?? '';
          const scope = opaqueScopes[t];
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end(JSON.stringify(scope ? { active: true, aud: aud('/c/mcp'), scope, sub: 'opaque-user', exp: Math.floor(Date.now() / 1000) + 300 } : { active: false }));
        });
      });
      await new Promise((r) => intro.listen(0, '127.0.0.1', r));
      const introspectionPort = intro.address().port;
      envoy = await start({
        port,
        config: config(port, jwksServer.url, introspectionPort),
        jwksPort: jwksServer.port,
        upstreamPort: upstream.port,
        clusters: { introspection: introspectionPort },
      });
    });
    after(async () => {
      await envoy?.stop();
      await jwksServer?.stop();
      await upstream?.stop();
      intro?.closeAllConnections?.();
      await new Promise((r) => (intro ? intro.close(r) : r()));
    });

    it('a tool the token lacks the scope for: 403 insufficient_scope naming every scope needed, nothing upstream', async () => {
      upstream.clear();
      const reader = await token('mcp:read');
      const admin = await post(reader, call('admin_reset'));
      assert.equal(admin.status, 403, admin.body);
      const c = parseChallenge(admin.headers['www-authenticate']);
      assert.equal(c.params.error, 'insufficient_scope');
      assert.deepEqual(c.params.scope.split(' ').sort(), ['mcp:admin', 'mcp:read']);
      assert.equal(c.params.resource_metadata, `http://localhost:${port}/.well-known/oauth-protected-resource/a/mcp`);
      const echo = await post(reader, call('echo'));
      assert.equal(echo.status, 403);
      assert.deepEqual(parseChallenge(echo.headers['www-authenticate']).params.scope.split(' ').sort(), ['mcp:read', 'mcp:write']);
      assert.equal(upstream.seen.length, 0);
      // Messages no rule names need only the base scope.
      assert.equal((await post(reader, rpc('tools/list'))).status, 200);
      assert.equal((await post(reader, rpc('initialize', { protocolVersion: '2025-06-18' }))).status, 200);
    });

    it('with the scope: 200, and the upstream gets the body byte for byte, without the token', async () => {
      upstream.clear();
      const admin = await token('mcp:admin');
      // Odd spacing, escapes and non-ASCII: the filter forwards the bytes, never a re-encoding.
      const body = `{ "jsonrpc":"2.0",  "id": 7, "method":"tools/call",\n "params":{"name":"admin_reset","arguments":{"note":"caf\u00e9 \\u00e9 \u{1F512}","pad":"${'x'.repeat(1500)}"}}}`;
      const res = await post(admin, body);
      assert.equal(res.status, 200, res.body);
      assert.equal(upstream.seen.length, 1);
      const seen = upstream.last();
      assert.equal(seen.body, body);
      assert.equal(seen.headers['content-length'], String(Buffer.byteLength(body)));
      assert.equal(seen.headers.authorization, undefined);
      assert.equal(seen.headers['x-mcp-subject'], 'rules-user');
      // The hierarchy: mcp:admin implies mcp:write (and mcp:read).
      assert.equal((await post(admin, call('echo'))).status, 200);
      const writer = await token('mcp:read mcp:write');
      assert.equal((await post(writer, call('echo'))).status, 200);
      assert.equal((await post(writer, call('admin_x'))).status, 403);
    });

    it('Mcp-Method / Mcp-Name headers that disagree with the body: 400 (JSON-RPC -32020); agreeing ones pass', async () => {
      upstream.clear();
      const admin = await token('mcp:admin');
      const body = call('echo');
      const wrongMethod = await post(admin, body, [['mcp-method', 'tools/list']]);
      assert.equal(wrongMethod.status, 400, wrongMethod.body);
      assert.equal(wrongMethod.json().error.code, -32020, 'a JSON-RPC HeaderMismatch error');
      assert.equal((await post(admin, body, [['mcp-method', 'tools/call'], ['mcp-name', 'admin_reset']])).status, 400);
      assert.equal((await post(admin, body, [['mcp-name', 'echo'], ['mcp-name', 'echo']])).status, 400);
      assert.equal(upstream.seen.length, 0);
      assert.equal((await post(admin, body, [['mcp-method', 'tools/call'], ['mcp-name', 'echo']])).status, 200);
      assert.equal(upstream.last().headers['mcp-name'], 'echo');
    });

    it('a batch with one forbidden entry is refused whole, naming every scope', async () => {
      upstream.clear();
      const batch = `[${rpc('tools/list', null, 1)},${call('echo')},${call('admin_wipe')}]`;
      const res = await post(await token('mcp:read mcp:write'), batch);
      assert.equal(res.status, 403);
      assert.deepEqual(parseChallenge(res.headers['www-authenticate']).params.scope.split(' ').sort(), ['mcp:admin', 'mcp:read', 'mcp:write']);
      assert.equal(upstream.seen.length, 0);
      const ok = await post(await token('mcp:admin'), batch);
      assert.equal(ok.status, 200);
      assert.equal(upstream.last().body, batch);
    });

    it('not JSON-RPC, an empty batch, no body at all: 400', async () => {
      upstream.clear();
      const t = await token('mcp:admin');
      for (const body of ['not json', '{"jsonrpc":"1.0","method":"x"}', '[]', '{}', '']) {
        const res = await post(t, body);
        assert.equal(res.status, 400, `${JSON.stringify(body)}: ${res.status} ${res.body}`);
        assert.equal(res.json().error, 'invalid_request');
      }
      assert.equal(upstream.seen.length, 0);
    });

    it('a body over mcp.max_body_bytes: 413 whether its length is declared or streamed, nothing upstream', async () => {
      upstream.clear();
      const t = await token('mcp:admin');
      const big = call('echo', { pad: 'y'.repeat(MAX_BODY) });
      const declared = await post(t, big);
      assert.equal(declared.status, 413, declared.body);
      assert.equal(declared.json().error, 'request_too_large');
      // Chunked, no Content-Length: refused once the buffered bytes pass the limit, while
      // the client is still sending (the last chunks are never needed).
      const chunks = [big.slice(0, 1000), big.slice(1000, 2000), big.slice(2000, 3000), ...Array(20).fill(' ')];
      const t0 = Date.now();
      const streamed = await chunked(`${base}/a/mcp`, { headers: { authorization: `Bearer ${t}`, 'content-type': 'application/json' }, chunks, gap: 100 });
      assert.equal(streamed.status, 413);
      assert.ok(Date.now() - t0 < 1500, `answered after ${Date.now() - t0} ms, before the upload ended`);
      // Exactly at the limit is fine.
      const exact = call('echo', { pad: '' });
      const fit = exact.replace('"pad":""', `"pad":"${'z'.repeat(MAX_BODY - exact.length)}"`);
      assert.equal(Buffer.byteLength(fit), MAX_BODY);
      assert.equal(upstream.seen.length, 0);
      assert.equal((await post(t, fit)).status, 200);
    });

    it('a body sent in several chunks, over HTTP/1.1 and HTTP/2 with trailers, is read whole and forwarded intact', async () => {
      upstream.clear();
      const t = await token('mcp:read');
      const body = call('admin_reset', { why: 'split across chunks' });
      const parts = [body.slice(0, 10), body.slice(10, 40), body.slice(40)];
      const denied = await chunked(`${base}/a/mcp`, { headers: { authorization: `Bearer ${t}` }, chunks: parts });
      assert.equal(denied.status, 403, 'the name in the third chunk decides');
      const admin = await token('mcp:admin');
      const ok = await chunked(`${base}/a/mcp`, { headers: { authorization: `Bearer ${admin}` }, chunks: parts });
      assert.equal(ok.status, 200, ok.body);
      assert.equal(upstream.last().body, body);
      const h2 = await h2WithTrailers(base, '/a/mcp', { authorization: `Bearer ${admin}`, 'content-type': 'application/json' }, [body.slice(0, 25), body.slice(25)]);
      assert.equal(h2.status, 200, h2.body);
      assert.equal(upstream.last().body, body);
      const h2denied = await h2WithTrailers(base, '/a/mcp', { authorization: `Bearer ${t}` }, [body.slice(0, 25), body.slice(25)]);
      assert.equal(h2denied.status, 403);
      assert.equal(upstream.seen.length, 2);
    });

    it('GET (the SSE stream) needs only the base scopes; no token is 401 at once, before any body', async () => {
      upstream.clear();
      const reader = await token('mcp:read');
      const get = await send(`${base}/a/mcp`, { headers: [['authorization', `Bearer ${reader}`], ['accept', 'text/event-stream']] });
      assert.equal(get.status, 200);
      assert.equal(upstream.last().method, 'GET');
      const none = await send(`${base}/a/mcp`);
      assert.equal(none.status, 401);
      assert.equal(parseChallenge(none.headers['www-authenticate']).params.scope, 'mcp:read');
      // A POST without a token whose body never comes is answered on its headers.
      const t0 = Date.now();
      const r = await new Promise((resolve, reject) => {
        const req = request({ host: '127.0.0.1', port, path: '/a/mcp', method: 'POST', headers: { 'content-type': 'application/json', 'content-length': '100' } }, (res) => {
          res.resume();
          res.on('end', () => { resolve(res.statusCode); req.destroy(); });
        });
        req.on('error', reject);
        req.flushHeaders();
      });
      assert.equal(r, 401);
      assert.ok(Date.now() - t0 < 1000);
    });

    it('a request whose token needs new keys waits for them after its body was read, and goes through intact', async () => {
      upstream.clear();
      const next = await makeKey('RS256', 'rules-2');
      jwksServer.set({ jwks: jwks(rs, next) });
      await sleep(1100); // the refetch cooldown since the startup fetch
      const t = await token('mcp:admin', '/a/mcp', {}, next);
      const body = call('admin_rotate', { pad: 'r'.repeat(1000) });
      const res = await post(t, body);
      assert.equal(res.status, 200, res.body);
      assert.equal(upstream.last().body, body);
    });

    it('an opaque token is introspected after the body was read, then the rules apply', async () => {
      upstream.clear();
      const body = call('admin_reset', { via: 'introspection' });
      const opaque = (t) => send(`${base}/c/mcp`, { method: 'POST', headers: [['authorization', `Bearer ${t}`], ['content-type', 'application/json']], body });
      const reader = await opaque('opaque-read');
      assert.equal(reader.status, 403, reader.body);
      assert.deepEqual(parseChallenge(reader.headers['www-authenticate']).params.scope.split(' ').sort(), ['mcp:admin', 'mcp:read']);
      assert.equal(upstream.seen.length, 0);
      const admin = await opaque('opaque-admin');
      assert.equal(admin.status, 200, admin.body);
      assert.equal(upstream.last().body, body);
      assert.equal(upstream.last().headers['x-mcp-subject'], 'opaque-user');
      assert.equal((await opaque('opaque-other')).status, 403, 'active, without the scope');
      assert.equal((await opaque('opaque-unknown')).status, 401, 'not active');
    });

    it(counters.title, async () => counters.check(envoy));

    it('two resources: a token for one is refused by the other, and each has its own metadata', async () => {
      upstream.clear();
      const forA = await token('mcp:read', '/a/mcp');
      const forB = await token('mcp:read', '/b/mcp');
      const bOk = await send(`${base}/b/mcp`, { method: 'POST', headers: [['authorization', `Bearer ${forB}`]], body: 'not even JSON: /b has no rules' });
      assert.equal(bOk.status, 200);
      assert.equal(upstream.last().url, '/b/mcp');
      for (const [path, t] of [['/b/mcp', forA], ['/a/mcp', forB]]) {
        const res = await send(`${base}${path}`, { method: 'POST', headers: [['authorization', `Bearer ${t}`]], body: rpc('tools/list') });
        assert.equal(res.status, 401, path);
        const c = parseChallenge(res.headers['www-authenticate']);
        assert.equal(c.params.error, 'invalid_token');
        assert.equal(c.params.resource_metadata, `http://localhost:${port}/.well-known/oauth-protected-resource${path}`);
      }
      for (const path of ['/a/mcp', '/b/mcp']) {
        const prm = await send(`${base}/.well-known/oauth-protected-resource${path}`);
        assert.equal(prm.status, 200);
        assert.equal(prm.json().resource, `http://localhost:${port}${path}`);
      }
      // Two resources on one host: no root form to choose between them.
      assert.notEqual((await send(`${base}/.well-known/oauth-protected-resource`)).status, 200);
      assert.equal(upstream.seen.length, 1);
    });
  });
}
