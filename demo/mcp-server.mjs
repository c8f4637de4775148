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
// Use it as a module (`startMcpServer`) or run it:
//   node demo/mcp-server.mjs --port 9401 [--log] [--stateful [--tick-ms 2000]] [--privileged-path /admin/mcp ...]
import { createServer } from 'node:http';
import { randomUUID } from 'node:crypto';
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

/** What the server tells a caller about the request that carried the tool call. */
function whoami(headers) {
  return {
    subject: one(headers['x-mcp-subject']) ?? null,
    client_id: one(headers['x-mcp-client-id']) ?? null,
    authorization_received: headers.authorization !== undefined,
    header_names: Object.keys(headers).sort(),
  };
}

function textResult(obj) {
  return { content: [{ type: 'text', text: typeof obj === 'string' ? obj : JSON.stringify(obj) }], structuredContent: typeof obj === 'string' ? undefined : obj };
}

function buildServer(privileged, calls, path, { logging = false } = {}) {
  const server = new Server({ name: 'mcp-edge-auth-demo', version: '1.0.0' }, { capabilities: { tools: {}, ...(logging ? { logging: {} } : {}) } });
  const tools = privileged ? [...TOOLS, PRIVILEGED] : TOOLS;
  server.setRequestHandler(ListToolsRequestSchema, async () => ({ tools }));
  server.setRequestHandler(CallToolRequestSchema, async (req, extra) => {
    const headers = extra.requestInfo?.headers ?? {};
    const args = req.params.arguments ?? {};
    calls.push({ path, name: req.params.name, subject: one(headers['x-mcp-subject']) ?? null });
    switch (req.params.name) {
      case 'whoami':
        return textResult(whoami(headers));
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
 * rules protect it on the main resource).
 * @returns {Promise<{port:number, url:string, seen: Array<{method:string, path:string, headers:object}>,
 *   calls: Array<{path:string, name:string, subject:string|null}>, clear():void, stop():Promise<void>}>}
 *   seen: every HTTP request that reached the server; calls: every tools/call it handled.
 */
export async function startMcpServer({ port = 0, host = '127.0.0.1', log = false, privilegedPaths = ['/admin/mcp'], stateful = false, tickMs = 2000 } = {}) {
  const seen = [];
  const calls = [];
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
    const server = buildServer(privilegedPaths.includes(path), calls, path);
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
      const server = buildServer(privilegedPaths.includes(path), calls, path, { logging: true });
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
    clear() { seen.length = 0; calls.length = 0; },
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
  const srv = await startMcpServer({
    port: i >= 0 ? Number(args[i + 1]) : 0,
    log: args.includes('--log'),
    stateful: args.includes('--stateful'),
    ...(t >= 0 ? { tickMs: Number(args[t + 1]) } : {}),
    ...(privilegedPaths.length ? { privilegedPaths } : {}),
  });
  console.log(JSON.stringify({ url: srv.url }));
  const stop = async () => { await srv.stop(); process.exit(0); };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}
