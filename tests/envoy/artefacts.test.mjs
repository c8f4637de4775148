// The files an Envoy or Istio user starts from: envoy/envoy.yaml and envoy/istio/*.yaml.
// Envoy's validate mode loads the module and runs its on_configure, so these tests prove
// that the documented configurations are ones the filter accepts.
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments, parse } from 'yaml';

import { ROOT } from '../lib/proc.mjs';
import { bootstrap, validateEnvoy, ENVOY_WASM } from './launch.mjs';

it('envoy/envoy.yaml is a valid Envoy configuration the filter accepts', async () => {
  // Run from the repository root: the Wasm path in the file is relative to it.
  const prev = process.cwd();
  process.chdir(ROOT);
  try {
    const { ok, log } = await validateEnvoy(join('envoy', 'envoy.yaml'));
    assert.ok(ok, log.slice(-2000));
    assert.match(log, /protecting https:\/\/mcp\.example\.com\/mcp with 1 issuer\(s\), 1 remote JWKS; MCP rules on the JSON-RPC body of 1 resource\(s\), holding the headers/);
  } finally {
    process.chdir(prev);
  }
  // Its MCP rules hold the headers: the plugin config lets the filter read the body while
  // they wait, and the filter config says so.
  const wasm = findWasmConfigs(parse(readFileSync(join(ROOT, 'envoy', 'envoy.yaml'), 'utf8')));
  assert.equal(wasm.length, 1);
  assert.equal(wasm[0].allow_on_headers_stop_iteration, true);
  assert.equal(JSON.parse(wasm[0].configuration.value).envoy_wasm.allow_on_headers_stop_iteration, true);
  assert.equal(wasm[0].fail_open, false);
});

/** Every envoy.extensions.filters.http.wasm.v3.Wasm `config` in a parsed YAML document. */
function findWasmConfigs(node, out = []) {
  if (Array.isArray(node)) node.forEach((n) => findWasmConfigs(n, out));
  else if (node && typeof node === 'object') {
    if (node['@type'] === 'type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm') out.push(node.config);
    for (const v of Object.values(node)) findWasmConfigs(v, out);
  }
  return out;
}

it('the Istio EnvoyFilter for MCP rules: the WasmPlugin config plus allow_on_headers_stop_iteration, accepted by Envoy and the filter', async () => {
  const ef = parse(readFileSync(join(ROOT, 'envoy', 'istio', 'mcp-rules-envoyfilter.yaml'), 'utf8'));
  const plugin = parse(readFileSync(join(ROOT, 'envoy', 'istio', 'wasmplugin.yaml'), 'utf8'));
  assert.equal(ef.kind, 'EnvoyFilter');
  assert.deepEqual(ef.spec.workloadSelector.labels, plugin.spec.selector.matchLabels);
  const ext = ef.spec.configPatches.find((p) => p.applyTo === 'EXTENSION_CONFIG');
  const filter = ef.spec.configPatches.find((p) => p.applyTo === 'HTTP_FILTER');
  assert.equal(ext.patch.operation, 'ADD');
  assert.equal(ext.match.context, 'SIDECAR_INBOUND');
  assert.equal(filter.match.context, 'SIDECAR_INBOUND');
  assert.equal(filter.patch.value.name, ext.patch.value.name, 'the HTTP filter takes its config from the extension');
  assert.deepEqual(filter.patch.value.config_discovery.type_urls, [ext.patch.value.typed_config['@type']]);
  const wasm = ext.patch.value.typed_config.config;
  assert.equal(wasm.allow_on_headers_stop_iteration, true);
  assert.equal(wasm.fail_open, false);
  const remote = wasm.vm_config.code.remote;
  assert.equal(remote.http_uri.uri, plugin.spec.url, 'the same image as the WasmPlugin');
  assert.equal(remote.sha256, plugin.spec.sha256);
  const config = JSON.parse(wasm.configuration.value);
  assert.ok(config.resources[0].mcp, 'it exists for MCP rules');
  assert.equal(config.envoy_wasm.allow_on_headers_stop_iteration, true, 'the filter is told the plugin config has the setting');
  assert.equal(config.resources[0].issuers[0].remote_jwks.http_uri.cluster, plugin.spec.pluginConfig.resources[0].issuers[0].remote_jwks.http_uri.cluster);
  // Envoy accepts every field of that plugin config (with the module from disk instead of
  // the registry), and the filter loads its configuration.
  const b = bootstrap({ port: 1, adminPort: 2, configValue: wasm.configuration.value, upstreamPort: 3 });
  const [target] = findWasmConfigs(b);
  Object.assign(target, { ...wasm, vm_config: { ...wasm.vm_config, code: target.vm_config.code } });
  const { ok, log } = await validateEnvoy(b);
  assert.ok(ok, log.slice(-2000));
  assert.match(log, /protecting https:\/\/mcp\.example\.com\/mcp .*MCP rules on the JSON-RPC body of 1 resource\(s\), holding the headers/);
});

