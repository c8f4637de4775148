// Behaviour specific to the native dynamic module, on a real Envoy with two workers:
// configuration refused at load naming the field, the JWKS lifecycle on the main thread
// (outage, recovery, requests paused until a slow fetch lands, a fetch past its timeout),
// logs without tokens, hostile header bytes, and opaque tokens through RFC 7662
// introspection (per-request callouts). MCP rules: mcp-rules.test.mjs.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { createServer, request } from 'node:http';

import { startModuleEnvoy, validateModuleEnvoy, bootstrap } from './launch.mjs';
import { startJwksServer, startUpstream } from '../lib/servers.mjs';
import { makeKey, jwks, mint } from '../lib/tokens.mjs';
import { freePort, sleep, parseChallenge } from '../lib/proc.mjs';
import { send } from '../lib/http.mjs';
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

async function world({ jwksUp = true } = {}) {
  const rs = await makeKey('RS256', 'k-rs');
  const jwksServer = await startJwksServer(jwks(rs));
  if (!jwksUp) await jwksServer.stop();
  const upstream = await startUpstream();
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const resource = `http://localhost:${port}/mcp`;
  const token = (key, claims = {}) => mint(key, { iss: ISSUER, aud: resource, sub: 'user-1', scope: 'mcp:read', ...claims });
  const call = (t, body = '{"jsonrpc":"2.0","id":1,"method":"ping"}') =>
    send(`${base}/mcp`, { method: 'POST', headers: [['authorization', `Bearer ${t}`], ['content-type', 'application/json']], body });
  return { rs, jwksServer, upstream, port, base, resource, token, call };
}

async function teardown(w, envoy) {
  await envoy?.stop();
  await w?.jwksServer.stop().catch(() => {});
  await w?.upstream.stop();
}

describe('envoy-module: invalid configuration is refused at load, naming the field', () => {
  const withIssuer = (p, f) => {
    const c = config(p, 'http://127.0.0.1:9/jwks');
    f(c.resources[0], c.resources[0].issuers[0]);
    return c;
  };
  const bad = [
    ['a resource that is not https', () => ({ resources: [{ resource: 'ftp://x/mcp', authorization_servers: [ISSUER], issuers: [] }] }), 'resources[0].resource'],
    ['a remote JWKS without an Envoy cluster', (p) => withIssuer(p, (_, i) => delete i.remote_jwks.http_uri.cluster), 'resources[0].issuers[0].remote_jwks.http_uri.cluster'],
    ['an empty configuration', () => '', 'filter configuration is empty'],
    ['not JSON', () => '{"resources": [', 'config:'],
    [
      'an introspection endpoint without an Envoy cluster',
      (p) => withIssuer(p, (_, i) => { i.introspection = { http_uri: { uri: 'http://127.0.0.1:9/introspect' }, client_id: 'gw', client_secret: 'hunter2-secret' }; }),
      'resources[0].issuers[0].introspection.http_uri.cluster',
    ],
  ];
  for (const [name, make, field] of bad) {
    it(`${name}: Envoy does not start and the log names ${field}`, async () => {
      const port = await freePort();
      const c = make(port);
      const envoy = await startModuleEnvoy({ port, configValue: typeof c === 'string' ? c : JSON.stringify(c), upstreamPort: 9, expectFailure: true });
      try {
        const exit = await Promise.race([envoy.proc.exitedP, sleep(15000).then(() => 'running')]);
        assert.notEqual(exit, 'running', 'Envoy refused to run with the module');
        assert.notEqual(exit.code, 0);
        const line = envoy.log().split('\n').find((l) => l.includes('refusing to start'));
        assert.ok(line, 'the module says why');
        assert.ok(line.includes(field), line);
        assert.match(line, /\[critical\]/);
        assert.ok(!envoy.log().includes('hunter2-secret'), 'no secret in the log');
      } finally {
        await envoy.stop();
      }
    });
  }

  it('envoy --mode validate checks the module config too', async () => {
    const port = await freePort();
    const good = await validateModuleEnvoy(bootstrap({ port, adminPort: await freePort(), configValue: JSON.stringify(config(port, 'http://127.0.0.1:9/jwks')), jwksPort: 9, upstreamPort: 9 }));
    assert.ok(good.ok, good.log.slice(-2000));
    const c = config(port, 'http://127.0.0.1:9/jwks');
    // MCP rules and introspection validate (both supported); a missing cluster does not.
    c.resources[0].mcp = { rules: [{ method: 'tools/call', scopes: ['x'] }] };
    c.resources[0].issuers[0].introspection = { http_uri: { uri: 'http://127.0.0.1:9/introspect', cluster: 'jwks' }, client_id: 'gw', client_secret: 'x' };
    const rules = await validateModuleEnvoy(bootstrap({ port, adminPort: await freePort(), configValue: JSON.stringify(c), jwksPort: 9, upstreamPort: 9 }));
    assert.ok(rules.ok, rules.log.slice(-2000));
    delete c.resources[0].issuers[0].introspection.http_uri.cluster;
    const badRun = await validateModuleEnvoy(bootstrap({ port, adminPort: await freePort(), configValue: JSON.stringify(c), jwksPort: 9, upstreamPort: 9 }));
    assert.ok(!badRun.ok);
    assert.match(badRun.log, /resources\[0\]\.issuers\[0\]\.introspection\.http_uri\.cluster: is required/);
  });
});

