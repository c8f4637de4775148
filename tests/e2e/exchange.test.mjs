// Token exchange toward the MCP server (issue 14, RFC 8693), end to end, on every host: the
// Envoy proxy-wasm filter, the native Envoy module and the Worker (workerd).
//
// Real parts only: oidc-provider (demo/as.mjs with `exchange: true`) issues the client's token
// for the public resource and, at its token endpoint, exchanges it for a JWT whose `aud` is the
// MCP server's internal audience; the demo MCP server (official TypeScript SDK) REQUIRES such a
// token and verifies it with `jose` (signature against the AS's JWKS, issuer, audience, exp);
// the client is the MCP SDK (demo/client.mjs) or raw HTTP. What a user sees is asserted: the
// status and headers the client gets, what reached the MCP server, what reached the AS.
import dns from 'node:dns';
import { readFileSync } from 'node:fs';
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';

import { startAuthServer, requestToken, CLIENTS, EXCHANGE_CLIENT } from '../../demo/as.mjs';
import { startMcpServer } from '../../demo/mcp-server.mjs';
import { BASE_SCOPE, DEFAULT_UPSTREAM_AUDIENCE, gatewayConfig, urls, resourcesOf } from '../../demo/config.mjs';
import { connect } from '../../demo/client.mjs';
import { freePort, sleep, parseChallenge } from '../lib/proc.mjs';
import { send } from '../lib/http.mjs';
import { startHost as startEnvoy } from '../envoy/launch.mjs';
import { startHost as startModule } from '../envoy-module/launch.mjs';
import { startWorkerd } from '../workers/launch.mjs';

dns.setDefaultResultOrder('ipv4first');

const rpc = (method, params = {}, id = 1) => JSON.stringify({ jsonrpc: '2.0', id, method, params });
const INIT = rpc('initialize', { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'raw', version: '1' } });

/**
 * @param {string} hostName
 * @param {(o: object) => Promise<{stop(): Promise<void>, stats?: () => Promise<object>, logFile?: string, log: any}>} startHost
 */
