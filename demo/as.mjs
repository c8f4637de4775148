// The authorization server of the demo and the end-to-end tests: `oidc-provider` (panva), an
// OAuth 2.1 / OpenID certified implementation nobody on this project wrote, configured for
// machine-to-machine MCP clients:
//   - the client-credentials grant, clients authenticated with client_secret_basic/_post;
//   - resource indicators (RFC 8707): a token is minted for exactly one `resource`, which
//     becomes its `aud`; a resource the AS does not know gets `invalid_target`;
//   - JWT access tokens (RFC 9068, `typ: at+jwt`), RS256, signed with a key generated at start
//     (so a restart means new keys, and the gateway has to fetch them from `/jwks`);
//   - with `opaque: true` (off by default; the demo does not use it): OPAQUE access tokens for
//     every resource whose path contains `/opaque/` (see `isOpaqueResource`), the RFC 7662
//     introspection endpoint for the gateway (client GATEWAY_CLIENT, client_secret_basic), and
//     the RFC 7009 revocation endpoint. Other resources keep getting JWTs.
//
// Use it as a module (`startAuthServer`) or run it:
// `node demo/as.mjs --port 9400 [--opaque] --resource URL...`.
import { createServer } from 'node:http';
import { randomUUID } from 'node:crypto';
import { generateKeyPair, exportJWK } from 'jose';
import Provider, { errors } from 'oidc-provider';

import { SCOPES, CLIENTS, SHORT_TTL, DEFAULT_TTL } from './config.mjs';

export { SCOPES, CLIENTS, SHORT_TTL, DEFAULT_TTL };

/**
 * The gateway's own client at this AS, registered only with `opaque: true`: the credentials it
 * presents at the introspection endpoint (its `introspection.client_id` / `client_secret`). It
 * has no grant types: a resource server asks about tokens, it never gets any.
 */
export const GATEWAY_CLIENT = { client_id: 'mcp-edge-auth-gateway', client_secret: 'gateway-secret' };

/** With `opaque: true`: whether a resource gets opaque tokens (its path contains `/opaque/`). */
export function isOpaqueResource(resource) {
  try {
    return new URL(resource).pathname.includes('/opaque/');
  } catch {
    return false;
  }
}

const ttlFor = (client) => (client.clientId === CLIENTS.shortLived.client_id ? SHORT_TTL : DEFAULT_TTL);

/** oidc-provider's storage interface, in memory (what its built-in dev adapter does, minus the warning). */
class MemoryAdapter {
  static store = new Map();
  constructor(name) { this.name = name; }
  key(id) { return `${this.name}:${id}`; }
  async upsert(id, payload, expiresIn) {
    MemoryAdapter.store.set(this.key(id), { payload, until: expiresIn ? Date.now() + expiresIn * 1000 : Infinity });
  }
  async find(id) {
    const e = MemoryAdapter.store.get(this.key(id));
    if (!e || e.until < Date.now()) return undefined;
    return e.payload;
  }
  async findByUserCode() { return undefined; }
  async findByUid() { return undefined; }
  async consume(id) { const e = MemoryAdapter.store.get(this.key(id)); if (e) e.payload.consumed = Math.floor(Date.now() / 1000); }
  async destroy(id) { MemoryAdapter.store.delete(this.key(id)); }
  async revokeByGrantId() {}
}

/**
 * Starts oidc-provider on host:port.
 * @param {{port?: number, host?: string, resources?: string[], issuerHost?: string, opaque?: boolean}} o
 *   resources: the resource indicators this AS mints tokens for (more can be added with
 *   `allowResource`); anything else is `invalid_target`.
 *   opaque: issue opaque access tokens for resources whose path contains `/opaque/`, and enable
 *   introspection (for GATEWAY_CLIENT) and revocation (each client for its own tokens).
 * @returns {Promise<{issuer: string, port: number, jwksUrl: string, tokenUrl: string, kid: string,
 *   metadataUrl: string, introspectionUrl?: string, revocationUrl?: string,
 *   allowResource(r: string): void, stop(): Promise<void>}>}
 */
