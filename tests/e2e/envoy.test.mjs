// The issue-5 end-to-end scenarios through Envoy with the mcp-edge-auth Wasm filter.
// perToolRules stays off while the Envoy filter refuses `mcp.rules` at configuration time
// ("rules on the JSON-RPC body need the body before the request goes upstream"); turn it on
// when it supports them, and the per-tool step-up scenarios run here too.
import { e2eSuite } from './world.mjs';
import { startHost } from '../envoy/launch.mjs';

e2eSuite('Envoy', startHost, { perToolRules: false });
