// RFC 8693 token exchange, the AS and MCP-server halves only (no gateway): the real
// authorization server of the e2e tier (oidc-provider, demo/as.mjs with `exchange: true`)
// trades a client's access token for an upstream token, refuses what RFC 8693 says it must,
// and misbehaves on demand (`exchangeFault`) for the gateway's host tests; the demo MCP server
// (demo/mcp-server.mjs with `upstreamToken`) accepts only such upstream tokens.
//
// Run: node --test tests/e2e/exchange-as.test.mjs
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createRemoteJWKSet, jwtVerify } from 'jose';

import {
  startAuthServer, requestToken, exchangeToken, CLIENTS, EXCHANGE_CLIENT, DEFAULT_UPSTREAM_AUDIENCE,
  TOKEN_EXCHANGE_GRANT, ACCESS_TOKEN_TYPE, SHORT_TTL,
} from '../../demo/as.mjs';
import { startMcpServer } from '../../demo/mcp-server.mjs';
import { BASE_SCOPE, PRIVILEGED_SCOPE, gatewayConfig } from '../../demo/config.mjs';
import { sleep } from '../lib/proc.mjs';

// The gateway's resource (what clients get tokens for) and a second one the AS also knows.
const RESOURCE = 'http://localhost:1/mcp';
const OTHER_RESOURCE = 'http://localhost:2/mcp';
// A second upstream audience, so that multi-audience requests can be tested.
const OTHER_UPSTREAM = 'urn:mcp-edge-auth:other-upstream';
const BOTH_SCOPES = `${BASE_SCOPE} ${PRIVILEGED_SCOPE}`;

const rpc = (method, params = {}) => JSON.stringify({ jsonrpc: '2.0', id: 1, method, params });
const INIT = rpc('initialize', { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'raw', version: '1' } });

/** An RFC 6749 §5.2 error answer: status, JSON `{error, error_description}`, no-store. */
function assertOAuthError(res, error, status = 400) {
  assert.equal(res.status, status, res.body);
  assert.equal(res.json?.error, error, res.body);
  assert.equal(typeof res.json.error_description, 'string', res.body);
  assert.equal(res.headers.get('cache-control'), 'no-store');
}

