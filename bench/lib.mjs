// Shared pieces of the benchmark scripts: knobs, wrk runs, CPU accounting, statistics,
// result files. Everything the benchmarks start listens on 127.0.0.1 only.
import { execFile, execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

import { makeKey, jwks as jwksOf, mint, nowSeconds } from '../tests/lib/tokens.mjs';

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
export const OUT = process.env.BENCH_OUT ?? join(ROOT, '.build', 'bench');
export const WRK = process.env.WRK ?? 'wrk';

/** A numeric knob from the environment. */
export function knob(name, fallback) {
  const v = process.env[name];
  if (v === undefined || v === '') return fallback;
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`${name}=${v}: expected a positive number`);
  return n;
}

/** A comma-separated list knob. */
export function listKnob(name, fallback) {
  const v = process.env[name];
  return v ? v.split(',').map((s) => s.trim()).filter(Boolean) : fallback;
}

export function writeResult(name, data) {
  mkdirSync(OUT, { recursive: true });
  const file = join(OUT, name);
  writeFileSync(file, `${JSON.stringify(data, null, 1)}\n`);
  return file;
}

export function readResult(name) {
  try {
    return JSON.parse(readFileSync(join(OUT, name), 'utf8'));
  } catch {
    return null;
  }
}

/** CPU time (user + system) a process has used, in µs (from /proc, clock ticks of 10 ms). */
export function cpuUs(pid) {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(f[11]) + Number(f[12])) * 10_000;
}

/**
 * Runs wrk once. `cpus` pins it with taskset (e.g. "1"); `script` and `scriptArgs` are the
 * Lua script and its arguments. Resolves to the script's BENCH_RESULT plus rps, and, when
 * `pid` is given, the CPU time that process used per request (µs).
 */
export function runWrk({ url, seconds, threads, connections, script, scriptArgs = [], cpus, pid }) {
  // wrk takes whole seconds only.
  const args = ['-t', String(threads), '-c', String(connections), '-d', `${Math.max(1, Math.round(seconds))}s`, '--timeout', '5s', '-s', script, url, '--', ...scriptArgs];
  const cmd = cpus ? 'taskset' : WRK;
  const full = cpus ? ['-c', cpus, WRK, ...args] : args;
  const cpu0 = pid ? cpuUs(pid) : 0;
  return new Promise((resolve, reject) => {
    execFile(cmd, full, { maxBuffer: 1 << 20 }, (err, stdout, stderr) => {
      const m = /BENCH_RESULT (\{.*\})/.exec(stdout);
      if (!m) {
        reject(new Error(`wrk gave no result (${err?.message ?? 'no error'}):\n${stdout}\n${stderr}`));
        return;
      }
      const r = JSON.parse(m[1]);
      r.rps = r.requests / (r.duration_us / 1e6);
      r.errors = r.errors_connect + r.errors_read + r.errors_write + r.errors_timeout;
      if (pid) r.cpu_us_per_req = r.requests ? (cpuUs(pid) - cpu0) / r.requests : null;
      resolve(r);
    });
  });
}

