// Per-caller discovery (issue 15), end to end, on every host: the Envoy proxy-wasm filter, the
// native Envoy module and the Worker (workerd). The gateway filters the upstream's answers to
// tools/list and prompts/list down to what the caller's token may call (the same `mcp.rules`
// and scope check as the request side).
//
// Real parts only: oidc-provider (demo/as.mjs) issues the tokens, the demo MCP server (official
// TypeScript SDK, demo/mcp-server.mjs) answers with JSON or SSE (`x-demo-sse`), pages
// (`x-demo-page-size`), grows its list (`x-demo-extra-tools`), delays it
// (`x-demo-list-delay-ms`), compresses it (`x-demo-gzip`), and streams `ticker` notifications;
// the client is the MCP SDK (demo/client.mjs) or raw HTTP. Every case compares what the client
// gets through the gateway with what the same request gets from the MCP server directly.
//
// The gateway config is the demo's (demo/config.mjs: tools/call of admin_reset needs
// mcp:admin), with two more rules (tools/call of tool_1*, prompts/get of admin_*) and two more
// resources on the same MCP server: /small/mcp (mcp.max_list_bytes 1024) and /open/mcp
// (mcp.filter_lists false).
//
// LIST_HOSTS=wasm,wasm-stock,module,worker runs only those (all by default).
import dns from 'node:dns';
import { readFileSync } from 'node:fs';
import { request } from 'node:http';
import { gunzipSync } from 'node:zlib';
import { performance } from 'node:perf_hooks';
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';

import { startAuthServer, requestToken, CLIENTS } from '../../demo/as.mjs';
import { startMcpServer } from '../../demo/mcp-server.mjs';
import { BASE_SCOPE, PRIVILEGED_SCOPE, PRIVILEGED_TOOL, gatewayConfig, urls } from '../../demo/config.mjs';
import { connect } from '../../demo/client.mjs';
import { freePort, waitFor } from '../lib/proc.mjs';
import { startHost as startEnvoy } from '../envoy/launch.mjs';
import { startHost as startModule } from '../envoy-module/launch.mjs';
import { startWorkerd } from '../workers/launch.mjs';

dns.setDefaultResultOrder('ipv4first');

const ADMIN_SCOPES = `${BASE_SCOPE} ${PRIVILEGED_SCOPE}`;
const PRIVILEGED_PROMPT = 'admin_notes';
const UNFILTERABLE = -32603;
// A case that hangs fails on its own instead of holding the run.
const T = { timeout: 30_000 };
const REFUSAL = 'The gateway did not forward this list';
// The shapes of an answer: one JSON body, or an SSE stream (the demo server's x-demo-sse).
const SHAPES = [['JSON', {}], ['SSE', { 'x-demo-sse': '1' }]];

const msg = (method, params = {}, id = 1) => ({ jsonrpc: '2.0', id, method, params });

/** Hidden from a token without mcp:admin by the test config's rules. */
const hiddenTool = (name) => name === PRIVILEGED_TOOL || /^tool_1/.test(name);
const hiddenPrompt = (name) => name.startsWith('admin_');

/** The SSE events of a text: { text, data } (data: the data lines joined, as EventSource does). */
function sseEvents(text) {
  return text.split(/\r?\n\r?\n/).filter((e) => e.trim() !== '').map((e) => {
    const lines = e.split(/\r?\n/);
    const data = lines.filter((l) => l.startsWith('data:')).map((l) => l.slice(5).replace(/^ /, '')).join('\n');
    return { text: e, lines, data };
  });
}

/**
 * One POST; resolves when the answer is complete. `events`: for an SSE answer, each event with
 * the time (ms since the request was sent) its blank line arrived.
 */