describe('oidc-provider with exchange: true (RFC 8693 token exchange)', () => {
  let as;
  let jwks;
  const subjectToken = async (scope = BOTH_SCOPES, resource = RESOURCE, client = CLIENTS.demo) => {
    const t = await requestToken(as.tokenUrl, { client, resource, scope });
    assert.equal(t.status, 200, JSON.stringify(t));
    return t.access_token;
  };
  const verifyUpstream = (token, audience = DEFAULT_UPSTREAM_AUDIENCE) => jwtVerify(token, jwks, {
    issuer: as.issuer, audience, typ: 'at+jwt', algorithms: ['RS256'],
  });
  const since = (n) => as.exchanges.slice(n);

  before(async () => {
    as = await startAuthServer({
      resources: [RESOURCE, OTHER_RESOURCE], exchange: true, upstreamAudiences: [DEFAULT_UPSTREAM_AUDIENCE, OTHER_UPSTREAM],
    });
    jwks = createRemoteJWKSet(new URL(as.jwksUrl));
  });
  after(async () => { await as?.stop(); });

  it('publishes the grant type in its metadata', async () => {
    const meta = await (await fetch(as.metadataUrl)).json();
    assert.ok(meta.grant_types_supported.includes(TOKEN_EXCHANGE_GRANT), meta.grant_types_supported);
    assert.ok(meta.token_endpoint_auth_methods_supported.includes('client_secret_basic'));
    assert.ok(meta.token_endpoint_auth_methods_supported.includes('client_secret_post'));
  });

  for (const auth of ['basic', 'post']) {
    it(`issues an upstream token to the exchanger (client_secret_${auth}): aud, sub, client_id, act, scope, lifetime`, async () => {
      const subject = await subjectToken();
      const n = as.exchanges.length;
      const res = await exchangeToken(as.tokenUrl, { auth, subjectToken: subject, audience: DEFAULT_UPSTREAM_AUDIENCE });
      assert.equal(res.status, 200, res.body);
      assert.equal(res.headers.get('cache-control'), 'no-store');
      const { access_token: token, ...rest } = res.json;
      assert.deepEqual(rest, { issued_token_type: ACCESS_TOKEN_TYPE, token_type: 'Bearer', expires_in: 300, scope: BOTH_SCOPES });
      assert.notEqual(token, subject);

      const { payload, protectedHeader } = await verifyUpstream(token);
      assert.deepEqual(protectedHeader, { alg: 'RS256', kid: as.kid, typ: 'at+jwt' });
      assert.equal(payload.aud, DEFAULT_UPSTREAM_AUDIENCE, 'one target: aud is a string');
      assert.equal(payload.sub, CLIENTS.demo.client_id, 'the subject token\'s sub');
      assert.equal(payload.client_id, CLIENTS.demo.client_id, 'the subject token\'s client_id');
      assert.deepEqual(payload.act, { sub: EXCHANGE_CLIENT.client_id }, 'RFC 8693 §4.1: the exchanger is the actor');
      assert.equal(payload.scope, BOTH_SCOPES);
      assert.equal(payload.exp - payload.iat, 300);
      assert.equal(typeof payload.jti, 'string');

      const e = since(n);
      assert.equal(e.length, 1);
      assert.deepEqual({ ...e[0], at: undefined }, {
        at: undefined, sub: CLIENTS.demo.client_id, audience: [DEFAULT_UPSTREAM_AUDIENCE], resource: [], scope: null,
        client_id: EXCHANGE_CLIENT.client_id, auth, outcome: 'issued',
      });
      assert.ok(Math.abs(e[0].at - Date.now()) < 10_000);
      const recorded = JSON.stringify(e);
      assert.ok(!recorded.includes(subject) && !recorded.includes(token), 'exchanges never hold tokens');
    });
  }

  it('resource works like audience; repeated values give an array aud; a narrower scope is honoured', async () => {
    const subject = await subjectToken();
    const byResource = await exchangeToken(as.tokenUrl, { subjectToken: subject, resource: DEFAULT_UPSTREAM_AUDIENCE, scope: BASE_SCOPE });
    assert.equal(byResource.status, 200, byResource.body);
    assert.equal(byResource.json.scope, BASE_SCOPE);
    const one = (await verifyUpstream(byResource.json.access_token)).payload;
    assert.equal(one.aud, DEFAULT_UPSTREAM_AUDIENCE);
    assert.equal(one.scope, BASE_SCOPE);

    // The same value as audience and resource is one target.
    const same = await exchangeToken(as.tokenUrl, { subjectToken: subject, audience: DEFAULT_UPSTREAM_AUDIENCE, resource: DEFAULT_UPSTREAM_AUDIENCE });
    assert.equal((await verifyUpstream(same.json.access_token)).payload.aud, DEFAULT_UPSTREAM_AUDIENCE);

    const n = as.exchanges.length;
    const two = await exchangeToken(as.tokenUrl, { subjectToken: subject, audience: [DEFAULT_UPSTREAM_AUDIENCE, OTHER_UPSTREAM] });
    assert.equal(two.status, 200, two.body);
    assert.deepEqual((await verifyUpstream(two.json.access_token, OTHER_UPSTREAM)).payload.aud, [DEFAULT_UPSTREAM_AUDIENCE, OTHER_UPSTREAM]);
    assert.deepEqual(since(n)[0].audience, [DEFAULT_UPSTREAM_AUDIENCE, OTHER_UPSTREAM]);
  });

  it('a subject token that is not this AS\'s access token for one of its resources: invalid_grant', async () => {
    const other = await startAuthServer({ resources: [RESOURCE] });
    let foreign;
    try {
      // Same resource, same client, another AS (another key and issuer).
      foreign = (await requestToken(other.tokenUrl, { client: CLIENTS.demo, resource: RESOURCE, scope: BASE_SCOPE })).access_token;
    } finally {
      await other.stop();
    }
    const upstream = (await exchangeToken(as.tokenUrl, { subjectToken: await subjectToken(), audience: DEFAULT_UPSTREAM_AUDIENCE })).json.access_token;
    const good = await subjectToken();
    const [h, p] = good.split('.');
    const cases = {
      'not a JWT': 'not-a-token',
      'another AS\'s token': foreign,
      'a tampered signature': `${h}.${p}.${'A'.repeat(342)}`,
      // No chains: an upstream token is not for any of this AS's resources.
      'an exchanged (upstream) token': upstream,
    };
    for (const [what, token] of Object.entries(cases)) {
      const n = as.exchanges.length;
      const res = await exchangeToken(as.tokenUrl, { subjectToken: token, audience: DEFAULT_UPSTREAM_AUDIENCE });
      assertOAuthError(res, 'invalid_grant');
      assert.deepEqual(since(n).map((e) => [e.outcome, e.sub]), [['invalid_grant', null]], what);
    }
  });

  it(`an expired subject token: invalid_grant (short-lived client, ${SHORT_TTL} s)`, async () => {
    const t = await subjectToken(BASE_SCOPE, RESOURCE, CLIENTS.shortLived);
    assert.equal((await exchangeToken(as.tokenUrl, { subjectToken: t, audience: DEFAULT_UPSTREAM_AUDIENCE })).status, 200, 'fine while fresh');
    await sleep(SHORT_TTL * 1000 + 1100);
    const res = await exchangeToken(as.tokenUrl, { subjectToken: t, audience: DEFAULT_UPSTREAM_AUDIENCE });
    assertOAuthError(res, 'invalid_grant');
    assert.match(res.json.error_description, /exp/);
  });

  it('malformed requests: invalid_request', async () => {
    const subject = await subjectToken();
    const cases = {
      'wrong subject_token_type': { subjectToken: subject, subjectTokenType: 'urn:ietf:params:oauth:token-type:id_token' },
      'no subject_token_type': { subjectToken: subject, subjectTokenType: null },
      'no subject_token': { subjectToken: undefined },
      'wrong requested_token_type': { subjectToken: subject, extra: { requested_token_type: 'urn:ietf:params:oauth:token-type:refresh_token' } },
      'an actor token (unsupported)': { subjectToken: subject, extra: { actor_token: subject, actor_token_type: ACCESS_TOKEN_TYPE } },
    };
    for (const [what, o] of Object.entries(cases)) {
      const res = await exchangeToken(as.tokenUrl, { audience: DEFAULT_UPSTREAM_AUDIENCE, ...o });
      assert.equal(res.json?.error, 'invalid_request', `${what}: ${res.body}`);
      assertOAuthError(res, 'invalid_request');
    }
    // Only audience and resource may repeat; a repeated scope is oidc-provider's own refusal.
    const dup = new URLSearchParams({ grant_type: TOKEN_EXCHANGE_GRANT, subject_token: subject, subject_token_type: ACCESS_TOKEN_TYPE, audience: DEFAULT_UPSTREAM_AUDIENCE });
    dup.append('scope', BASE_SCOPE);
    dup.append('scope', BASE_SCOPE);
    const res = await fetch(as.tokenUrl, {
      method: 'POST',
      headers: { authorization: `Basic ${Buffer.from(`${EXCHANGE_CLIENT.client_id}:${EXCHANGE_CLIENT.client_secret}`).toString('base64')}`, 'content-type': 'application/x-www-form-urlencoded' },
      body: dup,
    });
    assert.equal(res.status, 400);
    assert.equal((await res.json()).error, 'invalid_request', 'scope must not repeat');
  });

  it('a target outside upstreamAudiences, or none: invalid_target', async () => {
    const subject = await subjectToken();
    const cases = {
      'an unknown audience': { audience: 'urn:elsewhere' },
      // A gateway resource is a resource of this AS, but not an upstream audience.
      'the gateway resource': { resource: RESOURCE },
      'one good, one unknown': { audience: [DEFAULT_UPSTREAM_AUDIENCE, 'urn:elsewhere'] },
      'a good audience, an unknown resource': { audience: DEFAULT_UPSTREAM_AUDIENCE, resource: 'https://evil.example/' },
      'no target at all': {},
    };
    for (const [what, o] of Object.entries(cases)) {
      const n = as.exchanges.length;
      const res = await exchangeToken(as.tokenUrl, { subjectToken: subject, ...o });
      assert.equal(res.json?.error, 'invalid_target', `${what}: ${res.body}`);
      assertOAuthError(res, 'invalid_target');
      assert.equal(since(n)[0].outcome, 'invalid_target');
    }
  });

  it('a scope wider than the subject token\'s: invalid_scope', async () => {
    const subject = await subjectToken(BASE_SCOPE);
    const res = await exchangeToken(as.tokenUrl, { subjectToken: subject, audience: DEFAULT_UPSTREAM_AUDIENCE, scope: BOTH_SCOPES });
    assertOAuthError(res, 'invalid_scope');
    // Default scope = the subject's, and asking for exactly that is fine.
    const ok = await exchangeToken(as.tokenUrl, { subjectToken: subject, audience: DEFAULT_UPSTREAM_AUDIENCE });
    assert.equal(ok.json.scope, BASE_SCOPE);
  });

  it('only the exchanger may exchange: another client gets unauthorized_client, a wrong secret invalid_client', async () => {
    const subject = await subjectToken();
    for (const auth of ['basic', 'post']) {
      const n = as.exchanges.length;
      const res = await exchangeToken(as.tokenUrl, { client: CLIENTS.demo, auth, subjectToken: subject, audience: DEFAULT_UPSTREAM_AUDIENCE });
      assertOAuthError(res, 'unauthorized_client');
      assert.deepEqual(since(n).map((e) => [e.client_id, e.auth, e.outcome]), [[CLIENTS.demo.client_id, auth, 'unauthorized_client']]);

      const m = as.exchanges.length;
      const bad = await exchangeToken(as.tokenUrl, { client: { ...EXCHANGE_CLIENT, client_secret: 'wrong' }, auth, subjectToken: subject, audience: DEFAULT_UPSTREAM_AUDIENCE });
      assertOAuthError(bad, 'invalid_client', 401);
      assert.equal(as.exchanges.length, m, 'client authentication failed before the grant handler');
    }
    // And the exchanger cannot get tokens of its own.
    assert.equal((await requestToken(as.tokenUrl, { client: EXCHANGE_CLIENT, resource: RESOURCE, scope: BASE_SCOPE })).status, 400);
  });

  it('setExchangeTtl changes the lifetime of the tokens issued next', async () => {
    const subject = await subjectToken();
    as.setExchangeTtl(2);
    try {
      const res = await exchangeToken(as.tokenUrl, { subjectToken: subject, audience: DEFAULT_UPSTREAM_AUDIENCE });
      assert.equal(res.json.expires_in, 2);
      const { payload } = await verifyUpstream(res.json.access_token);
      assert.equal(payload.exp - payload.iat, 2);
    } finally {
      as.setExchangeTtl(300);
    }
  });

  describe('exchangeFault', () => {
    let subject;
    const exchange = () => exchangeToken(as.tokenUrl, { subjectToken: subject, audience: DEFAULT_UPSTREAM_AUDIENCE });
    before(async () => { subject = await subjectToken(); });
    after(() => as.exchangeFault(null));

    it("'delay': answers normally, after the delay", async () => {
      as.exchangeFault('delay', 400);
      const t0 = Date.now();
      const res = await exchange();
      assert.ok(Date.now() - t0 >= 390, `took ${Date.now() - t0} ms`);
      assert.equal(res.status, 200, res.body);
      await verifyUpstream(res.json.access_token);
      assert.equal(as.exchanges.at(-1).outcome, 'issued');
    });

    it("'refuse': the given error code, 400 (401 for invalid_client)", async () => {
      for (const code of ['invalid_grant', 'invalid_target', 'invalid_request']) {
        as.exchangeFault('refuse', code);
        assertOAuthError(await exchange(), code);
        assert.equal(as.exchanges.at(-1).outcome, code);
      }
      as.exchangeFault('refuse', 'invalid_client');
      assertOAuthError(await exchange(), 'invalid_client', 401);
    });

    it("'status': that HTTP status, body {\"error\":\"server_error\"}", async () => {
      for (const status of [500, 503]) {
        as.exchangeFault('status', status);
        const res = await exchange();
        assert.equal(res.status, status);
        assert.deepEqual(res.json, { error: 'server_error' });
        assert.equal(as.exchanges.at(-1).outcome, 'server_error');
      }
    });

    it("'garbage': 200 with a body that is not JSON", async () => {
      as.exchangeFault('garbage');
      const res = await exchange();
      assert.equal(res.status, 200);
      assert.equal(res.json, undefined, res.body);
      assert.ok(res.body.length > 0);
      assert.equal(as.exchanges.at(-1).outcome, 'garbage');
    });

    it("'hang': no answer until the fault is cleared, then a normal one", async () => {
      as.exchangeFault('hang');
      let settled = false;
      const pending = exchange().finally(() => { settled = true; });
      await sleep(500);
      assert.equal(settled, false, 'still hanging');
      assert.equal(as.exchanges.at(-1).outcome, 'pending', 'the request reached the handler and is recorded');
      as.exchangeFault(null);
      const res = await pending;
      assert.equal(res.status, 200, res.body);
      assert.equal(as.exchanges.at(-1).outcome, 'issued');
    });

    it('faults apply to the exchange grant only: client credentials still work', async () => {
      as.exchangeFault('status', 500);
      const t = await requestToken(as.tokenUrl, { client: CLIENTS.demo, resource: RESOURCE, scope: BASE_SCOPE });
      assert.equal(t.status, 200);
      as.exchangeFault(null);
      assert.equal((await exchange()).status, 200, 'null: back to normal');
    });
  });

  it("'hang' ends when the server stops (no request left pending, node can exit)", async () => {
    const h = await startAuthServer({ resources: [RESOURCE], exchange: true });
    const t = (await requestToken(h.tokenUrl, { client: CLIENTS.demo, resource: RESOURCE, scope: BASE_SCOPE })).access_token;
    h.exchangeFault('hang');
    const pending = exchangeToken(h.tokenUrl, { subjectToken: t, audience: DEFAULT_UPSTREAM_AUDIENCE }).then(() => 'answered', () => 'connection closed');
    await sleep(300);
    await h.stop();
    assert.equal(await pending, 'connection closed');
    assert.equal(h.exchanges.at(-1).outcome, 'hang');
  });

  it('without exchange (the default): no such grant, no exchanger client', async () => {
    const d = await startAuthServer({ resources: [RESOURCE] });
    try {
      const meta = await (await fetch(d.metadataUrl)).json();
      assert.ok(!meta.grant_types_supported.includes(TOKEN_EXCHANGE_GRANT));
      const t = (await requestToken(d.tokenUrl, { client: CLIENTS.demo, resource: RESOURCE, scope: BASE_SCOPE })).access_token;
      assertOAuthError(await exchangeToken(d.tokenUrl, { subjectToken: t, audience: DEFAULT_UPSTREAM_AUDIENCE }), 'invalid_client', 401);
      const byDemo = await exchangeToken(d.tokenUrl, { client: CLIENTS.demo, subjectToken: t, audience: DEFAULT_UPSTREAM_AUDIENCE });
      assertOAuthError(byDemo, 'unsupported_grant_type');
      assert.deepEqual(d.exchanges, []);
    } finally {
      await d.stop();
    }
  });
});

