// Benchmark Worker: the same checks done in JavaScript with `jose` (jwtVerify over a local
// JWKS, keys imported once per isolate by createLocalJWKSet): bearer extraction, signature,
// issuer, audience, `typ` at+jwt, exp/nbf with 60 s leeway, the required scope; the token
// removed and `sub` put in x-mcp-subject on the request that would go upstream; RFC 6750
// challenges on refusal. No verified-token cache: jose has none, and a Worker written this
// way verifies every request. BENCH_CONFIG: { issuer, resource, jwks, scope }.
import { createLocalJWKSet, jwtVerify } from '../../node_modules/jose/dist/webapi/index.js';

let state;

function challenge(status, resource, error, description) {
  const meta = new URL(resource);
  const metadata = `${meta.origin}/.well-known/oauth-protected-resource${meta.pathname}`;
  const err = error ? `error="${error}", error_description="${description}", ` : '';
  return new Response(JSON.stringify({ error: error ?? 'invalid_token' }), {
    status,
    headers: { 'content-type': 'application/json', 'cache-control': 'no-store', 'www-authenticate': `Bearer ${err}resource_metadata="${metadata}"` },
  });
}

export default {
  async fetch(request, env) {
    state ??= (() => {
      const c = JSON.parse(env.BENCH_CONFIG);
      return { ...c, keys: createLocalJWKSet(c.jwks) };
    })();
    const header = request.headers.get('authorization');
    const m = header ? /^Bearer +([A-Za-z0-9\-._~+/]+=*)$/i.exec(header) : null;
    if (!m) return challenge(401, state.resource);
    let payload;
    try {
      ({ payload } = await jwtVerify(m[1], state.keys, {
        issuer: state.issuer,
        audience: state.resource,
        typ: 'at+jwt',
        algorithms: ['RS256', 'ES256', 'EdDSA'],
        clockTolerance: 60,
        requiredClaims: ['exp'],
      }));
    } catch {
      return challenge(401, state.resource, 'invalid_token', 'The access token is invalid');
    }
    const scopes = typeof payload.scope === 'string' ? payload.scope.split(' ') : [];
    if (!scopes.includes(state.scope)) return challenge(403, state.resource, 'insufficient_scope', 'The access token lacks a required scope');
    const upstream = new Request(request);
    upstream.headers.delete('authorization');
    upstream.headers.delete('x-mcp-subject');
    if (typeof payload.sub === 'string') upstream.headers.set('x-mcp-subject', payload.sub);
    return new Response('ok');
  },
};
