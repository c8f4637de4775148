// The shared reference §5 conformance suite (tests/lib/conformance.mjs), run against the
// native dynamic module in a real Envoy (two workers: one key store shared by both, one
// token cache each).
import { conformanceSuite } from '../lib/conformance.mjs';
import { startHost } from './launch.mjs';

conformanceSuite('envoy-module', startHost);
