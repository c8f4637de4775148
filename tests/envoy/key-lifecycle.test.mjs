// The key lifecycle (tests/lib/key-lifecycle.mjs) through the proxy-wasm filter in a real
// Envoy with two workers (three VMs sharing fetches through shared data).
import { keyLifecycleSuite } from '../lib/key-lifecycle.mjs';
import { startHost } from './launch.mjs';

keyLifecycleSuite('envoy', startHost);
