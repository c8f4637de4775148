// Local peers the hosts talk to: a JWKS server the tests control (stop, slow down, rotate,
// garble) and an upstream that records exactly what reached it.
import { createServer } from 'node:http';

function listen(server, port = 0) {
  return new Promise((resolve) => server.listen(port, '127.0.0.1', () => resolve(server.address().port)));
}

/** A JWKS server. Controls: jwks, status, delayMs, body (raw override), cacheControl. */
export async function startJwksServer(initial = { keys: [] }, { port = 0 } = {}) {
  const state = { jwks: initial, status: 200, delayMs: 0, body: null, cacheControl: 'max-age=300', hits: 0, paths: [] };
  const sockets = new Set();
  const server = createServer(async (req, res) => {
    state.hits += 1;
    state.paths.push(req.url);
    if (state.delayMs) await new Promise((r) => setTimeout(r, state.delayMs));
    const body = state.body ?? JSON.stringify(state.jwks);
    const headers = { 'content-type': 'application/json' };
    if (state.cacheControl) headers['cache-control'] = state.cacheControl;
    res.writeHead(state.status, headers);
    res.end(body);
  });
  server.on('connection', (s) => { sockets.add(s); s.on('close', () => sockets.delete(s)); });
  const p = await listen(server, port);
  const api = {
    port: p,
    url: `http://127.0.0.1:${p}/jwks`,
    state,
    get hits() { return state.hits; },
    set(fields) { Object.assign(state, fields); },
    async stop() {
      for (const s of sockets) s.destroy();
      await new Promise((r) => server.close(() => r()));
    },
    /** Starts again on the same port (after stop). */
    async restart() {
      await listen(server, p);
    },
  };
  return api;
}

/**
 * An upstream MCP stand-in that records every request (method, url, headers, body) and
 * answers 200 with a JSON echo; `/sse` streams three events with pauses.
 */
export async function startUpstream({ port = 0 } = {}) {
  const seen = [];
  const sockets = new Set();
  const server = createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', async () => {
      const rec = { method: req.method, url: req.url, headers: req.headers, rawHeaders: req.rawHeaders, body: Buffer.concat(chunks).toString() };
      seen.push(rec);
      if (req.url.startsWith('/mcp/sse') || req.url.startsWith('/sse')) {
        res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
        for (let i = 0; i < 3; i += 1) {
          res.write(`event: message\ndata: {"n":${i},"t":${Date.now()}}\n\n`);
          await new Promise((r) => setTimeout(r, 300));
        }
        res.end();
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json', 'x-upstream': 'yes' });
      res.end(JSON.stringify({ ok: true, path: req.url }));
    });
  });
  server.on('connection', (s) => { sockets.add(s); s.on('close', () => sockets.delete(s)); });
  const p = await listen(server, port);
  return {
    port: p,
    seen,
    last: () => seen[seen.length - 1],
    clear: () => { seen.length = 0; },
    async stop() {
      for (const s of sockets) s.destroy();
      await new Promise((r) => server.close(() => r()));
    },
  };
}
