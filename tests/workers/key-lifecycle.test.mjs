// The key lifecycle (tests/lib/key-lifecycle.mjs) through the proxy Worker in real workerd.
import { keyLifecycleSuite } from '../lib/key-lifecycle.mjs';
import { startWorkerd } from './launch.mjs';

keyLifecycleSuite('workerd', startWorkerd);
