// The key lifecycle (tests/lib/key-lifecycle.mjs) through the native dynamic module in a
// real Envoy with two workers.
import { keyLifecycleSuite } from '../lib/key-lifecycle.mjs';
import { startHost } from './launch.mjs';

keyLifecycleSuite('envoy-module', startHost);
