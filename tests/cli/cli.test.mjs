// The mcp-edge-auth CLI, run as a user runs it (the built binary): help, check-config per
// host, explain naming the failing check for each common 401/403, metadata. No output ever
// contains the token.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { ROOT } from '../lib/proc.mjs';
import { makeKey, jwks, mint, nowSeconds } from '../lib/tokens.mjs';
import { startJwksServer } from '../lib/servers.mjs';

const CLI = join(ROOT, 'target/debug/mcp-edge-auth');
const ISS = 'https://as.example.com';
const RESOURCE = 'https://MCP.Example.com:443/mcp'; // normalised: https://mcp.example.com/mcp
const AUD = 'https://mcp.example.com/mcp';

/** Runs the CLI: { status, out } (stdout and stderr together). */
function cli(args, input) {
  const r = spawnSync(CLI, args, { input, encoding: 'utf8' });
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

/** The same, without blocking this process (for tests whose servers run in it). */
function cliAsync(args, input) {
  return new Promise((resolve) => {
    const p = spawn(CLI, args);
    let out = '';
    p.stdout.on('data', (d) => { out += d; });
    p.stderr.on('data', (d) => { out += d; });
    p.on('close', (status) => resolve({ status, out }));
    p.stdin.end(input);
  });
}

const dir = mkdtempSync(join(tmpdir(), 'mcp-edge-auth-cli-'));
const file = (name, data) => {
  const p = join(dir, name);
  writeFileSync(p, typeof data === 'string' ? data : JSON.stringify(data));
  return p;
};

function config({ uri = `${ISS}/jwks`, cluster = 'idp' } = {}) {
  return {
    resources: [{
      resource: RESOURCE,
      authorization_servers: [ISS],
      required_scopes: ['mcp:read'],
      issuers: [{ issuer: ISS, algorithms: ['ES256'], remote_jwks: { http_uri: { uri, ...(cluster ? { cluster } : {}) } } }],
      mcp: { rules: [{ method: 'tools/call', name: 'admin_*', scopes: ['mcp:admin'] }] },
    }],
  };
}

describe('mcp-edge-auth --help and per-command help', () => {
  it('--help, help <command> and <command> --help print usage and exit 0', () => {
    const top = cli(['--help']);
    assert.equal(top.status, 0);
    for (const c of ['check-config', 'explain', 'metadata']) assert.match(top.out, new RegExp(`^  ${c} `, 'm'));
    for (const c of ['check-config', 'explain', 'metadata']) {
      const a = cli([c, '--help']);
      assert.equal(a.status, 0, a.out);
      assert.match(a.out, new RegExp(`^usage: mcp-edge-auth ${c}`));
      assert.equal(cli(['help', c]).out, a.out);
    }
  });

  it('usage errors exit 2 and say what is wrong', () => {
    assert.equal(cli([]).status, 2);
    const unknown = cli(['frobnicate']);
    assert.equal(unknown.status, 2);
    assert.match(unknown.out, /unknown command "frobnicate"/);
    const opt = cli(['check-config', '--hots', 'envoy', 'x.json']);
    assert.equal(opt.status, 2);
    assert.match(opt.out, /unknown option --hots/);
    const host = cli(['check-config', '--host', 'nginx', 'x.json']);
    assert.equal(host.status, 2);
    assert.match(host.out, /--host "nginx": expected envoy, module or worker/);
  });
});

describe('mcp-edge-auth check-config --host', () => {
  it('a config without http_uri.cluster: refused for envoy and module, naming the field; accepted for worker', () => {
    const f = file('no-cluster.json', config({ cluster: null }));
    for (const host of ['envoy', 'module']) {
      const r = cli(['check-config', '--host', host, f]);
      assert.equal(r.status, 1, r.out);
      assert.match(r.out, /resources\[0\]\.issuers\[0\]\.remote_jwks\.http_uri\.cluster: is required by the Envoy (filter|module)/);
    }
    const w = cli(['check-config', '--host', 'worker', f]);
    assert.equal(w.status, 0, w.out);
    assert.match(w.out, /ok: 1 resource\(s\) for the Worker/);
    // Without --host: every host, one line each, refused if any refuses.
    const all = cli(['check-config', f]);
    assert.equal(all.status, 1);
    assert.match(all.out, /\(envoy\): config: .*cluster/);
    assert.match(all.out, /\(worker\): ok/);
  });

  it('the same message the hosts log at start-up (the hosts call the same loader)', () => {
    const r = cli(['check-config', '--host', 'envoy', '-'], '   ');
    assert.equal(r.status, 1);
    assert.match(r.out, /plugin configuration is empty/);
    assert.match(cli(['check-config', '--host', 'module', '-'], '').out, /filter configuration is empty/);
  });
});

describe('mcp-edge-auth explain', () => {
  let key;
  let other;
  let cfg;
  let jwksFile;
  const now = nowSeconds();
  const claims = { iss: ISS, aud: AUD, sub: 'alice', scope: 'mcp:read' };
  const explain = (token, extra = []) => cli(['explain', '--config', cfg, '--jwks', jwksFile, '--now', String(now), ...extra, '-'], token);
  /** The line of one check: "  ok   name  detail" or "  FAIL name  detail". */
  const line = (out, check) => out.split('\n').find((l) => new RegExp(`^  (ok|FAIL) +${check} `).test(l)) ?? '';

  before(async () => {
    key = await makeKey('ES256', 'k1');
    other = await makeKey('ES256', 'k-unknown');
    cfg = file('config.json', config());
    jwksFile = file('jwks.json', jwks(key));
  });

  /** Asserts the refusal: exit 1, the failing check, the status, and no token in the output. */
  function refused(r, token, { check, status, error }) {
    assert.equal(r.status, 1, r.out);
    assert.match(r.out, new RegExp(`^failing check: ${check}$`, 'm'), r.out);
    assert.match(line(r.out, check), /^  FAIL /);
    assert.match(r.out, new RegExp(`^verdict: ${status} `, 'm'));
    assert.match(r.out, new RegExp(`www-authenticate: Bearer error="${error}"`));
    assert.ok(!r.out.includes(token), 'the token is never printed');
    assert.ok(!r.out.includes(token.split('.')[2]), 'nor its signature');
  }

  it('a good token: every check ok, forwarded (exit 0), the token stripped', async () => {
    const t = await mint(key, claims);
    const r = explain(t);
    assert.equal(r.status, 0, r.out);
    assert.match(r.out, /^verdict: forwarded to the upstream \(allowed\)/m);
    assert.match(r.out, /removed: authorization/);
    for (const c of ['issuer', 'algorithm', 'typ', 'exp/nbf', 'audience', 'key', 'signature', 'scopes']) assert.match(line(r.out, c), /^  ok /, c);
    assert.ok(!r.out.includes(t));
  });

  it('wrong audience: names audience, with the normalised forms compared', async () => {
    const t = await mint(key, { ...claims, aud: 'https://other.example.com/mcp' });
    const r = explain(t);
    refused(r, t, { check: 'audience', status: 401, error: 'invalid_token' });
    assert.match(line(r.out, 'audience'), /https:\/\/other\.example\.com\/mcp.*accepts \["https:\/\/mcp\.example\.com\/mcp"\]/);
  });

  it('expired: names exp/nbf with the clock', async () => {
    const t = await mint(key, { ...claims, iat: now - 7200, exp: now - 3600 });
    const r = explain(t);
    refused(r, t, { check: 'exp/nbf', status: 401, error: 'invalid_token' });
    assert.match(line(r.out, 'exp/nbf'), new RegExp(`now ${now}; exp ${now - 3600} \\(3600 s ago\\)`));
  });

  it('unknown key: names key, listing the keys the issuer has', async () => {
    const t = await mint(other, claims);
    const r = explain(t);
    refused(r, t, { check: 'key', status: 401, error: 'invalid_token' });
    assert.match(line(r.out, 'key'), /kid "k-unknown".*ES256 \\"k1\\"/);
  });

  it('wrong issuer: names issuer and the trusted ones', async () => {
    const t = await mint(key, { ...claims, iss: 'https://evil.example.com' });
    const r = explain(t);
    refused(r, t, { check: 'issuer', status: 401, error: 'invalid_token' });
    assert.match(line(r.out, 'issuer'), /"https:\/\/evil\.example\.com" is not one of this resource's issuers \["https:\/\/as\.example\.com"\]/);
  });

  it('missing scope: names scopes and the MCP rule that asked for it; 403 naming every scope', async () => {
    const t = await mint(key, claims);
    const r = explain(t, ['--call', 'admin_reset']);
    refused(r, t, { check: 'scopes', status: 403, error: 'insufficient_scope' });
    assert.match(line(r.out, 'scopes'), /rule \{method "tools\/call", name Some\("admin_\*"\)\} matched tools\/call "admin_reset" and requires \["mcp:admin"\]/);
    assert.match(r.out, /scope="mcp:read mcp:admin"/);
    // The same token may call other tools.
    assert.equal(explain(t, ['--call', 'echo']).status, 0);
  });

  it('bad typ: names typ', async () => {
    const t = await mint(key, claims, { typ: 'JWT' });
    const r = explain(t);
    refused(r, t, { check: 'typ', status: 401, error: 'invalid_token' });
    assert.match(line(r.out, 'typ'), /typ "JWT"; policy AtJwt/);
  });

  describe('keys fetched over http:// as a host would', () => {
    let server;
    before(async () => { server = await startJwksServer(jwks(key)); });
    after(async () => { await server?.stop(); });

    it('with no --jwks, the remote_jwks uri is fetched through the key schedule', async () => {
      const c = file('http-config.json', config({ uri: server.url }));
      const t = await mint(key, claims);
      const r = await cliAsync(['explain', '--config', c, '-'], t);
      assert.equal(r.status, 0, r.out);
      assert.match(r.out, /^jwks: JWKS of https:\/\/as\.example\.com fetched: 1 key\(s\) in use/m);
      assert.equal(server.hits, 1);
    });

    it('the JWKS endpoint down: 503 with the Retry-After the schedule computes, failing check keys', async () => {
      const c = file('down-config.json', config({ uri: 'http://127.0.0.1:9/jwks' }));
      const t = await mint(key, claims);
      const r = await cliAsync(['explain', '--config', c, '-'], t);
      assert.equal(r.status, 1, r.out);
      assert.match(r.out, /^jwks: JWKS fetch for https:\/\/as\.example\.com failed: /m);
      assert.match(r.out, /^verdict: 503 \(keys_unavailable\)/m);
      assert.match(r.out, /^  retry-after: \d+$/m);
      assert.match(r.out, /^failing check: keys$/m);
    });
  });
});

describe('mcp-edge-auth metadata', () => {
  it('prints each resource PRM document and the 401 challenge the gateway sends', () => {
    const r = cli(['metadata', '--config', file('meta.json', config())]);
    assert.equal(r.status, 0, r.out);
    assert.match(r.out, /^metadata: https:\/\/MCP\.Example\.com:443\/\.well-known\/oauth-protected-resource\/mcp \(200\)/m);
    assert.match(r.out, /"resource": "https:\/\/MCP\.Example\.com:443\/mcp"/);
    assert.match(r.out, /"authorization_servers": \[\n\s+"https:\/\/as\.example\.com"/);
    assert.match(r.out, /^WWW-Authenticate: Bearer resource_metadata="https:\/\/MCP\.Example\.com:443\/\.well-known\/oauth-protected-resource\/mcp", scope="mcp:read"$/m);
  });
});
