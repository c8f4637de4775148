// The MCP server behind the gateways in the demo and the end-to-end tests, built with the
// official TypeScript SDK (`@modelcontextprotocol/sdk`, Streamable HTTP; stateless by
// default, or `--stateful`: sessions, and the GET SSE stream on which the server sends a
// `notifications/message` every `--tick-ms` (2000) to every open session). It does
// no authorization of its own: that is the gateway's job. It trusts the identity headers the
// gateway adds and reports what reached it, so tests can see what the gateway forwarded.
//
// Endpoints (both on one server; each gateway resource forwards its own path unchanged):
//   /mcp        tools: whoami, echo, add
//   /admin/mcp  the same, plus the privileged tool `admin_reset` (the gateway requires the
//               `mcp:admin` scope on this resource; see README "demo" and tests/e2e)
//
// With `upstreamToken` (off by default) the server does authorize, for the token-exchange
// scenarios (RFC 8693): every /mcp and /admin/mcp request must carry its OWN upstream token, a
// JWT the AS minted for the upstream audience (what the gateway gets by exchanging the
// client's token), or it is answered 401 before MCP sees it.
//
// For the per-caller discovery tests (tests/e2e/lists.test.mjs) a few more options, all off by
// default (then nothing changes); see `startMcpServer`:
//   sse          stateless POSTs are answered with an SSE stream instead of one JSON body
//   gzipAlways   every stateless POST answer is gzip-compressed, whatever accept-encoding says
//   extraTools   N more tools, tool_0 … tool_{N-1} (big lists)
//   pageSize     tools/list answers N tools a page, with `nextCursor`, and honours `params.cursor`
//   listDelayMs  tools/list answers after this many ms
//   tickerTool   the tool `ticker`: `notifications/message` events on the POST's SSE stream
//                (arguments count, interval_ms), then its result
//   prompts      prompts/list and prompts/get: prompts `greeting` and `admin_notes`
//   paths        more paths served like /mcp (a gateway resource each)
// The first five can also be set per request by a header (which wins over the option):
// `x-demo-sse: 1|0`, `x-demo-gzip: 1|0`, `x-demo-extra-tools: N`, `x-demo-page-size: N`,
// `x-demo-list-delay-ms: N` (the gateway forwards them like any other header).
//
// Use it as a module (`startMcpServer`) or run it:
//   node demo/mcp-server.mjs --port 9401 [--log] [--stateful [--tick-ms 2000]] [--privileged-path /admin/mcp ...]
//     [--upstream-jwks URL --upstream-issuer ISS --upstream-audience AUD]
//     [--sse] [--gzip-always] [--extra-tools N] [--page-size N] [--list-delay-ms N] [--ticker-tool] [--prompts] [--path /other/mcp ...]
import { createServer } from 'node:http';
import { randomUUID } from 'node:crypto';
import { createGzip, constants as zlibConstants } from 'node:zlib';
import { createRemoteJWKSet, jwtVerify, decodeJwt } from 'jose';
import { Server } from '@modelcontextprotocol/sdk/server/index.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { WebStandardStreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/webStandardStreamableHttp.js';
import {
  CallToolRequestSchema, ListToolsRequestSchema, ListPromptsRequestSchema, GetPromptRequestSchema, McpError, ErrorCode,
} from '@modelcontextprotocol/sdk/types.js';

import { PRIVILEGED_TOOL, PRIVILEGED_SCOPE } from './config.mjs';

export { PRIVILEGED_TOOL, PRIVILEGED_SCOPE };

const TOOLS = [
  {
    name: 'whoami',
    description: 'Reports what reached this MCP server: the subject and client the gateway verified, and whether any Authorization header got through.',
    inputSchema: { type: 'object', properties: {} },
  },
  {
    name: 'echo',
    description: 'Echoes a text back.',
    inputSchema: { type: 'object', properties: { text: { type: 'string' } }, required: ['text'] },
  },
  {
    name: 'add',
    description: 'Adds two numbers.',
    inputSchema: { type: 'object', properties: { a: { type: 'number' }, b: { type: 'number' } }, required: ['a', 'b'] },
  },
];
const PRIVILEGED = {
  name: PRIVILEGED_TOOL,
  description: `Privileged: pretends to reset the server. The gateway lets only tokens with ${PRIVILEGED_SCOPE} reach it.`,
  inputSchema: { type: 'object', properties: {} },
};

