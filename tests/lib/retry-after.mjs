// The Retry-After of a 503 "no usable keys" is the time until the gateway's next fetch
// attempt (the core's key schedule backs off 1 s, 2 s, 4 s … up to retry_after_seconds), so
// a test can only bound it, and check elsewhere that coming back then is served.
import assert from 'node:assert/strict';

/** Asserts a 503 whose Retry-After is a whole number of seconds in 1..max. */
export function assertRetryAfter(res, max) {
  assert.equal(res.status, 503, res.body);
  const v = res.headers['retry-after'];
  assert.match(String(v), /^[1-9][0-9]*$/, `Retry-After ${v}`);
  assert.ok(Number(v) <= max, `Retry-After ${v} is at most retry_after_seconds (${max})`);
  return Number(v);
}

/**
 * What a client that honours Retry-After sees once the endpoint is back: `call()` until it is
 * not a 503, sleeping Retry-After seconds between tries. Asserts it is served on the first
 * try after a Retry-After (plus 1 s of slack for the fetch itself), and returns the final
 * response and how long recovery took (ms).
 */
export async function recoverHonouringRetryAfter(call, max) {
  const t0 = Date.now();
  let res = await call();
  let told = 0;
  for (let i = 0; i < 3 && res.status === 503; i += 1) {
    told = assertRetryAfter(res, max);
    await new Promise((r) => setTimeout(r, told * 1000));
    res = await call();
  }
  const took = Date.now() - t0;
  assert.notEqual(res.status, 503, `still 503 after honouring Retry-After (${told} s)`);
  assert.ok(took <= (told + 1) * 1000 + 1000, `recovered in ${took} ms; Retry-After said ${told} s`);
  return { res, took, told };
}
