// The filter as a Wasm OCI image ("compat" layout, what Istio's WasmPlugin pulls): built,
// pushed with skopeo to a real registry on loopback, pulled back by digest, and compared
// byte for byte (envoy/oci/test-oci.sh; `make oci-tools` installs skopeo and the registry).
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';

import { ROOT } from '../lib/proc.mjs';
import { ENVOY_WASM } from './launch.mjs';

it('envoy: the OCI image survives a registry round trip with identical plugin.wasm', () => {
  const r = spawnSync(join(ROOT, 'envoy', 'oci', 'test-oci.sh'), [ENVOY_WASM], { encoding: 'utf8', timeout: 60000 });
  assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
  assert.match(r.stdout, /test-oci: ok: .*digest sha256:[0-9a-f]{64}, plugin\.wasm identical/);
});
