// The shared reference §5 conformance suite (tests/lib/conformance.mjs), against the proxy
// Worker in real workerd.
import { conformanceSuite } from '../lib/conformance.mjs';
import { startWorkerd } from './launch.mjs';

conformanceSuite('workerd', startWorkerd);
