// Opaque access tokens end to end (issue 8): the real authorization server of the e2e tier
// (oidc-provider, demo/as.mjs with `opaque: true`) issues OPAQUE tokens for
// http://localhost:<port>/opaque/mcp and answers the gateway at its RFC 7662 introspection
// endpoint; the real MCP server (demo/mcp-server.mjs) sits behind the gateway; the client is
// the MCP TypeScript SDK (demo/client.mjs) or raw HTTP. Through Envoy and through the Worker.
//
// The gateway's answer cache: `introspection.cache_max_seconds` is 1 here, so a revocation at
// the AS takes effect within a second. The revocation scenario does both: a token revoked
// before its first use is refused at once (nothing cached), and a token revoked after a
// successful use is refused once the cached answer (at most 1 s) has run out — which is what
// cache_max_seconds promises an operator.
import dns from 'node:dns';
import { createServer, request as httpRequest } from 'node:http';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';

import {
  startAuthServer, requestToken, introspectToken, revokeToken, CLIENTS, GATEWAY_CLIENT,
} from '../../demo/as.mjs';
import { startMcpServer } from '../../demo/mcp-server.mjs';
import { BASE_SCOPE, PRIVILEGED_SCOPE } from '../../demo/config.mjs';
import { connect, challengeParams } from '../../demo/client.mjs';
import { freePort, sleep, parseChallenge } from '../lib/proc.mjs';
import { send } from '../lib/http.mjs';
import { startHost as startEnvoy } from '../envoy/launch.mjs';
import { startWorkerd } from '../workers/launch.mjs';

dns.setDefaultResultOrder('ipv4first');

const CACHE_MAX_SECONDS = 1;
const RETRY_AFTER_SECONDS = 7;
const OPAQUE_PATH = '/opaque/mcp';

const rpc = (method, params = {}) => JSON.stringify({ jsonrpc: '2.0', id: 1, method, params });
const INIT = rpc('initialize', { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'raw', version: '1' } });
const isOpaque = (t) => typeof t === 'string' && t.length > 0 && !t.includes('.');

function opaqueUrls(port) {
  const origin = `http://localhost:${port}`;
  return {
    base: `http://127.0.0.1:${port}`,
    resource: `${origin}${OPAQUE_PATH}`,
    prm: `${origin}/.well-known/oauth-protected-resource${OPAQUE_PATH}`,
  };
}

/** The gateway config: one resource, /opaque/mcp, whose issuer is introspection only (no JWKS). */
function opaqueGatewayConfig({ port, issuer, introspectionUrl }) {
  return {
    resources: [{
      resource: opaqueUrls(port).resource,
      resource_name: 'mcp-edge-auth demo MCP server (opaque tokens)',
      authorization_servers: [issuer],
      scopes_supported: [BASE_SCOPE, PRIVILEGED_SCOPE],
      required_scopes: [BASE_SCOPE],
      issuers: [{
        issuer,
        introspection: {
          // `cluster` is for Envoy (a cluster pointing at the AS); the Worker fetches the uri.
          http_uri: { uri: introspectionUrl, cluster: 'introspection', timeout_ms: 1000 },
          client_id: GATEWAY_CLIENT.client_id,
          client_secret: GATEWAY_CLIENT.client_secret,
          cache_max_seconds: CACHE_MAX_SECONDS,
          retry_after_seconds: RETRY_AFTER_SECONDS,
        },
      }],
      claim_to_headers: [
        { header_name: 'x-mcp-subject', claim_name: 'sub' },
        { header_name: 'x-mcp-client-id', claim_name: 'client_id' },
      ],
    }],
  };
}

/**
 * The demo MCP server answers on /mcp only, and both hosts forward the path unchanged; this
 * loopback forwarder between the gateway and the MCP server maps `from` to `to` and passes
 * everything else (method, every header, body, response) through untouched.
 */