export const median = (xs) => {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (!s.length) return NaN;
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
export const min = (xs) => Math.min(...xs.filter(Number.isFinite));
export const max = (xs) => Math.max(...xs.filter(Number.isFinite));

/**
 * Summarises rounds of one cell: medians and min–max of req/s, p50, p99 and CPU per request.
 */
export function summarise(rounds) {
  const pick = (k) => rounds.map((r) => r[k]);
  const s = (k) => ({ median: median(pick(k)), min: min(pick(k)), max: max(pick(k)) });
  return {
    rounds: rounds.length,
    rps: s('rps'),
    p50_us: s('p50_us'),
    p99_us: s('p99_us'),
    cpu_us_per_req: rounds.every((r) => r.cpu_us_per_req != null) ? s('cpu_us_per_req') : null,
    errors_status: rounds.reduce((a, r) => a + r.errors_status, 0),
    errors: rounds.reduce((a, r) => a + r.errors, 0),
  };
}

/**
 * Ratio of cell `a` to cell `b` over paired rounds (same round, run minutes apart at most):
 * the median and min–max of the per-round ratios of req/s, which cancels slow drifts of the
 * machine (another build starting) better than a ratio of medians.
 */
export function pairedRatio(aRounds, bRounds, key = 'rps') {
  const n = Math.min(aRounds.length, bRounds.length);
  const rs = [];
  for (let i = 0; i < n; i += 1) rs.push(aRounds[i][key] / bRounds[i][key]);
  return { median: median(rs), min: min(rs), max: max(rs) };
}

/** A fixed-seed shuffle (mulberry32), so that each round runs the cells in a new order. */
export function shuffled(items, seed) {
  let a = seed >>> 0;
  const rand = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const out = items.slice();
  for (let i = out.length - 1; i > 0; i -= 1) {
    const j = Math.floor(rand() * (i + 1));
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}

/** The commit measured (`abc1234`, `+` when the work tree has changes). */
export function commit() {
  try {
    const opts = { cwd: ROOT, stdio: ['ignore', 'pipe', 'ignore'] };
    const head = execFileSync('git', ['rev-parse', '--short', 'HEAD'], opts).toString().trim();
    // The report's own outputs do not make the measured code dirty.
    const dirty = execFileSync('git', ['status', '--porcelain', '--', '.', ':!BENCHMARKS.md', ':!bench/envoy-ratios.png'], opts).toString().trim() !== '';
    return `${head}${dirty ? '+' : ''}`;
  } catch {
    return 'unknown';
  }
}

/** The machine's load average (1, 5, 15 min), to record how busy the shared machine was. */
export function loadAvg() {
  return readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).map(Number);
}

/**
 * Keys and tokens for a benchmark: per algorithm, one key and `n` distinct valid tokens (the
 * reuse workload draws from them), written one per line to `<dir>/<alg>.txt` for wrk.
 * Returns { keys, jwks, tokens, files } (files.any is the first algorithm's list).
 */
export async function makeTokenSets({ algs, n, issuer, resource, dir }) {
  const keys = {};
  for (const alg of algs) keys[alg] = await makeKey(alg, `bench-${alg.toLowerCase()}`);
  const exp = nowSeconds() + 6 * 3600;
  const tokens = {};
  const files = {};
  for (const alg of algs) {
    tokens[alg] = [];
    for (let i = 0; i < n; i += 1) {
      tokens[alg].push(await mint(keys[alg], { iss: issuer, aud: resource, sub: `client-${i}`, client_id: `mcp-client-${i}`, scope: 'mcp:read mcp:write', exp }));
    }
    files[alg] = join(dir, `${alg}.txt`);
    writeFileSync(files[alg], `${tokens[alg].join('\n')}\n`);
  }
  files.any = files.RS256 ?? files[algs[0]];
  return { keys, jwks: jwksOf(...Object.values(keys)), tokens, files };
}

/**
 * Our filter's / Worker's config in a benchmark: one resource, inline keys for every
 * algorithm, the sub → x-mcp-subject header; `cached` false turns the verified-token cache off
 * (on: the default 4096 entries, as a user who does not set it gets).
 */
export function benchConfig({ resource, issuer, jwks, cached }) {
  return {
    resources: [{
      resource,
      authorization_servers: [issuer],
      required_scopes: ['mcp:read'],
      issuers: [{ issuer, algorithms: ['RS256', 'ES256', 'EdDSA'], local_jwks: jwks }],
      claim_to_headers: [{ header_name: 'x-mcp-subject', claim_name: 'sub' }],
    }],
    ...(cached ? {} : { token_cache: { max_entries: 0 } }),
  };
}

export const log = (...a) => console.error(`[bench ${new Date().toISOString().slice(11, 19)}]`, ...a);

/** perf report lines "  12.34%  name" into [{ pct, name }]. */
export function perfReport(data, sort, extra = []) {
  const text = execFileSync('perf', ['report', '-i', data, '--no-children', '--sort', sort, '--stdio', ...extra], { maxBuffer: 64 << 20, stdio: ['ignore', 'pipe', 'ignore'] }).toString();
  const out = [];
  for (const line of text.split('\n')) {
    const m = /^\s+([\d.]+)%\s+(.*\S)\s*$/.exec(line);
    if (m) out.push({ pct: Number(m[1]), name: m[2] });
  }
  return out;
}