function post(url, { headers = {}, body, host }) {
  const u = new URL(url);
  const flat = ['host', host ?? u.host];
  for (const [k, v] of Object.entries(headers)) flat.push(k, v);
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const events = [];
    const req = request({ host: u.hostname, port: u.port, path: u.pathname, method: 'POST', headers: flat }, (res) => {
      const chunks = [];
      let pending = '';
      const sse = (res.headers['content-type'] ?? '').startsWith('text/event-stream') && !res.headers['content-encoding'];
      res.on('data', (c) => {
        chunks.push(c);
        if (!sse) return;
        pending += c.toString();
        for (let m = /\r?\n\r?\n/.exec(pending); m; m = /\r?\n\r?\n/.exec(pending)) {
          events.push({ at: performance.now() - t0, text: pending.slice(0, m.index) });
          pending = pending.slice(m.index + m[0].length);
        }
      });
      res.on('end', () => {
        const raw = Buffer.concat(chunks);
        resolve({ status: res.statusCode, headers: res.headers, raw, text: raw.toString(), events, took: performance.now() - t0 });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.setTimeout(10_000, () => req.destroy(new Error(`request timed out: ${url}`)));
    req.end(typeof body === 'string' ? body : JSON.stringify(body));
  });
}

/** The JSON-RPC messages of an answer (JSON or SSE; a batch flattened). */
function messagesOf(r) {
  const ct = r.headers['content-type'] ?? '';
  let text = r.text;
  if (r.headers['content-encoding'] === 'gzip') text = gunzipSync(r.raw).toString();
  if (ct.startsWith('text/event-stream')) {
    return sseEvents(text).filter((e) => e.data !== '').flatMap((e) => [JSON.parse(e.data)].flat());
  }
  assert.ok(ct.startsWith('application/json'), `content-type ${ct}: ${text.slice(0, 300)}`);
  return [JSON.parse(text)].flat();
}

const byId = (messages) => new Map(messages.filter((m) => m.id !== undefined).map((m) => [m.id, m]));
const toolNames = (m) => m.result.tools.map((t) => t.name);
const promptNames = (m) => m.result.prompts.map((p) => p.name);

/** What the caller without mcp:admin should get instead of the direct answer `m`. */
function filteredForReader(m) {
  if (!m.result) return m;
  const r = { ...m.result };
  if (Array.isArray(r.tools)) r.tools = r.tools.filter((t) => !hiddenTool(t.name));
  if (Array.isArray(r.prompts)) r.prompts = r.prompts.filter((p) => !hiddenPrompt(p.name));
  return { ...m, result: r };
}

const cacheTokens = (h) => String(h['cache-control'] ?? '').toLowerCase().split(',').map((s) => s.trim()).filter(Boolean);
const median = (xs) => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)]; };

/** The body's length agrees with content-length when there is one. */
function assertLength(r) {
  if (r.headers['content-length'] !== undefined) assert.equal(Number(r.headers['content-length']), r.raw.length, 'content-length is the body\'s length');
}

/** A refusal: HTTP 200, for each of `ids` a -32603 error, nothing of the list. */
function assertRefused(r, ids, { batch = false } = {}) {
  assert.equal(r.status, 200, r.text);
  assert.notEqual(r.headers['content-encoding'], 'gzip', 'no compressed bytes forwarded');
  assert.ok(!(r.raw[0] === 0x1f && r.raw[1] === 0x8b), 'no gzip stream forwarded');
  assertLength(r);
  const ct = r.headers['content-type'] ?? '';
  if (ct.startsWith('application/json')) {
    const body = JSON.parse(r.text);
    assert.equal(Array.isArray(body), batch, `a batch is answered by an array: ${r.text}`);
  }
  const got = messagesOf(r);
  const m = byId(got);
  for (const id of ids) {
    const e = m.get(id);
    assert.ok(e, `an answer for id ${id}: ${r.text}`);
    assert.equal(e.jsonrpc, '2.0');
    assert.equal(e.result, undefined, 'no result');
    assert.equal(e.error?.code, UNFILTERABLE, r.text);
    assert.ok(String(e.error?.message).startsWith(REFUSAL), e.error?.message);
  }
  for (const name of ['whoami', 'echo', 'tool_0', 'tool_50', PRIVILEGED_TOOL, 'greeting']) {
    assert.ok(!r.text.includes(`"${name}"`), `${name} leaked: ${r.text.slice(0, 300)}`);
  }
}

