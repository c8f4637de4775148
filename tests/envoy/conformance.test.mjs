// The shared reference §5 conformance suite (tests/lib/conformance.mjs), run against the
// filter in a real Envoy (two workers, so that the JWKS sharing between VMs is exercised).
import { conformanceSuite } from '../lib/conformance.mjs';
import { startHost } from './launch.mjs';

conformanceSuite('envoy', startHost);