export async function startAuthServer({ port = 0, host = '127.0.0.1', resources = [], issuerHost = '127.0.0.1', opaque = false } = {}) {
  const allowed = new Set(resources);
  const kid = `as-${randomUUID().slice(0, 8)}`;
  const { privateKey } = await generateKeyPair('RS256', { modulusLength: 2048, extractable: true });
  const signingJwk = { ...(await exportJWK(privateKey)), kid, alg: 'RS256', use: 'sig' };

  // Bind first, so that port 0 works and the issuer names the real port.
  const server = createServer();
  const sockets = new Set();
  server.on('connection', (s) => { sockets.add(s); s.on('close', () => sockets.delete(s)); });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => { server.off('error', reject); resolve(); });
  });
  const realPort = server.address().port;
  const issuer = `http://${issuerHost}:${realPort}`;

  const clients = Object.values(CLIENTS).map((c) => ({
    client_id: c.client_id,
    client_secret: c.client_secret,
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    token_endpoint_auth_method: 'client_secret_basic',
    scope: c.scope,
  }));
  if (opaque) {
    clients.push({
      client_id: GATEWAY_CLIENT.client_id,
      client_secret: GATEWAY_CLIENT.client_secret,
      grant_types: [],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: 'client_secret_basic',
    });
  }
  const opaqueFor = (resourceIndicator) => opaque && isOpaqueResource(resourceIndicator);

  const provider = new Provider(issuer, {
    clients,
    clientAuthMethods: ['client_secret_basic', 'client_secret_post'],
    scopes: SCOPES,
    jwks: { keys: [signingJwk] },
    cookies: { keys: [randomUUID()] },
    adapter: MemoryAdapter,
    ttl: { ClientCredentials: (_ctx, _token, client) => ttlFor(client) },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      introspection: {
        enabled: opaque,
        // Who may learn what a token is (RFC 7662 §2.1, §4). The token's own audience decides:
        // the gateway (GATEWAY_CLIENT) is the resource server of every `/opaque/` resource —
        // the one the token was issued for, which must find out whether it is active, its
        // scope, `aud` and subject; one gateway serves several resources (config
        // `resources[]`), and checking that `aud` names the resource a request is for is its
        // job, not the AS's. Nobody else may introspect (oidc-provider's default would let
        // any client with a secret see any token): other clients get `active: false`.
        allowedPolicy: async (_ctx, client, token) => client.clientId === GATEWAY_CLIENT.client_id
          && typeof token.aud === 'string' && isOpaqueResource(token.aud),
      },
      revocation: {
        enabled: opaque,
        // RFC 7009 §2.1: a client revokes its own tokens only (oidc-provider's default rule,
        // written out).
        allowedPolicy: async (_ctx, client, token) => token.clientId === client.clientId,
      },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => undefined,
        useGrantedResource: () => false,
        getResourceServerInfo(_ctx, resourceIndicator, client) {
          if (!allowed.has(resourceIndicator)) throw new errors.InvalidTarget();
          if (opaqueFor(resourceIndicator)) {
            // A random handle (no dots, not a JWT) that only this AS can resolve: the gateway
            // learns what it stands for from the introspection endpoint.
            return {
              scope: SCOPES.join(' '),
              audience: resourceIndicator,
              accessTokenFormat: 'opaque',
              accessTokenTTL: ttlFor(client),
            };
          }
          return {
            scope: SCOPES.join(' '),
            audience: resourceIndicator,
            accessTokenFormat: 'jwt',
            accessTokenTTL: ttlFor(client),
            jwt: { sign: { alg: 'RS256' } },
          };
        },
      },
    },
    // client_credentials tokens carry the client as `sub` (RFC 9068 §2.2: the subject is the
    // client when no resource owner is involved) and `client_id`. For an opaque token these
    // extra claims are stored with it and returned by introspection (next to oidc-provider's
    // own `active`, `client_id`, `aud`, `scope`, `exp`, `iat`, `iss`, `token_type`).
    extraTokenClaims: (_ctx, token) => (token.kind === 'ClientCredentials' ? { sub: token.clientId } : undefined),
  });
  // No proxy in front of it; loopback only.
  provider.proxy = false;
  // oidc-provider logs server errors through its event emitter; keep them visible.
  provider.on('server_error', (_ctx, err) => console.error('[as] server_error', err));

  server.on('request', provider.callback());

  return {
    issuer,
    port: realPort,
    jwksUrl: `${issuer}/jwks`,
    tokenUrl: `${issuer}/token`,
    metadataUrl: `${issuer}/.well-known/oauth-authorization-server`,
    // oidc-provider's default routes; the metadata (`introspection_endpoint`,
    // `revocation_endpoint`) is what clients should read.
    ...(opaque ? { introspectionUrl: `${issuer}/token/introspection`, revocationUrl: `${issuer}/token/revocation` } : {}),
    kid,
    provider,
    allowResource(r) { allowed.add(r); },
    async stop() {
      for (const s of sockets) s.destroy();
      await new Promise((r) => server.close(() => r()));
    },
  };
}

