// The issue-5 end-to-end scenarios through Envoy with the mcp-edge-auth Wasm filter.
// The step-up scenarios use a per-tool rule (`mcp.rules`), which the filter enforces by
// reading the JSON-RPC body (allow_on_headers_stop_iteration, see envoy/README.md).
import { e2eSuite } from './world.mjs';
import { startHost } from '../envoy/launch.mjs';

e2eSuite('Envoy', startHost, { perToolRules: true });
