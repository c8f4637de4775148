// The issue-5 end-to-end scenarios through Envoy with the mcp-edge-auth Wasm filter, run as
// a stock Istio WasmPlugin or Envoy Gateway EnvoyExtensionPolicy runs it: without the Wasm
// plugin setting allow_on_headers_stop_iteration. The step-up scenarios use a per-tool rule
// (`mcp.rules`): the filter checks the token on the headers, lets them go, and holds the
// JSON-RPC body until the rule decides (envoy/README.md, "MCP rules and the request body").
// The mode that holds the headers too is tested in tests/envoy/mcp-rules.test.mjs.
import { e2eSuite } from './world.mjs';
import { startHost } from '../envoy/launch.mjs';

const stockPlugin = (o) => startHost({ ...o, allowOnHeadersStopIteration: false });

e2eSuite('Envoy (stock Wasm plugin settings)', stockPlugin, { perToolRules: true, headersReachUpstream: true });