async function startPathMapper(targetPort, from, to) {
  const sockets = new Set();
  const server = createServer((req, res) => {
    const path = req.url === from || req.url.startsWith(`${from}?`) ? to + req.url.slice(from.length) : req.url;
    const up = httpRequest({ host: '127.0.0.1', port: targetPort, method: req.method, path, headers: req.rawHeaders }, (r) => {
      res.writeHead(r.statusCode, r.rawHeaders);
      r.pipe(res);
    });
    up.on('error', () => { if (!res.headersSent) res.writeHead(502).end(); else res.destroy(); });
    req.pipe(up);
  });
  server.on('connection', (s) => { sockets.add(s); s.on('close', () => sockets.delete(s)); });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: server.address().port,
    async stop() {
      for (const s of sockets) s.destroy();
      await new Promise((r) => server.close(() => r()));
    },
  };
}

describe('oidc-provider with opaque: true (the AS side of the scenarios below)', () => {
  let as;
  let meta;
  const resource = 'http://localhost:1/opaque/mcp';
  const jwtResource = 'http://localhost:1/mcp';
  before(async () => {
    as = await startAuthServer({ resources: [resource, jwtResource], opaque: true });
    meta = await (await fetch(as.metadataUrl)).json();
  });
  after(async () => { await as?.stop(); });

  it('opaque tokens for /opaque/ resources, JWTs for the rest; introspection answers the gateway, and only the gateway', async () => {
    assert.equal(meta.introspection_endpoint, as.introspectionUrl);
    assert.equal(meta.revocation_endpoint, as.revocationUrl);
    const t = await requestToken(as.tokenUrl, { client: CLIENTS.demo, resource, scope: BASE_SCOPE });
    assert.equal(t.status, 200, JSON.stringify(t));
    assert.ok(isOpaque(t.access_token), `opaque: ${t.access_token}`);
    const j = await requestToken(as.tokenUrl, { client: CLIENTS.demo, resource: jwtResource, scope: BASE_SCOPE });
    assert.equal(j.access_token.split('.').length, 3, 'other resources still get JWTs');

    const a = await introspectToken(meta.introspection_endpoint, { client: GATEWAY_CLIENT, token: t.access_token });
    assert.equal(a.status, 200);
    assert.equal(a.active, true);
    assert.equal(a.aud, resource);
    assert.equal(a.scope, BASE_SCOPE);
    assert.equal(a.iss, as.issuer);
    assert.equal(a.client_id, CLIENTS.demo.client_id);
    assert.equal(a.sub, CLIENTS.demo.client_id);
    assert.ok(Number.isInteger(a.exp) && a.exp > Date.now() / 1000, `exp ${a.exp}`);

    // allowedPolicy: a client that is not the resource server learns nothing, ...
    assert.deepEqual(await introspectToken(meta.introspection_endpoint, { client: CLIENTS.reader, token: t.access_token }), { status: 200, active: false });
    // ... a wrong secret is not the gateway, and the gateway cannot get tokens itself.
    assert.equal((await introspectToken(meta.introspection_endpoint, { client: { ...GATEWAY_CLIENT, client_secret: 'wrong' }, token: t.access_token })).status, 401);
    assert.equal((await requestToken(as.tokenUrl, { client: GATEWAY_CLIENT, resource, scope: BASE_SCOPE })).status, 400);
  });

  it('without opaque (the demo\'s default) there is no introspection, no revocation, no gateway client, and only JWTs', async () => {
    const d = await startAuthServer({ resources: [resource] });
    try {
      const m = await (await fetch(d.metadataUrl)).json();
      assert.equal(m.introspection_endpoint, undefined);
      assert.equal(m.revocation_endpoint, undefined);
      assert.equal(d.introspectionUrl, undefined);
      const t = await requestToken(d.tokenUrl, { client: CLIENTS.demo, resource, scope: BASE_SCOPE });
      assert.equal(t.access_token.split('.').length, 3);
      assert.equal((await requestToken(d.tokenUrl, { client: GATEWAY_CLIENT, resource, scope: BASE_SCOPE })).status, 401);
    } finally {
      await d.stop();
    }
  });
});

/**
 * @param {string} hostName
 * @param {(o: object) => Promise<{stop(): Promise<void>}>} startHost the launcher contract of
 *   tests/lib/conformance.mjs, plus Envoy's `clusters`.
 */
