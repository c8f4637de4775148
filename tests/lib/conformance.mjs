// One driver, every host: runs tests/cases/reference.mjs (and the metadata and key-lifecycle
// checks) against a host started by `startHost`. The Envoy and Worker suites call this with
// their own launcher, so both hosts are held to the same table.
//
// startHost({ port, config, jwksPort, upstreamPort }) must start the host listening on
// 127.0.0.1:port with `config` (the one JSON format; `remote_jwks.http_uri.cluster` is
// "jwks", a cluster the host must point at jwksPort), forwarding allowed requests to
// 127.0.0.1:upstreamPort, and resolve to { stop(): Promise<void> } once it serves.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { exportSPKI } from 'jose';

import { cases } from '../cases/reference.mjs';
import { attacks } from '../cases/attacks.mjs';
import { makeKey, jwks, mint, raw, hs256, tamper, nowSeconds, b64u, signRaw } from './tokens.mjs';
import { startJwksServer, startUpstream } from './servers.mjs';
import { freePort, parseChallenge, sleep } from './proc.mjs';
import { send } from './http.mjs';

export const ISSUER = 'http://127.0.0.1:9/issuer-one';
export const ISSUER2 = 'http://127.0.0.1:9/issuer-two';

/** The config every conformance host runs, in the one JSON format. */
export function conformanceConfig({ port, jwksUrl, otherJwk, overrides = {} }) {
  return {
    resources: [
      {
        resource: `http://localhost:${port}/mcp`,
        authorization_servers: [ISSUER],
        scopes_supported: ['mcp:read', 'mcp:write'],
        required_scopes: ['mcp:read'],
        resource_name: 'Conformance MCP server',
        issuers: [
          {
            issuer: ISSUER,
            algorithms: ['RS256', 'ES256', 'EdDSA'],
            remote_jwks: { http_uri: { uri: jwksUrl, cluster: 'jwks', timeout_ms: 2000 }, refetch_cooldown_seconds: 2, retry_after_seconds: 7 },
          },
          { issuer: ISSUER2, algorithms: ['RS256'], local_jwks: { keys: [otherJwk] } },
        ],
        claim_to_headers: [
          { header_name: 'x-mcp-subject', claim_name: 'sub' },
          { header_name: 'x-mcp-client-id', claim_name: 'client_id' },
        ],
        allowed_origins: ['https://app.example.com'],
        ...overrides,
      },
    ],
  };
}

/** Sets up keys, a JWKS server and a recording upstream. */
export async function makeWorld() {
  const keys = {
    rs: await makeKey('RS256', 'k-rs'),
    es: await makeKey('ES256', 'k-es'),
    ed: await makeKey('EdDSA', 'k-ed'),
    other: await makeKey('RS256', 'k-other'),
    attacker: await makeKey('RS256', 'k-attacker'),
    // Published, but unusable for signatures: `use: enc`, and an RSA key bound to PS256.
    enc: await makeKey('RS256', 'k-enc'),
    wrongalg: await makeKey('RS256', 'k-wrongalg'),
  };
  const published = [keys.rs, keys.es, keys.ed, { jwk: { ...keys.enc.jwk, use: 'enc' } }, { jwk: { ...keys.wrongalg.jwk, alg: 'PS256' } }];
  const jwksServer = await startJwksServer(jwks(...published));
  const upstream = await startUpstream();
  return { keys, jwksServer, upstream };
}