function exchangeSuite(hostName, startHost, { perWorker = false } = {}) {
  // The proxy-wasm filter runs one VM per Envoy worker, each with its own exchange state
  // (like its token cache): at most one exchange per token per worker (the launcher runs 2).
  // The native module and the Worker share one per process / isolate.
  const most = perWorker ? 2 : 1;
  const atMost = (made, what) => assert.ok(made.length >= 1 && made.length <= most, `${what}: ${made.length} exchanges (at most ${most})`);
  describe(`${hostName}: the upstream gets its own token (RFC 8693 token exchange at oidc-provider)`, () => {
    let as;
    let asStopped = false;
    let mcp;
    let host;
    let port;
    let u;
    const clientTokens = [];
    // Every exchanged token the MCP server received (mcp.clear() forgets them).
    const exchangedTokens = [];
    const clear = () => {
      for (const t of mcp.upstreamTokens) if (t.token) exchangedTokens.push(t.token);
      mcp.clear();
    };
    const exchangesSince = (n) => as.exchanges.slice(n);
    const call = (token, body = INIT) => send(`${u.base}/mcp`, {
      method: 'POST',
      headers: [
        ['host', `localhost:${port}`],
        ['authorization', `Bearer ${token}`],
        ['content-type', 'application/json'],
        ['accept', 'application/json, text/event-stream'],
      ],
      body,
    });
    const newToken = async () => {
      const t = await requestToken(as.tokenUrl, { client: CLIENTS.demo, resource: u.resource, scope: BASE_SCOPE });
      assert.equal(t.status, 200, JSON.stringify(t));
      clientTokens.push(t.access_token);
      return t.access_token;
    };

    before(async () => {
      port = await freePort();
      u = urls(port);
      as = await startAuthServer({ resources: resourcesOf(port), exchange: true });
      mcp = await startMcpServer({ upstreamToken: { jwksUrl: as.jwksUrl, issuer: as.issuer, audience: DEFAULT_UPSTREAM_AUDIENCE } });
      const config = gatewayConfig({
        port,
        issuer: as.issuer,
        jwksUrl: as.jwksUrl,
        upstreamToken: { tokenUrl: as.tokenUrl, cluster: 'as', client: EXCHANGE_CLIENT },
      });
      host = await startHost({ port, config, jwksPort: as.port, upstreamPort: mcp.port, clusters: { as: as.port } });
    });

    after(async () => {
      await host?.stop();
      await mcp?.stop();
      if (!asStopped) await as?.stop();
    });

    it('the SDK client lists and calls tools; the MCP server verified a token issued for it (aud, act) and never saw the client\'s', async () => {
      clear();
      const before = as.exchanges.length;
      const c = await connect(u.resource, { clientId: CLIENTS.demo.client_id, clientSecret: CLIENTS.demo.client_secret, scope: BASE_SCOPE, expectedIssuer: as.issuer });
      let who;
      try {
        const names = (await c.client.listTools()).tools.map((t) => t.name);
        assert.ok(names.includes('whoami'), `tools: ${names}`);
        assert.deepEqual((await c.client.callTool({ name: 'add', arguments: { a: 2, b: 40 } })).structuredContent, { sum: 42 });
        who = (await c.client.callTool({ name: 'whoami', arguments: {} })).structuredContent;
      } finally {
        await c.close();
      }
      const tok = c.log.find((e) => e.url === as.tokenUrl && e.status === 200);
      assert.ok(tok, 'the client got its token from the AS');
      const clientToken = tok.responseJson.access_token;
      clientTokens.push(clientToken);

      // What the MCP server verified for the very request that carried whoami.
      assert.equal(who.upstream_token.aud, DEFAULT_UPSTREAM_AUDIENCE);
      assert.equal(who.upstream_token.sub, CLIENTS.demo.client_id);
      assert.equal(who.upstream_token.act?.sub, EXCHANGE_CLIENT.client_id, 'act names the gateway (RFC 8693 §4.1)');
      assert.equal(who.subject, CLIENTS.demo.client_id, 'the verified claims still reach it as headers');
      // Every request that reached the MCP server carried a token it verified, never the client's.
      assert.ok(mcp.upstreamTokens.length >= 3, `${mcp.upstreamTokens.length} requests`);
      for (const t of mcp.upstreamTokens) {
        assert.equal(t.ok, true, `refused upstream: ${t.reason}`);
        assert.notEqual(t.token, clientToken, 'the client\'s token reached the MCP server');
      }
      for (const r of mcp.seen) assert.ok(!JSON.stringify(r).includes(clientToken), 'the client\'s token appears in what the MCP server received');
      // One session, one token: one exchange.
      const made = exchangesSince(before);
      atMost(made, 'one session, one token');
      assert.equal(made[0].outcome, 'issued');
      assert.deepEqual(made[0].audience, [DEFAULT_UPSTREAM_AUDIENCE]);
      assert.equal(made[0].client_id, EXCHANGE_CLIENT.client_id);
    });

    it('one exchange serves many requests with the same token (the exchange cache)', async () => {
      const t = await newToken();
      const before = as.exchanges.length;
      for (let i = 0; i < 10; i += 1) {
        const r = await call(t);
        assert.equal(r.status, 200, r.body);
      }
      atMost(exchangesSince(before), '10 requests with one token');
    });

    it('concurrent first requests with a new token share one exchange', async () => {
      const t = await newToken();
      const before = as.exchanges.length;
      as.exchangeFault('delay', 400);
      try {
        const results = await Promise.all(Array.from({ length: 8 }, () => call(t)));
        for (const r of results) assert.equal(r.status, 200, r.body);
      } finally {
        as.exchangeFault(null);
      }
      atMost(exchangesSince(before), '8 concurrent requests with one new token');
    });

    it('an exchanged token that expires is exchanged again (never reused past expires_in)', async () => {
      as.setExchangeTtl(2);
      try {
        const t = await newToken();
        const before = as.exchanges.length;
        assert.equal((await call(t)).status, 200);
        assert.equal((await call(t)).status, 200);
        const first = exchangesSince(before).length;
        atMost(exchangesSince(before), 'two requests');
        await sleep(2100);
        clear();
        const r = await call(t);
        assert.equal(r.status, 200, r.body);
        assert.equal(exchangesSince(before).length, first + 1, 'a new exchange once the first token expired');
        assert.equal(mcp.upstreamTokens.at(-1)?.ok, true, 'the MCP server accepted the fresh token');
      } finally {
        as.setExchangeTtl(300);
      }
    });

    it('the AS refuses the exchange: 401 invalid_token (invalid_grant) or 403 (invalid_target), fixed text, nothing upstream', async () => {
      for (const [code, status] of [['invalid_grant', 401], ['invalid_target', 403]]) {
        const t = await newToken();
        clear();
        as.exchangeFault('refuse', code);
        let r;
        try {
          r = await call(t);
        } finally {
          as.exchangeFault(null);
        }
        assert.equal(r.status, status, `${code}: ${r.status} ${r.body}`);
        assert.ok(!r.body.includes('exchangeFault'), 'the AS\'s error_description is not repeated');
        if (status === 401) {
          const ch = parseChallenge(r.headers['www-authenticate']);
          assert.equal(ch.params.error, 'invalid_token');
          assert.equal(ch.params.resource_metadata, u.prm);
        } else {
          assert.equal(JSON.parse(r.body).error, 'access_denied');
          assert.equal(r.headers['www-authenticate'], undefined, 'no step-up challenge');
        }
        assert.equal(mcp.seen.length, 0, 'nothing reached the MCP server');
      }
    });

    it('the token endpoint failing: 503 with a true Retry-After, no exchange until then, then recovery', async () => {
      const t = await newToken();
      clear();
      as.exchangeFault('status', 500);
      const before = as.exchanges.length;
      const r1 = await call(t);
      assert.equal(r1.status, 503, r1.body);
      assert.equal(r1.headers['retry-after'], '1');
      // Within the back-off: answered at once, the AS is not asked again.
      const r2 = await call(t);
      assert.equal(r2.status, 503);
      assert.ok(Number(r2.headers['retry-after']) >= 1);
      atMost(exchangesSince(before), 'attempts during the back-off');
      as.exchangeFault(null);
      await sleep(1100);
      const r3 = await call(t);
      assert.equal(r3.status, 200, `recovered after Retry-After: ${r3.body}`);
      assert.equal(mcp.seen.length, 1, 'only the recovered request reached the MCP server');
    });

    it('the token endpoint hanging: 503 after the exchange timeout, never a forward', async () => {
      const t = await newToken();
      clear();
      as.exchangeFault('hang');
      const started = Date.now();
      let r;
      try {
        r = await call(t);
      } finally {
        as.exchangeFault(null);
      }
      const took = Date.now() - started;
      assert.equal(r.status, 503, r.body);
      assert.ok(r.headers['retry-after'], 'Retry-After');
      assert.ok(took >= 1800 && took < 5500, `answered after ${took} ms (timeout_ms 2000)`);
      assert.equal(mcp.seen.length, 0);
      await sleep(Number(r.headers['retry-after']) * 1000 + 100);
    });

    it('the authorization server stopped: a new token gets 503 with Retry-After (its keys are cached), never a forward', async () => {
      const t = await newToken();
      await as.stop();
      asStopped = true;
      clear();
      const r = await call(t);
      assert.equal(r.status, 503, r.body);
      assert.ok(Number(r.headers['retry-after']) >= 1, 'Retry-After');
      assert.equal(JSON.parse(r.body).error, 'temporarily_unavailable');
      assert.equal(mcp.seen.length, 0, 'nothing reached the MCP server');
    });

    if (hostName !== 'Worker (workerd)') {
      it('the counters: exchanges ok / failed / cache hits', async () => {
        const s = await host.stats();
        assert.ok(s.token_exchange_ok >= 5, JSON.stringify(s));
        assert.ok(s.token_exchange_failed >= 4, JSON.stringify(s));
        assert.ok(s.token_exchange_cache_hit >= 9, JSON.stringify(s));
        assert.ok(s['requests_denied.exchange_unavailable'] >= 3, JSON.stringify(s));
        assert.ok(s['requests_denied.exchange_refused'] >= 2, JSON.stringify(s));
      });
    }

    it('no token, the client\'s or the exchanged one, appears in the host\'s log', () => {
      const text = typeof host.log === 'function' ? host.log() : readFileSync(host.log, 'utf8');
      assert.ok(text.length > 0, 'a log to look at');
      clear();
      const exchanged = [...new Set(exchangedTokens)];
      assert.ok(clientTokens.length >= 6 && exchanged.length >= 5);
      const check = (t, kind) => {
        const sig = t.split('.')[2] ?? t;
        const at = text.indexOf(sig);
        assert.equal(at, -1, `a ${kind} token was logged: …${text.slice(Math.max(0, at - 300), at).replaceAll(sig, '<sig>')}`);
      };
      for (const t of clientTokens) check(t, 'client');
      for (const t of exchanged) check(t, 'exchanged');
    });
  });
}

// EXCHANGE_HOSTS=wasm,module,worker runs only those (all by default).
const only = (process.env.EXCHANGE_HOSTS ?? 'wasm,module,worker').split(',');
if (only.includes('wasm')) exchangeSuite('Envoy (proxy-wasm)', startEnvoy, { perWorker: true });
if (only.includes('module')) exchangeSuite('Envoy (dynamic module)', startModule);
if (only.includes('worker')) exchangeSuite('Worker (workerd)', startWorkerd);
