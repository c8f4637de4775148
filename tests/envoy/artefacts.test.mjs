// The files an Envoy or Istio user starts from: envoy/envoy.yaml and envoy/istio/*.yaml.
// Envoy's validate mode loads the module and runs its on_configure, so these tests prove
// that the documented configurations are ones the filter accepts.
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments, parse } from 'yaml';

import { ROOT } from '../lib/proc.mjs';
import { bootstrap, validateEnvoy } from './launch.mjs';

it('envoy/envoy.yaml is a valid Envoy configuration the filter accepts', async () => {
  // Run from the repository root: the Wasm path in the file is relative to it.
  const prev = process.cwd();
  process.chdir(ROOT);
  try {
    const { ok, log } = await validateEnvoy(join('envoy', 'envoy.yaml'));
    assert.ok(ok, log.slice(-2000));
    assert.match(log, /protecting https:\/\/mcp\.example\.com\/mcp with 1 issuer\(s\), 1 remote JWKS/);
  } finally {
    process.chdir(prev);
  }
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
  assert.match(log, /protecting https:\/\/mcp\.example\.com\/mcp/);

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
