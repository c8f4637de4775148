// The end-to-end peers on their own, without any gateway: if one of these fails, an e2e
// failure is the peer's (or its version's), not the gateway's.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { decodeJwt, decodeProtectedHeader, createRemoteJWKSet, jwtVerify } from 'jose';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';

import { startAuthServer, requestToken, CLIENTS, SHORT_TTL } from '../../demo/as.mjs';
import { startMcpServer, PRIVILEGED_TOOL } from '../../demo/mcp-server.mjs';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { gatewayConfig, urls } from './world.mjs';
import { gatewayConfig as demoGatewayConfig } from '../../demo/config.mjs';
import { ROOT } from '../lib/proc.mjs';

describe('e2e peers: oidc-provider as the authorization server', () => {
  const resource = 'http://localhost:9/mcp';
  let as;
  before(async () => { as = await startAuthServer({ resources: [resource] }); });
  after(async () => { await as?.stop(); });

  it('publishes RFC 8414 metadata with the client-credentials grant and its JWKS', async () => {
    const md = await (await fetch(as.metadataUrl)).json();
    assert.equal(md.issuer, as.issuer);
    assert.equal(md.jwks_uri, as.jwksUrl);
    assert.equal(md.token_endpoint, as.tokenUrl);
    assert.ok(md.grant_types_supported.includes('client_credentials'));
    const jwks = await (await fetch(as.jwksUrl)).json();
    assert.deepEqual(jwks.keys.map((k) => k.kid), [as.kid]);
    assert.ok(!('d' in jwks.keys[0]), 'public keys only');
  });

  it('mints an RS256 at+jwt for the requested resource (aud = resource), verifiable with its JWKS', async () => {
    const t = await requestToken(as.tokenUrl, { client: CLIENTS.demo, resource, scope: 'mcp:read mcp:admin' });
    assert.equal(t.status, 200, JSON.stringify(t));
    assert.equal(t.token_type, 'Bearer');
    assert.deepEqual(decodeProtectedHeader(t.access_token), { alg: 'RS256', typ: 'at+jwt', kid: as.kid });
    const { payload } = await jwtVerify(t.access_token, createRemoteJWKSet(new URL(as.jwksUrl)), { issuer: as.issuer, audience: resource, typ: 'at+jwt' });
    assert.equal(payload.scope, 'mcp:read mcp:admin');
    assert.equal(payload.sub, CLIENTS.demo.client_id);
    assert.equal(payload.client_id, CLIENTS.demo.client_id);
  });

  it('refuses an unknown resource (invalid_target) and a scope the client may not have (invalid_scope)', async () => {
    const a = await requestToken(as.tokenUrl, { client: CLIENTS.demo, resource: 'http://localhost:10/mcp', scope: 'mcp:read' });
    assert.equal(a.status, 400);
    assert.equal(a.error, 'invalid_target');
    const b = await requestToken(as.tokenUrl, { client: CLIENTS.reader, resource, scope: 'mcp:read mcp:admin' });
    assert.equal(b.status, 400);
    assert.equal(b.error, 'invalid_scope');
  });

  it('gives the short-lived client tokens that expire quickly', async () => {
    const t = await requestToken(as.tokenUrl, { client: CLIENTS.shortLived, resource, scope: 'mcp:read' });
    const { iat, exp } = decodeJwt(t.access_token);
    assert.equal(exp - iat, SHORT_TTL);
  });

  it('a restart on the same port brings a new key', async () => {
    const { port, kid } = as;
    await as.stop();
    as = await startAuthServer({ port, resources: [resource] });
    assert.equal(as.port, port);
    assert.notEqual(as.kid, kid);
    const jwks = await (await fetch(as.jwksUrl)).json();
    assert.deepEqual(jwks.keys.map((k) => k.kid), [as.kid]);
  });
});

describe('e2e peers: the SDK MCP server and client, directly', () => {
  let mcp;
  before(async () => { mcp = await startMcpServer(); });
  after(async () => { await mcp?.stop(); });

  async function session(path) {
    const client = new Client({ name: 'peers-test', version: '1' });
    await client.connect(new StreamableHTTPClientTransport(new URL(`http://127.0.0.1:${mcp.port}${path}`)));
    return client;
  }

  it('lists and calls tools on /mcp; the privileged tool is not there', async () => {
    const c = await session('/mcp');
    const names = (await c.listTools()).tools.map((t) => t.name);
    assert.deepEqual(names, ['whoami', 'echo', 'add']);
    assert.deepEqual((await c.callTool({ name: 'add', arguments: { a: 1, b: 2 } })).structuredContent, { sum: 3 });
    await assert.rejects(c.callTool({ name: PRIVILEGED_TOOL, arguments: {} }));
    await c.close();
  });

  it('offers the privileged tool on /admin/mcp, and whoami reports the headers it got', async () => {
    const c = await session('/admin/mcp');
    assert.ok((await c.listTools()).tools.some((t) => t.name === PRIVILEGED_TOOL));
    const who = (await c.callTool({ name: 'whoami', arguments: {} })).structuredContent;
    assert.equal(who.subject, null);
    assert.equal(who.authorization_received, false);
    await c.close();
  });
});

describe('e2e gateway config', () => {
  it('publishes http://localhost:<port>/mcp and points the Envoy cluster "jwks" at the AS', () => {
    const c = gatewayConfig({ port: 1234, issuer: 'http://127.0.0.1:5/', jwksUrl: 'http://127.0.0.1:5/jwks' });
    assert.equal(c.resources[0].resource, urls(1234).resource);
    assert.equal(c.resources[0].issuers[0].remote_jwks.http_uri.cluster, 'jwks');
  });

  it('demo/gateway-config.json is the config `make demo` gives Envoy on its default ports', () => {
    // (tests/config/schema.test.mjs checks the file against the schema and the core.)
    const shipped = JSON.parse(readFileSync(join(ROOT, 'demo', 'gateway-config.json'), 'utf8'));
    const asBase = 'http://127.0.0.1:9400';
    assert.deepEqual(shipped, demoGatewayConfig({ port: 9410, issuer: asBase, jwksUrl: `${asBase}/jwks` }));
  });
});
