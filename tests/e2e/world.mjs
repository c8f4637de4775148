// The end-to-end tier: real peers nobody on this project wrote, behind each gateway host.
//   authorization server  oidc-provider (demo/as.mjs): client credentials, RFC 8707 resource
//                         indicators, RS256 JWT access tokens, keys generated at start;
//   MCP server            @modelcontextprotocol/sdk Streamable HTTP (demo/mcp-server.mjs);
//   MCP client            @modelcontextprotocol/sdk Client + ClientCredentialsProvider
//                         (demo/client.mjs), which discovers everything from the 401.
//
// `e2eSuite(hostName, startHost)` runs the issue-5 scenarios against one host; the host is
// started with the launcher contract of tests/lib/conformance.mjs.
import dns from 'node:dns';
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { decodeJwt, decodeProtectedHeader } from 'jose';

import { startAuthServer, requestToken, CLIENTS, SHORT_TTL } from '../../demo/as.mjs';
import { startMcpServer } from '../../demo/mcp-server.mjs';
import {
  urls as baseUrls, resourcesOf as baseResourcesOf, gatewayConfig as baseGatewayConfig, privilegedPaths,
  BASE_SCOPE, PRIVILEGED_SCOPE, PRIVILEGED_TOOL,
} from '../../demo/config.mjs';
import { connect, challengeParams } from '../../demo/client.mjs';
import { freePort, sleep, parseChallenge } from '../lib/proc.mjs';
import { send } from '../lib/http.mjs';
import { makeKey, mint, nowSeconds } from '../lib/tokens.mjs';

// Clients use http://localhost:<port>/… (the resource must be exactly the URL they use, and
// the SDK compares origins exactly); the hosts listen on 127.0.0.1. Make sure `localhost`
// resolves to 127.0.0.1 first in this process (Node 20 may otherwise try ::1).
dns.setDefaultResultOrder('ipv4first');

/**
 * How the privileged tool is protected in the main suite (see demo/config.mjs):
 *   'route': /admin/mcp, a second resource whose required_scopes include mcp:admin (works on
 *            every host);
 *   'tool':  an `mcp.rules` entry for tools/call of the tool on /mcp. A host that supports
 *            per-tool rules also runs the step-up scenarios this way (e2eSuite's
 *            `perToolRules`). Once every host does, make 'tool' the default here (or set
 *            MCP_E2E_STEP_UP=tool): the scenarios stay the same, only the privileged tool's
 *            URL and the config change.
 */
export const STEP_UP_MODE = process.env.MCP_E2E_STEP_UP === 'route' ? 'route' : 'tool';

export const urls = (port) => baseUrls(port, STEP_UP_MODE);
export const resourcesOf = (port) => baseResourcesOf(port, STEP_UP_MODE);
export const gatewayConfig = (o) => baseGatewayConfig({ stepUp: STEP_UP_MODE, ...o });
export { BASE_SCOPE };

const bearer = (t) => [['authorization', `Bearer ${t}`], ['content-type', 'application/json'], ['accept', 'application/json, text/event-stream']];
const rpc = (method, params = {}) => JSON.stringify({ jsonrpc: '2.0', id: 1, method, params });
const INIT = rpc('initialize', { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'raw', version: '1' } });

/** Expects `p` (a client run) to fail with an HTTP status from the SDK. */
async function rejectsWithStatus(p, status) {
  await assert.rejects(p, (e) => {
    assert.equal(e.code, status, `want HTTP ${status} from the SDK, got: ${e.message}`);
    return true;
  });
}

/**
 * The step-up scenarios: the privileged tool needs PRIVILEGED_SCOPE. `mode` says how the
 * gateway protects it (see demo/config.mjs); `get()` gives the live { as, mcp, port }.
 */
