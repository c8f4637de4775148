// Envoy-specific behaviour of the filter, on a real Envoy with two workers: configuration
// refused at load, the JWKS lifecycle (outage with and without cached keys, maximum
// staleness, periodic refresh and rotation, slow and timed-out fetches, one fetch shared by
// every VM), metrics in the admin API, logs without tokens, and hostile header bytes.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';

import { startEnvoy } from './launch.mjs';
import { startJwksServer, startUpstream } from '../lib/servers.mjs';
import { makeKey, jwks, mint } from '../lib/tokens.mjs';
import { freePort, sleep, waitFor, parseChallenge } from '../lib/proc.mjs';
import { send } from '../lib/http.mjs';
import { createServer } from 'node:http';
import { assertRetryAfter, recoverHonouringRetryAfter } from '../lib/retry-after.mjs';

const ISSUER = 'http://127.0.0.1:9/issuer-one';

/** A one-resource config whose only issuer uses the JWKS server; `remote` tunes its cache. */
function config(port, jwksUrl, remote = {}) {
  return {
    resources: [
      {
        resource: `http://localhost:${port}/mcp`,
        authorization_servers: [ISSUER],
        scopes_supported: ['mcp:read'],
        required_scopes: ['mcp:read'],
        issuers: [
          {
            issuer: ISSUER,
            algorithms: ['RS256', 'ES256'],
            remote_jwks: {
              http_uri: { uri: jwksUrl, cluster: 'jwks', timeout_ms: 1000 },
              refetch_cooldown_seconds: 1,
              retry_after_seconds: 7,
              ...remote,
            },
          },
        ],
        claim_to_headers: [{ header_name: 'x-mcp-subject', claim_name: 'sub' }],
      },
    ],
  };
}

/** Keys, a JWKS server, an upstream, and a free port for Envoy. */
async function world({ jwksUp = true, cacheControl = 'max-age=300' } = {}) {
  const rs = await makeKey('RS256', 'k-rs');
  const es = await makeKey('ES256', 'k-es');
  const jwksServer = await startJwksServer(jwks(rs));
  jwksServer.set({ cacheControl });
  if (!jwksUp) await jwksServer.stop();
  const upstream = await startUpstream();
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const resource = `http://localhost:${port}/mcp`;
  const token = (key, claims = {}) => mint(key, { iss: ISSUER, aud: resource, sub: 'user-1', scope: 'mcp:read', ...claims });
  const call = (t, body = '{"jsonrpc":"2.0","id":1,"method":"ping"}') =>
    send(`${base}/mcp`, { method: 'POST', headers: [['authorization', `Bearer ${t}`], ['content-type', 'application/json']], body });
  return { rs, es, jwksServer, upstream, port, base, resource, token, call };
}

async function teardown(w, envoy) {
  await envoy?.stop();
  await w?.jwksServer.stop().catch(() => {});
  await w?.upstream.stop();
}

describe('envoy: invalid configuration is refused at load, naming the field', () => {
  const bad = [
    ['a resource that is not https', (p) => ({ resources: [{ resource: 'ftp://x/mcp', authorization_servers: [ISSUER], issuers: [] }] }), 'resources[0].resource'],
    ['a misspelt field', (p) => ({ ...config(p, 'http://127.0.0.1:9/jwks'), unmatched: 'allow' }), 'unmatched'],
    [
      'a remote JWKS without an Envoy cluster',
      (p) => {
        const c = config(p, 'http://127.0.0.1:9/jwks');
        delete c.resources[0].issuers[0].remote_jwks.http_uri.cluster;
        return c;
      },
      'resources[0].issuers[0].remote_jwks.http_uri.cluster',
    ],
    ['an empty configuration', () => '', 'plugin configuration is empty'],
    ['not JSON', () => '{"resources": [', 'config:'],
  ];
  for (const [name, make, field] of bad) {
    it(`${name}: Envoy does not start and the log names ${field}`, async () => {
      const port = await freePort();
      const c = make(port);
      const envoy = await startEnvoy({ port, configValue: typeof c === 'string' ? c : JSON.stringify(c), upstreamPort: 9, expectFailure: true });
      try {
        const exit = await Promise.race([envoy.proc.exitedP, sleep(15000).then(() => 'running')]);
        assert.notEqual(exit, 'running', 'Envoy refused to run with the plugin');
        assert.notEqual(exit.code, 0);
        const line = envoy.log().split('\n').find((l) => l.includes('refusing to start'));
        assert.ok(line, 'the filter says why');
        assert.ok(line.includes(field), line);
        assert.match(line, /\[critical\]/);
      } finally {
        await envoy.stop();
      }
    });
  }
});

