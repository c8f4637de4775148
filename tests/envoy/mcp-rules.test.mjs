// MCP-aware rules (`resources[].mcp`) in the Wasm filter: the shared cases
// (tests/lib/mcp-rules.mjs) with the Wasm plugin config's `allow_on_headers_stop_iteration:
// true`, the Wasm counters, and without that setting: Envoy never delivers the body, and the
// filter fails closed (500).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';

import { startEnvoy } from './launch.mjs';
import { mcpRulesSuite, ISSUER, config, rpc, call } from '../lib/mcp-rules.mjs';
import { startJwksServer, startUpstream } from '../lib/servers.mjs';
import { makeKey, jwks, mint } from '../lib/tokens.mjs';
import { freePort } from '../lib/proc.mjs';
import { send } from '../lib/http.mjs';

mcpRulesSuite('envoy', startEnvoy, {
  counters: {
    title: 'counts body refusals, and never logs a body',
    async check(envoy) {
      const s = await envoy.stats();
      assert.ok(s['requests_denied.bad_body'] >= 8, JSON.stringify(s));
      assert.ok(s['requests_denied.body_too_large'] >= 2, JSON.stringify(s));
      assert.ok(s['requests_denied.scope'] >= 8, JSON.stringify(s));
      assert.equal(s['requests_denied.body_unavailable'], 0);
      const log = envoy.log();
      assert.match(log, /MCP rules on the JSON-RPC body of 2 resource\(s\)/);
      assert.ok(!log.includes('admin_reset') && !log.includes('split across chunks'), 'no body in the log');
    },
  },
});

describe('envoy: MCP rules without allow_on_headers_stop_iteration fail closed', () => {
  it('answers 500 naming the setting (once in the log), never forwards; requests that need no body still work', async () => {
    const rs = await makeKey('RS256', 'rules-off');
    const jwksServer = await startJwksServer(jwks(rs));
    const upstream = await startUpstream();
    const port = await freePort();
    const base = `http://127.0.0.1:${port}`;
    const envoy = await startEnvoy({
      port,
      config: config(port, jwksServer.url),
      jwksPort: jwksServer.port,
      upstreamPort: upstream.port,
      concurrency: 1,
      allowOnHeadersStopIteration: false,
    });
    try {
      const t = await mint(rs, { iss: ISSUER, aud: `http://localhost:${port}/a/mcp`, sub: 'u', scope: 'mcp:admin' });
      const auth = ['authorization', `Bearer ${t}`];
      const t0 = Date.now();
      const results = await Promise.all([
        send(`${base}/a/mcp`, { method: 'POST', headers: [auth], body: call('echo') }),
        send(`${base}/a/mcp`, { method: 'POST', headers: [auth], body: rpc('tools/list') }),
      ]);
      const took = Date.now() - t0;
      for (const res of results) {
        assert.equal(res.status, 500, res.body);
        assert.equal(res.json().error, 'server_error');
        assert.match(res.json().error_description, /allow_on_headers_stop_iteration: true/);
      }
      assert.ok(took < 5000, `answered after ${took} ms`);
      assert.equal(upstream.seen.length, 0, 'never forwarded');
      // Answered on the headers, or no body needed: unaffected.
      assert.equal((await send(`${base}/a/mcp`, { method: 'POST', body: call('echo') })).status, 401);
      assert.equal((await send(`${base}/a/mcp`, { headers: [auth] })).status, 200);
      const forB = await mint(rs, { iss: ISSUER, aud: `http://localhost:${port}/b/mcp`, scope: 'mcp:read' });
      assert.equal((await send(`${base}/b/mcp`, { method: 'POST', headers: [['authorization', `Bearer ${forB}`]], body: '{}' })).status, 200);
      const lines = envoy.log().split('\n').filter((l) => l.includes('allow_on_headers_stop_iteration: true') && /\[error\]/.test(l));
      assert.equal(lines.length, 1, lines.join('\n'));
      const s = await envoy.stats();
      assert.equal(s['requests_denied.body_unavailable'], 2);
    } finally {
      await envoy.stop();
      await jwksServer.stop();
      await upstream.stop();
    }
  });
});
