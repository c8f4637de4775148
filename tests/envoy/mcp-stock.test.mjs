// Per-tool rules on a stock Istio WasmPlugin / Envoy Gateway EnvoyExtensionPolicy: the Wasm
// plugin config without `allow_on_headers_stop_iteration`, so Envoy delivers no body to a
// filter that paused the headers. The filter checks the token on the headers, lets them go,
// and holds the body (StopIterationAndBuffer) until the MCP rules decide; a refusal is a local
// reply, which resets the upstream request. These tests record what the upstream received,
// over HTTP/1.1 and HTTP/2: the headers of a refused call (token stripped), never its body.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { createServer as createH2Server } from 'node:http2';

import { startEnvoy } from './launch.mjs';
import { startJwksServer } from '../lib/servers.mjs';
import { makeKey, jwks, mint } from '../lib/tokens.mjs';
import { freePort, sleep, parseChallenge } from '../lib/proc.mjs';
import { send } from '../lib/http.mjs';

const ISSUER = 'http://127.0.0.1:9/issuer-stock';
const call = (name) => JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name, arguments: { pad: 'x'.repeat(200) } } });

/** An upstream that records every request when it starts (headers) and whether its body ended. */
async function recordingUpstream(h2) {
  const started = [];
  const onRequest = (req, res) => {
    const rec = { headers: req.headers, bytes: 0, complete: false, aborted: false, rstCode: null };
    started.push(rec);
    req.on('aborted', () => { rec.aborted = true; });
    if (h2) req.stream.on('close', () => { rec.rstCode = req.stream.rstCode; });
    req.on('data', (c) => { rec.bytes += c.length; });
    req.on('end', () => {
      rec.complete = true;
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{"jsonrpc":"2.0","id":1,"result":{}}');
    });
    req.on('error', () => {});
  };
  const server = h2 ? createH2Server(onRequest) : createServer(onRequest);
  server.on('sessionError', () => {});
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return { port: server.address().port, started, stop: () => new Promise((r) => { server.close(() => r()); setTimeout(r, 500); }) };
}

for (const h2 of [false, true]) {
  describe(`envoy, stock WasmPlugin (no allow_on_headers_stop_iteration), ${h2 ? 'HTTP/2' : 'HTTP/1.1'} upstream: per-tool step-up`, () => {
    let key;
    let jwksServer;
    let upstream;
    let envoy;
    let port;
    let token;
    before(async () => {
      key = await makeKey('ES256', 'stock-es');
      jwksServer = await startJwksServer(jwks(key));
      upstream = await recordingUpstream(h2);
      port = await freePort();
      const config = {
        resources: [
          {
            resource: `http://localhost:${port}/mcp`,
            authorization_servers: [ISSUER],
            required_scopes: ['mcp:read'],
            issuers: [{ issuer: ISSUER, algorithms: ['ES256'], remote_jwks: { http_uri: { uri: jwksServer.url, cluster: 'jwks', timeout_ms: 1000 } } }],
            claim_to_headers: [{ header_name: 'x-mcp-subject', claim_name: 'sub' }],
            mcp: { max_body_bytes: 4096, rules: [{ method: 'tools/call', name: 'admin_*', scopes: ['mcp:admin'] }] },
          },
        ],
      };
      envoy = await startEnvoy({ port, config, jwksPort: jwksServer.port, upstreamPort: upstream.port, allowOnHeadersStopIteration: false, upstreamH2: h2 });
      token = (scope, sub = 'stock-user') => mint(key, { iss: ISSUER, aud: `http://localhost:${port}/mcp`, sub, scope });
    });
    after(async () => {
      await envoy?.stop();
      await jwksServer?.stop();
      await upstream?.stop();
    });
    const post = (t, body) =>
      send(`http://127.0.0.1:${port}/mcp`, { method: 'POST', headers: [['authorization', `Bearer ${t}`], ['content-type', 'application/json']], body });

    it('an allowed tool passes with its body intact', async () => {
      upstream.started.length = 0;
      const body = call('echo');
      const res = await post(await token('mcp:read'), body);
      assert.equal(res.status, 200, res.body);
      const [rec] = upstream.started;
      assert.ok(rec.complete);
      assert.equal(rec.bytes, Buffer.byteLength(body));
      assert.equal(rec.headers.authorization, undefined, 'the token never reaches the upstream');
      assert.equal(rec.headers['x-mcp-subject'], 'stock-user');
    });

    it('a forbidden tool: 403 step-up; the upstream got the headers but never the body', async () => {
      upstream.started.length = 0;
      const before = await envoy.stats();
      const res = await post(await token('mcp:read', 'intruder'), call('admin_reset'));
      assert.equal(res.status, 403, res.body);
      const ch = parseChallenge(res.headers['www-authenticate']);
      assert.equal(ch.params.error, 'insufficient_scope');
      assert.equal(ch.params.scope, 'mcp:read mcp:admin');
      await sleep(300);
      for (const rec of upstream.started) {
        assert.equal(rec.bytes, 0, 'not one byte of the refused body reached the upstream');
        // The upstream sees the request end by a reset, never by the end of its body: HTTP/1.1,
        // the connection is closed mid-request; HTTP/2, RST_STREAM with an error code (Node
        // then also emits 'end', with 0 bytes: what tells the two apart is the reset).
        assert.equal(rec.aborted, true, 'the refused request is aborted upstream');
        if (h2) assert.ok(rec.rstCode > 0, `RST_STREAM with an error code (${rec.rstCode})`);
        else assert.equal(rec.complete, false, 'a refused request never completes upstream');
        assert.equal(rec.headers.authorization, undefined);
      }
      // Counted once, as the refusal it is (not also as allowed when the headers went on).
      const after = await envoy.stats();
      const d = (k) => (after[k] ?? 0) - (before[k] ?? 0);
      assert.equal(d('requests_denied.scope'), 1);
      assert.equal(d('requests_allowed'), 0);
      console.log(`# stock ${h2 ? 'h2' : 'h1'}: upstream saw ${upstream.started.length} started request(s), 0 body bytes, all reset ${JSON.stringify(upstream.started.map(({ headers, ...r }) => r))}`);
    });

    it('the same tool with mcp:admin passes; no token is refused before anything reaches the upstream', async () => {
      upstream.started.length = 0;
      const before = await envoy.stats();
      assert.equal((await post(await token('mcp:read mcp:admin'), call('admin_reset'))).status, 200);
      assert.equal((await envoy.stats()).requests_allowed - (before.requests_allowed ?? 0), 1, 'counted as allowed once its body went on');
      assert.equal(upstream.started.length, 1);
      upstream.started.length = 0;
      const res = await send(`http://127.0.0.1:${port}/mcp`, { method: 'POST', headers: [['content-type', 'application/json']], body: call('admin_reset') });
      assert.equal(res.status, 401);
      assert.equal(upstream.started.length, 0);
    });

    it('a body over mcp.max_body_bytes: 413, never completes upstream', async () => {
      upstream.started.length = 0;
      const big = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'echo', arguments: { pad: 'x'.repeat(6000) } } });
      const res = await post(await token('mcp:read'), big);
      assert.equal(res.status, 413);
      await sleep(200);
      assert.ok(upstream.started.every((r) => r.bytes < Buffer.byteLength(big)), 'the oversized body never reached the upstream whole');
    });
  });
}