function opaqueSuite(hostName, startHost) {
  describe(`${hostName}: opaque tokens introspected at oidc-provider`, () => {
    let as;
    let asStopped = false;
    let meta;
    let mcp;
    let mapper;
    let host;
    let port;
    let u;
    let foreignResource;
    const tokensSeen = [];
    const creds = (c, scope = BASE_SCOPE) => ({ clientId: c.client_id, clientSecret: c.client_secret, scope, expectedIssuer: as.issuer });
    const call = (token, body = INIT) => send(`${u.base}${OPAQUE_PATH}`, {
      method: 'POST',
      headers: [
        ['host', `localhost:${port}`],
        ['authorization', `Bearer ${token}`],
        ['content-type', 'application/json'],
        ['accept', 'application/json, text/event-stream'],
      ],
      body,
    });
    const newToken = async (resource = u.resource, scope = BASE_SCOPE, client = CLIENTS.demo) => {
      const t = await requestToken(as.tokenUrl, { client, resource, scope });
      assert.equal(t.status, 200, JSON.stringify(t));
      assert.ok(isOpaque(t.access_token), `the AS issued an opaque token: ${t.access_token}`);
      tokensSeen.push(t.access_token);
      return t.access_token;
    };
    async function refused(token, status = 401, error = 'invalid_token') {
      mcp.clear();
      const res = await call(token);
      assert.equal(res.status, status, res.body);
      const ch = parseChallenge(res.headers['www-authenticate']);
      assert.equal(ch?.scheme, 'Bearer', `challenge: ${res.headers['www-authenticate']}`);
      assert.equal(ch.params.error, error);
      assert.equal(ch.params.resource_metadata, u.prm);
      assert.equal(mcp.seen.length, 0, 'nothing reached the MCP server');
      return ch;
    }

    before(async () => {
      port = await freePort();
      u = opaqueUrls(port);
      foreignResource = `http://localhost:${await freePort()}${OPAQUE_PATH}`;
      as = await startAuthServer({ resources: [u.resource, foreignResource], opaque: true });
      meta = await (await fetch(as.metadataUrl)).json();
      assert.ok(meta.introspection_endpoint, 'the AS publishes its introspection endpoint');
      mcp = await startMcpServer();
      mapper = await startPathMapper(mcp.port, OPAQUE_PATH, '/mcp');
      const config = opaqueGatewayConfig({ port, issuer: as.issuer, introspectionUrl: meta.introspection_endpoint });
      host = await startHost({ port, config, upstreamPort: mapper.port, clusters: { introspection: as.port } });
    });

    after(async () => {
      await host?.stop();
      await mapper?.stop();
      await mcp?.stop();
      if (!asStopped) await as?.stop();
    });

    it('the SDK client gets an opaque token for the resource from the 401, lists and calls tools; the MCP server sees the introspected subject, never the token', async () => {
      mcp.clear();
      const c = await connect(u.resource, { ...creds(CLIENTS.demo), headers: { 'x-mcp-subject': 'spoofed-admin', 'x-mcp-client-id': 'spoofed-client' } });
      let who;
      try {
        const names = (await c.client.listTools()).tools.map((t) => t.name);
        for (const n of ['whoami', 'echo', 'add']) assert.ok(names.includes(n), `tool ${n} listed (${names})`);
        assert.deepEqual((await c.client.callTool({ name: 'add', arguments: { a: 2, b: 40 } })).structuredContent, { sum: 42 });
        who = (await c.client.callTool({ name: 'whoami', arguments: {} })).structuredContent;
      } finally {
        await c.close();
      }

      const log = c.log;
      const at = (pred, what) => { const i = log.findIndex(pred); assert.ok(i >= 0, `${what} in ${JSON.stringify(log.map((e) => `${e.method} ${e.url} ${e.status}`))}`); return i; };
      const i401 = at((e) => e.url === u.resource && e.status === 401, 'first POST answered 401');
      assert.equal(challengeParams(log[i401].wwwAuthenticate).resource_metadata, u.prm);
      const iPrm = at((e) => e.url === u.prm && e.status === 200, 'PRM');
      assert.equal(log[iPrm].responseJson.resource, u.resource);
      assert.deepEqual(log[iPrm].responseJson.authorization_servers, [as.issuer]);
      const iTok = at((e) => e.url === as.tokenUrl && e.status === 200, 'token request');
      assert.equal(new URLSearchParams(log[iTok].requestBody).get('resource'), u.resource, 'RFC 8707 resource = the PRM resource');
      const token = log[iTok].responseJson.access_token;
      assert.ok(isOpaque(token), `an opaque token, not a JWT: ${token}`);
      tokensSeen.push(token);
      at((e, i) => i > iTok && e.url === u.resource && e.status === 200 && e.authorization === `Bearer ${token}`, 'retried POST accepted with the opaque token');

      assert.equal(who.authorization_received, false, 'no Authorization header reached the MCP server');
      assert.equal(who.subject, CLIENTS.demo.client_id, 'x-mcp-subject is the introspected sub');
      assert.equal(who.client_id, CLIENTS.demo.client_id, 'x-mcp-client-id is the introspected client_id');
      assert.ok(mcp.seen.length >= 3);
      for (const r of mcp.seen) {
        assert.equal(r.headers.authorization, undefined, `${r.method} ${r.path}: no Authorization upstream`);
        assert.equal(r.headers['x-mcp-subject'], CLIENTS.demo.client_id);
        assert.equal(r.headers['x-mcp-client-id'], CLIENTS.demo.client_id);
        const all = JSON.stringify(r);
        assert.ok(!all.includes(token), 'the token appears nowhere in what the MCP server received');
        assert.ok(!all.includes('spoofed'), 'client-sent identity headers do not get through');
      }
    });

    it('the introspected scope is enforced: a token with only mcp:admin gets 403 insufficient_scope naming mcp:read', async () => {
      const t = await newToken(u.resource, PRIVILEGED_SCOPE);
      const ch = await refused(t, 403, 'insufficient_scope');
      assert.equal(ch.params.scope, BASE_SCOPE);
    });

    it('an opaque token the AS never issued: 401 invalid_token', async () => {
      const forged = randomBytes(32).toString('base64url');
      tokensSeen.push(forged);
      assert.equal((await introspectToken(meta.introspection_endpoint, { token: forged })).active, false);
      await refused(forged);
    });

    it(`a token revoked at the AS: 401 invalid_token — at once if never used, within cache_max_seconds (${CACHE_MAX_SECONDS}) if it was`, async () => {
      const unused = await newToken();
      assert.equal(await revokeToken(meta.revocation_endpoint, { client: CLIENTS.demo, token: unused }), 200);
      await refused(unused);

      const used = await newToken();
      mcp.clear();
      const ok = await call(used);
      assert.equal(ok.status, 200, `accepted before revocation: ${ok.body}`);
      assert.equal(mcp.seen.length, 1);
      assert.equal(await revokeToken(meta.revocation_endpoint, { client: CLIENTS.demo, token: used }), 200);
      assert.equal((await introspectToken(meta.introspection_endpoint, { token: used })).active, false, 'the AS says revoked');
      await sleep(CACHE_MAX_SECONDS * 1000 + 200); // past the cached answer's lifetime
      await refused(used);
    });

    it('an opaque token the AS issued for another resource: 401 invalid_token (audience)', async () => {
      const t = await newToken(foreignResource);
      // The AS says it is active, for the other resource: the refusal is the gateway's audience check.
      const a = await introspectToken(meta.introspection_endpoint, { token: t });
      assert.equal(a.active, true);
      assert.equal(a.aud, foreignResource);
      const ch = await refused(t);
      assert.match(ch.params.error_description ?? '', /resource/i, 'the description names the audience problem');
    });

    it('the AS stopped (introspection down): a new opaque token gets 503 with Retry-After, never 200', async () => {
      const t = await newToken();
      await as.stop();
      asStopped = true;
      for (let i = 0; i < 2; i += 1) {
        mcp.clear();
        const res = await call(t);
        assert.equal(res.status, 503, `attempt ${i + 1}: ${res.status} ${res.body}`);
        assert.equal(res.headers['retry-after'], String(RETRY_AFTER_SECONDS));
        assert.equal(mcp.seen.length, 0, 'nothing reached the MCP server');
      }
    });

    it('no opaque token appears in the host\'s log', () => {
      const file = typeof host.log === 'function' ? host.logFile : host.log;
      const text = readFileSync(file, 'utf8');
      assert.ok(tokensSeen.length >= 6);
      for (const t of tokensSeen) assert.ok(!text.includes(t), 'a token was logged');
    });
  });
}

opaqueSuite('Envoy', startEnvoy);
opaqueSuite('Worker (workerd)', startWorkerd);