function resolve(v, ctx) {
  if (Array.isArray(v)) return v.map((x) => resolve(x, ctx));
  if (typeof v !== 'string' || !v.startsWith('$')) return v;
  const now = nowSeconds();
  const m = /^\$(NOW_STRING|NOW_FLOAT|NOW)([+-]\d+)?$/.exec(v);
  if (m) {
    const n = now + Number(m[2] ?? 0);
    if (m[1] === 'NOW_FLOAT') return n + 0.5;
    return m[1] === 'NOW_STRING' ? String(n) : n;
  }
  const table = {
    $RESOURCE: ctx.resource,
    $RESOURCE_UPPER_HOST: ctx.resource.replace('http://localhost', 'HTTP://LOCALHOST'),
    $RESOURCE_PREFIX: ctx.resource.slice(0, -1),
    $RESOURCE_PATH_UPPER: ctx.resource.replace('/mcp', '/MCP'),
    $ISSUER: ISSUER,
    $ISSUER2: ISSUER2,
    $ISSUER_UPPER: ISSUER.toUpperCase(),
    // Cyrillic "е" (U+0435) in place of a Latin "e".
    $ISSUER_UNICODE: ISSUER.replace('issuer', 'issu\u0435r'),
    $RESOURCE_UNICODE: ctx.resource.replace('/mcp', '/m\u0441p'),
    $RS_KID: 'k-rs',
    $ATTACKER_JWK: ctx.keys.attacker.jwk,
  };
  for (const [k, val] of Object.entries(table)) {
    if (v === k) return val;
    if (v.startsWith(`${k}/`)) return val + v.slice(k.length);
  }
  return v;
}

const transforms = {
  algNone: (t) => { const [, p] = t.split('.'); return `${b64u({ alg: 'none', typ: 'at+jwt' })}.${p}.`; },
  algNoneCapitalEmptySig: (t) => { const [, p] = t.split('.'); return `${b64u({ alg: 'None', typ: 'at+jwt', kid: 'k-rs' })}.${p}.`; },
  emptySignature: (t) => { const [h, p] = t.split('.'); return `${h}.${p}.`; },
  alterPayload: (t) => tamper(t, { sub: 'admin' }),
  padSegments: (t) => t.split('.').map((seg) => seg + '='.repeat((4 - (seg.length % 4)) % 4 || 2)).join('.'),
  spaceInside: (t) => { const [h, p, sig] = t.split('.'); return `${h}.${p} .${sig}`; },
  hs256WithPublicKey: async (t, ctx) => {
    const [, p] = t.split('.');
    const pem = await exportSPKI(ctx.keys.rs.publicKey);
    return hs256({ alg: 'HS256', typ: 'at+jwt', kid: 'k-rs' }, JSON.parse(Buffer.from(p, 'base64url')), pem);
  },
};

/** Mints the token a case describes. */
export async function tokenFor(spec, ctx) {
  if (spec.rawHeader) {
    const fill = (str) => str
      .replaceAll('$ISSUER', ISSUER)
      .replaceAll('$RESOURCE', ctx.resource)
      .replaceAll('$EXP', String(nowSeconds() + 300));
    return signRaw(ctx.keys[spec.key], fill(spec.rawHeader), fill(spec.rawPayload));
  }
  const claims = { iss: spec.key === 'other' && !spec.claims?.iss ? ISSUER : ISSUER, aud: ctx.resource, sub: 'user-1', client_id: 'client-1', scope: 'mcp:read mcp:write' };
  for (const [k, v] of Object.entries(spec.claims ?? {})) claims[k] = resolve(v, ctx);
  const header = {};
  for (const [k, v] of Object.entries(spec.header ?? {})) header[k] = resolve(v, ctx);
  let t = await mint(ctx.keys[spec.key], claims, header);
  if (spec.transform) t = await transforms[spec.transform](t, ctx);
  return t;
}

/** Builds the request a case describes: [path, headers]. */
export async function requestFor(c, ctx) {
  const r = c.request ?? {};
  const headers = [...(r.headers ?? [])];
  let path = (r.path ?? '/mcp') + (r.query ?? '');
  if (c.token) {
    const t = await tokenFor(c.token, ctx);
    const scheme = r.scheme ?? 'Bearer';
    if (r.placement === 'query') path += `${path.includes('?') ? '&' : '?'}access_token=${t}`;
    else if (r.placement === 'twice') headers.push(['authorization', `${scheme} ${t}`], ['authorization', `${scheme} ${t}`]);
    else headers.push(['authorization', `${scheme} ${t}`]);
  } else if (r.auth) {
    headers.push(['authorization', r.auth]);
  }
  return { path, headers, method: r.method ?? 'POST', body: r.method === 'GET' ? undefined : '{"jsonrpc":"2.0","id":1,"method":"tools/list"}' };
}