describe('the MCP server with upstreamToken: only upstream tokens get in', () => {
  let as;
  let mcp;
  let plain;
  const post = (server, token, body = INIT, path = '/mcp') => fetch(`http://127.0.0.1:${server.port}${path}`, {
    method: 'POST',
    headers: {
      ...(token !== undefined ? { authorization: `Bearer ${token}` } : {}),
      'content-type': 'application/json',
      accept: 'application/json, text/event-stream',
    },
    body,
  });
  const clientToken = async (scope = BASE_SCOPE) => {
    const t = await requestToken(as.tokenUrl, { client: CLIENTS.demo, resource: RESOURCE, scope });
    assert.equal(t.status, 200, JSON.stringify(t));
    return t.access_token;
  };
  const upstreamToken = async (subject) => {
    const res = await exchangeToken(as.tokenUrl, { subjectToken: subject ?? await clientToken(), audience: DEFAULT_UPSTREAM_AUDIENCE });
    assert.equal(res.status, 200, res.body);
    return res.json.access_token;
  };
  async function refused(res) {
    assert.equal(res.status, 401);
    assert.match(res.headers.get('content-type'), /application\/json/);
    assert.deepEqual(await res.json(), { error: 'invalid_token' });
    const e = mcp.upstreamTokens.at(-1);
    assert.equal(e.ok, false);
    assert.equal(mcp.calls.length, 0, 'MCP did not handle it');
    return e;
  }

  before(async () => {
    as = await startAuthServer({ resources: [RESOURCE], exchange: true });
    const upstream = { jwksUrl: as.jwksUrl, issuer: as.issuer, audience: DEFAULT_UPSTREAM_AUDIENCE };
    mcp = await startMcpServer({ upstreamToken: upstream });
    plain = await startMcpServer();
  });
  after(async () => {
    await mcp?.stop();
    await plain?.stop();
    await as?.stop();
  });

  it('no token: 401 invalid_token, recorded as not ok, MCP never sees it', async () => {
    mcp.clear();
    const e = await refused(await post(mcp, undefined, rpc('tools/call', { name: 'echo', arguments: { text: 'x' } })));
    assert.equal(e.reason, 'missing');
    assert.equal(e.token, null);
    assert.equal(mcp.upstreamTokens.length, 1);
    for (const path of ['/admin/mcp']) await refused(await post(mcp, undefined, INIT, path));
  });

  it('the exchanged token: initialize 200; upstreamTokens ok with its sub/aud/act', async () => {
    mcp.clear();
    const subject = await clientToken();
    const token = await upstreamToken(subject);
    const res = await post(mcp, token);
    assert.equal(res.status, 200, await res.clone().text());
    assert.equal((await res.json()).result.serverInfo.name, 'mcp-edge-auth-demo');
    assert.equal(mcp.upstreamTokens.length, 1);
    const e = mcp.upstreamTokens[0];
    assert.deepEqual({ ...e }, {
      ok: true, sub: CLIENTS.demo.client_id, aud: DEFAULT_UPSTREAM_AUDIENCE, act: { sub: EXCHANGE_CLIENT.client_id },
      client_id: CLIENTS.demo.client_id, scope: BASE_SCOPE, token,
    });
    assert.ok(!mcp.upstreamTokens.some((x) => x.token === subject), 'the client\'s own token never arrived');
  });

  it('whoami reports the upstream token verified for that very request', async () => {
    const token = await upstreamToken();
    const res = await post(mcp, token, rpc('tools/call', { name: 'whoami', arguments: {} }));
    assert.equal(res.status, 200);
    const who = (await res.json()).result.structuredContent;
    assert.deepEqual(who.upstream_token, {
      sub: CLIENTS.demo.client_id, aud: DEFAULT_UPSTREAM_AUDIENCE, act: { sub: EXCHANGE_CLIENT.client_id },
      client_id: CLIENTS.demo.client_id, scope: BASE_SCOPE,
    });
    assert.equal(who.authorization_received, true);
  });

  it('a client-credentials token for the gateway resource (wrong aud): 401', async () => {
    mcp.clear();
    const t = await clientToken();
    const e = await refused(await post(mcp, t));
    assert.equal(e.aud, RESOURCE, 'its (unverified) claims are recorded for diagnostics');
    assert.match(e.reason, /aud/);
    assert.equal(e.token, t);
  });

  it('a malformed or expired upstream token: 401', async () => {
    mcp.clear();
    await refused(await post(mcp, 'not.a.jwt'));
    const basic = await fetch(mcp.url, { method: 'POST', headers: { authorization: 'Basic Zm9vOmJhcg==', 'content-type': 'application/json', accept: 'application/json, text/event-stream' }, body: INIT });
    assert.match((await refused(basic)).reason, /malformed/);

    as.setExchangeTtl(1);
    let token;
    try {
      token = await upstreamToken();
    } finally {
      as.setExchangeTtl(300);
    }
    await sleep(2100);
    assert.match((await refused(await post(mcp, token))).reason, /exp/);
  });

  it('without the option nothing changes: no upstream check, no upstream_token in whoami', async () => {
    const res = await post(plain, undefined, rpc('tools/call', { name: 'whoami', arguments: {} }));
    assert.equal(res.status, 200);
    const who = (await res.json()).result.structuredContent;
    assert.deepEqual(Object.keys(who).sort(), ['authorization_received', 'client_id', 'header_names', 'subject']);
    assert.deepEqual(plain.upstreamTokens, []);
  });

  it('stateful mode checks every request of the session too', async () => {
    const s = await startMcpServer({ stateful: true, upstreamToken: { jwksUrl: as.jwksUrl, issuer: as.issuer, audience: DEFAULT_UPSTREAM_AUDIENCE } });
    try {
      const token = await upstreamToken();
      const init = await post(s, token);
      assert.equal(init.status, 200);
      const sid = init.headers.get('mcp-session-id');
      assert.ok(sid);
      await init.body?.cancel();
      const call = (auth) => fetch(`http://127.0.0.1:${s.port}/mcp`, {
        method: 'POST',
        headers: {
          ...(auth ? { authorization: auth } : {}),
          'mcp-session-id': sid,
          'mcp-protocol-version': '2025-06-18',
          'content-type': 'application/json',
          accept: 'application/json, text/event-stream',
        },
        body: rpc('tools/call', { name: 'whoami', arguments: {} }),
      });
      const without = await call();
      assert.equal(without.status, 401);
      await without.body?.cancel();
      const withToken = await call(`Bearer ${token}`);
      assert.equal(withToken.status, 200);
      const text = await withToken.text();
      assert.match(text, /upstream_token/);
      assert.deepEqual(s.upstreamTokens.map((e) => e.ok), [true, false, true]);
    } finally {
      await s.stop();
    }
  });
});

