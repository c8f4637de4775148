// What workers/README.md ("Run it locally") tells a new user to do, done as written: the
// demo's authorization server on 9400 and MCP server on 9401, and workerd serving the
// shipped workers/local/workerd.capnp (only its socket moved to a free port with
// --socket-addr, as the README shows, so the test never collides with a running demo).
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { readFileSync } from 'node:fs';

import { ROOT, freePort, startProcess, waitFor, parseChallenge, tempDir } from '../lib/proc.mjs';
import { send } from '../lib/http.mjs';
import { startAuthServer } from '../../demo/as.mjs';
import { startMcpServer } from '../../demo/mcp-server.mjs';
import { WORKERD } from './launch.mjs';

const CAPNP = join(ROOT, 'workers', 'local', 'workerd.capnp');
const CONFIG = JSON.parse(readFileSync(join(ROOT, 'workers', 'local', 'config.json'), 'utf8'));
const RESOURCE = 'http://localhost:8787/mcp';

describe('workers/local: the proxy Worker under workerd with a local authorization server, as the README says', () => {
  let as;
  let mcp;
  let workerd;
  let base;
  before(async () => {
    as = await startAuthServer({ port: 9400, resources: [RESOURCE] });
    mcp = await startMcpServer({ port: 9401, privilegedPaths: ['/mcp'] });
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    workerd = startProcess(WORKERD, ['serve', CAPNP, '--verbose', '--socket-addr', `http=127.0.0.1:${port}`], { logFile: join(tempDir('mea-local-'), 'workerd.log') });
    await waitFor(async () => {
      if (workerd.exited) throw new Error(`workerd exited; see ${workerd.log}`);
      return (await send(`${base}/.well-known/oauth-protected-resource/mcp`)).status === 200;
    }, { ms: 20000, what: 'workerd serving workers/local/workerd.capnp' });
  });
  after(async () => {
    await workerd?.stop();
    await mcp?.stop();
    await as?.stop();
  });

  const headers = (t) => [
    ['host', 'localhost:8787'],
    ...(t ? [['authorization', `Bearer ${t}`]] : []),
    ['content-type', 'application/json'],
    ['accept', 'application/json, text/event-stream'],
  ];
  const token = async (scope) => {
    const r = await send(as.tokenUrl, {
      method: 'POST',
      headers: [['authorization', `Basic ${Buffer.from('demo-client:demo-secret').toString('base64')}`], ['content-type', 'application/x-www-form-urlencoded']],
      body: new URLSearchParams({ grant_type: 'client_credentials', scope, resource: RESOURCE }).toString(),
    });
    assert.equal(r.status, 200, r.body);
    return r.json().access_token;
  };

  it('the sample config is the one the README describes', () => {
    assert.equal(CONFIG.resources[0].resource, RESOURCE);
    assert.equal(CONFIG.resources[0].issuers[0].issuer, as.issuer, 'the demo AS on 9400 is the issuer');
    const capnp = readFileSync(CAPNP, 'utf8');
    assert.match(capnp, /network = \(allow = \["public", "private", "local"\]/);
    assert.match(capnp, /globalOutbound = "net"/);
    assert.match(capnp, /"MCP_ORIGIN", text = "http:\/\/127\.0\.0\.1:9401"/);
  });

  it('no token: 401 with the challenge pointing at the metadata', async () => {
    const r = await send(`${base}/mcp`, { method: 'POST', headers: headers(), body: '{"jsonrpc":"2.0","id":1,"method":"tools/list"}' });
    assert.equal(r.status, 401);
    assert.equal(parseChallenge(r.headers['www-authenticate']).params.resource_metadata, 'http://localhost:8787/.well-known/oauth-protected-resource/mcp');
    const prm = await send(`${base}/.well-known/oauth-protected-resource/mcp`);
    assert.deepEqual(prm.json().authorization_servers, [as.issuer]);
  });

  it('a token from the local AS: the JWKS is fetched from loopback and tools/list reaches the MCP server without the token', async () => {
    mcp.clear();
    const t = await token('mcp:read');
    const r = await send(`${base}/mcp`, { method: 'POST', headers: headers(t), body: '{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}' });
    assert.equal(r.status, 200, r.body);
    assert.match(r.body, /"serverInfo"/);
    assert.ok(mcp.seen.length >= 1);
    for (const s of mcp.seen) {
      assert.equal(s.headers.authorization, undefined, 'the token never reaches the MCP server');
      assert.equal(s.headers['x-mcp-client-id'], 'demo-client');
    }
  });

  it('the per-tool rule of the sample: admin_reset without mcp:admin is 403 naming it', async () => {
    const t = await token('mcp:read');
    const r = await send(`${base}/mcp`, { method: 'POST', headers: headers(t), body: '{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"admin_reset","arguments":{}}}' });
    assert.equal(r.status, 403, r.body);
    assert.equal(parseChallenge(r.headers['www-authenticate']).params.scope, 'mcp:read mcp:admin');
  });
});
