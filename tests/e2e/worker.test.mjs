// The issue-5 end-to-end scenarios through the Cloudflare Worker (real workerd), including the
// step-up with a per-tool rule (`mcp.rules`), which the Worker supports.
import { e2eSuite } from './world.mjs';
import { startWorkerd } from '../workers/launch.mjs';

e2eSuite('Worker (workerd)', startWorkerd, { perToolRules: true });
