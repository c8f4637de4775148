// Process and port helpers: tests start and stop their own processes by PID, on free ports.
import { spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { mkdtempSync, openSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** Binds 127.0.0.1:`port` (0: any) and closes it again; resolves the port, or null if taken. */
function probePort(port) {
  return new Promise((resolve) => {
    const s = createServer();
    s.unref();
    s.on('error', () => resolve(null));
    s.listen(port, '127.0.0.1', () => {
      const bound = s.address().port;
      s.close(() => resolve(bound));
    });
  });
}

/**
 * Where test ports are drawn: below the kernel's ephemeral range, which outgoing connections
 * (thousands per suite, thousands more in TIME-WAIT) draw from too. A port from `listen(0)`
 * lies in that range, and was taken by some outgoing connection before Envoy bound its
 * listener to it (make test, 2026-12-07, twice in a row).
 */
const PORT_RANGE = (() => {
  let low = 32768;
  try {
    low = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]) || low;
  } catch {
    // Not Linux: the default range's start.
  }
  return low > 12000 ? [10000, low - 1] : null;
})();

/** Ports this process has handed out: never the same one twice. */
const handedOut = new Set();

/**
 * A port free on 127.0.0.1 now, outside the ephemeral range where there is room, and never
 * one this process handed out before (asked twice before binding, the kernel once offered
 * the same port for a listener and for Envoy's admin).
 */
export async function freePort() {
  for (let attempt = 0; attempt < 200; attempt += 1) {
    const wanted = PORT_RANGE ? PORT_RANGE[0] + Math.floor(Math.random() * (PORT_RANGE[1] - PORT_RANGE[0] + 1)) : 0;
    const port = await probePort(wanted);
    if (port !== null && !handedOut.has(port)) {
      handedOut.add(port);
      return port;
    }
  }
  throw new Error('no free port found');
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
