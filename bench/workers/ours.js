// Benchmark Worker: mcp-edge-auth as a library (the README's 10-line usage), answering an
// allowed request with a fixed 200 instead of calling an MCP server, so that only the
// authorization differs from bench/workers/plain.js. MCP_EDGE_AUTH_CONFIG comes from the
// benchmark (token_cache.max_entries 0 for the uncached variant).
import { authorize } from '../../workers/lib/index.js';

export default {
  async fetch(request, env, ctx) {
    const auth = await authorize(request, env, ctx);
    if (!auth.ok) return auth.response;
    // auth.request is what would go upstream (token removed, x-mcp-subject added).
    return auth.respond(new Response('ok'));
  },
};
