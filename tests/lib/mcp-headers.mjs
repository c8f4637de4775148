// MCP 2026-07-28 standard request headers (Mcp-Method, Mcp-Name; SEP-2243) against the body,
// on a real host with MCP rules: the `=?base64?…?=` sentinel decoded before comparing, a
// mismatch or a missing required header answered 400 with a JSON-RPC HeaderMismatch error
// (-32020, the request's id) and nothing sent upstream, and older clients unchanged.
// startHost({ port, config, jwksPort, upstreamPort }) as for tests/lib/conformance.mjs.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';

import { startJwksServer, startUpstream } from './servers.mjs';
import { makeKey, jwks, mint } from './tokens.mjs';
import { freePort } from './proc.mjs';
import { send } from './http.mjs';

const ISSUER = 'http://127.0.0.1:9/issuer-headers';
const b64 = (s) => `=?base64?${Buffer.from(s, 'utf8').toString('base64')}?=`;
const call = (name, id = 7) => JSON.stringify({ jsonrpc: '2.0', id, method: 'tools/call', params: { name, arguments: {} } });

export function mcpHeadersSuite(name, startHost) {
  describe(`${name}: MCP 2026-07-28 request headers`, () => {
    let key;
    let jwksServer;
    let upstream;
    let host;
    let port;
    let token;
    before(async () => {
      key = await makeKey('ES256', 'hdr-es');
      jwksServer = await startJwksServer(jwks(key));
      upstream = await startUpstream();
      port = await freePort();
      const config = {
        resources: [
          {
            resource: `http://localhost:${port}/mcp`,
            authorization_servers: [ISSUER],
            required_scopes: ['mcp:read'],
            issuers: [{ issuer: ISSUER, algorithms: ['ES256'], remote_jwks: { http_uri: { uri: jwksServer.url, cluster: 'jwks', timeout_ms: 1000 } } }],
            mcp: { rules: [{ method: 'tools/call', name: 'admin_*', scopes: ['mcp:admin'] }] },
          },
        ],
      };
      host = await startHost({ port, config, jwksPort: jwksServer.port, upstreamPort: upstream.port });
      token = await mint(key, { iss: ISSUER, aud: `http://localhost:${port}/mcp`, sub: 'hdr', scope: 'mcp:read' });
    });
    after(async () => {
      await host?.stop();
      await jwksServer?.stop();
      await upstream?.stop();
    });

    const post = (body, headers) =>
      send(`http://127.0.0.1:${port}/mcp`, {
        method: 'POST',
        headers: [['authorization', `Bearer ${token}`], ['content-type', 'application/json'], ['accept', 'application/json, text/event-stream'], ...headers],
        body,
      });
    const v2026 = (method, nameHeader) => [['mcp-protocol-version', '2026-07-28'], ...(method ? [['mcp-method', method]] : []), ...(nameHeader !== undefined ? [['mcp-name', nameHeader]] : [])];

    function assertMismatch(res, id) {
      assert.equal(res.status, 400, res.body);
      const v = JSON.parse(res.body);
      assert.equal(v.jsonrpc, '2.0');
      assert.equal(v.id, id);
      assert.equal(v.error.code, -32020);
      assert.match(v.error.message, /^Header mismatch/);
      assert.equal(res.headers['www-authenticate'], undefined);
    }

    it('a base64-encoded Mcp-Name matching the body: 200, headers forwarded untouched', async () => {
      upstream.clear();
      const res = await post(call('echo'), [...v2026('tools/call', b64('echo')), ['mcp-param-region', 'us-west1']]);
      assert.equal(res.status, 200, res.body);
      assert.equal(upstream.last().headers['mcp-name'], b64('echo'));
      assert.equal(upstream.last().headers['mcp-param-region'], 'us-west1');
    });

    it('a UTF-8 tool name sent encoded: 200', async () => {
      const res = await post(call('héllo'), v2026('tools/call', b64('héllo')));
      assert.equal(res.status, 200, res.body);
    });

    it('a mismatch: 400 with a JSON-RPC error -32020 carrying the request id; nothing forwarded', async () => {
      upstream.clear();
      assertMismatch(await post(call('admin_reset', 41), v2026('tools/call', b64('echo'))), 41);
      assertMismatch(await post(call('echo', 'req-1'), v2026('tools/list', 'echo')), 'req-1');
      assertMismatch(await post(call('echo'), v2026('tools/call', '=?base64?not*base64?=')), 7);
      assert.equal(upstream.seen.length, 0);
    });

    it('a 2026-07-28 request without Mcp-Method (or without Mcp-Name on tools/call): 400 -32020', async () => {
      upstream.clear();
      assertMismatch(await post(call('echo'), v2026(undefined, undefined)), 7);
      assertMismatch(await post(call('echo'), v2026('tools/call', undefined)), 7);
      assert.equal(upstream.seen.length, 0);
    });

    it('the same request declaring 2025-06-18 (or no version) passes as before', async () => {
      for (const headers of [[['mcp-protocol-version', '2025-06-18']], [['mcp-protocol-version', '2025-11-25']], []]) {
        const res = await post(call('echo'), headers);
        assert.equal(res.status, 200, `${JSON.stringify(headers)}: ${res.body}`);
      }
    });

    it('decisions still come from the body: an encoded header naming a harmless tool cannot unlock admin_*', async () => {
      const res = await post(call('admin_reset'), v2026('tools/call', b64('admin_reset')));
      assert.equal(res.status, 403, res.body);
    });
  });
}