it('the Istio WasmPlugin is fail-closed, pinned, and its pluginConfig is accepted by the filter', async () => {
  const plugin = parse(readFileSync(join(ROOT, 'envoy', 'istio', 'wasmplugin.yaml'), 'utf8'));
  assert.equal(plugin.kind, 'WasmPlugin');
  assert.equal(plugin.spec.phase, 'AUTHN');
  assert.equal(plugin.spec.failStrategy, 'FAIL_CLOSE');
  assert.match(plugin.spec.url, /^oci:\/\//);
  assert.match(plugin.spec.sha256, /^[0-9a-f]{64}$/);
  // Istio hands pluginConfig to the filter as JSON in a google.protobuf.StringValue.
  const configValue = JSON.stringify(plugin.spec.pluginConfig);
  const b = bootstrap({ port: 1, adminPort: 2, configValue, upstreamPort: 3 });
  const { ok, log } = await validateEnvoy(b);
  assert.ok(ok, log.slice(-2000));
  // MCP rules work with a stock WasmPlugin (no allow_on_headers_stop_iteration, which a
  // WasmPlugin cannot set): the filter holds the body, not the headers.
  assert.ok(plugin.spec.pluginConfig.resources.some((r) => r.mcp), 'the example has a per-tool rule');
  assert.equal(plugin.spec.pluginConfig.envoy_wasm, undefined);
  assert.match(log, /protecting https:\/\/mcp\.example\.com\/mcp .*MCP rules on the JSON-RPC body of 1 resource\(s\), the headers go on once the token is checked/);

  // The JWKS cluster named in pluginConfig is the one the ServiceEntry creates.
  const docs = parseAllDocuments(readFileSync(join(ROOT, 'envoy', 'istio', 'jwks-serviceentry.yaml'), 'utf8')).map((d) => d.toJS());
  const se = docs.find((d) => d.kind === 'ServiceEntry');
  const dr = docs.find((d) => d.kind === 'DestinationRule');
  const clusters = se.spec.ports.map((p) => `outbound|${p.number}||${se.spec.hosts[0]}`);
  const remote = plugin.spec.pluginConfig.resources[0].issuers[0].remote_jwks.http_uri;
  assert.ok(clusters.includes(remote.cluster), `${remote.cluster} not in ${clusters}`);
  assert.equal(new URL(remote.uri).host, se.spec.hosts[0]);
  const port = Number(remote.cluster.split('|')[1]);
  const tls = dr.spec.trafficPolicy.portLevelSettings.find((s) => s.port.number === port).tls;
  assert.equal(tls.mode, 'SIMPLE', 'TLS is originated for the JWKS fetch');
  assert.equal(dr.spec.host, se.spec.hosts[0]);
});

it('the Envoy Gateway example: the EnvoyExtensionPolicy config is accepted by the filter, and its JWKS cluster is the one Envoy Gateway makes for the JWKS route', async () => {
  const docs = parseAllDocuments(readFileSync(join(ROOT, 'envoy', 'gateway', 'mcp-edge-auth.yaml'), 'utf8')).map((d) => d.toJS());
  const eep = docs.find((d) => d.kind === 'EnvoyExtensionPolicy');
  const routes = docs.filter((d) => d.kind === 'HTTPRoute');
  const backend = docs.find((d) => d.kind === 'Backend');
  const [wasm] = eep.spec.wasm;
  assert.equal(eep.spec.wasm.length, 1);
  assert.equal(wasm.failOpen, false);
  assert.equal(wasm.code.type, 'Image');
  assert.match(wasm.code.image.sha256, /^[0-9a-f]{64}$/);
  // The policy is attached to the MCP server's route.
  const [target] = eep.spec.targetRefs;
  const mcpRoute = routes.find((r) => r.metadata.name === target.name);
  assert.ok(mcpRoute, `route ${target.name} is in the file`);
  assert.equal(target.kind, 'HTTPRoute');
  // The filter serves the PRM, so the route must carry /.well-known/oauth-protected-resource.
  const prefixes = mcpRoute.spec.rules.flatMap((r) => r.matches.map((m) => m.path.value));
  assert.ok(prefixes.includes('/.well-known/oauth-protected-resource'), prefixes.join());
  // Envoy Gateway names a route rule's cluster httproute/<namespace>/<name>/rule/<index>.
  const remote = wasm.config.resources[0].issuers[0].remote_jwks.http_uri;
  const m = /^httproute\/([^/]+)\/([^/]+)\/rule\/(\d+)$/.exec(remote.cluster);
  assert.ok(m, remote.cluster);
  const jwksRoute = routes.find((r) => r.metadata.namespace === m[1] && r.metadata.name === m[2]);
  assert.ok(jwksRoute, `a route ${m[1]}/${m[2]} exists for the JWKS cluster`);
  const rule = jwksRoute.spec.rules[Number(m[3])];
  assert.equal(rule.matches[0].path.value, new URL(remote.uri).pathname);
  assert.equal(rule.backendRefs[0].kind, 'Backend');
  assert.equal(rule.backendRefs[0].name, backend.metadata.name);
  assert.equal(backend.spec.endpoints[0].fqdn.hostname, new URL(remote.uri).host);
  assert.equal(backend.spec.tls.sni, new URL(remote.uri).host, 'TLS to the authorization server');
  // Envoy Gateway passes `config` as a JSON string; no allow_on_headers_stop_iteration, so
  // the rules hold the body. Envoy and the filter accept it.
  assert.equal(wasm.config.envoy_wasm, undefined);
  const b = bootstrap({ port: 1, adminPort: 2, configValue: JSON.stringify(wasm.config), upstreamPort: 3, allowOnHeadersStopIteration: false, clusters: { [remote.cluster]: 3 } });
  const { ok, log } = await validateEnvoy(b);
  assert.ok(ok, log.slice(-2000));
  assert.match(log, /protecting https:\/\/mcp\.example\.com\/mcp .*MCP rules on the JSON-RPC body of 1 resource\(s\), the headers go on once the token is checked/);
});

// `make envoy-wasm` drops the SDK's exports of the callbacks the filter does not implement
// (envoy/envoy.mk): Envoy calls a callback only when the module exports it, so one dropped
// by mistake would be silently never called. Every callback the filter's contexts implement
// must still be exported, and nothing else but what the SDK needs for every context.
it('the shipped filter exports exactly the proxy-wasm callbacks its contexts implement', () => {
  const exported = new Set(WebAssembly.Module.exports(new WebAssembly.Module(readFileSync(ENVOY_WASM))).map((e) => e.name));
  // The SDK's trait methods (proxy-wasm 0.2) and the export that calls each.
  const exportOf = {
    on_vm_start: 'proxy_on_vm_start', on_configure: 'proxy_on_configure', on_tick: 'proxy_on_tick',
    create_http_context: 'proxy_on_context_create', on_done: 'proxy_on_done', on_log: 'proxy_on_log',
    on_http_call_response: 'proxy_on_http_call_response', on_queue_ready: 'proxy_on_queue_ready',
    on_foreign_function: 'proxy_on_foreign_function', on_grpc_call_response: 'proxy_on_grpc_receive',
    on_grpc_stream_message: 'proxy_on_grpc_receive', on_grpc_stream_close: 'proxy_on_grpc_close',
    on_grpc_stream_initial_metadata: 'proxy_on_grpc_receive_initial_metadata',
    on_grpc_stream_trailing_metadata: 'proxy_on_grpc_receive_trailing_metadata',
    on_http_request_headers: 'proxy_on_request_headers', on_http_request_body: 'proxy_on_request_body',
    on_http_request_trailers: 'proxy_on_request_trailers', on_http_response_headers: 'proxy_on_response_headers',
    on_http_response_body: 'proxy_on_response_body', on_http_response_trailers: 'proxy_on_response_trailers',
    on_new_connection: 'proxy_on_new_connection', on_downstream_data: 'proxy_on_downstream_data',
    on_downstream_close: 'proxy_on_downstream_connection_close', on_upstream_data: 'proxy_on_upstream_data',
    on_upstream_close: 'proxy_on_upstream_connection_close',
  };
  const src = readFileSync(join(ROOT, 'crates', 'envoy-filter', 'src', 'contexts.rs'), 'utf8');
  const implemented = [...src.matchAll(/^\s*fn (on_\w+|create_http_context)\(/gm)].map((m) => m[1]);
  assert.ok(implemented.includes('on_http_request_headers') && implemented.includes('on_tick'), `read ${implemented}`);
  const needed = new Set(['proxy_on_context_create', 'proxy_on_delete', 'proxy_on_memory_allocate', 'proxy_on_vm_start', 'proxy_on_configure', 'proxy_on_done']);
  for (const m of implemented) {
    assert.ok(exportOf[m], `contexts.rs implements ${m}: add it to this test's table`);
    assert.ok(exported.has(exportOf[m]), `${m} is implemented but ${exportOf[m]} is not exported (envoy/envoy.mk drops it)`);
    needed.add(exportOf[m]);
  }
  const callbacks = [...exported].filter((n) => n.startsWith('proxy_on_'));
  assert.deepEqual(callbacks.filter((n) => !needed.has(n)), [], 'exported callbacks the filter does not implement');
  assert.ok(exported.has('proxy_abi_version_0_2_1') && exported.has('memory') && exported.has('_initialize'));
});