describe('envoy: JWKS down and nothing cached', () => {
  let w;
  let envoy;
  before(async () => {
    w = await world({ jwksUp: false });
    envoy = await startEnvoy({ port: w.port, config: config(w.port, w.jwksServer.url), jwksPort: w.jwksServer.port, upstreamPort: w.upstream.port });
  });
  after(() => teardown(w, envoy));

  it('answers 503 with Retry-After and never lets the request through', async () => {
    const t = await w.token(w.rs);
    for (let i = 0; i < 3; i += 1) {
      const res = await w.call(t);
      assert.equal(res.status, 503);
      assertRetryAfter(res, 7);
    }
    assert.equal(w.upstream.seen.length, 0);
    const s = await envoy.stats();
    assert.ok(s.jwks_fetch_failed >= 1, JSON.stringify(s));
    assert.equal(s['requests_denied.keys_unavailable'], 3);
  });

  it('serves again once the JWKS endpoint is back, by the Retry-After it said', async () => {
    await w.jwksServer.restart();
    const t = await w.token(w.rs);
    const { res } = await recoverHonouringRetryAfter(() => w.call(t), 7);
    assert.equal(res.status, 200, res.body);
    assert.equal(w.upstream.seen.length, 1);
  });
});

describe('envoy: JWKS down with cached keys', () => {
  let w;
  let envoy;
  before(async () => {
    // Keys are due for refresh every second and may be served 3 s past their fetch.
    w = await world({ cacheControl: 'max-age=1' });
    const c = config(w.port, w.jwksServer.url, { min_cache_duration_seconds: 1, cache_duration_seconds: 1, max_staleness_seconds: 3 });
    envoy = await startEnvoy({ port: w.port, config: c, jwksPort: w.jwksServer.port, upstreamPort: w.upstream.port });
  });
  after(() => teardown(w, envoy));

  it('keeps serving with the cached keys while refreshes fail, then 503 past max staleness', async () => {
    const fetchedAt = Date.now();
    await w.jwksServer.stop();
    const t = await w.token(w.rs);
    assert.equal((await w.call(t)).status, 200);
    await waitFor(async () => (await envoy.statsNow()).jwks_fetch_failed >= 1, { what: 'a failed refresh' });
    assert.equal((await w.call(await w.token(w.rs, { sub: 'other' }))).status, 200, 'stale keys still serve');
    assert.equal((await w.call(t)).status, 200, 'and so does the cached token');
    await sleep(Math.max(0, fetchedAt + 4500 - Date.now()));
    const res = await w.call(t);
    assert.equal(res.status, 503, 'a cached token is not served past the keys it was verified with');
    assertRetryAfter(res, 7);
    const fresh = await w.call(await w.token(w.rs, { sub: 'late' }));
    assert.equal(fresh.status, 503);
    assert.equal(w.upstream.seen.length, 3);
  });
});

