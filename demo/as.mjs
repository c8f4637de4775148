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
//   - with `exchange: true` (off by default): the RFC 8693 token-exchange grant, for
//     EXCHANGE_CLIENT only (the gateway): it trades a JWT access token this AS issued for one of
//     its resources for a short-lived JWT for an upstream audience (`upstreamAudiences`), with
//     `act: { sub: <exchanger> }`. Test knobs: `exchanges` (what reached the grant),
//     `exchangeFault()` (delays, refusals, 5xx, garbage, hangs), `setExchangeTtl()`.
//
// Use it as a module (`startAuthServer`) or run it:
// `node demo/as.mjs --port 9400 [--opaque] [--exchange [--upstream-audience AUD...]] --resource URL...`.
import { createServer } from 'node:http';
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { generateKeyPair, exportJWK, jwtVerify, SignJWT } from 'jose';
import Provider, { errors } from 'oidc-provider';

import {
  SCOPES, CLIENTS, SHORT_TTL, DEFAULT_TTL, EXCHANGE_CLIENT, DEFAULT_UPSTREAM_AUDIENCE,
} from './config.mjs';

export { SCOPES, CLIENTS, SHORT_TTL, DEFAULT_TTL, EXCHANGE_CLIENT, DEFAULT_UPSTREAM_AUDIENCE };

/** RFC 8693 §2.1 grant type and §3 token type identifiers. */
export const TOKEN_EXCHANGE_GRANT = 'urn:ietf:params:oauth:grant-type:token-exchange';
export const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';

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
 * @param {{port?: number, host?: string, resources?: string[], issuerHost?: string, opaque?: boolean,
 *   exchange?: boolean, upstreamAudiences?: string[], exchangeTtl?: number}} o
 *   resources: the resource indicators this AS mints tokens for (more can be added with
 *   `allowResource`); anything else is `invalid_target`.
 *   opaque: issue opaque access tokens for resources whose path contains `/opaque/`, and enable
 *   introspection (for GATEWAY_CLIENT) and revocation (each client for its own tokens).
 *   exchange: enable the RFC 8693 token-exchange grant for EXCHANGE_CLIENT; it mints tokens
 *   for `upstreamAudiences` only, living `exchangeTtl` seconds (see `setExchangeTtl`).
 * @returns {Promise<{issuer: string, port: number, jwksUrl: string, tokenUrl: string, kid: string,
 *   metadataUrl: string, introspectionUrl?: string, revocationUrl?: string,
 *   allowResource(r: string): void, stop(): Promise<void>,
 *   exchanges: Array<{at:number, sub:string|null, audience:string[], resource:string[], scope:string|null,
 *     client_id:string, auth:'basic'|'post', outcome:string}>,
 *   exchangeFault(mode: null|'delay'|'refuse'|'status'|'garbage'|'hang', arg?: any): void,
 *   setExchangeTtl(seconds: number): void}>}
 */