/**
 * @param {string} hostName
 * @param {(o: object) => Promise<{stop(): Promise<void>}>} startHost
 */
function listsSuite(hostName, startHost) {
  describe(`${hostName}: per-caller discovery (list answers filtered by the caller's token)`, () => {
    let as;
    let mcp;
    let host;
    let port;
    let u;
    let small;
    let open;
    const tokens = {};

    /** POST to the gateway (`path` of its origin) with `token`. */
    const viaGateway = (path, token, body, headers = {}) => post(`${u.base}${path}`, {
      host: `localhost:${port}`,
      headers: {
        authorization: `Bearer ${token}`,
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
        ...headers,
      },
      body,
    });
    /** The host's log so far (Envoy: a function; workerd: the file's path). */
    const hostLog = () => (typeof host.log === 'function' ? host.log() : readFileSync(host.log, 'utf8'));
    /** The same POST straight to the MCP server (no token: it does no authorization). */
    const direct = (path, body, headers = {}) => post(`http://127.0.0.1:${mcp.port}${path}`, {
      headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', ...headers },
      body,
    });
    const token = async (resource, scope) => {
      const t = await requestToken(as.tokenUrl, { client: CLIENTS.demo, resource, scope });
      assert.equal(t.status, 200, JSON.stringify(t));
      return t.access_token;
    };
    const sdk = (headers, scope) => connect(u.resource, {
      clientId: CLIENTS.demo.client_id, clientSecret: CLIENTS.demo.client_secret, scope, expectedIssuer: as.issuer, headers,
    });

    before(async () => {
      port = await freePort();
      u = urls(port);
      small = `${u.origin}/small/mcp`;
      open = `${u.origin}/open/mcp`;
      as = await startAuthServer({ resources: [u.resource, small, open] });
      mcp = await startMcpServer({
        privilegedPaths: ['/mcp', '/small/mcp', '/open/mcp'], paths: ['/small/mcp', '/open/mcp'], tickerTool: true, prompts: true,
      });
      const config = gatewayConfig({ port, issuer: as.issuer, jwksUrl: as.jwksUrl });
      const main = config.resources[0];
      main.mcp.rules.push(
        { method: 'tools/call', name: 'tool_1*', scopes: [PRIVILEGED_SCOPE] },
        { method: 'prompts/get', name: 'admin_*', scopes: [PRIVILEGED_SCOPE] },
      );
      config.resources.push(
        { ...main, resource: small, resource_name: 'demo (small lists)', mcp: { ...main.mcp, max_list_bytes: 1024 } },
        { ...main, resource: open, resource_name: 'demo (lists unfiltered)', mcp: { ...main.mcp, filter_lists: false } },
      );
      host = await startHost({ port, config, jwksPort: as.port, upstreamPort: mcp.port });
      tokens.read = await token(u.resource, BASE_SCOPE);
      tokens.admin = await token(u.resource, ADMIN_SCOPES);
      tokens.smallRead = await token(small, BASE_SCOPE);
      tokens.openRead = await token(open, BASE_SCOPE);
      // Warm up (keys fetched, every worker's first request behind us).
      for (let i = 0; i < 4; i += 1) await viaGateway('/mcp', tokens.read, msg('tools/call', { name: 'echo', arguments: { text: 'warm' } }));
    });

    after(async () => {
      await host?.stop();
      await mcp?.stop();
      await as?.stop();
    });

    for (const [shape, headers] of SHAPES) {
      it(`the SDK client lists every tool and prompt but the privileged ones with mcp:read, all of them with mcp:admin (${shape})`, T, async () => {
        const all = toolNames(messagesOf(await direct('/mcp', msg('tools/list'), headers))[0]);
        assert.ok(all.includes(PRIVILEGED_TOOL) && all.includes('ticker'), `direct: ${all}`);
        for (const [scope, expected, expectedPrompts] of [
          [BASE_SCOPE, all.filter((n) => !hiddenTool(n)), ['greeting']],
          [ADMIN_SCOPES, all, ['greeting', PRIVILEGED_PROMPT]],
        ]) {
          const c = await sdk(headers, scope);
          try {
            assert.deepEqual((await c.client.listTools()).tools.map((t) => t.name), expected, scope);
            assert.deepEqual((await c.client.listPrompts()).prompts.map((p) => p.name), expectedPrompts, scope);
          } finally {
            await c.close();
          }
        }
      });

      it(`raw tools/list: 200, private, a true content-length, the upstream asked for identity (${shape})`, T, async () => {
        const d = await direct('/mcp', msg('tools/list'), headers);
        mcp.clear();
        const r = await viaGateway('/mcp', tokens.read, msg('tools/list'), { ...headers, 'accept-encoding': 'gzip, br' });
        assert.equal(r.status, 200, r.text);
        assert.ok(cacheTokens(r.headers).includes('private'), `cache-control: ${r.headers['cache-control']}`);
        assert.ok(!cacheTokens(r.headers).includes('public'), `cache-control: ${r.headers['cache-control']}`);
        assertLength(r);
        if (shape === 'SSE') assert.equal(r.headers['content-length'], undefined, 'an SSE answer has no content-length');
        assert.equal(r.headers['content-type'], d.headers['content-type']);
        const [m] = messagesOf(r);
        assert.deepEqual(m, filteredForReader(messagesOf(d)[0]), 'the answer, without admin_reset, otherwise as the MCP server sent it');
        assert.ok(!toolNames(m).includes(PRIVILEGED_TOOL));
        assert.equal(mcp.seen.length, 1);
        assert.equal(mcp.seen[0].headers['accept-encoding'], 'identity', 'the client\'s accept-encoding was replaced');
      });

      it(`a batch: each list answer filtered, the other answers untouched (${shape})`, T, async () => {
        const batch = [
          msg('tools/list', {}, 1),
          msg('prompts/list', {}, 2),
          msg('tools/call', { name: 'echo', arguments: { text: 'in a batch' } }, 3),
          msg('tools/list', {}, 'four'),
        ];
        const d = byId(messagesOf(await direct('/mcp', batch, headers)));
        assert.equal(d.size, 4, 'the SDK server answers a batch');
        const r = await viaGateway('/mcp', tokens.read, batch, headers);
        assert.equal(r.status, 200, r.text);
        assertLength(r);
        if (shape === 'JSON') assert.ok(Array.isArray(JSON.parse(r.text)), 'still an array');
        const g = byId(messagesOf(r));
        assert.deepEqual([...g.keys()].sort(), [...d.keys()].sort());
        for (const id of [1, 2, 'four']) assert.deepEqual(g.get(id), filteredForReader(d.get(id)), `answer ${id}`);
        assert.deepEqual(g.get(3), d.get(3), 'the tools/call answer');
        assert.ok(!toolNames(g.get(1)).includes(PRIVILEGED_TOOL) && !toolNames(g.get('four')).includes(PRIVILEGED_TOOL));
        assert.deepEqual(promptNames(g.get(2)), ['greeting']);
        // With mcp:admin nothing is removed.
        const a = byId(messagesOf(await viaGateway('/mcp', tokens.admin, batch, headers)));
        for (const id of [1, 2, 3, 'four']) assert.deepEqual(a.get(id), d.get(id), `answer ${id} (mcp:admin)`);
      });

      it(`nextCursor pagination goes on through the gateway: the pages' union is what the token may call (${shape})`, T, async () => {
        const pageHeaders = { ...headers, 'x-demo-page-size': '4', 'x-demo-extra-tools': '25' };
        const directPages = [];
        for (let cursor; ;) {
          const [m] = messagesOf(await direct('/mcp', msg('tools/list', cursor === undefined ? {} : { cursor }), pageHeaders));
          directPages.push(m.result);
          cursor = m.result.nextCursor;
          if (cursor === undefined) break;
        }
        const all = directPages.flatMap((p) => p.tools.map((t) => t.name));
        assert.ok(all.length > 25 && directPages.length > 5);
        for (const [scope, expected] of [[BASE_SCOPE, all.filter((n) => !hiddenTool(n))], [ADMIN_SCOPES, all]]) {
          const c = await sdk(pageHeaders, scope);
          try {
            const names = [];
            const cursors = [];
            for (let cursor; ;) {
              const page = await c.client.listTools(cursor === undefined ? {} : { cursor });
              names.push(...page.tools.map((t) => t.name));
              cursors.push(page.nextCursor);
              cursor = page.nextCursor;
              if (cursor === undefined) break;
            }
            assert.deepEqual(names, expected, scope);
            assert.deepEqual(cursors, directPages.map((p) => p.nextCursor), 'the same pages, the same cursors');
          } finally {
            await c.close();
          }
        }
      });

      it(`a tools/call answer is untouched and not made private (${shape})`, T, async () => {
        const body = msg('tools/call', { name: 'echo', arguments: { text: 'héllo, "world"' } }, 9);
        const d = await direct('/mcp', body, headers);
        const r = await viaGateway('/mcp', tokens.read, body, headers);
        assert.equal(r.status, 200, r.text);
        assert.deepEqual(messagesOf(r), messagesOf(d));
        assert.equal(messagesOf(r)[0].result.content[0].text, 'héllo, "world"');
        assert.ok(!cacheTokens(r.headers).includes('private'), `cache-control: ${r.headers['cache-control']}`);
        assert.deepEqual(cacheTokens(r.headers), cacheTokens(d.headers));
        assertLength(r);
      });

      it(`a list over mcp.max_list_bytes is never forwarded: a -32603 error for its id (${shape})`, T, async () => {
        const big = { ...headers, 'x-demo-extra-tools': '100' };
        const d = await direct('/small/mcp', msg('tools/list', {}, 5), big);
        assert.ok(d.raw.length > 1024 && messagesOf(d)[0].result.tools.length === 105, `direct: ${d.raw.length} bytes`);
        const r = await viaGateway('/small/mcp', tokens.smallRead, msg('tools/list', {}, 5), big);
        assertRefused(r, [5]);
        if (shape === 'SSE') {
          assert.ok(r.headers['content-type'].startsWith('text/event-stream'), r.headers['content-type']);
          assert.equal(sseEvents(r.text).length, 1, `one error event, nothing after it: ${r.text}`);
        }
        // A batch of two: an array of two errors.
        const rb = await viaGateway('/small/mcp', tokens.smallRead, [msg('tools/list', {}, 1), msg('tools/list', {}, 2)], big);
        assertRefused(rb, [1, 2], { batch: shape === 'JSON' });
        // The operator learns why, once per answer, in the host's log; nothing of the list.
        await waitFor(() => /a list answer was not forwarded \(too_large\): larger than mcp\.max_list_bytes \(1024\)/.test(hostLog()),
          { ms: 3000, what: 'the refusal in the log' });
        assert.ok(!/tool_42|"tools"/.test(hostLog()), 'no list content in the log');
        // A list under the limit on the same resource is filtered as usual.
        const p = await viaGateway('/small/mcp', tokens.smallRead, msg('prompts/list'), headers);
        assert.equal(p.status, 200, p.text);
        assert.deepEqual(promptNames(messagesOf(p)[0]), ['greeting']);
      });

      it(`a compressed list (the MCP server gzips whatever it is asked) is never forwarded: a -32603 error (${shape})`, T, async () => {
        const gz = { ...headers, 'x-demo-gzip': '1' };
        const d = await direct('/mcp', msg('tools/list', {}, 6), gz);
        assert.equal(d.headers['content-encoding'], 'gzip');
        assert.ok(toolNames(messagesOf(d)[0]).includes(PRIVILEGED_TOOL));
        const r = await viaGateway('/mcp', tokens.read, msg('tools/list', {}, 6), gz);
        assertRefused(r, [6]);
        // Not a list: forwarded as it came (compressed or not, the result is intact).
        const e = await viaGateway('/mcp', tokens.read, msg('tools/call', { name: 'echo', arguments: { text: 'zipped' } }, 7), gz);
        assert.equal(e.status, 200);
        assert.equal(messagesOf(e)[0].result.content[0].text, 'zipped');
      });

      it(`mcp.filter_lists false: the list passes as the MCP server sent it (${shape})`, T, async () => {
        const d = await direct('/open/mcp', msg('tools/list'), headers);
        const r = await viaGateway('/open/mcp', tokens.openRead, msg('tools/list'), headers);
        assert.equal(r.status, 200, r.text);
        assert.deepEqual(messagesOf(r), messagesOf(d));
        assert.ok(toolNames(messagesOf(r)[0]).includes(PRIVILEGED_TOOL), 'admin_reset visible to a mcp:read token');
      });
    }

    it('SSE: events before the list answer pass at once and unchanged; then the list answer is filtered', T, async (t) => {
      const headers = { 'x-demo-sse': '1', 'x-demo-list-delay-ms': '150' };
      const batch = [msg('tools/call', { name: 'ticker', arguments: { count: 3, interval_ms: 25 } }, 1), msg('tools/list', {}, 2)];
      const ttfe = { direct: [], gateway: [] };
      let d;
      let g;
      for (let i = 0; i < 7; i += 1) {
        d = await direct('/mcp', batch, headers);
        g = await viaGateway('/mcp', tokens.read, batch, headers);
        assert.equal(g.status, 200, g.text);
        assert.ok(d.events.length >= 5 && g.events.length >= 5, `events: direct ${d.events.length}, gateway ${g.events.length}`);
        ttfe.direct.push(d.events[0].at);
        ttfe.gateway.push(g.events[0].at);
      }
      const de = d.events.map((e) => sseEvents(e.text)[0]);
      const ge = g.events.map((e) => sseEvents(e.text)[0]);
      // The ticks and the ticker's result come first, as they were sent (byte for byte).
      const listAt = de.findIndex((e) => e.data.includes('"tools"'));
      assert.equal(listAt, de.length - 1, 'the list answer is the last event');
      assert.equal(ge.length, de.length);
      for (let i = 0; i < listAt; i += 1) assert.equal(ge[i].text, de[i].text, `event ${i} unchanged`);
      assert.ok(de[0].data.includes('notifications/message') && de[0].data.includes('tick 1 of 3'));
      // …and they were not held for the list answer (150 ms later).
      const late = median(ttfe.gateway) - median(ttfe.direct);
      t.diagnostic(`time to first event, median of 7: direct ${median(ttfe.direct).toFixed(1)} ms, gateway ${median(ttfe.gateway).toFixed(1)} ms`);
      assert.ok(late <= 10, `first event ${late.toFixed(1)} ms later through the gateway (direct ${ttfe.direct.map((x) => x.toFixed(1))}, gateway ${ttfe.gateway.map((x) => x.toFixed(1))})`);
      assert.ok(median(ttfe.gateway) < 100, `the first event came after ${median(ttfe.gateway).toFixed(1)} ms, not before the list (150 ms)`);
      // The list answer, filtered.
      assert.deepEqual(JSON.parse(ge[listAt].data), filteredForReader(JSON.parse(de[listAt].data)));
      assert.ok(ge[listAt].lines.every((l) => !l.startsWith('data:') || l.startsWith('data: ')));
      assert.ok(cacheTokens(g.headers).includes('private'), `cache-control: ${g.headers['cache-control']}`);
      assert.equal(g.headers['content-length'], undefined);
    });
  });
}

// wasm-stock: the proxy-wasm filter as a stock Istio WasmPlugin / Envoy Gateway runs it (no
// allow_on_headers_stop_iteration: the request headers go on before the body is read).
const only = (process.env.LIST_HOSTS ?? 'wasm,wasm-stock,module,worker').split(',');
if (only.includes('wasm')) listsSuite('Envoy (proxy-wasm)', startEnvoy);
if (only.includes('wasm-stock')) listsSuite('Envoy (proxy-wasm, stock Wasm plugin settings)', (o) => startEnvoy({ ...o, allowOnHeadersStopIteration: false }));
if (only.includes('module')) listsSuite('Envoy (dynamic module)', startModule);
if (only.includes('worker')) listsSuite('Worker (workerd)', startWorkerd);
