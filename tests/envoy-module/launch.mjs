// Starts a real Envoy with the native mcp-edge-auth dynamic module (crates/envoy-module)
// in place of the Wasm filter: the same bootstrap as tests/envoy/launch.mjs (listener,
// router, upstream and JWKS clusters), with the first HTTP filter swapped.
import { writeFileSync, existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

import { ROOT, freePort, startProcess, tempDir, waitFor } from '../lib/proc.mjs';
import { send } from '../lib/http.mjs';
import { ENVOY, bootstrap as wasmBootstrap } from '../envoy/launch.mjs';

export const ENVOY_MODULE = process.env.ENVOY_MODULE
  ?? join(ROOT, 'target', 'release-native', 'libmcp_edge_auth_envoy_module.so');

// Distinct from tests/envoy/launch.mjs's range, so both suites' Envoys never share one.
let baseId = 60_000 + (process.pid % 50_000);

/** The dynamic-module HTTP filter carrying `configValue` (the one JSON format). */
export function moduleFilter(configValue, module = ENVOY_MODULE) {
  return {
    name: 'mcp_edge_auth',
    typed_config: {
      '@type': 'type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter',
      dynamic_module_config: {
        name: 'mcp_edge_auth_envoy_module',
        module: { local: { filename: module } },
        // The module runs a timer thread per filter config: never unload it under it.
        do_not_close: true,
      },
      filter_name: 'mcp_edge_auth',
      filter_config: { '@type': 'type.googleapis.com/google.protobuf.StringValue', value: configValue },
    },
  };
}

/** tests/envoy/launch.mjs's bootstrap, with the module instead of the Wasm filter. */
export function bootstrap(opts) {
  const b = wasmBootstrap({ ...opts, wasm: '/unused.wasm' });
  delete b.stats_config;
  const hcm = b.static_resources.listeners[0].filter_chains[0].filters[0].typed_config;
  hcm.http_filters[0] = moduleFilter(opts.configValue, opts.module);
  return b;
}

/**
 * Starts Envoy with the module. Options as tests/envoy/launch.mjs's startEnvoy: port,
 * config or configValue, jwksPort, upstreamPort, clusters, concurrency (2), waitForJwks
 * (default when jwksPort is set: until the first fetch finished, ok or not, per the log),
 * expectFailure, logFile. Resolves to { stop, adminUrl, logFile, log(), stats(), proc }.
 */
export async function startModuleEnvoy({
  port,
  config,
  configValue = JSON.stringify(config),
  jwksPort,
  upstreamPort,
  clusters = {},
  concurrency = 2,
  waitForJwks = Boolean(jwksPort),
  expectFailure = false,
  logFile,
}) {
  if (!existsSync(ENVOY)) throw new Error(`no Envoy at ${ENVOY}: run make setup-python`);
  if (!existsSync(ENVOY_MODULE)) throw new Error(`no module at ${ENVOY_MODULE}: run make envoy-module`);
  const dir = tempDir('mea-envoy-module-');
  const adminPort = await freePort();
  const file = join(dir, 'envoy.json');
  writeFileSync(file, JSON.stringify(bootstrap({ port, adminPort, configValue, jwksPort, upstreamPort, clusters }), null, 2));
  baseId += 1;
  const proc = startProcess(
    ENVOY,
    ['-c', file, '--concurrency', String(concurrency), '--base-id', String(baseId), '-l', process.env.ENVOY_LOG_LEVEL ?? 'info',
      '--component-log-level', 'dynamic_modules:debug', '--disable-hot-restart'],
    { logFile: logFile ?? join(dir, 'envoy.log') },
  );
  const adminUrl = `http://127.0.0.1:${adminPort}`;
  const log = () => readFileSync(proc.log, 'utf8');
  const envoy = { proc, adminUrl, logFile: proc.log, log, stats: () => moduleStats(adminUrl), stop: () => proc.stop() };
  if (expectFailure) return envoy;
  try {
    await waitFor(
      async () => {
        if (proc.exited) throw new Error(`Envoy exited:\n${log().slice(-3000)}`);
        const r = await send(`${adminUrl}/ready`);
        return r.status === 200;
      },
      { ms: 20000, what: 'Envoy listener' },
    );
    if (waitForJwks) {
      await waitFor(
        () => /mcp-edge-auth: (JWKS of \S+ fetched|JWKS fetch for \S+ failed|cannot fetch JWKS)/.test(log()),
        { ms: 10000, what: 'first JWKS fetch' },
      );
    }
  } catch (e) {
    await proc.stop();
    throw e;
  }
  return envoy;
}

/**
 * The module's counters, by the Wasm filter's names: `dynamicmodulescustom.mcp_edge_auth.X`
 * (Envoy's prefix for dynamic-module metrics) as { X: n }.
 */
export async function moduleStats(adminUrl) {
  const res = await send(`${adminUrl}/stats?filter=mcp_edge_auth`);
  const out = {};
  for (const line of res.body.split('\n')) {
    const m = /^dynamicmodulescustom\.mcp_edge_auth\.(\S+): (\d+)$/.exec(line.trim());
    if (m) out[m[1]] = Number(m[2]);
  }
  return out;
}

/** The conformance driver's launcher: startHost({port, config, jwksPort, upstreamPort}). */
export const startHost = (opts) => startModuleEnvoy(opts);

/** `envoy --mode validate` on a bootstrap object. Resolves to { ok, log }. */
export async function validateModuleEnvoy(b) {
  const file = join(tempDir('mea-validate-module-'), 'envoy.json');
  writeFileSync(file, JSON.stringify(b));
  baseId += 1;
  const proc = startProcess(ENVOY, ['--mode', 'validate', '-c', file, '--base-id', String(baseId), '-l', 'info', '--disable-hot-restart']);
  const { code } = await proc.exitedP;
  return { ok: code === 0, log: readFileSync(proc.log, 'utf8') };
}