describe('gatewayConfig({ upstreamToken })', () => {
  const base = { port: 1234, issuer: 'http://127.0.0.1:5', jwksUrl: 'http://127.0.0.1:5/jwks' };
  it('adds exactly the upstream_token block to every resource, with the defaults', () => {
    for (const stepUp of ['tool', 'route']) {
      const c = gatewayConfig({ ...base, stepUp, upstreamToken: { tokenUrl: 'http://127.0.0.1:5/token' } });
      assert.ok(c.resources.length >= 1);
      for (const r of c.resources) {
        assert.deepEqual(r.upstream_token, {
          http_uri: { uri: 'http://127.0.0.1:5/token', cluster: 'as', timeout_ms: 2000 },
          client_id: EXCHANGE_CLIENT.client_id,
          client_secret: EXCHANGE_CLIENT.client_secret,
          client_auth: 'client_secret_basic',
          audience: [DEFAULT_UPSTREAM_AUDIENCE],
        });
      }
    }
  });
  it('honours every option; scope only when given; nothing without the option', () => {
    const c = gatewayConfig({
      ...base,
      upstreamToken: { tokenUrl: 'http://x/token', cluster: 'idp', client: { client_id: 'a', client_secret: 'b' }, clientAuth: 'client_secret_post', audience: ['u1', 'u2'], scope: BASE_SCOPE },
    });
    assert.deepEqual(c.resources[0].upstream_token, {
      http_uri: { uri: 'http://x/token', cluster: 'idp', timeout_ms: 2000 },
      client_id: 'a', client_secret: 'b', client_auth: 'client_secret_post', audience: ['u1', 'u2'], scope: BASE_SCOPE,
    });
    assert.equal(gatewayConfig({ ...base, upstreamToken: { tokenUrl: 'http://x/token', audience: 'one' } }).resources[0].upstream_token.audience[0], 'one');
    assert.equal('upstream_token' in gatewayConfig(base).resources[0], false);
    // The EXCHANGE_CLIENT default really is the AS's exchanger.
    assert.deepEqual(EXCHANGE_CLIENT, { client_id: 'mcp-edge-auth-exchanger', client_secret: 'exchanger-secret' });
  });
});