function stepUpScenarios(title, mode, get, { headersReachUpstream = false } = {}) {
  describe(`${title}: ${PRIVILEGED_TOOL} needs ${PRIVILEGED_SCOPE} (${mode === 'tool' ? 'per-tool rule on /mcp' : 'route-level rule on /admin/mcp'})`, () => {
    let as;
    let mcp;
    let port;
    let u;
    const creds = (c, scope = BASE_SCOPE) => ({ clientId: c.client_id, clientSecret: c.client_secret, scope, expectedIssuer: as.issuer });
    before(() => {
      ({ as, mcp, port } = get());
      u = baseUrls(port, mode);
    });

    const callPrivileged = async (c) => {
      await c.client.connect(c.transport);
      return c.client.callTool({ name: PRIVILEGED_TOOL, arguments: {} });
    };

    it(`a token without ${PRIVILEGED_SCOPE} gets 403 insufficient_scope naming it`, async () => {
      // Raw: exactly what the gateway answers.
      const t = await requestToken(as.tokenUrl, { client: CLIENTS.demo, resource: new URL(u.privileged).href, scope: BASE_SCOPE });
      assert.equal(t.status, 200, JSON.stringify(t));
      mcp.clear();
      const path = new URL(u.privileged).pathname;
      const body = mode === 'tool' ? rpc('tools/call', { name: PRIVILEGED_TOOL, arguments: {} }) : INIT;
      const res = await send(`${u.base}${path}`, { method: 'POST', headers: [...bearer(t.access_token), ['host', `localhost:${port}`]], body });
      assert.equal(res.status, 403, res.body);
      const ch = parseChallenge(res.headers['www-authenticate']);
      assert.equal(ch.params.error, 'insufficient_scope');
      assert.ok(ch.params.scope.split(' ').includes(PRIVILEGED_SCOPE), `scope names ${PRIVILEGED_SCOPE}: ${ch.params.scope}`);
      assert.equal(ch.params.resource_metadata, u.privilegedPrm);
      if (mode === 'tool' && headersReachUpstream) {
        // A stock WasmPlugin: the token was checked on the headers, which went on; the body
        // was held until the rule refused it, and the upstream request was reset.
        assert.ok(mcp.seen.length <= 1, `at most the headers of the refused call reached the MCP server (${mcp.seen.length})`);
        assert.equal(mcp.calls.length, 0, 'the MCP server handled no call');
      } else {
        assert.equal(mcp.seen.length, 0, 'nothing reached the MCP server');
      }

      // The SDK client with the stock provider keeps asking for its configured scope, so it
      // ends with the 403 (after one re-authorization attempt).
      const c = await connect(u.privileged, { ...creds(CLIENTS.demo), connect: false });
      await rejectsWithStatus(callPrivileged(c), 403);
      assert.ok(c.log.some((e) => e.status === 403 && challengeParams(e.wwwAuthenticate).error === 'insufficient_scope'));
      await c.close();
      assert.ok(!mcp.calls.some((c) => c.name === PRIVILEGED_TOOL), 'the privileged tool was never called');
    });

    if (mode === 'tool') {
      it(`the other tools need only ${BASE_SCOPE}; the rule is per tool`, async () => {
        const c = await connect(u.resource, creds(CLIENTS.demo));
        const names = (await c.client.listTools()).tools.map((t) => t.name);
        // Per-caller discovery (mcp.filter_lists, on by default): the list shows only what
        // this token may call; calling the hidden tool anyway is still refused.
        assert.ok(!names.includes(PRIVILEGED_TOOL), `the privileged tool is hidden from a ${BASE_SCOPE} token: ${names}`);
        assert.ok(names.includes('whoami') && names.includes('echo'), `tools: ${names}`);
        assert.equal((await c.client.callTool({ name: 'whoami', arguments: {} })).structuredContent.subject, CLIENTS.demo.client_id);
        await rejectsWithStatus(c.client.callTool({ name: PRIVILEGED_TOOL, arguments: {} }), 403);
        await c.close();
      });
    }

    it('a client that steps up to the challenged scope gets a new token and the call succeeds', async () => {
      mcp.clear();
      const c = await connect(u.privileged, { ...creds(CLIENTS.demo), stepUp: true, connect: false });
      const result = await callPrivileged(c);
      assert.deepEqual(result.structuredContent, { reset: true, by: CLIENTS.demo.client_id });
      await c.close();
      assert.deepEqual(mcp.calls.filter((x) => x.name === PRIVILEGED_TOOL), [{ path: new URL(u.privileged).pathname, name: PRIVILEGED_TOOL, subject: CLIENTS.demo.client_id }]);
      const i403 = c.log.findIndex((e) => e.status === 403);
      assert.ok(i403 >= 0, 'a 403 came first');
      const stepTok = c.log.findIndex((e, i) => i > i403 && e.url === as.tokenUrl && e.status === 200);
      assert.ok(stepTok > i403, 'then a new token request');
      const scopes = new URLSearchParams(c.log[stepTok].requestBody).get('scope').split(' ');
      assert.ok(scopes.includes(PRIVILEGED_SCOPE), `the step-up asked for ${PRIVILEGED_SCOPE}`);
      assert.ok(decodeJwt(c.log[stepTok].responseJson.access_token).scope.split(' ').includes(PRIVILEGED_SCOPE));
    });

    it('a token that has the scope from the start works, and a client the AS will not grant it stays refused', async () => {
      const ok = await connect(u.privileged, { ...creds(CLIENTS.demo, `${BASE_SCOPE} ${PRIVILEGED_SCOPE}`), connect: false });
      assert.equal((await callPrivileged(ok)).structuredContent.reset, true);
      assert.ok(!ok.log.some((e) => e.status === 403));
      await ok.close();

      mcp.clear();
      const reader = await connect(u.privileged, { ...creds(CLIENTS.reader), stepUp: true, connect: false });
      await assert.rejects(callPrivileged(reader)); // the AS answers invalid_scope to the step-up
      await reader.close();
      assert.ok(!mcp.calls.some((c) => c.name === PRIVILEGED_TOOL), 'the privileged tool was never called');
    });
  });
}

