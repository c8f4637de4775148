// Starts real workerd (node_modules/.bin/workerd) with the mcp-edge-auth Worker modules, as
// the conformance driver and the Worker-specific tests need it.
//
// startWorkerd({ port, config, jwksPort, upstreamPort }) is the launcher the shared
// conformance driver calls: the proxy Worker (workers/src/proxy.js with the library and its
// wasm) on 127.0.0.1:port, MCP_EDGE_AUTH_CONFIG = config, MCP_ORIGIN = the local upstream,
// and a global outbound network that allows loopback (workerd's default blocks it), which is
// how the Worker reaches the local JWKS server. `startWorkerdWith` exposes the rest: other
// modules (a wrangler-built bundle), a service binding instead of MCP_ORIGIN, extra vars.
import { writeFileSync, readdirSync, existsSync } from 'node:fs';
import { join, relative } from 'node:path';

import { ROOT, startProcess, tempDir, waitFor } from '../lib/proc.mjs';
import { send } from '../lib/http.mjs';

export const WORKERD = join(ROOT, 'node_modules', '.bin', 'workerd');
export const COMPATIBILITY_DATE = '2025-09-01';

const WORKERS = join(ROOT, 'workers');
const WASM_DIR = join(WORKERS, 'lib', 'wasm');

/** The proxy Worker's modules, named by their path under workers/ (so relative imports resolve). */
export function proxyModules() {
  const wasm = join(WASM_DIR, 'mcp_edge_auth_worker_bg.wasm');
  if (!existsSync(wasm)) throw new Error(`${wasm} is missing: run \`make worker-build\` first`);
  return [
    { name: 'src/proxy.js', path: join(WORKERS, 'src', 'proxy.js'), type: 'esModule' },
    { name: 'lib/index.js', path: join(WORKERS, 'lib', 'index.js'), type: 'esModule' },
    { name: 'lib/wasm/mcp_edge_auth_worker.js', path: join(WASM_DIR, 'mcp_edge_auth_worker.js'), type: 'esModule' },
    { name: 'lib/wasm/mcp_edge_auth_worker_bg.wasm', path: wasm, type: 'wasm' },
  ];
}

/** The modules of a `wrangler deploy --dry-run --outdir dir` bundle, entry first. */
export function bundleModules(dir, entry = 'index.js') {
  const files = readdirSync(dir).filter((f) => f.endsWith('.js') || f.endsWith('.mjs') || f.endsWith('.wasm'));
  const ordered = [entry, ...files.filter((f) => f !== entry)];
  return ordered.map((f) => ({ name: f, path: join(dir, f), type: f.endsWith('.wasm') ? 'wasm' : 'esModule' }));
}

// workerd resolves `embed` paths relative to the config file (absolute paths are refused).
const embed = (dir, file) => `embed ${capnpString(relative(dir, file))}`;
const capnpString = (s) => `"${String(s).replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')}"`;

/**
 * Starts workerd.
 * @param {{port:number, modules?:Array<{name:string,path:string,type:string}>, config?:object|string,
 *          vars?:Record<string,string>, upstreamPort?:number, upstreamBinding?:boolean, logFile?:string,
 *          cachePort?:number, extraPorts?:number[]}} o
 *   config: MCP_EDGE_AUTH_CONFIG (omitted when undefined); upstreamPort: MCP_ORIGIN, or with
 *   upstreamBinding a service binding MCP_UPSTREAM to that port instead. cachePort: a Cache
 *   API backend (tests/workers/cache-server.mjs) as cacheApiOutbound. extraPorts: more
 *   instances of the same Worker (separate services, so separate isolates), one per port.
 * @returns {Promise<{stop():Promise<void>, log:string, port:number}>}
 */
export async function startWorkerdWith({ port, modules = proxyModules(), config, vars = {}, upstreamPort, upstreamBinding = false, logFile, cachePort, extraPorts = [], networkAllow = ['public', 'private', 'local'] }) {
  const dir = tempDir('mea-workerd-');
  const bindings = [];
  if (config !== undefined) {
    const file = join(dir, 'config.json');
    writeFileSync(file, typeof config === 'string' ? config : JSON.stringify(config));
    bindings.push(`(name = "MCP_EDGE_AUTH_CONFIG", text = ${embed(dir, file)})`);
  }
  const services = [];
  if (upstreamPort !== undefined) {
    if (upstreamBinding) {
      bindings.push('(name = "MCP_UPSTREAM", service = "origin")');
      services.push(`(name = "origin", external = (address = "127.0.0.1:${upstreamPort}", http = ()))`);
    } else {
      bindings.push(`(name = "MCP_ORIGIN", text = ${capnpString(`http://127.0.0.1:${upstreamPort}`)})`);
    }
  }
  for (const [name, value] of Object.entries(vars)) bindings.push(`(name = ${capnpString(name)}, text = ${capnpString(value)})`);

  if (cachePort !== undefined) services.push(`(name = "cache", external = (address = "127.0.0.1:${cachePort}", http = ()))`);
  const extra = extraPorts.map((p, i) => ({ service: `main${i + 2}`, port: p }));
  const mods = modules.map((m) => `(name = ${capnpString(m.name)}, ${m.type} = ${embed(dir, m.path)})`);
  const capnp = `using Workerd = import "/workerd/workerd.capnp";

const config :Workerd.Config = (
  services = [
    (name = "main", worker = .mainWorker),
    ${extra.map((e) => `(name = "${e.service}", worker = .mainWorker),`).join('\n    ')}
    (name = "net", network = (allow = [${networkAllow.map(capnpString).join(', ')}], tlsOptions = (trustBrowserCas = true))),
    ${services.join(',\n    ')}
  ],
  sockets = [
    (name = "http", address = "127.0.0.1:${port}", http = (), service = "main"),
    ${extra.map((e) => `(name = "http${e.service}", address = "127.0.0.1:${e.port}", http = (), service = "${e.service}"),`).join('\n    ')}
  ],
);

const mainWorker :Workerd.Worker = (
  modules = [
    ${mods.join(',\n    ')}
  ],
  compatibilityDate = "${COMPATIBILITY_DATE}",
  bindings = [
    ${bindings.join(',\n    ')}
  ],
  globalOutbound = "net",${cachePort !== undefined ? '\n  cacheApiOutbound = "cache",' : ''}
);
`;
  const file = join(dir, 'workerd.capnp');
  writeFileSync(file, capnp);
  const proc = startProcess(WORKERD, ['serve', file, '--verbose'], { logFile: logFile ?? join(dir, 'workerd.log'), cwd: dir, env: { PWD: dir } });
  try {
    await waitFor(async () => {
      if (proc.exited) throw new Error(`workerd exited; see ${proc.log}`);
      const r = await send(`http://127.0.0.1:${port}/.well-known/mcp-edge-auth-launch-probe`);
      return r.status > 0;
    }, { ms: 20000, what: `workerd on port ${port} (log ${proc.log})` });
  } catch (e) {
    await proc.stop();
    throw e;
  }
  return { stop: () => proc.stop(), log: proc.log, port };
}

/** The conformance driver's launcher. */
export function startWorkerd({ port, config, upstreamPort }) {
  return startWorkerdWith({ port, config, upstreamPort });
}
