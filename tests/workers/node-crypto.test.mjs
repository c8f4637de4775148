// The Worker library where WebCrypto is really asynchronous: in workerd, crypto.subtle
// answers before the next request runs, but in Node a verify finishes on another thread and
// other requests call into the core meanwhile. The core writes a signature job's bytes into
// memory it reuses; whatever interleaves, each token must be checked against its own bytes.
// (The library's one Workers-only line, its `.wasm` import, is rewritten for Node.)
import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { cpSync, readFileSync, writeFileSync } from 'node:fs';

import { makeKey, jwks, mint } from '../lib/tokens.mjs';
import { tempDir, ROOT } from '../lib/proc.mjs';

const ISSUER = 'https://as.node.example';
const RESOURCE = 'https://mcp.node.example/mcp';

async function loadLibrary() {
  const dir = tempDir('lib-node');
  cpSync(join(ROOT, 'workers', 'lib'), dir, { recursive: true });
  const file = join(dir, 'index.js');
  const source = readFileSync(file, 'utf8');
  const wasmImport = "import wasmModule from './wasm/mcp_edge_auth_worker_bg.wasm';";
  assert.ok(source.includes(wasmImport), 'the library imports its module as Workers do');
  writeFileSync(
    join(dir, 'index.mjs'),
    source.replace(
      wasmImport,
      "import { readFileSync } from 'node:fs';\nconst wasmModule = new WebAssembly.Module(readFileSync(new URL('./wasm/mcp_edge_auth_worker_bg.wasm', import.meta.url)));",
    ),
  );
  return import(join(dir, 'index.mjs'));
}

describe('the Worker library with asynchronous WebCrypto (Node)', () => {
  let McpEdgeAuth;
  let keys;
  before(async () => {
    ({ McpEdgeAuth } = await loadLibrary());
    keys = {
      rs: await makeKey('RS256', 'n-rs'),
      rs2: await makeKey('RS256', 'n-rs-2'),
      rs3: await makeKey('RS256', 'n-rs-3'),
      es: await makeKey('ES256', 'n-es'),
      stranger: await makeKey('RS256', 'n-stranger'),
    };
  });

  const config = (cached) => ({
    resources: [{
      resource: RESOURCE,
      authorization_servers: [ISSUER],
      required_scopes: ['mcp:read'],
      issuers: [{ issuer: ISSUER, algorithms: ['RS256', 'ES256'], local_jwks: jwks(keys.rs, keys.rs2, keys.rs3, keys.es) }],
      claim_to_headers: [{ header_name: 'x-mcp-subject', claim_name: 'sub' }],
    }],
    ...(cached ? {} : { token_cache: { max_entries: 0 } }),
  });
  const token = (key, sub, header = {}) => {
    const now = Math.floor(Date.now() / 1000);
    return mint(key, { iss: ISSUER, aud: RESOURCE, sub, scope: 'mcp:read', iat: now, exp: now + 300 }, header);
  };

  for (const cached of [false, true]) {
    it(`checks each token against its own bytes while others interleave (cache ${cached ? 'on' : 'off'})`, async () => {
      const auth = new McpEdgeAuth(config(cached));
      const jobs = [];
      for (let i = 0; i < 16; i += 1) {
        // Without kid: tried against each RS256 key in turn, an await between two.
        jobs.push({ token: await token(keys.rs3, `third-${i}`, { kid: undefined }), sub: `third-${i}` });
        jobs.push({ token: await token(keys.es, `es-${i}`), sub: `es-${i}` });
        jobs.push({ token: await token(keys.rs, `first-${i}`, { kid: undefined }), sub: `first-${i}` });
        jobs.push({ token: await token(keys.rs2, `second-${i}`), sub: `second-${i}` });
        // Signed by no key of the set: every candidate fails.
        jobs.push({ token: await token(keys.stranger, `forged-${i}`, { kid: undefined }), sub: null });
      }
      // Twice: the first round imports the keys, the second finds them imported.
      for (let round = 0; round < 2; round += 1) {
        const results = await Promise.all(
          jobs.map((j) => auth.authorize(new Request(RESOURCE, { headers: { authorization: `Bearer ${j.token}` } }))),
        );
        results.forEach((r, i) => {
          const { sub } = jobs[i];
          if (sub === null) {
            assert.equal(r.ok, false, `round ${round}: a forged token passed`);
            assert.equal(r.response.status, 401);
          } else {
            assert.equal(r.ok, true, `round ${round}, ${sub}: ${r.ok ? '' : r.response.status}`);
            assert.equal(r.identity.subject, sub);
            assert.equal(r.request.headers.get('x-mcp-subject'), sub);
            assert.equal(r.request.headers.get('authorization'), null);
          }
        });
      }
    });
  }
});

describe('the Worker library: a request head that is not all ASCII (Node)', () => {
  it('reaches the core whole: decided there, never an internal error', async () => {
    const { McpEdgeAuth } = await loadLibrary();
    const key = await makeKey('RS256', 'n-ascii');
    const auth = new McpEdgeAuth({
      resources: [{
        resource: RESOURCE,
        authorization_servers: [ISSUER],
        issuers: [{ issuer: ISSUER, algorithms: ['RS256'], local_jwks: jwks(key) }],
      }],
    });
    const now = Math.floor(Date.now() / 1000);
    const token = await mint(key, { iss: ISSUER, aud: RESOURCE, sub: 'user-é', iat: now, exp: now + 300 });
    // Latin-1 header values (a Headers value is a byte string): UTF-8 takes two bytes for
    // each of these characters, more than the first write reserves.
    const latin = 'é'.repeat(600);
    const plain = await auth.authorize(new Request(RESOURCE, { headers: { authorization: `Bearer ${token}` } }));
    assert.equal(plain.ok, true);
    const r = await auth.authorize(new Request(RESOURCE, { headers: { authorization: `Bearer ${token}${latin}` } }));
    assert.equal(r.ok, false, 'a malformed Authorization header is refused');
    assert.equal(r.response.status, 400, await r.response.text());
    assert.match(r.response.headers.get('www-authenticate'), /error="invalid_(token|request)"/);
  });
});