export async function startAuthServer({
  port = 0, host = '127.0.0.1', resources = [], issuerHost = '127.0.0.1', opaque = false,
  exchange = false, upstreamAudiences = [DEFAULT_UPSTREAM_AUDIENCE], exchangeTtl = 300,
} = {}) {
  const allowed = new Set(resources);
  const kid = `as-${randomUUID().slice(0, 8)}`;
  const { privateKey, publicKey } = await generateKeyPair('RS256', { modulusLength: 2048, extractable: true });
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

  // With exchange on, every client may SEND the exchange grant, so that a client other than
  // the exchanger reaches the handler and gets RFC 8693's `unauthorized_client` (oidc-provider
  // itself would answer `invalid_request` for a grant type missing from the client's metadata).
  const exchangeGrant = exchange ? [TOKEN_EXCHANGE_GRANT] : [];
  const clients = Object.values(CLIENTS).map((c) => ({
    client_id: c.client_id,
    client_secret: c.client_secret,
    grant_types: ['client_credentials', ...exchangeGrant],
    response_types: [],
    redirect_uris: [],
    token_endpoint_auth_method: 'client_secret_basic',
    scope: c.scope,
  }));
  if (opaque) {
    clients.push({
      client_id: GATEWAY_CLIENT.client_id,
      client_secret: GATEWAY_CLIENT.client_secret,
      grant_types: [...exchangeGrant],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: 'client_secret_basic',
    });
  }
  if (exchange) {
    // One client for both client_secret_basic and client_secret_post: oidc-provider's client
    // authentication treats the two as one family (a client registered with either may use
    // either; lib/shared/client_auth.js), and both are in `clientAuthMethods` below.
    clients.push({
      client_id: EXCHANGE_CLIENT.client_id,
      client_secret: EXCHANGE_CLIENT.client_secret,
      grant_types: [TOKEN_EXCHANGE_GRANT],
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

  // ---- RFC 8693 token exchange -------------------------------------------------------------
  const exchanges = [];
  let ttl = exchangeTtl;
  let fault = { mode: null, arg: undefined };
  /** Requests held by the 'hang' fault: released when the fault changes or the server stops. */
  const hanging = new Set();
  const stopping = new AbortController();
  const release = () => { for (const r of hanging) r(); hanging.clear(); };
  const list = (v) => (v === undefined ? [] : Array.isArray(v) ? v : [v]);

  /**
   * Verifies a subject token as this AS's own JWT access token for one of its resources.
   * Resolves to `{ payload }` or `{ reason }` (jose's message, for error_description).
   */
  async function verifySubject(token) {
    if (typeof token !== 'string' || token === '') return { reason: 'no subject_token' };
    try {
      const { payload } = await jwtVerify(token, publicKey, {
        issuer, typ: 'at+jwt', algorithms: ['RS256'], audience: [...allowed],
      });
      return { payload };
    } catch (e) {
      return { reason: e.message };
    }
  }
  const withDescription = (err, description) => Object.assign(err, { error_description: description });

  async function exchangeHandler(ctx) {
    const p = ctx.oidc.params;
    const audience = list(p.audience);
    const resource = list(p.resource);
    const { payload: subject, reason } = await verifySubject(p.subject_token);
    const entry = {
      at: Date.now(),
      sub: subject?.sub ?? null,
      audience,
      resource,
      scope: p.scope ?? null,
      client_id: ctx.oidc.client.clientId,
      auth: ctx.headers.authorization !== undefined ? 'basic' : 'post',
      outcome: 'pending',
    };
    exchanges.push(entry);
    try {
      await answerExchange(ctx, p, { subject, reason, audience, resource, entry });
      entry.outcome = entry.outcome === 'pending' ? 'issued' : entry.outcome;
    } catch (err) {
      // What the client was told: oidc-provider renders unexposed errors as server_error.
      entry.outcome = err instanceof errors.OIDCProviderError && err.expose ? err.error : 'server_error';
      throw err;
    }
  }

  async function answerExchange(ctx, p, { subject, reason, audience, resource, entry }) {
    // Faults first: they stand for an AS that misbehaves whatever the request says.
    for (;;) {
      const { mode, arg } = fault;
      if (mode === 'hang') {
        await new Promise((r) => { hanging.add(r); });
        if (stopping.signal.aborted) { entry.outcome = 'hang'; return; }
        continue; // the fault changed: apply the new one
      }
      if (mode === 'delay') {
        try {
          await sleep(Number(arg) || 0, undefined, { signal: stopping.signal });
        } catch {
          entry.outcome = 'delay';
          return;
        }
      }
      break;
    }
    const { mode, arg } = fault;
    if (mode === 'refuse') {
      const code = String(arg ?? 'invalid_grant');
      const err = new errors.CustomOIDCProviderError(code, `refused by exchangeFault('refuse', '${code}')`);
      // RFC 6749 §5.2: invalid_client is the one token-endpoint error answered with 401.
      if (code === 'invalid_client') Object.assign(err, { status: 401, statusCode: 401 });
      throw err;
    }
    if (mode === 'status') {
      entry.outcome = 'server_error';
      ctx.status = Number(arg) || 500;
      ctx.body = { error: 'server_error' };
      return;
    }
    if (mode === 'garbage') {
      // Claims to be JSON and is not: the gateway must not trust the content type alone.
      entry.outcome = 'garbage';
      ctx.status = 200;
      ctx.body = '<html>this is not a token response {';
      ctx.type = 'application/json';
      return;
    }

    if (ctx.oidc.client.clientId !== EXCHANGE_CLIENT.client_id) {
      throw new errors.UnauthorizedClient('this client may not use token exchange');
    }
    if (!p.subject_token || !p.subject_token_type) {
      throw new errors.InvalidRequest('subject_token and subject_token_type are required');
    }
    if (p.subject_token_type !== ACCESS_TOKEN_TYPE) {
      throw new errors.InvalidRequest(`subject_token_type must be ${ACCESS_TOKEN_TYPE}`);
    }
    if (p.requested_token_type !== undefined && p.requested_token_type !== ACCESS_TOKEN_TYPE) {
      throw new errors.InvalidRequest(`requested_token_type must be ${ACCESS_TOKEN_TYPE}`);
    }
    // Delegation with a separate actor token is not implemented: refuse it rather than issue
    // a token whose `act` would silently ignore what the client asked for.
    if (p.actor_token !== undefined || p.actor_token_type !== undefined) {
      throw new errors.InvalidRequest('actor_token is not supported by this authorization server');
    }
    if (!subject) throw withDescription(new errors.InvalidGrant(), `subject_token is not a valid access token of this AS (${reason})`);

    const target = [...new Set([...audience, ...resource])];
    if (target.length === 0) throw new errors.InvalidTarget('audience or resource is required');
    const unknown = target.filter((t) => !upstreamAudiences.includes(t));
    if (unknown.length) throw new errors.InvalidTarget(`unknown audience or resource: ${unknown.join(' ')}`);

    const held = new Set(typeof subject.scope === 'string' ? subject.scope.split(' ').filter(Boolean) : []);
    let scope = [...held];
    if (p.scope !== undefined) {
      const asked = [...new Set(p.scope.split(' ').filter(Boolean))];
      const extra = asked.filter((s) => !held.has(s));
      if (extra.length) throw new errors.InvalidScope(`scope exceeds the subject token's: ${extra.join(' ')}`, extra.join(' '));
      scope = asked;
    }

    const iat = Math.floor(Date.now() / 1000);
    const lifetime = ttl;
    const token = await new SignJWT({
      client_id: subject.client_id,
      act: { sub: ctx.oidc.client.clientId },
      ...(scope.length ? { scope: scope.join(' ') } : {}),
    })
      .setProtectedHeader({ alg: 'RS256', kid, typ: 'at+jwt' })
      .setIssuer(issuer)
      .setSubject(subject.sub)
      .setAudience(target.length === 1 ? target[0] : target)
      .setIssuedAt(iat)
      .setExpirationTime(iat + lifetime)
      .setJti(randomUUID())
      .sign(privateKey);
    ctx.status = 200;
    ctx.body = {
      access_token: token,
      issued_token_type: ACCESS_TOKEN_TYPE,
      token_type: 'Bearer',
      expires_in: lifetime,
      ...(scope.length ? { scope: scope.join(' ') } : {}),
    };
  }

  if (exchange) {
    provider.registerGrantType(
      TOKEN_EXCHANGE_GRANT,
      exchangeHandler,
      ['subject_token', 'subject_token_type', 'audience', 'resource', 'scope', 'requested_token_type', 'actor_token', 'actor_token_type'],
      ['audience', 'resource'],
    );
  }

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
    exchanges,
    exchangeFault(mode = null, arg = undefined) {
      fault = { mode, arg };
      release();
    },
    setExchangeTtl(seconds) { ttl = seconds; },
    async stop() {
      stopping.abort();
      release();
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

/**
 * RFC 8693 token-exchange request, as the gateway sends it. `auth`: 'basic' (Authorization
 * header) or 'post' (client_id/client_secret in the body). `audience`/`resource`: a string or
 * an array (each value sent as its own parameter); `subjectTokenType: null` leaves that
 * parameter out. `extra`: more form parameters. Resolves to
 * `{ status, headers, body, json }`, json being the parsed body or undefined if it is not JSON.
 */
export async function exchangeToken(tokenUrl, {
  client = EXCHANGE_CLIENT, auth = 'basic', subjectToken, subjectTokenType = ACCESS_TOKEN_TYPE,
  audience, resource, scope, extra = {},
}) {
  const body = new URLSearchParams({ grant_type: TOKEN_EXCHANGE_GRANT });
  if (subjectToken !== undefined) body.set('subject_token', subjectToken);
  if (subjectTokenType !== null) body.set('subject_token_type', subjectTokenType);
  for (const a of [audience ?? []].flat()) body.append('audience', a);
  for (const r of [resource ?? []].flat()) body.append('resource', r);
  if (scope !== undefined) body.set('scope', scope);
  for (const [k, v] of Object.entries(extra)) body.append(k, v);
  const headers = { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' };
  if (auth === 'basic') headers.authorization = basic(client);
  else {
    body.set('client_id', client.client_id);
    body.set('client_secret', client.client_secret);
  }
  const res = await fetch(tokenUrl, { method: 'POST', headers, body });
  const text = await res.text();
  let json;
  try { json = JSON.parse(text); } catch { json = undefined; }
  return { status: res.status, headers: res.headers, body: text, json };
}

// ---- CLI ---------------------------------------------------------------------------------
if (import.meta.url === `file://${process.argv[1]}`) {
  const args = process.argv.slice(2);
  const opt = (name, dflt) => { const i = args.indexOf(name); return i >= 0 ? args[i + 1] : dflt; };
  const resources = args.flatMap((a, i) => (args[i - 1] === '--resource' ? [a] : []));
  const exchange = args.includes('--exchange');
  const upstreamAudiences = args.flatMap((a, i) => (args[i - 1] === '--upstream-audience' ? [a] : []));
  const as = await startAuthServer({
    port: Number(opt('--port', 0)),
    resources,
    opaque: args.includes('--opaque'),
    exchange,
    ...(upstreamAudiences.length ? { upstreamAudiences } : {}),
  });
  console.log(JSON.stringify({
    issuer: as.issuer, jwks: as.jwksUrl, token: as.tokenUrl, kid: as.kid, resources,
    ...(as.introspectionUrl ? { introspection: as.introspectionUrl, revocation: as.revocationUrl } : {}),
    ...(exchange ? { exchange: { client_id: EXCHANGE_CLIENT.client_id, audiences: upstreamAudiences.length ? upstreamAudiences : [DEFAULT_UPSTREAM_AUDIENCE] } } : {}),
  }));
  const stop = async () => { await as.stop(); process.exit(0); };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}