const TICKER = {
  name: 'ticker',
  description: 'Sends `count` notifications/message events (every `interval_ms`) on the request\'s SSE stream, then returns.',
  inputSchema: { type: 'object', properties: { count: { type: 'number' }, interval_ms: { type: 'number' } } },
};
/** The i-th extra tool (`extraTools`). */
const extraTool = (i) => ({
  name: `tool_${i}`,
  description: `Extra tool number ${i}: returns its own name.`,
  inputSchema: { type: 'object', properties: {} },
});
const PROMPTS = [
  { name: 'greeting', description: 'A friendly greeting.' },
  { name: 'admin_notes', description: 'Privileged notes (a gateway rule may reserve prompts/get of it for mcp:admin).' },
];

const one = (v) => (Array.isArray(v) ? v.join(', ') : v);
const sleepMs = (ms) => new Promise((r) => setTimeout(r, ms));

/** The demo options of one request: the server's, overridden by `x-demo-*` request headers. */
function requestOptions(headers, base) {
  const flag = (name, dflt) => {
    const v = one(headers[name]);
    return v === undefined ? dflt : v === '1' || v === 'true';
  };
  const num = (name, dflt) => {
    const v = Number(one(headers[name]));
    return one(headers[name]) === undefined || !Number.isFinite(v) || v < 0 ? dflt : Math.floor(v);
  };
  return {
    sse: flag('x-demo-sse', base.sse),
    gzipAlways: flag('x-demo-gzip', base.gzipAlways),
    extraTools: num('x-demo-extra-tools', base.extraTools),
    pageSize: num('x-demo-page-size', base.pageSize),
    listDelayMs: num('x-demo-list-delay-ms', base.listDelayMs),
  };
}

/**
 * What the server tells a caller about the request that carried the tool call. `upstream`:
 * undefined without the upstreamToken option (no field, as before), else what was verified.
 */
function whoami(headers, upstream) {
  return {
    subject: one(headers['x-mcp-subject']) ?? null,
    client_id: one(headers['x-mcp-client-id']) ?? null,
    authorization_received: headers.authorization !== undefined,
    header_names: Object.keys(headers).sort(),
    ...(upstream !== undefined ? { upstream_token: upstream } : {}),
  };
}

/** The claims of an upstream token that tests look at. */
const upstreamClaims = (c) => ({
  sub: c?.sub ?? null, aud: c?.aud ?? null, act: c?.act ?? null, client_id: c?.client_id ?? null, scope: c?.scope ?? null,
});

function textResult(obj) {
  return { content: [{ type: 'text', text: typeof obj === 'string' ? obj : JSON.stringify(obj) }], structuredContent: typeof obj === 'string' ? undefined : obj };
}

function buildServer(privileged, calls, path, { logging = false, upstream = false, demo = DEMO_DEFAULTS } = {}) {
  const server = new Server({ name: 'mcp-edge-auth-demo', version: '1.0.0' }, {
    capabilities: { tools: {}, ...(logging || demo.tickerTool ? { logging: {} } : {}), ...(demo.prompts ? { prompts: {} } : {}) },
  });
  const tools = privileged ? [...TOOLS, PRIVILEGED] : TOOLS;
  const toolsOf = (o) => [
    ...(demo.tickerTool ? [...tools, TICKER] : tools),
    ...Array.from({ length: o.extraTools }, (_, i) => extraTool(i)),
  ];
  server.setRequestHandler(ListToolsRequestSchema, async (req, extra) => {
    const o = requestOptions(extra.requestInfo?.headers ?? {}, demo);
    if (o.listDelayMs > 0) await sleepMs(o.listDelayMs);
    const all = toolsOf(o);
    if (!o.pageSize) return { tools: all };
    // Pages: the cursor is the index of the page's first tool.
    const cursor = req.params?.cursor;
    const start = cursor === undefined ? 0 : Number(cursor);
    if (!Number.isInteger(start) || start < 0 || start > all.length || (cursor !== undefined && String(start) !== cursor)) {
      throw new McpError(ErrorCode.InvalidParams, `invalid cursor ${JSON.stringify(cursor)}`);
    }
    const end = start + o.pageSize;
    return { tools: all.slice(start, end), ...(end < all.length ? { nextCursor: String(end) } : {}) };
  });
  if (demo.prompts) {
    server.setRequestHandler(ListPromptsRequestSchema, async () => ({ prompts: PROMPTS }));
    server.setRequestHandler(GetPromptRequestSchema, async (req) => {
      const p = PROMPTS.find((x) => x.name === req.params.name);
      if (!p) throw new McpError(ErrorCode.InvalidParams, `unknown prompt ${req.params.name}`);
      return { description: p.description, messages: [{ role: 'user', content: { type: 'text', text: `prompt ${p.name}` } }] };
    });
  }
  server.setRequestHandler(CallToolRequestSchema, async (req, extra) => {
    const headers = extra.requestInfo?.headers ?? {};
    const args = req.params.arguments ?? {};
    calls.push({ path, name: req.params.name, subject: one(headers['x-mcp-subject']) ?? null });
    const extraMatch = /^tool_(\d+)$/.exec(req.params.name);
    if (extraMatch && Number(extraMatch[1]) < requestOptions(headers, demo).extraTools) return textResult(req.params.name);
    switch (req.params.name) {
      case 'ticker':
        if (!demo.tickerTool) break;
        {
          // The notifications go on this request's own stream (relatedRequestId): with an SSE
          // answer they are events before the result; a JSON answer drops them.
          const count = Math.min(Math.max(Number(args.count ?? 3), 0), 100);
          const interval = Math.min(Math.max(Number(args.interval_ms ?? 20), 0), 10_000);
          for (let i = 1; i <= count; i += 1) {
            if (i > 1 && interval > 0) await sleepMs(interval);
            await extra.sendNotification({ method: 'notifications/message', params: { level: 'info', logger: 'ticker', data: `tick ${i} of ${count}` } });
          }
          return textResult({ ticks: count });
        }
      case 'whoami':
        // authInfo is what the HTTP layer verified for this very request (set as `req.auth`).
        return textResult(whoami(headers, upstream ? (extra.authInfo?.extra?.upstreamToken ?? null) : undefined));
      case 'echo':
        return textResult(String(args.text ?? ''));
      case 'add':
        return textResult({ sum: Number(args.a) + Number(args.b) });
      case PRIVILEGED_TOOL:
        if (privileged) return textResult({ reset: true, by: one(headers['x-mcp-subject']) ?? null });
        break;
      default:
        break;
    }
    throw new McpError(ErrorCode.InvalidParams, `unknown tool ${req.params.name}`);
  });
  return server;
}