/** Checks a response against a case's expectations. */
export function assertCase(c, res, ctx, upstreamSeen) {
  const e = c.expect;
  const statuses = Array.isArray(e.status) ? e.status : [e.status];
  assert.ok(statuses.includes(res.status), `status ${res.status}, want ${statuses.join('|')}; body ${res.body.slice(0, 200)}`);
  if (res.status === 401 || res.status === 403 || res.status === 400) {
    if (res.status === 403 && !e.error) {
      assert.equal(res.headers['www-authenticate'], undefined);
    } else {
      const ch = parseChallenge(res.headers['www-authenticate']);
      assert.ok(ch, 'WWW-Authenticate present');
      assert.equal(ch.scheme, 'Bearer');
      assert.equal(ch.params.resource_metadata, ctx.metadataUrl);
      if (e.noError) assert.equal(ch.params.error, undefined, 'no error parameter without credentials');
      if (e.error) assert.equal(ch.params.error, e.error);
      if (e.scope) assert.equal(ch.params.scope, e.scope);
      if (ch.params.error_description) assert.match(ch.params.error_description, /^[\x20-\x21\x23-\x5B\x5D-\x7E]+$/);
      // Nothing from the request is echoed into the challenge.
      assert.ok(!/evil|passwd|admin|spoofed/.test(res.headers['www-authenticate']));
    }
  }
  if (e.acao) assert.equal(res.headers['access-control-allow-origin'], e.acao);
  if (e.bodyError) {
    const body = JSON.parse(res.body);
    assert.equal(body.error, e.bodyError.error);
    assert.match(body.error_description, e.bodyError.description);
  }
  if (e.exposes) assert.match(res.headers['access-control-expose-headers'] ?? '', new RegExp(e.exposes, 'i'));
  if (res.status === 200) {
    assert.equal(upstreamSeen.length, 1, 'exactly one request reached upstream');
    const u = upstreamSeen[0];
    // No token ever reaches upstream, in any header or the URL.
    assert.equal(u.headers.authorization, undefined, 'authorization stripped');
    assert.ok(!/access_token/.test(u.url), 'no access_token in upstream URL');
    if (e.upstream?.subject) assert.equal(u.headers['x-mcp-subject'], e.upstream.subject);
    if (e.upstream?.clientId) assert.equal(u.headers['x-mcp-client-id'], e.upstream.clientId);
    if (e.upstream?.url) assert.equal(u.url, e.upstream.url);
    const subjects = u.rawHeaders.filter((_, i) => i % 2 === 0 && u.rawHeaders[i].toLowerCase() === 'x-mcp-subject');
    assert.ok(subjects.length <= 1, 'one x-mcp-subject header');
  } else {
    assert.equal(upstreamSeen.length, 0, 'nothing reached upstream');
  }
}

/**
 * The whole shared suite for one host.
 * @param {string} hostName
 * @param {(o: {port:number, config:object, jwksPort:number, upstreamPort:number}) => Promise<{stop: () => Promise<void>}>} startHost
 */
