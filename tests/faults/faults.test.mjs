// Faults of the processes around the gateway, the same for both hosts: a JWKS endpoint that
// starts answering garbage or 10 MiB after keys were loaded, and an MCP server that is down.
// The gateway's own answers must stay right and nothing may get through unchecked.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';

import { startHost as startEnvoy } from '../envoy/launch.mjs';
import { startWorkerd } from '../workers/launch.mjs';
import { makeKey, jwks, mint } from '../lib/tokens.mjs';
import { startJwksServer, startUpstream } from '../lib/servers.mjs';
import { freePort, parseChallenge, sleep } from '../lib/proc.mjs';
import { send } from '../lib/http.mjs';

const ISSUER = 'http://127.0.0.1:9/fault-issuer';

for (const [name, startHost] of [['envoy', startEnvoy], ['workerd', startWorkerd]]) {
  describe(`${name}: faults around the gateway`, () => {
    let key; let jwksServer; let upstream; let host; let base; let resource;
    const post = (token, path = '/mcp') => send(`${base}${path}`, {
      method: 'POST',
      headers: token ? [['authorization', `Bearer ${token}`], ['content-type', 'application/json']] : [['content-type', 'application/json']],
      body: '{"jsonrpc":"2.0","id":1,"method":"tools/list"}',
    });

    before(async () => {
      key = await makeKey('ES256', 'fault-1');
      jwksServer = await startJwksServer(jwks(key));
      upstream = await startUpstream();
      const port = await freePort();
      base = `http://127.0.0.1:${port}`;
      resource = `http://localhost:${port}/mcp`;
      const config = {
        token_cache: { max_entries: 0 },
        resources: [{
          resource,
          authorization_servers: [ISSUER],
          issuers: [{
            issuer: ISSUER,
            remote_jwks: {
              http_uri: { uri: jwksServer.url, cluster: 'jwks', timeout_ms: 2000 },
              refetch_cooldown_seconds: 1,
              min_cache_duration_seconds: 1,
              cache_duration_seconds: 1,
              max_body_bytes: 65536,
            },
          }],
        }],
      };
      jwksServer.set({ cacheControl: 'max-age=1' });
      host = await startHost({ port, config, jwksPort: jwksServer.port, upstreamPort: upstream.port });
    });
    after(async () => {
      await host?.stop();
      await jwksServer?.stop();
      await upstream?.stop();
    });

    it('a JWKS turned to garbage or 10 MiB after keys loaded: the old keys stay in use', async () => {
      const t = await mint(key, { iss: ISSUER, aud: resource, sub: 'u' });
      assert.equal((await post(t)).status, 200);
      for (const body of ['<html>oops</html>', '{"keys":[]}', `{"keys":[{"kty":"RSA","n":"${'A'.repeat(10 * 1024 * 1024)}","e":"AQAB"}]}`]) {
        jwksServer.set({ body });
        const hits = jwksServer.hits;
        // Keys are due every second: wait until the gateway has tried the bad document.
        for (let i = 0; i < 40 && jwksServer.hits === hits; i += 1) {
          await sleep(100);
          await post(t);
        }
        assert.ok(jwksServer.hits > hits, 'the gateway refetched');
        const res = await post(t);
        assert.equal(res.status, 200, `still serving with the old keys after ${body.length} bytes of junk`);
      }
      jwksServer.set({ body: null });
    });

    it('the MCP server down: challenges and metadata stay right; a valid token gets a 5xx, never a pass', async () => {
      await upstream.stop();
      try {
        const res = await post(null);
        assert.equal(res.status, 401);
        const ch = parseChallenge(res.headers['www-authenticate']);
        assert.equal(ch.params.resource_metadata, resource.replace('/mcp', '/.well-known/oauth-protected-resource/mcp'));
        const bad = await post('not-a-token');
        assert.equal(bad.status, 401);
        const prm = await send(`${base}/.well-known/oauth-protected-resource/mcp`);
        assert.equal(prm.status, 200);
        assert.equal(prm.json().resource, resource);
        const t = await mint(key, { iss: ISSUER, aud: resource, sub: 'u' });
        const ok = await post(t);
        assert.ok(ok.status >= 502 && ok.status <= 504, `status ${ok.status}`);
      } finally {
        upstream = await startUpstream({ port: upstream.port });
      }
    });
  });
}
