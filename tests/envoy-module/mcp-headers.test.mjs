// MCP 2026-07-28 request headers (tests/lib/mcp-headers.mjs) through the native module.
import { mcpHeadersSuite } from '../lib/mcp-headers.mjs';
import { startHost } from './launch.mjs';

mcpHeadersSuite('envoy-module', startHost);