const DEMO_DEFAULTS = { sse: false, gzipAlways: false, extraTools: 0, pageSize: 0, listDelayMs: 0, tickerTool: false, prompts: false };

/**
 * Stateless `gzipAlways`: the SDK's web-standard transport answers, and the answer goes out
 * gzip-compressed (content-encoding: gzip, no content-length), each chunk flushed at once so
 * SSE events still arrive as they are sent.
 */
async function gzipRequest(req, res, server, sse) {
  const chunks = [];
  for await (const c of req) chunks.push(c);
  const headers = new Headers();
  for (const [k, v] of Object.entries(req.headers)) headers.set(k, one(v));
  const body = Buffer.concat(chunks);
  const webReq = new Request(`http://${req.headers.host ?? 'localhost'}${req.url}`, { method: req.method, headers, ...(body.length ? { body } : {}) });
  const transport = new WebStandardStreamableHTTPServerTransport({ sessionIdGenerator: undefined, enableJsonResponse: !sse });
  await server.connect(transport);
  const answer = await transport.handleRequest(webReq, { authInfo: req.auth });
  const out = {};
  answer.headers.forEach((v, k) => { if (k !== 'content-length') out[k] = v; });
  if (!answer.body) {
    res.writeHead(answer.status, out).end();
    await transport.close();
    return;
  }
  res.writeHead(answer.status, { ...out, 'content-encoding': 'gzip' });
  const gz = createGzip({ flush: zlibConstants.Z_SYNC_FLUSH });
  gz.pipe(res);
  const reader = answer.body.getReader();
  res.on('close', () => { reader.cancel().catch(() => {}); transport.close(); server.close(); });
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    gz.write(value);
  }
  gz.end();
}

/**
 * Starts the MCP server on host:port. `privilegedPaths`: where the privileged tool is offered
 * (['/admin/mcp'] while the gateway protects it with a route-level rule; ['/mcp'] once per-tool
 * rules protect it on the main resource). `upstreamToken`: `{ jwksUrl, issuer, audience }`
 * to require a Bearer JWT from that issuer for that audience (RS256) on /mcp and /admin/mcp.
 * The demo options (all off by default; see the head of this file): `sse`, `gzipAlways`
 * (stateless mode only; `x-demo-sse` / `x-demo-gzip` per request), `extraTools`, `pageSize`,
 * `listDelayMs` (`x-demo-extra-tools`, `x-demo-page-size`, `x-demo-list-delay-ms`),
 * `tickerTool`, `prompts`, and `paths` (more paths served like /mcp).
 * @returns {Promise<{port:number, url:string, seen: Array<{method:string, path:string, headers:object}>,
 *   calls: Array<{path:string, name:string, subject:string|null}>, clear():void, stop():Promise<void>,
 *   upstreamTokens: Array<{ok:boolean, reason?:string, sub, aud, act, client_id, scope, token:string|null}>}>}
 *   seen: every HTTP request that reached the server; calls: every tools/call it handled;
 *   upstreamTokens (only with upstreamToken): one entry per /mcp or /admin/mcp request, with
 *   the raw token (test-only) and its claims (NOT verified when ok is false: diagnostics only).
 */