describe('envoy: periodic refresh, rotation and one fetch for all workers', () => {
  let w;
  let envoy;
  before(async () => {
    w = await world({ cacheControl: 'max-age=1' });
    const c = config(w.port, w.jwksServer.url, { min_cache_duration_seconds: 1, cache_duration_seconds: 1 });
    envoy = await startEnvoy({ port: w.port, config: c, jwksPort: w.jwksServer.port, upstreamPort: w.upstream.port });
  });
  after(() => teardown(w, envoy));

  it('refreshes on the Cache-Control period with one fetch per period, not one per VM', async () => {
    const start = w.jwksServer.hits;
    await sleep(3200);
    const n = w.jwksServer.hits - start;
    // Three VMs (main thread and two workers) refreshing on their own would make ~9.
    assert.ok(n >= 2 && n <= 4, `refreshes in 3.2 s: ${n}`);
  });

  it('a key removed from the JWKS stops working, even for a token verified before', async () => {
    const old = await w.token(w.rs);
    assert.equal((await w.call(old)).status, 200);
    assert.equal((await w.call(old)).status, 200); // now from the token cache
    w.jwksServer.set({ jwks: jwks(w.es) });
    const t = await w.token(w.es);
    await waitFor(async () => (await w.call(old)).status === 401, { ms: 4000, what: 'the rotated-out key to be refused' });
    const res = await w.call(t);
    assert.equal(res.status, 200, res.body);
  });
});

describe('envoy: slow JWKS', () => {
  it('requests arriving before the first fetch wait for it; one fetch serves them all, bodies intact', async () => {
    const w = await world();
    w.jwksServer.set({ delayMs: 700 });
    const c = config(w.port, w.jwksServer.url, {});
    c.resources[0].issuers[0].remote_jwks.http_uri.timeout_ms = 3000;
    const envoy = await startEnvoy({ port: w.port, config: c, jwksPort: w.jwksServer.port, upstreamPort: w.upstream.port, waitForJwks: false });
    try {
      const tokens = await Promise.all([...Array(8).keys()].map((i) => w.token(w.rs, { sub: `user-${i}` })));
      const results = await Promise.all(tokens.map((t, i) => w.call(t, JSON.stringify({ jsonrpc: '2.0', id: i, method: 'tools/list', pad: 'x'.repeat(20000) }))));
      assert.deepEqual(results.map((r) => r.status), Array(8).fill(200));
      assert.equal(w.jwksServer.hits, 1, 'one JWKS fetch for every worker');
      assert.equal(w.upstream.seen.length, 8);
      for (const seen of w.upstream.seen) {
        const body = JSON.parse(seen.body);
        assert.equal(seen.headers['x-mcp-subject'], `user-${body.id}`);
        assert.equal(body.pad.length, 20000);
      }
    } finally {
      await teardown(w, envoy);
    }
  });

  it('a fetch slower than its timeout answers the paused request with 503, not a hang', async () => {
    const w = await world();
    w.jwksServer.set({ delayMs: 5000 });
    const c = config(w.port, w.jwksServer.url, {});
    c.resources[0].issuers[0].remote_jwks.http_uri.timeout_ms = 500;
    const envoy = await startEnvoy({ port: w.port, config: c, jwksPort: w.jwksServer.port, upstreamPort: w.upstream.port, waitForJwks: false });
    try {
      const t0 = Date.now();
      const res = await w.call(await w.token(w.rs));
      const took = Date.now() - t0;
      assert.equal(res.status, 503);
      assertRetryAfter(res, 7);
      assert.ok(took < 3000, `answered after ${took} ms`);
      assert.equal(w.upstream.seen.length, 0);
    } finally {
      await teardown(w, envoy);
    }
  });
});

