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
// Use it as a module (`startMcpServer`) or run it:
//   node demo/mcp-server.mjs --port 9401 [--log] [--stateful [--tick-ms 2000]] [--privileged-path /admin/mcp ...]
//     [--upstream-jwks URL --upstream-issuer ISS --upstream-audience AUD]
import { createServer } from 'node:http';
import { randomUUID } from 'node:crypto';
import { createRemoteJWKSet, jwtVerify, decodeJwt } from 'jose';
import { Server } from '@modelcontextprotocol/sdk/server/index.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { CallToolRequestSchema, ListToolsRequestSchema, McpError, ErrorCode } from '@modelcontextprotocol/sdk/types.js';

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

const one = (v) => (Array.isArray(v) ? v.join(', ') : v);

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

function buildServer(privileged, calls, path, { logging = false, upstream = false } = {}) {
  const server = new Server({ name: 'mcp-edge-auth-demo', version: '1.0.0' }, { capabilities: { tools: {}, ...(logging ? { logging: {} } : {}) } });
  const tools = privileged ? [...TOOLS, PRIVILEGED] : TOOLS;
  server.setRequestHandler(ListToolsRequestSchema, async () => ({ tools }));
  server.setRequestHandler(CallToolRequestSchema, async (req, extra) => {
    const headers = extra.requestInfo?.headers ?? {};
    const args = req.params.arguments ?? {};
    calls.push({ path, name: req.params.name, subject: one(headers['x-mcp-subject']) ?? null });
    switch (req.params.name) {
      case 'whoami':
        // authInfo is what the HTTP layer verified for this very request (set as `req.auth`).
        return textResult(whoami(headers, upstream ? (extra.authInfo?.extra?.upstreamToken ?? null) : undefined));
      case 'echo':
        return textResult(String(args.text ?? ''));
      case 'add':
        return textResult({ sum: Number(args.a) + Number(args.b) });
      case PRIVILEGED_TOOL:
        if (privileged) return textResult({ reset: true, by: one(headers['x-mcp-subject']) ?? null });
      // falls through
      default:
        throw new McpError(ErrorCode.InvalidParams, `unknown tool ${req.params.name}`);
    }
  });
  return server;
}

/**
 * Starts the MCP server on host:port. `privilegedPaths`: where the privileged tool is offered
 * (['/admin/mcp'] while the gateway protects it with a route-level rule; ['/mcp'] once per-tool
 * rules protect it on the main resource). `upstreamToken`: `{ jwksUrl, issuer, audience }`
 * to require a Bearer JWT from that issuer for that audience (RS256) on /mcp and /admin/mcp.
 * @returns {Promise<{port:number, url:string, seen: Array<{method:string, path:string, headers:object}>,
 *   calls: Array<{path:string, name:string, subject:string|null}>, clear():void, stop():Promise<void>,
 *   upstreamTokens: Array<{ok:boolean, reason?:string, sub, aud, act, client_id, scope, token:string|null}>}>}
 *   seen: every HTTP request that reached the server; calls: every tools/call it handled;
 *   upstreamTokens (only with upstreamToken): one entry per /mcp or /admin/mcp request, with
 *   the raw token (test-only) and its claims (NOT verified when ok is false: diagnostics only).
 */
export async function startMcpServer({ port = 0, host = '127.0.0.1', log = false, privilegedPaths = ['/admin/mcp'], stateful = false, tickMs = 2000, upstreamToken } = {}) {
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
    if (path !== '/mcp' && path !== '/admin/mcp') {
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
    const server = buildServer(privilegedPaths.includes(path), calls, path, { upstream: !!upstream });
    const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined, enableJsonResponse: true });
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
      const server = buildServer(privilegedPaths.includes(path), calls, path, { logging: true, upstream: !!upstream });
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
  });
  console.log(JSON.stringify({ url: srv.url }));
  const stop = async () => { await srv.stop(); process.exit(0); };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}
