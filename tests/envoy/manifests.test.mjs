// Every Kubernetes manifest we ship (envoy/istio/*.yaml, envoy/gateway/*.yaml), checked
// against the resource schemas Istio, Envoy Gateway and Gateway API publish (generated from
// their CRDs: the npm packages @kubernetes-models/istio, …/envoy-gateway, …/gateway-api).
// They check types, enums, patterns and required fields; like `kubectl apply` without
// strict field validation they do not refuse unknown fields. Whether Envoy and the filter
// accept the configs inside is tests/envoy/artefacts.test.mjs.
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';

import * as istioExtensions from '@kubernetes-models/istio/extensions.istio.io/v1alpha1';
import * as istioNetworking from '@kubernetes-models/istio/networking.istio.io/v1';
import * as istioNetworkingAlpha3 from '@kubernetes-models/istio/networking.istio.io/v1alpha3';
import * as envoyGateway from '@kubernetes-models/envoy-gateway/gateway.envoyproxy.io/v1alpha1';
import * as gatewayApi from '@kubernetes-models/gateway-api/gateway.networking.k8s.io/v1';

import { ROOT } from '../lib/proc.mjs';

/** apiVersion → the package's models of that group version, by kind. */
const MODELS = {
  'extensions.istio.io/v1alpha1': istioExtensions,
  'networking.istio.io/v1': istioNetworking,
  'networking.istio.io/v1alpha3': istioNetworkingAlpha3,
  'gateway.envoyproxy.io/v1alpha1': envoyGateway,
  'gateway.networking.k8s.io/v1': gatewayApi,
};

/** Validates one parsed manifest: throws naming the schema's complaint. */
function validate(doc) {
  const models = MODELS[doc.apiVersion];
  assert.ok(models, `no schema package for apiVersion ${doc.apiVersion} (${doc.kind})`);
  const Model = models[doc.kind];
  assert.ok(Model, `no ${doc.kind} in ${doc.apiVersion}`);
  new Model(doc).validate();
}

const manifests = ['istio', 'gateway'].flatMap((dir) =>
  readdirSync(join(ROOT, 'envoy', dir))
    .filter((f) => f.endsWith('.yaml'))
    .map((f) => join('envoy', dir, f)),
);

it('the shipped manifests are the ones this test knows', () => {
  assert.deepEqual(manifests.sort(), [
    'envoy/gateway/mcp-edge-auth.yaml',
    'envoy/istio/jwks-serviceentry.yaml',
    'envoy/istio/mcp-rules-envoyfilter.yaml',
    'envoy/istio/wasmplugin.yaml',
  ]);
});

for (const file of manifests) {
  it(`${file}: every resource validates against its published schema`, () => {
    const docs = parseAllDocuments(readFileSync(join(ROOT, file), 'utf8')).map((d) => d.toJS());
    assert.ok(docs.length >= 1);
    for (const doc of docs) {
      assert.doesNotThrow(() => validate(doc), (e) => `${doc.kind} ${doc.metadata?.name}: ${e.message}`);
    }
  });
}

it('the schemas catch what a typo would break (so the checks above can fail)', () => {
  const read = (f) => parseAllDocuments(readFileSync(join(ROOT, f), 'utf8')).map((d) => d.toJS());
  const [plugin] = read('envoy/istio/wasmplugin.yaml');
  assert.throws(() => validate({ ...plugin, spec: { ...plugin.spec, failStrategy: 'FAIL_CLOSED' } }), /failStrategy/);
  assert.throws(() => validate({ ...plugin, spec: { ...plugin.spec, phase: 'AUTHZN' } }), /phase/);
  const eg = read('envoy/gateway/mcp-edge-auth.yaml');
  const eep = eg.find((d) => d.kind === 'EnvoyExtensionPolicy');
  const wasm = eep.spec.wasm[0];
  assert.throws(() => validate({ ...eep, spec: { ...eep.spec, wasm: [{ ...wasm, code: { ...wasm.code, type: 'OCI' } }] } }), /type/);
  assert.throws(() => validate({ ...eep, spec: { ...eep.spec, wasm: [{ ...wasm, failOpen: 'false' }] } }), /failOpen/);
  assert.throws(() => validate({ ...eep, spec: { ...eep.spec, targetRefs: [{ kind: 'HTTPRoute', name: 'mcp-server' }] } }), /group/);
  const backend = eg.find((d) => d.kind === 'Backend');
  assert.throws(() => validate({ ...backend, spec: { ...backend.spec, endpoints: [{ fqdn: { hostname: 'auth.example.com', port: 'https' } }] } }), /port/);
  const [se] = read('envoy/istio/jwks-serviceentry.yaml');
  assert.throws(() => validate({ ...se, spec: { ...se.spec, resolution: 'DNS_ROUND' } }), /resolution/);
});
