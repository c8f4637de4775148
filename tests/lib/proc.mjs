// Process and port helpers: tests start and stop their own processes by PID, on free ports.
import { spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { mkdtempSync, openSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

function probePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.unref();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** Ports this process has handed out: the kernel may offer a just-closed one again. */
const handedOut = new Set();

/**
 * A port free on 127.0.0.1 now, and never one this process handed out before: a test that
 * asks twice before binding (a listener port, then Envoy's admin port) got the same port
 * from the kernel once, and Envoy could not bind its listener (make test, 2026-12-07).
 */
export async function freePort() {
  for (let attempt = 0; attempt < 50; attempt += 1) {
    const port = await probePort();
    if (!handedOut.has(port)) {
      handedOut.add(port);
      return port;
    }
  }
  throw new Error('no free port that was not handed out already');
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export function tempDir(prefix = 'mea-') {
  return mkdtempSync(join(tmpdir(), prefix));
}

/** Spawns a process with stdout/stderr to a log file; returns { child, log, stop() }. */
export function startProcess(cmd, args, { env = {}, cwd = ROOT, logFile } = {}) {
  const log = logFile ?? join(tempDir('mea-log-'), 'process.log');
  const fd = openSync(log, 'a');
  const child = spawn(cmd, args, { cwd, env: { ...process.env, ...env }, stdio: ['ignore', fd, fd] });
  let exited = false;
  const exitedP = new Promise((r) => child.on('exit', (code, sig) => { exited = true; r({ code, sig }); }));
  return {
    child,
    log,
    get exited() { return exited; },
    exitedP,
    async stop() {
      if (exited) return;
      child.kill('SIGTERM');
      const t = setTimeout(() => { if (!exited) child.kill('SIGKILL'); }, 3000);
      await exitedP;
      clearTimeout(t);
    },
  };
}

/** Polls `fn` until it returns truthy or `ms` passes. */
export async function waitFor(fn, { ms = 15000, step = 50, what = 'condition' } = {}) {
  const end = Date.now() + ms;
  let last;
  while (Date.now() < end) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) { last = e; }
    await sleep(step);
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${last.message}` : ''}`);
}

/** Parses a WWW-Authenticate Bearer challenge into { scheme, params }. */
export function parseChallenge(value) {
  if (!value) return null;
  const m = /^(\S+)\s*(.*)$/.exec(value);
  const params = {};
  const re = /([a-zA-Z_]+)="((?:[^"\\]|\\.)*)"\s*(?:,\s*|$)/g;
  let mm;
  while ((mm = re.exec(m[2])) !== null) {
    if (mm[1] in params) throw new Error(`auth-param ${mm[1]} repeated`);
    params[mm[1]] = mm[2];
  }
  return { scheme: m[1], params };
}
