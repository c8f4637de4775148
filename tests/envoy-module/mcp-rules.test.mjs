// MCP-aware rules (`resources[].mcp`) in the native Envoy module: the shared cases
// (tests/lib/mcp-rules.mjs), the module's counters, and a body arriving slowly, a client
// leaving mid-body or while its request waits for keys.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:http';

import { startModuleEnvoy } from './launch.mjs';
import { mcpRulesSuite, ISSUER, config, call, chunked } from '../lib/mcp-rules.mjs';
import { startJwksServer, startUpstream } from '../lib/servers.mjs';
import { makeKey, jwks, mint } from '../lib/tokens.mjs';
import { freePort, sleep } from '../lib/proc.mjs';
import { send } from '../lib/http.mjs';

mcpRulesSuite('envoy-module', startModuleEnvoy, {
  counters: {
    title: 'counts decisions by reason, token cache hits and misses, and JWKS fetches (the Wasm filter\'s counter names); never logs a body or a token',
    async check(envoy) {
      const s = await envoy.stats();
      assert.ok(s['requests_denied.bad_body'] >= 8, JSON.stringify(s));
      assert.ok(s['requests_denied.body_too_large'] >= 2, JSON.stringify(s));
      assert.ok(s['requests_denied.scope'] >= 8, JSON.stringify(s));
      assert.ok(s.requests_allowed >= 10, JSON.stringify(s));
      assert.equal(s.requests_allowed, s.token_cache_hit + s.token_cache_miss);
      assert.ok(s.token_cache_hit >= 1 && s.token_cache_miss >= 1, JSON.stringify(s));
      assert.equal(s.metadata_served, 0, 'defined before any is served');
      assert.ok(s.jwks_fetch_ok >= 2, 'the startup fetch and the rotation');
      assert.equal(s.jwks_fetch_failed, 0);
      const log = envoy.log();
      assert.match(log, /mcp-edge-auth: answered 403/, 'debug logging is on');
      assert.ok(!log.includes('admin_reset') && !log.includes('split across chunks'), 'no body in the log');
      assert.ok(!log.includes('opaque-'), 'no opaque token in the log');
      assert.ok(!log.includes('gw-secret'), 'no client secret in the log');
    },
  },
});

describe('envoy-module: MCP rules, a body arriving slowly and a client that leaves', () => {
  it('a body trickling in over seconds is decided once complete; a client leaving mid-body or mid-wait disturbs nothing', async () => {
    const rs = await makeKey('RS256', 'rules-slow');
    const jwksServer = await startJwksServer(jwks(rs));
    const upstream = await startUpstream();
    const port = await freePort();
    const base = `http://127.0.0.1:${port}`;
    const envoy = await startModuleEnvoy({ port, config: config(port, jwksServer.url), jwksPort: jwksServer.port, upstreamPort: upstream.port, concurrency: 1 });
    try {
      const aud = `http://localhost:${port}/a/mcp`;
      const admin = await mint(rs, { iss: ISSUER, aud, sub: 'slow', scope: 'mcp:admin' });
      const reader = await mint(rs, { iss: ISSUER, aud, sub: 'slow', scope: 'mcp:read' });
      const body = call('admin_reset', { slow: true });
      const parts = body.match(/.{1,8}/g);
      const slow = (t) => chunked(`${base}/a/mcp`, { headers: { authorization: `Bearer ${t}` }, chunks: parts, gap: 120 });
      const [ok, denied] = await Promise.all([slow(admin), slow(reader)]);
      assert.equal(ok.status, 200, ok.body);
      assert.equal(upstream.last().body, body);
      assert.equal(denied.status, 403);
      // A client that sends half a body and goes away.
      await new Promise((resolve) => {
        const req = request({ host: '127.0.0.1', port, path: '/a/mcp', method: 'POST', headers: { authorization: `Bearer ${admin}`, 'content-length': '400' } });
        req.on('error', () => {});
        req.write(body.slice(0, 20));
        setTimeout(() => { req.destroy(); resolve(); }, 200);
      });
      // A key rotation: a request waits for the new keys after its body was read, and
      // its client leaves while it waits.
      const next = await makeKey('RS256', 'rules-slow-2');
      jwksServer.set({ jwks: jwks(rs, next), delayMs: 800 });
      await sleep(1100);
      const rotated = await mint(next, { iss: ISSUER, aud, sub: 'slow', scope: 'mcp:admin' });
      await new Promise((resolve) => {
        const req = request({ host: '127.0.0.1', port, path: '/a/mcp', method: 'POST', headers: { authorization: `Bearer ${rotated}`, 'content-length': String(Buffer.byteLength(body)) } });
        req.on('error', () => {});
        req.end(body);
        setTimeout(() => { req.destroy(); resolve(); }, 200);
      });
      await sleep(1200);
      upstream.clear();
      const after = await send(`${base}/a/mcp`, { method: 'POST', headers: [['authorization', `Bearer ${rotated}`], ['content-length', String(Buffer.byteLength(body))]], body });
      assert.equal(after.status, 200, after.body);
      assert.equal(upstream.last().body, body);
      assert.equal(envoy.proc.exited, false, 'Envoy still up');
    } finally {
      await envoy.stop();
      await jwksServer.stop();
      await upstream.stop();
    }
  });
});
