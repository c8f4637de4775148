// The short soak in make test: 30 s of wrk through Envoy with a token mix (make soak: 10 min).
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { soak } from './soak.mjs';

it('30 s soak through Envoy: every response as expected, no 5xx, RSS flat, cache bounded', { timeout: 120_000 }, async () => {
  const r = await soak({ seconds: Number(process.env.SOAK_SECONDS ?? 30), sampleEvery: 5, log: () => {} });
  assert.ok(r.requests > 1000, `only ${r.requests} requests`);
  assert.equal(r.wrong, 0, 'every response had the expected status');
  assert.equal(r.errors_connect + r.errors_read + r.errors_write + r.errors_timeout, 0, 'no errors');
  // Each of 1,000 distinct valid tokens was verified at most once per worker VM beyond the
  // cache bound's evictions; hits dominate once the Zipf head is cached.
  assert.ok(r.filter_stats.token_cache_hit > r.filter_stats.token_cache_miss, JSON.stringify(r.filter_stats));
  // RSS after warm-up stays within 20 MiB (a leak at thousands of requests/s would not).
  assert.ok(r.rss_growth_after_warmup_kib < 20 * 1024, `RSS grew ${r.rss_growth_after_warmup_kib} KiB`);
});
