// Writes crates/bench/fixtures.json: the keys (public JWKS) and signed tokens the core
// microbenchmarks use, minted with `jose`. The tokens are valid at the fixed time `now`
// the benchmarks pass to the core (the core never reads a clock), so the file never goes
// stale. Run once; the output is checked in:   node bench/micro-fixtures.mjs
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { ROOT } from '../tests/lib/proc.mjs';
import { makeKey, jwks } from '../tests/lib/tokens.mjs';
import * as jose from 'jose';

const NOW = 1_800_000_000;
const RESOURCE = 'https://mcp.example.com/mcp';
const ISSUER = 'https://auth.example.com';

const keys = [await makeKey('RS256', 'bench-rs256'), await makeKey('ES256', 'bench-es256'), await makeKey('EdDSA', 'bench-eddsa')];
const tokens = {};
for (const k of keys) {
  // A typical RFC 9068 access token: what an authorization server issues for an MCP client.
  const claims = { iss: ISSUER, aud: RESOURCE, sub: 'user-1234', client_id: 'mcp-client', scope: 'mcp:read mcp:write', iat: NOW - 60, exp: NOW + 3600, jti: 'b1f0c2d3e4' };
  tokens[k.alg] = await new jose.CompactSign(new TextEncoder().encode(JSON.stringify(claims)))
    .setProtectedHeader({ alg: k.alg, typ: 'at+jwt', kid: k.kid })
    .sign(k.privateKey);
}
const out = { now: NOW, resource: RESOURCE, issuer: ISSUER, jwks: jwks(...keys), tokens };
writeFileSync(join(ROOT, 'crates', 'bench', 'fixtures.json'), `${JSON.stringify(out, null, 1)}\n`);
console.log('wrote crates/bench/fixtures.json');
