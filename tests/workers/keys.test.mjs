// Key lifecycle in the Worker: remote JWKS fetched with fetch(), bounded by timeout_ms and
// max_body_bytes, kept per isolate, refreshed when its Cache-Control lifetime ends, served
// stale through an outage up to max_staleness, 503 + Retry-After when no keys can be had;
// inline keys need no fetch at all.
import { describe, it, before, after, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';

import { makeKey, jwks, mint } from '../lib/tokens.mjs';
import { startJwksServer, startUpstream } from '../lib/servers.mjs';
import { freePort, sleep, waitFor } from '../lib/proc.mjs';
import { send } from '../lib/http.mjs';
import { startWorkerdWith } from './launch.mjs';
import { workerConfig, tokenFor, bearer, logEvents, LOCAL_ISSUER } from './helpers.mjs';
import { startCacheServer } from './cache-server.mjs';
import { assertRetryAfter, recoverHonouringRetryAfter } from '../lib/retry-after.mjs';

describe('workerd: JWKS lifecycle', () => {
  let keys;
  let jwksServer;
  let upstream;
  let host;
  let port;

  before(async () => {
    keys = {
      rs: await makeKey('RS256', 'lk-rs'),
      es: await makeKey('ES256', 'lk-es'),
      ps: await makeKey('PS256', 'lk-ps'),
      local: await makeKey('RS256', 'lk-local'),
    };
    upstream = await startUpstream();
  });
  after(async () => {
    await upstream?.stop();
  });
  beforeEach(async () => {
    jwksServer = await startJwksServer(jwks(keys.rs, keys.es, keys.ps));
    port = await freePort();
    upstream.clear();
  });
  afterEach(async () => {
    await host?.stop();
    host = undefined;
    await jwksServer?.stop().catch(() => {});
  });

  const start = (opts = {}) =>
    startWorkerdWith({ port, config: workerConfig({ port, jwksUrl: jwksServer.url, ...opts }), upstreamPort: upstream.port });
  const call = async (key, claims) => send(`http://127.0.0.1:${port}/mcp`, { method: 'POST', headers: bearer(await tokenFor(key, port, claims)), body: '{}' });

  // A token without `kid` is tried against every key of its algorithm, one verify after
  // another, among concurrent requests with and without kid: the right ones pass with their
  // own subject, one signed by no key of the set fails. (workerd's WebCrypto answers within
  // the request's turn; node-crypto.test.mjs covers a runtime where other requests run
  // between two verifies.)
  it('checks a token without kid against each key of its algorithm, among concurrent requests', async () => {
    const second = await makeKey('RS256', 'lk-rs-2');
    await jwksServer.stop();
    jwksServer = await startJwksServer(jwks(keys.rs, second, keys.es));
    host = await start();
    // tokenFor's claims, signed again without kid.
    const noKid = async (key, sub) => {
      const claims = JSON.parse(Buffer.from((await tokenFor(key, port, { sub })).split('.')[1], 'base64url'));
      return mint(key, claims, { kid: undefined });
    };
    assert.equal((await call(keys.rs)).status, 200, 'keys are in');
    upstream.clear();
    const jobs = [];
    for (let i = 0; i < 12; i += 1) {
      jobs.push({ token: await noKid(second, `second-${i}`), status: 200, sub: `second-${i}` });
      jobs.push({ token: await tokenFor(keys.es, port, { sub: `es-${i}` }), status: 200, sub: `es-${i}` });
      jobs.push({ token: await noKid(keys.rs, `first-${i}`), status: 200, sub: `first-${i}` });
      // Signed by a key the JWKS does not hold: every candidate fails.
      jobs.push({ token: await noKid(await makeKey('RS256', 'nowhere'), `forged-${i}`), status: 401 });
    }
    const answers = await Promise.all(
      jobs.map((j) => send(`http://127.0.0.1:${port}/mcp`, { method: 'POST', headers: bearer(j.token), body: '{}' })),
    );
    answers.forEach((res, i) => assert.equal(res.status, jobs[i].status, `${jobs[i].sub ?? 'forged'}: ${res.body}`));
    const subjects = upstream.seen.map((r) => r.headers['x-mcp-subject']).sort();
    assert.deepEqual(subjects, jobs.filter((j) => j.status === 200).map((j) => j.sub).sort());
  });

  it('fetches the JWKS once and verifies RS256, ES256 and PS256 with WebCrypto', async () => {
    host = await start();
    for (const k of [keys.rs, keys.es, keys.ps, keys.rs, keys.es]) {
      const res = await call(k);
      assert.equal(res.status, 200, res.body);
    }
    assert.equal(jwksServer.hits, 1, 'keys are kept per isolate');
    assert.equal(upstream.seen.length, 5);
  });

  it('JWKS down at start: 503 with Retry-After, nothing forwarded; serves once the JWKS is back', async () => {
    await jwksServer.stop();
    host = await start();
    const res = await call(keys.rs);
    assert.equal(res.status, 503);
    assertRetryAfter(res, 7);
    assert.equal(res.headers['www-authenticate'], undefined);
    assert.equal(upstream.seen.length, 0);
    // Before the next attempt no fetch is tried: still 503, fast.
    const again = await call(keys.rs);
    assert.equal(again.status, 503);
    await jwksServer.restart();
    const { res: ok } = await recoverHonouringRetryAfter(() => call(keys.rs), 7);
    assert.equal(ok.status, 200, ok.body);
    assert.ok(logEvents(host.log).some((e) => e.event === 'jwks_fetch_failed'), 'the failed fetch is logged');
  });

  it('workerd refusing a local JWKS address (no network service allowing it): 503, and the log names the setting', async () => {
    // workerd's default outbound reaches public addresses only; a local authorization server
    // needs a network service with allow = ["public", "private", "local"] (workers/README.md).
    host = await startWorkerdWith({ port, config: workerConfig({ port, jwksUrl: jwksServer.url }), upstreamPort: upstream.port, networkAllow: ['public'] });
    const res = await call(keys.rs);
    assertRetryAfter(res, 7);
    assert.equal(jwksServer.hits, 0, 'workerd never connected');
    await waitFor(() => logEvents(host.log).some((e) => e.event === 'jwks_fetch_failed' && /network service/.test(e.error) && /"local"/.test(e.error)), { ms: 3000, what: 'the refusal named in the log' });
  });

  it('JWKS failing with 500 at start: 503, never allow', async () => {
    jwksServer.set({ status: 500 });
    host = await start();
    const res = await call(keys.rs);
    assert.equal(res.status, 503);
    assertRetryAfter(res, 7);
    assert.equal(upstream.seen.length, 0);
  });

  it('a JWKS that is not a JWKS: 503, and the log says why', async () => {
    jwksServer.set({ body: '<html>not json</html>' });
    host = await start();
    const res = await call(keys.rs);
    assert.equal(res.status, 503);
    await waitFor(() => logEvents(host.log).some((e) => e.event === 'jwks_rejected'), { ms: 3000, what: 'jwks_rejected log' });
  });

  it('enforces timeout_ms on the JWKS fetch', async () => {
    jwksServer.set({ delayMs: 3000 });
    host = await start({ remote: { http_uri: { uri: jwksServer.url, timeout_ms: 300 } } });
    const t0 = Date.now();
    const res = await call(keys.rs);
    const took = Date.now() - t0;
    assert.equal(res.status, 503);
    assert.ok(took < 2000, `gave up after ${took} ms`);
  });

  it('enforces max_body_bytes on the JWKS fetch', async () => {
    const big = { ...jwks(keys.rs), padding: 'x'.repeat(4000) };
    jwksServer.set({ jwks: big });
    host = await start({ remote: { max_body_bytes: 2048 } });
    const res = await call(keys.rs);
    assert.equal(res.status, 503);
    await waitFor(() => logEvents(host.log).some((e) => e.event === 'jwks_fetch_failed' && /max_body_bytes/.test(e.error)), { ms: 3000, what: 'size refusal in the log' });
  });

  it('JWKS down after keys were cached: keeps serving, then 503 past max_staleness', async () => {
    jwksServer.set({ cacheControl: 'max-age=1' });
    host = await start({ remote: { min_cache_duration_seconds: 1, cache_duration_seconds: 1, max_staleness_seconds: 3 } });
    assert.equal((await call(keys.rs)).status, 200);
    await jwksServer.stop();
    await sleep(1200); // past the 1 s lifetime: refreshes now fail in the background
    for (let i = 0; i < 3; i += 1) {
      const res = await call(keys.es); // a new token each time: a real signature check
      assert.equal(res.status, 200, `still serving with cached keys (${res.body})`);
      await sleep(300);
    }
    await sleep(2200); // now past max_staleness (3 s after the last good fetch)
    const res = await call(keys.rs);
    assert.equal(res.status, 503);
    assertRetryAfter(res, 7);
  });

  it('honours Cache-Control: refreshes in the background when max-age runs out', async () => {
    jwksServer.set({ cacheControl: 'public, max-age=1' });
    host = await start({ remote: { min_cache_duration_seconds: 1, cache_duration_seconds: 1 } });
    assert.equal((await call(keys.rs)).status, 200);
    assert.equal(jwksServer.hits, 1);
    await sleep(1300);
    assert.equal((await call(keys.rs)).status, 200);
    await waitFor(() => jwksServer.hits === 2, { ms: 3000, what: 'a background refresh' });
  });

  it('clamps Cache-Control to the configured bounds (max-age=86400 with max 1 s still refreshes)', async () => {
    jwksServer.set({ cacheControl: 'max-age=86400' });
    host = await start({ remote: { min_cache_duration_seconds: 1, cache_duration_seconds: 1, max_cache_duration_seconds: 1 } });
    assert.equal((await call(keys.rs)).status, 200);
    await sleep(1300);
    assert.equal((await call(keys.rs)).status, 200);
    await waitFor(() => jwksServer.hits === 2, { ms: 3000, what: 'a refresh despite the long max-age' });
  });

  it('a long max-age is honoured: no refetch while fresh', async () => {
    jwksServer.set({ cacheControl: 'max-age=3600' });
    host = await start({ remote: { min_cache_duration_seconds: 1 } });
    assert.equal((await call(keys.rs)).status, 200);
    await sleep(1300);
    assert.equal((await call(keys.es)).status, 200);
    await sleep(200);
    assert.equal(jwksServer.hits, 1);
  });

  it('a key rotated out voids cached verifications of tokens it signed', async () => {
    jwksServer.set({ cacheControl: 'max-age=1' });
    host = await start({ remote: { min_cache_duration_seconds: 1, cache_duration_seconds: 1 } });
    const t = await tokenFor(keys.rs, port);
    const hit = () => send(`http://127.0.0.1:${port}/mcp`, { method: 'POST', headers: bearer(t), body: '{}' });
    assert.equal((await hit()).status, 200);
    assert.equal((await hit()).status, 200); // from the verified-token cache
    jwksServer.set({ jwks: jwks(keys.es) }); // lk-rs is gone
    await sleep(1300);
    await hit(); // starts the background refresh (this one may still pass)
    await waitFor(() => jwksServer.hits >= 2, { ms: 3000, what: 'the refresh' });
    await sleep(100);
    const res = await hit();
    assert.equal(res.status, 401, 'the old key no longer verifies anything');
  });

  it('concurrent requests on a cold isolate share one JWKS fetch', async () => {
    jwksServer.set({ delayMs: 300 });
    host = await start();
    const results = await Promise.all(Array.from({ length: 8 }, () => call(keys.es)));
    assert.deepEqual(results.map((r) => r.status), Array(8).fill(200));
    assert.equal(jwksServer.hits, 1);
  });

  it('inline keys (local_jwks) need no fetch: never delayed by the remote issuer\'s', async () => {
    // The remote issuer beside it is fetched in the background (its initial fetch); a token
    // of the inline issuer never waits for that.
    jwksServer.set({ delayMs: 1500 });
    host = await start({ localJwk: keys.local.jwk });
    const t0 = Date.now();
    const res = await call(keys.local, { iss: LOCAL_ISSUER });
    assert.equal(res.status, 200, res.body);
    assert.ok(Date.now() - t0 < 1000, `served in ${Date.now() - t0} ms`);
  });
});

describe('workerd: JWKS shared through the Cache API', () => {
  it('a second isolate takes fresh keys from the Cache API instead of the JWKS endpoint', async () => {
    const key = await makeKey('ES256', 'cache-es');
    const fresh = await makeKey('ES256', 'cache-rotated');
    const jwksServer = await startJwksServer(jwks(key), {});
    jwksServer.set({ cacheControl: 'max-age=120' });
    const upstream = await startUpstream();
    const cache = await startCacheServer();
    const [port, port2] = [await freePort(), await freePort()];
    // Both isolates serve the same resource (the token's audience names `port`).
    const host = await startWorkerdWith({
      port,
      extraPorts: [port2],
      cachePort: cache.port,
      config: workerConfig({ port, jwksUrl: jwksServer.url }),
      upstreamPort: upstream.port,
    });
    try {
      const call = async (p, k) => send(`http://127.0.0.1:${p}/mcp`, { method: 'POST', headers: bearer(await tokenFor(k, port)), body: '{}' });
      assert.equal((await call(port, key)).status, 200);
      assert.equal(jwksServer.hits, 1);
      await waitFor(() => cache.state.puts === 1, { ms: 3000, what: 'the JWKS stored in the Cache API' });
      assert.equal((await call(port2, key)).status, 200);
      assert.equal(jwksServer.hits, 1, 'the second isolate did not fetch');
      assert.ok(logEvents(host.log).some((e) => e.event === 'jwks_installed' && e.from === 'cache_api'), 'installed from the Cache API');
      // An unknown kid always asks the JWKS endpoint itself, never the cached copy.
      jwksServer.set({ jwks: jwks(key, fresh) });
      assert.equal((await call(port2, fresh)).status, 200);
      assert.equal(jwksServer.hits, 2);
    } finally {
      await host.stop();
      await jwksServer.stop();
      await upstream.stop();
      await cache.stop();
    }
  });
});