/**
 * Client-credentials token request, as any OAuth client would send it (client_secret_basic).
 * Resolves to the parsed JSON body with `status` added.
 */
export async function requestToken(tokenUrl, { client, resource, scope }) {
  const body = new URLSearchParams({ grant_type: 'client_credentials' });
  if (resource) body.set('resource', resource);
  if (scope) body.set('scope', scope);
  const res = await fetch(tokenUrl, {
    method: 'POST',
    headers: {
      authorization: `Basic ${Buffer.from(`${encodeURIComponent(client.client_id)}:${encodeURIComponent(client.client_secret)}`).toString('base64')}`,
      'content-type': 'application/x-www-form-urlencoded',
      accept: 'application/json',
    },
    body,
  });
  return { status: res.status, ...(await res.json()) };
}

const basic = (client) => `Basic ${Buffer.from(`${encodeURIComponent(client.client_id)}:${encodeURIComponent(client.client_secret)}`).toString('base64')}`;

/**
 * RFC 7662 introspection request (client_secret_basic), as the gateway sends it. Resolves to
 * the parsed JSON body with `status` added.
 */
export async function introspectToken(introspectionUrl, { client = GATEWAY_CLIENT, token }) {
  const res = await fetch(introspectionUrl, {
    method: 'POST',
    headers: { authorization: basic(client), 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
    body: new URLSearchParams({ token, token_type_hint: 'access_token' }),
  });
  return { status: res.status, ...(await res.json()) };
}

/** RFC 7009 revocation by the client the token was issued to. Resolves to the HTTP status. */
export async function revokeToken(revocationUrl, { client, token }) {
  const res = await fetch(revocationUrl, {
    method: 'POST',
    headers: { authorization: basic(client), 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ token, token_type_hint: 'access_token' }),
  });
  await res.arrayBuffer();
  return res.status;
}

// ---- CLI ---------------------------------------------------------------------------------
if (import.meta.url === `file://${process.argv[1]}`) {
  const args = process.argv.slice(2);
  const opt = (name, dflt) => { const i = args.indexOf(name); return i >= 0 ? args[i + 1] : dflt; };
  const resources = args.flatMap((a, i) => (args[i - 1] === '--resource' ? [a] : []));
  const as = await startAuthServer({ port: Number(opt('--port', 0)), resources, opaque: args.includes('--opaque') });
  console.log(JSON.stringify({ issuer: as.issuer, jwks: as.jwksUrl, token: as.tokenUrl, kid: as.kid, resources, ...(as.introspectionUrl ? { introspection: as.introspectionUrl, revocation: as.revocationUrl } : {}) }));
  const stop = async () => { await as.stop(); process.exit(0); };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}