/**
 * The issue-5 scenarios against one host.
 * @param {string} hostName
 * @param {(o:{port:number, config:object, jwksPort:number, upstreamPort:number}) => Promise<{stop():Promise<void>}>} startHost
 * @param {{perToolRules?: boolean, headersReachUpstream?: boolean}} opts perToolRules: the host
 *   supports `mcp.rules`, so the step-up scenarios also run with a per-tool rule (on a second
 *   gateway instance). headersReachUpstream: the host checks the token on the headers and lets
 *   them go before a per-tool rule has read the body (the Wasm filter as a stock Istio
 *   WasmPlugin runs it): a refused call's headers may reach the MCP server, its body never.
 */
export function e2eSuite(hostName, startHost, { perToolRules = false, headersReachUpstream = false } = {}) {
  describe(`${hostName}: end to end with oidc-provider and the MCP TypeScript SDK`, () => {
    let as;
    let mcp;
    let host;
    let port;
    let u;
    let foreignResource;
    const creds = (c, scope = BASE_SCOPE) => ({ clientId: c.client_id, clientSecret: c.client_secret, scope, expectedIssuer: as.issuer });
    let firstToken;

    before(async () => {
      port = await freePort();
      u = urls(port);
      foreignResource = `http://localhost:${await freePort()}/mcp`;
      as = await startAuthServer({ resources: [...resourcesOf(port), foreignResource] });
      mcp = await startMcpServer({ privilegedPaths: privilegedPaths(STEP_UP_MODE) });
      const config = gatewayConfig({
        port,
        issuer: as.issuer,
        jwksUrl: as.jwksUrl,
        // Short cooldown so the restart scenario is quick; no leeway so expiry is quick.
        remote: { refetch_cooldown_seconds: 1 },
        issuerFields: { clock_skew_seconds: 0 },
      });
      host = await startHost({ port, config, jwksPort: as.port, upstreamPort: mcp.port });
    });

    after(async () => {
      await host?.stop();
      await mcp?.stop();
      await as?.stop();
    });

    it('1. no token: 401, the client follows resource_metadata to the PRM and the AS, gets a token for the resource, lists and calls tools', async () => {
      const c = await connect(u.resource, creds(CLIENTS.demo));
      try {
        const { tools } = await c.client.listTools();
        const names = tools.map((t) => t.name);
        for (const n of ['whoami', 'echo', 'add']) assert.ok(names.includes(n), `tool ${n} listed (${names})`);
        const sum = await c.client.callTool({ name: 'add', arguments: { a: 2, b: 40 } });
        assert.deepEqual(sum.structuredContent, { sum: 42 });
        const echo = await c.client.callTool({ name: 'echo', arguments: { text: 'through the gateway' } });
        assert.equal(echo.content[0].text, 'through the gateway');
      } finally {
        await c.close();
      }

      // What the SDK did, step by step.
      const log = c.log;
      const at = (pred, what) => { const i = log.findIndex(pred); assert.ok(i >= 0, `${what} in ${JSON.stringify(log.map((e) => `${e.method} ${e.url} ${e.status}`))}`); return i; };
      const i401 = at((e) => e.url === u.resource && e.status === 401, 'first POST answered 401');
      assert.equal(log[i401].authorization, null, 'the first request carried no token');
      const ch = challengeParams(log[i401].wwwAuthenticate);
      assert.match(log[i401].wwwAuthenticate, /^Bearer /);
      assert.equal(ch.resource_metadata, u.prm);
      assert.equal(ch.scope, BASE_SCOPE);
      assert.equal(ch.error, undefined, 'no error parameter without credentials');

      const iPrm = at((e) => e.url === u.prm && e.status === 200, 'PRM fetched from resource_metadata');
      assert.ok(iPrm > i401);
      assert.equal(log[iPrm].responseJson.resource, u.resource, 'PRM resource is the URL the client used');
      assert.deepEqual(log[iPrm].responseJson.authorization_servers, [as.issuer]);

      const iMeta = at((e) => e.url.startsWith(`${as.issuer}/.well-known/`) && e.status === 200, 'AS metadata');
      assert.ok(iMeta > iPrm);
      const iTok = at((e) => e.url === as.tokenUrl, 'token request');
      assert.ok(iTok > iMeta);
      assert.equal(log[iTok].status, 200);
      const form = new URLSearchParams(log[iTok].requestBody);
      assert.equal(form.get('grant_type'), 'client_credentials');
      assert.equal(form.get('resource'), u.resource, 'RFC 8707 resource = the PRM resource');
      const token = log[iTok].responseJson.access_token;
      assert.equal(decodeProtectedHeader(token).typ, 'at+jwt');
      assert.equal(decodeJwt(token).aud, u.resource);
      firstToken = token;

      const iOk = at((e, i) => i > iTok && e.url === u.resource && e.status === 200, 'retried POST accepted');
      assert.equal(log[iOk].authorization, `Bearer ${token}`);
    });

    describe('2. tokens the gateway refuses (401 invalid_token), nothing reaches the MCP server', () => {
      async function refused(token) {
        mcp.clear();
        const res = await send(`${u.base}/mcp`, { method: 'POST', headers: [...bearer(token), ['host', `localhost:${port}`]], body: INIT });
        assert.equal(res.status, 401, res.body);
        const ch = parseChallenge(res.headers['www-authenticate']);
        assert.equal(ch.scheme, 'Bearer');
        assert.equal(ch.params.error, 'invalid_token');
        assert.equal(ch.params.resource_metadata, u.prm);
        assert.equal(mcp.seen.length, 0, 'nothing reached the MCP server');
      }

      it('a token the AS minted for another resource', async () => {
        const t = await requestToken(as.tokenUrl, { client: CLIENTS.demo, resource: foreignResource, scope: BASE_SCOPE });
        assert.equal(t.status, 200, JSON.stringify(t));
        assert.equal(decodeJwt(t.access_token).aud, foreignResource);
        await refused(t.access_token);
        // ... and through the SDK: its token has the other audience, so it can never connect.
        const c = await connect(u.resource, { ...creds(CLIENTS.demo), connect: false });
        await c.provider.saveTokens({ access_token: t.access_token, token_type: 'Bearer' });
        // The SDK re-authorizes on 401 and then succeeds with a proper token: the foreign
        // token was refused first.
        await c.client.connect(c.transport);
        assert.equal(c.log[0].status, 401);
        assert.equal(challengeParams(c.log[0].wwwAuthenticate).error, 'invalid_token');
        await c.close();
      });

      it('an expired token (a short-lived client)', async () => {
        const t = await requestToken(as.tokenUrl, { client: CLIENTS.shortLived, resource: u.resource, scope: BASE_SCOPE });
        assert.equal(t.status, 200, JSON.stringify(t));
        assert.equal(t.expires_in, SHORT_TTL);
        // Accepted while fresh (it lives SHORT_TTL seconds: at least one is left now) ...
        const { exp } = decodeJwt(t.access_token);
        mcp.clear();
        const fresh = await send(`${u.base}/mcp`, { method: 'POST', headers: [...bearer(t.access_token), ['host', `localhost:${port}`]], body: INIT });
        assert.equal(fresh.status, 200, `a fresh short-lived token is accepted: ${fresh.body}`);
        // ... refused once exp has passed (clock_skew_seconds is 0 in this config).
        const wait = (exp + 1) * 1000 - Date.now() + 50; // the same token: a cached verdict must not outlive exp
        if (wait > 0) await sleep(wait);
        await refused(t.access_token);
      });

      it('a token signed by a key the AS never had (its kid, and an unknown kid)', async () => {
        const claims = { iss: as.issuer, aud: u.resource, sub: CLIENTS.demo.client_id, client_id: CLIENTS.demo.client_id, scope: `${BASE_SCOPE} ${PRIVILEGED_SCOPE}` };
        const forger = await makeKey('RS256', as.kid);
        await refused(await mint(forger, claims));
        await sleep(1100); // past the refetch cooldown: the unknown kid triggers a refetch
        const stranger = await makeKey('RS256', 'never-published');
        await refused(await mint(stranger, claims));
      });
    });

    stepUpScenarios('3. step-up', STEP_UP_MODE, () => ({ as, mcp, port }), { headersReachUpstream });

    if (perToolRules && STEP_UP_MODE !== 'tool') {
      // The same scenarios with a per-tool rule (`mcp.rules`) on /mcp, on a second gateway.
      describe('3b. a second gateway, with a per-tool rule', () => {
        const w = {};
        before(async () => {
          w.port = await freePort();
          for (const r of baseResourcesOf(w.port, 'tool')) as.allowResource(r);
          w.mcp = await startMcpServer({ privilegedPaths: privilegedPaths('tool') });
          const config = baseGatewayConfig({ port: w.port, issuer: as.issuer, jwksUrl: as.jwksUrl, stepUp: 'tool' });
          w.host = await startHost({ port: w.port, config, jwksPort: as.port, upstreamPort: w.mcp.port });
        });
        after(async () => {
          await w.host?.stop();
          await w.mcp?.stop();
        });
        stepUpScenarios('3b', 'tool', () => ({ as, mcp: w.mcp, port: w.port }), { headersReachUpstream });
      });
    }

    it('4. the MCP server never sees a token, and sees the verified subject (client-sent copies replaced)', async () => {
      mcp.clear();
      const c = await connect(u.resource, { ...creds(CLIENTS.demo), headers: { 'x-mcp-subject': 'spoofed-admin', 'x-mcp-client-id': 'spoofed-client' } });
      const who = (await c.client.callTool({ name: 'whoami', arguments: {} })).structuredContent;
      await c.close();
      assert.equal(who.authorization_received, false, 'no Authorization header reached the server');
      assert.equal(who.subject, CLIENTS.demo.client_id, 'x-mcp-subject is the verified sub');
      assert.equal(who.client_id, CLIENTS.demo.client_id, 'x-mcp-client-id is the verified client_id');
      assert.ok(mcp.seen.length >= 2);
      const tokens = c.log.filter((e) => e.authorization).map((e) => e.authorization.slice(7));
      for (const r of mcp.seen) {
        assert.equal(r.headers.authorization, undefined, `${r.method} ${r.path}: no Authorization upstream`);
        assert.equal(r.headers['x-mcp-subject'], CLIENTS.demo.client_id);
        const all = JSON.stringify(r);
        for (const t of tokens) assert.ok(!all.includes(t), 'the token appears nowhere in what the server received');
        assert.ok(!all.includes('spoofed'), 'client-sent identity headers do not get through');
      }
    });

    it('5. the AS restarts with new keys: the gateway fetches the new JWKS (unknown kid) and new tokens work', async () => {
      const oldKid = as.kid;
      const asPort = as.port;
      await as.stop();
      as = await startAuthServer({ port: asPort, resources: [...resourcesOf(port), foreignResource] });
      assert.notEqual(as.kid, oldKid);
      await sleep(1100); // past refetch_cooldown_seconds (1)

      mcp.clear();
      const c = await connect(u.resource, creds(CLIENTS.demo));
      const who = (await c.client.callTool({ name: 'whoami', arguments: {} })).structuredContent;
      await c.close();
      assert.equal(who.subject, CLIENTS.demo.client_id);
      const tok = c.log.find((e) => e.url === as.tokenUrl && e.status === 200).responseJson.access_token;
      assert.equal(decodeProtectedHeader(tok).kid, as.kid, 'the new token is signed with the new key');

      // A token signed with the old key, which the AS no longer publishes, is refused now.
      // (On Envoy every worker VM adopts the key set another VM fetched on its next idle tick,
      // within 1 s, so a request landing on another worker may still pass for that long.)
      if (firstToken) {
        let res;
        for (let i = 0; i < 30; i += 1) {
          res = await send(`${u.base}/mcp`, { method: 'POST', headers: [...bearer(firstToken), ['host', `localhost:${port}`]], body: INIT });
          if (res.status === 401) break;
          await sleep(100);
        }
        assert.equal(res.status, 401, res.body);
      }
    });
  });
}
