// The mcp-edge-auth proxy Worker: put it in front of an MCP server. It serves the protected
// resource metadata and the challenges itself, and forwards allowed requests to the MCP
// origin with the token removed and the identity headers added. Bodies stream both ways
// (SSE responses from the MCP server are passed through as they arrive).
//
// Environment:
//   MCP_EDGE_AUTH_CONFIG  the configuration (JSON string or object, the one config format)
//   MCP_ORIGIN            where the MCP server is, e.g. https://mcp-origin.example.com
//                         (a path prefix is kept: https://h/base + /mcp -> https://h/base/mcp)
//   MCP_UPSTREAM          or a service binding to the MCP server's Worker (wins over MCP_ORIGIN)
//   MCP_EDGE_AUTH_LOG     "errors" (default), "requests" or "none"

import { authorize } from '../lib/index.js';

function problem(status, error, description) {
  return new Response(JSON.stringify({ error, error_description: description }), {
    status,
    headers: { 'content-type': 'application/json', 'cache-control': 'no-store' },
  });
}

let originCache = { raw: undefined, base: undefined };
function originBase(raw) {
  if (originCache.raw !== raw) {
    let base = null;
    try {
      const u = new URL(raw);
      if ((u.protocol === 'https:' || u.protocol === 'http:') && !u.search && !u.hash) {
        base = u.origin + u.pathname.replace(/\/+$/, '');
      }
    } catch {
      base = null;
    }
    if (base === null) {
      console.error(JSON.stringify({ logger: 'mcp-edge-auth', event: 'config_rejected', error: 'MCP_ORIGIN must be an absolute http(s) URL without query' }));
    }
    originCache = { raw, base };
  }
  return originCache.base;
}

export default {
  /**
   * @param {Request} request
   * @param {{MCP_EDGE_AUTH_CONFIG: string|object, MCP_ORIGIN?: string, MCP_UPSTREAM?: {fetch: typeof fetch}}} env
   * @param {ExecutionContext} ctx
   */
  async fetch(request, env, ctx) {
    const auth = await authorize(request, env, ctx);
    if (!auth.ok) return auth.response;

    const incoming = new URL(auth.request.url);
    let target;
    if (env.MCP_UPSTREAM && typeof env.MCP_UPSTREAM.fetch === 'function') {
      target = incoming.href;
    } else {
      const base = typeof env.MCP_ORIGIN === 'string' ? originBase(env.MCP_ORIGIN) : null;
      if (!base) return problem(500, 'server_error', 'The MCP origin is not configured');
      target = base + incoming.pathname + incoming.search;
    }
    const upstream = new Request(target, auth.request);
    // The origin may need to know how it was reached; client-sent values are replaced.
    upstream.headers.set('x-forwarded-host', incoming.host);
    upstream.headers.set('x-forwarded-proto', incoming.protocol.slice(0, -1));

    let response;
    try {
      response = env.MCP_UPSTREAM && typeof env.MCP_UPSTREAM.fetch === 'function'
        ? await env.MCP_UPSTREAM.fetch(upstream, { redirect: 'manual' })
        : await fetch(upstream, { redirect: 'manual' });
    } catch (e) {
      console.error(JSON.stringify({ logger: 'mcp-edge-auth', event: 'upstream_failed', path: incoming.pathname, error: String(e?.message ?? e).slice(0, 200) }));
      return problem(502, 'bad_gateway', 'The MCP server could not be reached');
    }
    return auth.respond(response);
  },
};