describe('envoy-module: JWKS down and nothing cached, then back', () => {
  let w;
  let envoy;
  before(async () => {
    w = await world({ jwksUp: false });
    envoy = await startModuleEnvoy({ port: w.port, config: config(w.port, w.jwksServer.url), jwksPort: w.jwksServer.port, upstreamPort: w.upstream.port });
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
    assert.equal(s.jwks_fetch_ok, 0);
    assert.equal(s['requests_denied.keys_unavailable'], 3);
  });

  it('serves once the JWKS endpoint is back, by the Retry-After it said', async () => {
    await w.jwksServer.restart();
    const t = await w.token(w.rs);
    const { res } = await recoverHonouringRetryAfter(() => w.call(t), 7);
    assert.equal(res.status, 200, res.body);
    assert.equal(w.upstream.last().headers['x-mcp-subject'], 'user-1');
    assert.equal(w.upstream.last().headers.authorization, undefined);
  });
});

describe('envoy-module: requests paused for keys', () => {
  it('requests that arrive before the first (slow) fetch wait for it, with their bodies: one fetch for every worker', async () => {
    const w = await world();
    w.jwksServer.set({ delayMs: 600 });
    const c = config(w.port, w.jwksServer.url);
    c.resources[0].issuers[0].remote_jwks.http_uri.timeout_ms = 3000;
    const envoy = await startModuleEnvoy({ port: w.port, config: c, jwksPort: w.jwksServer.port, upstreamPort: w.upstream.port, waitForJwks: false });
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
    const c = config(w.port, w.jwksServer.url);
    c.resources[0].issuers[0].remote_jwks.http_uri.timeout_ms = 500;
    const envoy = await startModuleEnvoy({ port: w.port, config: c, jwksPort: w.jwksServer.port, upstreamPort: w.upstream.port, waitForJwks: false });
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

  it('a client that goes away while its request waits does not disturb the others', async () => {
    const w = await world();
    w.jwksServer.set({ delayMs: 800 });
    const envoy = await startModuleEnvoy({ port: w.port, config: config(w.port, w.jwksServer.url), jwksPort: w.jwksServer.port, upstreamPort: w.upstream.port, waitForJwks: false });
    try {
      const t = await w.token(w.rs);
      // A raw client that sends a request and hangs up while it is paused.
      await new Promise((resolve) => {
        const s = connect(w.port, '127.0.0.1', () => {
          s.write(`GET /mcp HTTP/1.1\r\nhost: localhost:${w.port}\r\nauthorization: Bearer ${t}\r\n\r\n`);
          setTimeout(() => { s.destroy(); resolve(); }, 100);
        });
        s.on('error', resolve);
      });
      const res = await w.call(t);
      assert.equal(res.status, 200, res.body);
      assert.equal(w.upstream.seen.length, 1);
      assert.ok(envoy.proc.exited === false, 'Envoy still running');
    } finally {
      await teardown(w, envoy);
    }
  });
});

describe('envoy-module: logs, hostile input', () => {
  let w;
  let envoy;
  before(async () => {
    w = await world();
    envoy = await startModuleEnvoy({ port: w.port, config: config(w.port, w.jwksServer.url), jwksPort: w.jwksServer.port, upstreamPort: w.upstream.port });
  });
  after(() => teardown(w, envoy));

  it('never logs a token (debug level on)', async () => {
    const good = await w.token(w.rs);
    const expired = await w.token(w.rs, { exp: Math.floor(Date.now() / 1000) - 3600 });
    const stranger = await w.token(await makeKey('RS256', 'k-unknown'));
    for (const t of [good, good, expired, stranger]) await w.call(t);
    await sleep(300);
    const log = envoy.log();
    assert.match(log, /mcp-edge-auth: answered 401/, 'debug logging is on');
    for (const t of [good, expired, stranger]) {
      for (const part of t.split('.')) assert.ok(!log.includes(part), 'no token segment in the log');
    }
  });

  it('non-UTF-8 and control bytes in headers are refused, never a crash', async () => {
    const bytes = (s) => new Promise((resolve) => {
      const sock = connect(w.port, '127.0.0.1', () => sock.write(Buffer.concat([Buffer.from(`POST /mcp HTTP/1.1\r\nhost: localhost:${w.port}\r\ncontent-length: 2\r\n`), s, Buffer.from('\r\n\r\n{}')])));
      let out = '';
      sock.on('data', (d) => { out += d.toString('latin1'); if (out.includes('\r\n\r\n')) { sock.destroy(); resolve(out); } });
      sock.on('error', () => resolve(out));
      sock.on('close', () => resolve(out));
    });
    const t = await w.token(w.rs);
    w.upstream.clear();
    const a = await bytes(Buffer.concat([Buffer.from('authorization: Bearer '), Buffer.from([0xff, 0xfe]), Buffer.from(t.slice(2))]));
    assert.match(a, /^HTTP\/1\.1 (400|401)/, a.slice(0, 80));
    const o = await bytes(Buffer.concat([Buffer.from(`authorization: Bearer ${t}\r\norigin: https://`), Buffer.from([0xc3, 0x28]), Buffer.from('.example')]));
    assert.match(o, /^HTTP\/1\.1 403/, o.slice(0, 80));
    assert.equal(w.upstream.seen.length, 0);
    const res = await w.call(t);
    assert.equal(res.status, 200, 'still serving');
  });

  it('claim headers replace client-sent copies; the token never goes upstream', async () => {
    const t = await w.token(w.rs, { sub: 'real-user' });
    w.upstream.clear();
    const res = await send(`${w.base}/mcp?access_token=zzz`, {
      method: 'POST',
      headers: [['authorization', `Bearer ${t}`], ['x-mcp-subject', 'spoofed'], ['x-mcp-subject', 'spoofed-2']],
      body: '{}',
    });
    assert.equal(res.status, 200, res.body);
    assert.equal(w.upstream.last().url, '/mcp', 'access_token stripped from the URL');
    const ok = await send(`${w.base}/mcp`, { method: 'POST', headers: [['authorization', `Bearer ${t}`], ['x-mcp-subject', 'spoofed']], body: '{}' });
    assert.equal(ok.status, 200);
    const u = w.upstream.last();
    assert.equal(u.headers['x-mcp-subject'], 'real-user');
    assert.equal(u.headers.authorization, undefined);
    const ch = parseChallenge((await w.call('not-a-jwt')).headers['www-authenticate']);
    assert.equal(ch.params.error, 'invalid_token');
  });
});

describe('envoy-module: opaque tokens through RFC 7662 introspection', () => {
  let w;
  let envoy;
  let intro;
  let introPort;
  const seen = [];
  let delayMs = 0;
  const answers = {
    'opaque-good': () => ({ active: true, iss: ISSUER, aud: w.resource, scope: 'mcp:read', sub: 'intro-user', client_id: 'c1', exp: Math.floor(Date.now() / 1000) + 300 }),
    'opaque-noscope': () => ({ active: true, aud: w.resource, scope: 'other', sub: 'u', exp: Math.floor(Date.now() / 1000) + 300 }),
    'opaque-slow': () => ({ active: true, aud: w.resource, scope: 'mcp:read', sub: 'slow-user', exp: Math.floor(Date.now() / 1000) + 300 }),
    'opaque-huge': () => ({ active: true, aud: w.resource, scope: 'mcp:read', sub: 'h', pad: 'p'.repeat(70 * 1024), exp: Math.floor(Date.now() / 1000) + 300 }),
  };
  before(async () => {
    w = await world();
    intro = createServer((req, res) => {
      let body = '';
      req.on('data', (c) => { body += c; });
      req.on('end', async () => {
        const token = new URLSearchParams(body).get('token');
        seen.push({ authorization: req.headers.authorization, token, path: req.url, method: req.method, type: req.headers['content-type'] });
        if (token === 'opaque-slow' || token === 'opaque-timeout') await sleep(token === 'opaque-timeout' ? 1500 : delayMs);
        if (res.destroyed) return;
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify(answers[token]?.() ?? { active: false }));
      });
    });
    await new Promise((r) => intro.listen(0, '127.0.0.1', r));
    introPort = intro.address().port;
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
    envoy = await startModuleEnvoy({ port: w.port, config: c, upstreamPort: w.upstream.port, clusters: { introspection: introPort } });
  });
  after(async () => {
    await teardown(w, envoy);
    intro.closeAllConnections?.();
    await new Promise((r) => intro.close(r));
  });

  it('an active token goes upstream without itself, with its identity headers, and its answer is cached', async () => {
    w.upstream.clear();
    const body = '{"jsonrpc":"2.0","id":3,"method":"ping"}';
    const res = await w.call('opaque-good', body);
    assert.equal(res.status, 200, res.body);
    assert.equal(seen.length, 1);
    assert.equal(seen[0].method, 'POST');
    assert.equal(seen[0].path, '/introspect');
    assert.equal(seen[0].token, 'opaque-good');
    assert.equal(seen[0].type, 'application/x-www-form-urlencoded');
    assert.equal(seen[0].authorization, `Basic ${Buffer.from('mcp-rs:s3cret').toString('base64')}`);
    const u = w.upstream.last();
    assert.equal(u.headers.authorization, undefined);
    assert.equal(u.headers['x-mcp-subject'], 'intro-user');
    assert.equal(u.body, body, 'the body held during the call goes upstream intact');
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

  it('an answer over 64 KiB or past the timeout is 503, never let through', async () => {
    w.upstream.clear();
    const huge = await w.call('opaque-huge');
    assert.equal(huge.status, 503, huge.body);
    const t0 = Date.now();
    const late = await w.call('opaque-timeout');
    assert.equal(late.status, 503);
    assert.equal(late.headers['retry-after'], '5');
    assert.ok(Date.now() - t0 < 1450, `answered after ${Date.now() - t0} ms`);
    assert.equal(w.upstream.seen.length, 0);
  });

  it('a client that goes away mid-call disturbs nothing; concurrent calls each get their answer', async () => {
    delayMs = 400;
    await new Promise((resolve) => {
      const req = request({ host: '127.0.0.1', port: w.port, path: '/mcp', method: 'POST', headers: { authorization: 'Bearer opaque-slow', 'content-length': '2' } });
      req.on('error', () => {});
      req.end('{}');
      setTimeout(() => { req.destroy(); resolve(); }, 100);
    });
    await sleep(600);
    delayMs = 0;
    const results = await Promise.all(['opaque-good', 'opaque-unknown', 'opaque-noscope', 'opaque-slow'].map((t) => w.call(t)));
    assert.deepEqual(results.map((r) => r.status), [200, 401, 403, 200]);
    assert.equal(envoy.proc.exited, false);
  });

  it('introspection down: 503 with Retry-After, never let through; no token or secret in the log', async () => {
    intro.closeAllConnections?.();
    await new Promise((r) => intro.close(r));
    w.upstream.clear();
    const res = await w.call('opaque-other');
    assert.equal(res.status, 503);
    assert.equal(res.headers['retry-after'], '5');
    assert.equal(w.upstream.seen.length, 0);
    const log = envoy.log();
    assert.match(log, /mcp-edge-auth: introspection at http:\/\/127\.0\.0\.1:\d+\/introspect failed/);
    assert.ok(!log.includes('opaque-'), 'opaque tokens never logged');
    assert.ok(!log.includes('s3cret') && !log.includes(Buffer.from('mcp-rs:s3cret').toString('base64')), 'no client secret in the log');
  });
});