export async function startMcpServer({
  port = 0, host = '127.0.0.1', log = false, privilegedPaths = ['/admin/mcp'], stateful = false, tickMs = 2000, upstreamToken,
  sse = false, gzipAlways = false, extraTools = 0, pageSize = 0, listDelayMs = 0, tickerTool = false, prompts = false, paths = [],
} = {}) {
  const demo = { sse, gzipAlways, extraTools, pageSize, listDelayMs, tickerTool, prompts };
  const served = new Set(['/mcp', '/admin/mcp', ...paths]);
  const seen = [];
  const calls = [];
  const upstreamTokens = [];
  const upstream = upstreamToken ? { ...upstreamToken, jwks: createRemoteJWKSet(new URL(upstreamToken.jwksUrl)) } : null;
  /** Verifies the request's upstream token; records the outcome; false if answered 401. */
  async function checkUpstream(req, res) {
    const m = /^Bearer ([^\s]+)$/i.exec(req.headers.authorization ?? '');
    const token = m ? m[1] : null;
    let entry;
    if (!token) {
      entry = { ok: false, reason: req.headers.authorization === undefined ? 'missing' : 'malformed authorization header', ...upstreamClaims(null), token: req.headers.authorization ?? null };
    } else {
      try {
        const { payload } = await jwtVerify(token, upstream.jwks, { issuer: upstream.issuer, audience: upstream.audience, algorithms: ['RS256'] });
        entry = { ok: true, ...upstreamClaims(payload), token };
      } catch (e) {
        let claims = null;
        try { claims = decodeJwt(token); } catch { /* not even a JWT */ }
        entry = { ok: false, reason: e.code ? `${e.code}: ${e.message}` : e.message, ...upstreamClaims(claims), token };
      }
    }
    upstreamTokens.push(entry);
    if (log) console.log(`[mcp] upstream token ${entry.ok ? `ok sub=${entry.sub}` : `refused (${entry.reason})`}`);
    if (!entry.ok) {
      res.writeHead(401, { 'content-type': 'application/json' }).end('{"error":"invalid_token"}');
      return false;
    }
    // The SDK hands `req.auth` to request handlers as `extra.authInfo` (whoami reports it).
    req.auth = {
      token,
      clientId: entry.client_id ?? '',
      scopes: typeof entry.scope === 'string' ? entry.scope.split(' ').filter(Boolean) : [],
      extra: { upstreamToken: upstreamClaims(entry) },
    };
    return true;
  }
  const sockets = new Set();
  /** Stateful mode: session id -> { server, transport }. */
  const sessions = new Map();
  let ticks = 0;
  const ticker = stateful
    ? setInterval(() => {
      ticks += 1;
      for (const { server } of sessions.values()) {
        server.notification({ method: 'notifications/message', params: { level: 'info', logger: 'demo', data: `tick ${ticks}` } }).catch(() => {});
      }
    }, tickMs)
    : null;
  ticker?.unref();
  const http = createServer(async (req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    seen.push({ method: req.method, path: req.url, headers: { ...req.headers } });
    if (log) console.log(`[mcp] ${req.method} ${req.url} subject=${req.headers['x-mcp-subject'] ?? '-'} authorization=${req.headers.authorization ? 'PRESENT' : 'absent'}`);
    if (!served.has(path)) {
      res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":"not_found"}');
      return;
    }
    if (upstream && !(await checkUpstream(req, res))) return;
    if (stateful) {
      await statefulRequest(req, res, path);
      return;
    }
    if (req.method !== 'POST') {
      // Stateless server: no standalone SSE stream, no sessions to delete.
      res.writeHead(405, { allow: 'POST', 'content-type': 'application/json' })
        .end(JSON.stringify({ jsonrpc: '2.0', error: { code: -32000, message: 'Method not allowed.' }, id: null }));
      return;
    }
    const server = buildServer(privilegedPaths.includes(path), calls, path, { upstream: !!upstream, demo });
    const o = requestOptions(req.headers, demo);
    if (o.gzipAlways) {
      try {
        await gzipRequest(req, res, server, o.sse);
      } catch (e) {
        if (!res.headersSent) res.writeHead(500, { 'content-type': 'application/json' }).end(JSON.stringify({ error: String(e) }));
      }
      return;
    }
    const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined, enableJsonResponse: !o.sse });
    res.on('close', () => { transport.close(); server.close(); });
    try {
      await server.connect(transport);
      await transport.handleRequest(req, res);
    } catch (e) {
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'application/json' }).end(JSON.stringify({ error: String(e) }));
    }
  });
  /** Stateful mode: initialize opens a session; later requests (GET stream, POST, DELETE) name it. */
  async function statefulRequest(req, res, path) {
    const id = req.headers['mcp-session-id'];
    let entry = typeof id === 'string' ? sessions.get(id) : undefined;
    if (!entry) {
      if (req.method !== 'POST' || id !== undefined) {
        res.writeHead(id === undefined ? 400 : 404, { 'content-type': 'application/json' })
          .end(JSON.stringify({ jsonrpc: '2.0', error: { code: -32000, message: id === undefined ? 'Bad Request: no session; POST initialize first' : 'Session not found' }, id: null }));
        return;
      }
      const server = buildServer(privilegedPaths.includes(path), calls, path, { logging: true, upstream: !!upstream, demo });
      const transport = new StreamableHTTPServerTransport({
        sessionIdGenerator: () => randomUUID(),
        onsessioninitialized: (sid) => { sessions.set(sid, { server, transport }); },
      });
      transport.onclose = () => { if (transport.sessionId) sessions.delete(transport.sessionId); };
      await server.connect(transport);
      entry = { server, transport };
    }
    try {
      await entry.transport.handleRequest(req, res);
    } catch (e) {
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'application/json' }).end(JSON.stringify({ error: String(e) }));
    }
  }

  http.on('connection', (s) => { sockets.add(s); s.on('close', () => sockets.delete(s)); });
  await new Promise((resolve, reject) => {
    http.once('error', reject);
    http.listen(port, host, () => { http.off('error', reject); resolve(); });
  });
  const realPort = http.address().port;
  return {
    port: realPort,
    url: `http://${host}:${realPort}/mcp`,
    seen,
    calls,
    upstreamTokens,
    clear() { seen.length = 0; calls.length = 0; upstreamTokens.length = 0; },
    sessions,
    async stop() {
      if (ticker) clearInterval(ticker);
      for (const { transport } of sessions.values()) await transport.close().catch(() => {});
      for (const s of sockets) s.destroy();
      await new Promise((r) => http.close(() => r()));
    },
  };
}