export function conformanceSuite(hostName, startHost) {
  describe(`${hostName}: reference §5 conformance`, () => {
    const ctx = {};
    let world;
    let host;
    before(async () => {
      world = await makeWorld();
      const port = await freePort();
      ctx.keys = world.keys;
      ctx.base = `http://127.0.0.1:${port}`;
      ctx.resource = `http://localhost:${port}/mcp`;
      ctx.metadataUrl = `http://localhost:${port}/.well-known/oauth-protected-resource/mcp`;
      ctx.config = conformanceConfig({ port, jwksUrl: world.jwksServer.url, otherJwk: world.keys.other.jwk });
      host = await startHost({ port, config: ctx.config, jwksPort: world.jwksServer.port, upstreamPort: world.upstream.port });
    });
    after(async () => {
      await host?.stop();
      await world?.jwksServer.stop();
      await world?.upstream.stop();
    });

    it('serves the metadata document at the path-inserted well-known URL, resource byte-exact', async () => {
      const res = await send(`${ctx.base}/.well-known/oauth-protected-resource/mcp`);
      assert.equal(res.status, 200);
      assert.match(res.headers['content-type'], /^application\/json/);
      assert.match(res.headers['cache-control'], /max-age=\d+/);
      const doc = res.json();
      assert.equal(doc.resource, ctx.resource);
      assert.deepEqual(doc.authorization_servers, [ISSUER]);
      assert.deepEqual(doc.scopes_supported, ['mcp:read', 'mcp:write']);
      assert.deepEqual(doc.bearer_methods_supported, ['header']);
      assert.equal(doc.resource_name, 'Conformance MCP server');
      assert.ok(!('jwks_uri' in doc), 'empty fields are omitted');
      assert.equal(world.upstream.seen.length, 0);
    });

    it('serves the same document at the root well-known URL', async () => {
      const a = await send(`${ctx.base}/.well-known/oauth-protected-resource`);
      const b = await send(`${ctx.base}/.well-known/oauth-protected-resource/mcp`);
      assert.equal(a.status, 200);
      assert.equal(a.body, b.body);
    });

    it('answers a CORS preflight on the metadata without a token', async () => {
      const res = await send(`${ctx.base}/.well-known/oauth-protected-resource/mcp`, {
        method: 'OPTIONS',
        headers: [['origin', 'https://anywhere.example'], ['access-control-request-method', 'GET']],
      });
      assert.ok([200, 204].includes(res.status), `status ${res.status}`);
      assert.equal(res.headers['access-control-allow-origin'], '*');
      assert.match(res.headers['access-control-allow-methods'], /GET/);
    });

    it('refuses POST on the metadata with 405', async () => {
      const res = await send(`${ctx.base}/.well-known/oauth-protected-resource/mcp`, { method: 'POST', body: '{}' });
      assert.equal(res.status, 405);
      assert.match(res.headers.allow, /GET/);
    });

    it('answers a CORS preflight on the MCP endpoint for an allowed origin', async () => {
      const res = await send(`${ctx.base}/mcp`, {
        method: 'OPTIONS',
        headers: [['origin', 'https://app.example.com'], ['access-control-request-method', 'POST'], ['access-control-request-headers', 'authorization, content-type']],
      });
      assert.ok([200, 204].includes(res.status), `status ${res.status}`);
      assert.equal(res.headers['access-control-allow-origin'], 'https://app.example.com');
      assert.match(res.headers['access-control-allow-headers'], /authorization/);
      assert.equal(world.upstream.seen.length, 0);
    });

    for (const c of [...cases, ...attacks.map((a) => ({ ...a, name: `attack: ${a.name}` }))]) {
      it(c.name, async () => {
        world.upstream.clear();
        const hitsBefore = world.jwksServer.hits;
        const r = await requestFor(c, ctx);
        const res = await send(`${ctx.base}${r.path}`, { method: r.method, headers: r.headers, body: r.body });
        assertCase(c, res, ctx, world.upstream.seen);
        if (c.expect.noJwksFetch) assert.equal(world.jwksServer.hits, hitsBefore, 'no JWKS lookup for an implausible kid');
      });
    }

    it('a repeated valid token is still checked against the required scope and expiry', async () => {
      const t = await tokenFor({ key: 'rs', claims: { scope: 'mcp:write' } }, ctx);
      for (let i = 0; i < 3; i += 1) {
        const res = await send(`${ctx.base}/mcp`, { method: 'POST', headers: [['authorization', `Bearer ${t}`]], body: '{}' });
        assert.equal(res.status, 403);
      }
    });

    it('an unknown kid triggers exactly one JWKS refetch, then 401; the cooldown bounds a flood', async () => {
      // Mint everything first: RSA key generation takes long enough that a flood minted
      // on the fly would outlast the 2 s cooldown and rightly earn another refetch.
      const stranger = await makeKey('RS256', 'k-not-published');
      const t = await mint(stranger, { iss: ISSUER, aud: ctx.resource, sub: 'x', scope: 'mcp:read' });
      const flood = [];
      for (let i = 0; i < 10; i += 1) {
        const k = await makeKey('ES256', `k-flood-${i}`);
        flood.push(await mint(k, { iss: ISSUER, aud: ctx.resource, sub: 'x', scope: 'mcp:read' }));
      }
      await sleep(2100); // let earlier refetches cool down
      const before = world.jwksServer.hits;
      const res = await send(`${ctx.base}/mcp`, { method: 'POST', headers: [['authorization', `Bearer ${t}`]], body: '{}' });
      assert.equal(res.status, 401);
      assert.equal(parseChallenge(res.headers['www-authenticate']).params.error, 'invalid_token');
      assert.equal(world.jwksServer.hits, before + 1, 'one refetch');
      for (const ft of flood) {
        const r2 = await send(`${ctx.base}/mcp`, { method: 'POST', headers: [['authorization', `Bearer ${ft}`]], body: '{}' });
        assert.equal(r2.status, 401);
      }
      assert.ok(world.jwksServer.hits <= before + 2, `refetches bounded by the cooldown (saw ${world.jwksServer.hits - before})`);
    });

    it('key rotation: a token signed by a newly published key is accepted after one refetch', async () => {
      await sleep(2100);
      const fresh = await makeKey('ES256', 'k-rotated-in');
      world.jwksServer.set({ jwks: jwks(world.keys.rs, world.keys.es, world.keys.ed, fresh) });
      const t = await mint(fresh, { iss: ISSUER, aud: ctx.resource, sub: 'rotated', scope: 'mcp:read' });
      world.upstream.clear();
      const res = await send(`${ctx.base}/mcp`, { method: 'POST', headers: [['authorization', `Bearer ${t}`]], body: '{}' });
      assert.equal(res.status, 200, res.body);
      assert.equal(world.upstream.last().headers['x-mcp-subject'], 'rotated');
    });

    it('attack: a valid token replayed after its key was rotated out is refused, even if it was cached', async () => {
      const t = await mint(world.keys.ed, { iss: ISSUER, aud: ctx.resource, sub: 'replayed', scope: 'mcp:read' });
      const send1 = () => send(`${ctx.base}/mcp`, { method: 'POST', headers: [['authorization', `Bearer ${t}`]], body: '{}' });
      assert.equal((await send1()).status, 200);
      assert.equal((await send1()).status, 200); // now a cache hit
      // The issuer withdraws the EdDSA key and publishes a new one; a token under the new
      // key makes the gateway refetch, which replaces the key set.
      await sleep(2100);
      const next = await makeKey('EdDSA', 'k-ed-next');
      world.jwksServer.set({ jwks: jwks(world.keys.rs, world.keys.es, next) });
      const nt = await mint(next, { iss: ISSUER, aud: ctx.resource, sub: 'next', scope: 'mcp:read' });
      const r = await send(`${ctx.base}/mcp`, { method: 'POST', headers: [['authorization', `Bearer ${nt}`]], body: '{}' });
      assert.equal(r.status, 200, r.body);
      // Every worker (Envoy VM) adopts the new key set within its idle tick (1 s).
      let replay;
      for (let i = 0; i < 30; i += 1) {
        replay = await send1();
        if (replay.status === 401) break;
        await sleep(100);
      }
      assert.equal(replay.status, 401, replay.body);
      assert.equal(parseChallenge(replay.headers['www-authenticate']).params.error, 'invalid_token');
    });
  });
}
