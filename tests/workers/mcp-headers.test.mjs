// MCP 2026-07-28 request headers (tests/lib/mcp-headers.mjs) through the proxy Worker.
import { mcpHeadersSuite } from '../lib/mcp-headers.mjs';
import { startWorkerd } from './launch.mjs';

mcpHeadersSuite('workerd', startWorkerd);