// ---- CLI ---------------------------------------------------------------------------------
if (import.meta.url === `file://${process.argv[1]}`) {
  const args = process.argv.slice(2);
  const i = args.indexOf('--port');
  const privilegedPaths = args.flatMap((a, j) => (args[j - 1] === '--privileged-path' ? [a] : []));
  const t = args.indexOf('--tick-ms');
  const opt = (name) => { const j = args.indexOf(name); return j >= 0 ? args[j + 1] : undefined; };
  const up = { jwksUrl: opt('--upstream-jwks'), issuer: opt('--upstream-issuer'), audience: opt('--upstream-audience') };
  if (Object.values(up).some(Boolean) && !Object.values(up).every(Boolean)) {
    console.error('--upstream-jwks, --upstream-issuer and --upstream-audience go together');
    process.exit(2);
  }
  const srv = await startMcpServer({
    port: i >= 0 ? Number(args[i + 1]) : 0,
    log: args.includes('--log'),
    stateful: args.includes('--stateful'),
    ...(t >= 0 ? { tickMs: Number(args[t + 1]) } : {}),
    ...(privilegedPaths.length ? { privilegedPaths } : {}),
    ...(up.jwksUrl ? { upstreamToken: up } : {}),
    sse: args.includes('--sse'),
    gzipAlways: args.includes('--gzip-always'),
    extraTools: Number(opt('--extra-tools') ?? 0),
    pageSize: Number(opt('--page-size') ?? 0),
    listDelayMs: Number(opt('--list-delay-ms') ?? 0),
    tickerTool: args.includes('--ticker-tool'),
    prompts: args.includes('--prompts'),
    paths: args.flatMap((a, j) => (args[j - 1] === '--path' ? [a] : [])),
  });
  console.log(JSON.stringify({ url: srv.url }));
  const stop = async () => { await srv.stop(); process.exit(0); };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}