describe('envoy: metrics, logs, hostile input', () => {
  let w;
  let envoy;
  const tokens = [];
  before(async () => {
    w = await world();
    envoy = await startEnvoy({ port: w.port, config: config(w.port, w.jwksServer.url), jwksPort: w.jwksServer.port, upstreamPort: w.upstream.port });
  });
  after(() => teardown(w, envoy));

  it('counts decisions, cache hits and fetches in /stats and /stats/prometheus', async () => {
    const before = await envoy.stats();
    const good = await w.token(w.rs);
    const expired = await w.token(w.rs, { exp: Math.floor(Date.now() / 1000) - 3600 });
    const noScope = await w.token(w.rs, { scope: 'other' });
    tokens.push(good, expired, noScope);
    assert.equal((await send(`${w.base}/.well-known/oauth-protected-resource/mcp`)).status, 200);
    assert.equal((await send(`${w.base}/mcp`, { method: 'POST', body: '{}' })).status, 401);
    assert.equal((await w.call(good)).status, 200);
    assert.equal((await w.call(good)).status, 200);
    assert.equal((await w.call(expired)).status, 401);
    assert.equal((await w.call(noScope)).status, 403);
    assert.equal((await w.call('not-a-jwt')).status, 401);
    assert.equal((await send(`${w.base}/mcp`, { method: 'POST', headers: [['authorization', 'Bearer a b']], body: '{}' })).status, 400);
    const s = await envoy.stats();
    const d = (k) => (s[k] ?? 0) - (before[k] ?? 0);
    assert.equal(d('metadata_served'), 1);
    assert.equal(d('requests_denied.missing'), 1);
    assert.equal(d('requests_allowed'), 2);
    assert.equal(d('token_cache_miss'), 1);
    assert.equal(d('token_cache_hit'), 1);
    assert.equal(d('requests_denied.expired'), 1);
    assert.equal(d('requests_denied.scope'), 1);
    assert.equal(d('requests_denied.invalid'), 1);
    assert.equal(d('requests_denied.malformed'), 1);
    assert.ok(s.jwks_fetch_ok >= 1);
    const prom = (await send(`${envoy.adminUrl}/stats/prometheus`)).body;
    // Envoy drops the `wasmcustom.` prefix for Prometheus; the stats_tags rule of
    // envoy/envoy.yaml (also in the test bootstrap) turns the refusal reason into a label.
    assert.match(prom, /^mcp_edge_auth_requests_allowed\{[^}]*\} [1-9]/m);
    assert.match(prom, /^mcp_edge_auth_requests_denied\{reason="expired"\} 1$/m);
    assert.match(prom, /^mcp_edge_auth_requests_denied\{reason="scope"\} 1$/m);
    assert.match(prom, /^mcp_edge_auth_jwks_fetch_ok\{[^}]*\} [1-9]/m);
  });

  it('never logs a token or an Authorization header, even at debug level', async () => {
    const log = envoy.log();
    assert.match(log, /wasm log mcp_edge_auth.*answered 401/, 'debug logging is on');
    for (const t of tokens) {
      const [h, p, sig] = t.split('.');
      assert.ok(!log.includes(p), 'no token payload in the log');
      assert.ok(!log.includes(sig), 'no token signature in the log');
      assert.ok(!log.includes(h + '.'), 'no token in the log');
    }
    assert.ok(!/authorization:/i.test(log));
  });

  it('a header value that is not UTF-8 is refused, and the VM lives on', async () => {
    const latin1 = 'Bearer \xff\xfe.\xe9';
    const res = await send(`${w.base}/mcp`, { method: 'POST', headers: [['authorization', latin1]], body: '{}' });
    assert.ok([400, 401].includes(res.status), `status ${res.status}`);
    const origin = await send(`${w.base}/mcp`, { method: 'POST', headers: [['origin', 'https://\xe9vil.example']], body: '{}' });
    assert.equal(origin.status, 403);
    // Both workers still answer.
    for (let i = 0; i < 6; i += 1) {
      assert.equal((await w.call(tokens[0])).status, 200);
    }
  });

  it('answers HEAD on the metadata without a body and 405 for other methods', async () => {
    const head = await send(`${w.base}/.well-known/oauth-protected-resource/mcp`, { method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.equal(head.body, '');
    const del = await send(`${w.base}/.well-known/oauth-protected-resource`, { method: 'DELETE' });
    assert.equal(del.status, 405);
  });

  it('a path outside every resource is refused by default', async () => {
    const res = await send(`${w.base}/admin`, { headers: [['authorization', `Bearer ${tokens[0]}`]] });
    assert.equal(res.status, 403);
    assert.equal(parseChallenge(res.headers['www-authenticate'] ?? '') ?? null, null);
  });
});


