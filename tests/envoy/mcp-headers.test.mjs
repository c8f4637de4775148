// MCP 2026-07-28 request headers (tests/lib/mcp-headers.mjs) through the Wasm filter.
import { mcpHeadersSuite } from '../lib/mcp-headers.mjs';
import { startHost } from './launch.mjs';

mcpHeadersSuite('envoy', startHost);