describe('envoy: opaque tokens through RFC 7662 introspection', () => {
  let w;
  let envoy;
  let intro;
  const seen = [];
  const answers = {
    'opaque-good': () => ({ active: true, iss: ISSUER, aud: w.resource, scope: 'mcp:read', sub: 'intro-user', client_id: 'c1', exp: Math.floor(Date.now() / 1000) + 300 }),
    'opaque-noscope': () => ({ active: true, aud: w.resource, scope: 'other', sub: 'u', exp: Math.floor(Date.now() / 1000) + 300 }),
  };
  before(async () => {
    w = await world();
    intro = createServer((req, res) => {
      let body = '';
      req.on('data', (c) => { body += c; });
      req.on('end', () => {
        const token = new URLSearchParams(body).get('token');
        seen.push({ authorization: req.headers.authorization, token, path: req.url, method: req.method });
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify(answers[token]?.() ?? { active: false }));
      });
    });
    await new Promise((r) => intro.listen(0, '127.0.0.1', r));
    const introPort = intro.address().port;
    const c = config(w.port, w.jwksServer.url);
    c.resources[0].issuers = [
      {
        issuer: ISSUER,
        introspection: {
          http_uri: { uri: `http://127.0.0.1:${introPort}/introspect`, cluster: 'introspection', timeout_ms: 1000 },
          client_id: 'mcp-rs',
          client_secret: 's3cret',
          retry_after_seconds: 5,
        },
      },
    ];
    envoy = await startEnvoy({ port: w.port, config: c, upstreamPort: w.upstream.port, clusters: { introspection: introPort } });
  });
  after(async () => {
    await teardown(w, envoy);
    intro.closeAllConnections?.();
    await new Promise((r) => intro.close(r));
  });

  it('an active token goes upstream without itself, and its answer is cached', async () => {
    w.upstream.clear();
    const res = await w.call('opaque-good');
    assert.equal(res.status, 200, res.body);
    assert.equal(seen.length, 1);
    assert.equal(seen[0].method, 'POST');
    assert.equal(seen[0].path, '/introspect');
    assert.equal(seen[0].token, 'opaque-good');
    assert.equal(seen[0].authorization, `Basic ${Buffer.from('mcp-rs:s3cret').toString('base64')}`);
    const u = w.upstream.last();
    assert.equal(u.headers.authorization, undefined);
    assert.equal(u.headers['x-mcp-subject'], 'intro-user');
    assert.equal((await w.call('opaque-good')).status, 200);
    assert.equal(seen.length, 1, 'second use answered from the token cache');
  });

  it('an inactive token is 401 invalid_token; too little scope is 403', async () => {
    const res = await w.call('opaque-unknown');
    assert.equal(res.status, 401);
    assert.equal(parseChallenge(res.headers['www-authenticate']).params.error, 'invalid_token');
    const scope = await w.call('opaque-noscope');
    assert.equal(scope.status, 403);
    assert.equal(parseChallenge(scope.headers['www-authenticate']).params.error, 'insufficient_scope');
  });

  it('introspection down: 503 with Retry-After, never let through', async () => {
    intro.closeAllConnections?.();
    await new Promise((r) => intro.close(r));
    w.upstream.clear();
    const res = await w.call('opaque-other');
    assert.equal(res.status, 503);
    assert.equal(res.headers['retry-after'], '5');
    assert.equal(w.upstream.seen.length, 0);
    assert.ok(!envoy.log().includes('opaque-'), 'opaque tokens never logged');
  });
});
