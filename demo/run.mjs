// `make demo`: the whole thing on loopback, on software nobody on this project wrote.
//
//   oidc-provider (AS)  ──JWKS──▶  Envoy + mcp-edge-auth filter  ──▶  MCP server (TS SDK)
//                       ──JWKS──▶  workerd + mcp-edge-auth Worker ──▶  (the same server)
//
// Starts the authorization server and the MCP server (child processes), Envoy with the Wasm
// filter and the Worker in workerd (through the test launchers, tests/envoy/launch.mjs and
// tests/workers/launch.mjs), checks each gateway once (401 challenge, metadata, token,
// tools/list), prints the URLs and copy-paste commands, and runs until Ctrl-C, which stops
// everything it started.
//
//   node demo/run.mjs            run until Ctrl-C
//   node demo/run.mjs --check    start, run the printed curl commands, check their output, stop
//
// Ports (loopback): DEMO_AS_PORT (9400), DEMO_MCP_PORT (9401), DEMO_ENVOY_PORT (9410),
// ENVOY_ADMIN_PORT (Envoy's admin interface, 9411), DEMO_WORKER_PORT (9420). Configs and logs go to .build/demo/ (DEMO_LOG_DIR).
// DEMO_HOSTS=worker (or envoy) starts only that gateway. The privileged tool is protected by
// a per-tool rule on /mcp; DEMO_STEP_UP=route protects it with a second resource,
// /admin/mcp, instead.
import dns from 'node:dns';
import { createServer } from 'node:net';
import { mkdirSync, writeFileSync, existsSync } from 'node:fs';
import { join, relative } from 'node:path';
import { execFile } from 'node:child_process';

import { ROOT, startProcess, waitFor } from '../tests/lib/proc.mjs';
import { send } from '../tests/lib/http.mjs';
import { gatewayConfig, urls, resourcesOf, privilegedPaths, CLIENTS, BASE_SCOPE, PRIVILEGED_SCOPE, PRIVILEGED_TOOL, DEFAULT_UPSTREAM_AUDIENCE, EXCHANGE_CLIENT } from './config.mjs';

dns.setDefaultResultOrder('ipv4first');

const CHECK = process.argv.includes('--check');
const STEP_UP = process.env.DEMO_STEP_UP === 'route' ? 'route' : 'tool';
// DEMO_STATEFUL=1: the MCP server keeps sessions and sends a notification every 2 s on each
// session's GET SSE stream, which the printed commands open through the gateway.
const STATEFUL = ['1', 'true', 'yes'].includes(String(process.env.DEMO_STATEFUL ?? '').toLowerCase());
// DEMO_EXCHANGE=1: the MCP server requires a token of its own (aud urn:mcp-edge-auth:demo-upstream),
// which the gateways get by RFC 8693 token exchange at the authorization server (upstream_token).
const EXCHANGE = ['1', 'true', 'yes'].includes(String(process.env.DEMO_EXCHANGE ?? '').toLowerCase());
const PORTS = {
  as: Number(process.env.DEMO_AS_PORT ?? 9400),
  mcp: Number(process.env.DEMO_MCP_PORT ?? 9401),
  envoy: Number(process.env.DEMO_ENVOY_PORT ?? 9410),
  envoyAdmin: Number(process.env.ENVOY_ADMIN_PORT ?? process.env.DEMO_ENVOY_ADMIN_PORT ?? 9411),
  worker: Number(process.env.DEMO_WORKER_PORT ?? 9420),
};
const HOSTS = (process.env.DEMO_HOSTS ?? 'envoy,worker').split(',').map((h) => h.trim()).filter(Boolean);
if (HOSTS.some((h) => h !== 'envoy' && h !== 'worker') || !HOSTS.length) {
  console.error('DEMO_HOSTS: a comma-separated list of envoy and worker');
  process.exit(2);
}
const GATEWAYS = [['Envoy', PORTS.envoy], ['the Worker', PORTS.worker]].filter(([n]) => HOSTS.includes(n.split(' ').pop().toLowerCase()));
if (!HOSTS.includes('envoy')) delete PORTS.envoy;
if (!HOSTS.includes('worker')) delete PORTS.worker;
const LOGS = process.env.DEMO_LOG_DIR ?? join(ROOT, '.build', 'demo');
const rel = (p) => relative(process.cwd(), p) || '.';

const stoppers = []; // [name, stop()] in start order
const say = (line) => { try { console.log(line); } catch { /* stdout gone */ } };
let stopping = null;

async function stopAll(code) {
  if (stopping) return stopping;
  stopping = (async () => {
    for (const [name, stop] of [...stoppers].reverse()) {
      try { await stop(); } catch (e) { console.error(`stopping ${name}: ${e.message}`); }
    }
    process.exit(code);
  })();
  return stopping;
}

process.on('SIGINT', () => {
  // A second Ctrl-C while stopping: stop waiting (the children got the same SIGINT from the
  // terminal, and a lingering one gets SIGKILL from startProcess's stop() after 3 s anyway).
  if (stopping) { setTimeout(() => process.exit(130), 1000).unref(); return; }
  say('\nstopping everything the demo started ...');
  stopAll(0);
});
process.on('SIGTERM', () => stopAll(0));
process.on('SIGHUP', () => stopAll(0));
// Whatever goes wrong in here, the processes it started are stopped (a closed stdout, e.g.
// `| head`, included).
process.stdout.on('error', () => stopAll(0));
process.on('uncaughtException', (e) => { console.error(`demo: ${e.stack ?? e}`); stopAll(1); });

function portFree(port) {
  return new Promise((resolve) => {
    const s = createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

async function startNode(name, script, args) {
  const logFile = join(LOGS, `${name}.log`);
  writeFileSync(logFile, '');
  const p = startProcess(process.execPath, [join(ROOT, 'demo', script), ...args], { logFile });
  stoppers.push([name, () => p.stop()]);
  return p;
}

async function loadLaunchers() {
  const out = {};
  if (HOSTS.includes('envoy')) {
    const envoyLauncher = join(ROOT, 'tests', 'envoy', 'launch.mjs');
    if (!existsSync(envoyLauncher)) throw new Error(`${rel(envoyLauncher)} is missing (the Envoy host's launcher)`);
    const envoy = await import(envoyLauncher);
    out.startEnvoy = envoy.startEnvoy ?? envoy.startHost;
    if (typeof out.startEnvoy !== 'function') throw new Error(`${rel(envoyLauncher)} exports no startEnvoy`);
  }
  if (HOSTS.includes('worker')) out.startWorkerdWith = (await import(join(ROOT, 'tests', 'workers', 'launch.mjs'))).startWorkerdWith;
  return out;
}

async function token(asBase, resource, scope = BASE_SCOPE) {
  const res = await send(`${asBase}/token`, {
    method: 'POST',
    headers: [
      ['authorization', `Basic ${Buffer.from(`${CLIENTS.demo.client_id}:${CLIENTS.demo.client_secret}`).toString('base64')}`],
      ['content-type', 'application/x-www-form-urlencoded'],
    ],
    body: new URLSearchParams({ grant_type: 'client_credentials', scope, resource }).toString(),
  });
  if (res.status !== 200) throw new Error(`token endpoint: ${res.status} ${res.body}`);
  return res.json().access_token;
}

const TOOLS_LIST = '{"jsonrpc":"2.0","id":1,"method":"tools/list"}';
const INITIALIZE = '{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"curl","version":"1"}}}';
const WHOAMI = '{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"whoami","arguments":{}}}';
const mcpHeaders = (port, t) => [
  ['host', `localhost:${port}`],
  ...(t ? [['authorization', `Bearer ${t}`]] : []),
  ['content-type', 'application/json'],
  ['accept', 'application/json, text/event-stream'],
];

/** One round through a gateway, as the printed commands do it; throws on any surprise. */
async function selfCheck(name, port, asBase) {
  const u = urls(port, STEP_UP);
  const h = (t) => mcpHeaders(port, t);
  const noToken = await send(`${u.base}/mcp`, { method: 'POST', headers: h(), body: TOOLS_LIST });
  if (noToken.status !== 401 || !String(noToken.headers['www-authenticate']).includes(`resource_metadata="${u.prm}"`)) {
    throw new Error(`${name}: no-token request got ${noToken.status} ${noToken.headers['www-authenticate'] ?? ''}`);
  }
  const prm = await send(`${u.base}/.well-known/oauth-protected-resource/mcp`);
  if (prm.status !== 200 || prm.json().resource !== u.resource) throw new Error(`${name}: metadata ${prm.status} ${prm.body}`);
  const t = await token(asBase, u.resource);
  let session = [];
  if (STATEFUL) {
    const init = await send(`${u.base}/mcp`, { method: 'POST', headers: h(t), body: INITIALIZE });
    const sid = init.headers['mcp-session-id'];
    if (init.status !== 200 || !sid) throw new Error(`${name}: initialize ${init.status} ${init.body.slice(0, 200)}`);
    session = [['mcp-session-id', sid]];
  }
  const list = await send(`${u.base}/mcp`, { method: 'POST', headers: [...h(t), ...session], body: TOOLS_LIST });
  if (list.status !== 200 || !list.body.includes('whoami')) throw new Error(`${name}: tools/list ${list.status} ${list.body.slice(0, 200)}`);
}

/** The copy-paste commands for the gateway on `port`. */
function commands(port, asBase) {
  const u = urls(port, STEP_UP);
  const json = `-H 'Content-Type: application/json' -H 'Accept: application/json, text/event-stream'`;
  // demo/client.mjs sends its credentials only to http://127.0.0.1:9400 unless told otherwise.
  const issuerArg = PORTS.as === 9400 ? '' : ` --issuer ${asBase}`;
  return {
    challenge: `curl -si ${u.resource} ${json} -d '${TOOLS_LIST}'`,
    prm: `curl -s ${u.prm}`,
    token: `TOKEN=$(curl -s -u ${CLIENTS.demo.client_id}:${CLIENTS.demo.client_secret} -d grant_type=client_credentials -d scope=${BASE_SCOPE} -d resource=${u.resource} ${asBase}/token | sed -E 's/.*"access_token":"([^"]+)".*/\\1/')`,
    session: `SID=$(curl -si ${u.resource} -H "Authorization: Bearer $TOKEN" ${json} -d '${INITIALIZE}' | sed -n 's/^mcp-session-id: *//Ip' | tr -d '\\r')`,
    tools: `curl -s ${u.resource} -H "Authorization: Bearer $TOKEN"${STATEFUL ? ' -H "Mcp-Session-Id: $SID"' : ''} ${json} -d '${TOOLS_LIST}'`,
    whoami: `curl -s ${u.resource} -H "Authorization: Bearer $TOKEN"${STATEFUL ? ' -H "Mcp-Session-Id: $SID"' : ''} ${json} -d '${WHOAMI}'`,
    stream: `curl -sN ${u.resource} -H "Authorization: Bearer $TOKEN" -H "Mcp-Session-Id: $SID" -H 'Accept: text/event-stream'`,
    sdk: `node demo/client.mjs ${u.resource}${issuerArg}`,
    stepUp: `node demo/client.mjs ${u.privileged} --call ${PRIVILEGED_TOOL}${issuerArg}`,
  };
}

function banner(asBase) {
  const [first, firstPort] = GATEWAYS[0];
  const c = commands(firstPort, asBase);
  const lines = ['', 'mcp-edge-auth demo: everything on loopback; Ctrl-C stops it all.', ''];
  const label = (l) => `  ${`${l}:`.padEnd(28)}`;
  for (const [name, port] of GATEWAYS) lines.push(`${label(`MCP URL behind ${name}`)}${urls(port, STEP_UP).resource}`);
  lines.push(
    `${label(`privileged tool`)}${PRIVILEGED_TOOL}, needs ${PRIVILEGED_SCOPE}, at ${GATEWAYS.map(([, p]) => urls(p, STEP_UP).privileged).join(' and ')}`,
    `${label('authorization server')}${asBase}  (oidc-provider; client ${CLIENTS.demo.client_id} / ${CLIENTS.demo.client_secret})`,
    `${label('MCP server')}http://127.0.0.1:${PORTS.mcp}/mcp  (MCP TypeScript SDK; only the gateways talk to it)`,
    '',
    `Try it through ${first} (paste into a shell):`,
    '',
    '  # no token: 401 and the challenge pointing to the metadata',
    `  ${c.challenge}`,
    '',
    '  # the protected resource metadata: resource, authorization server, scopes',
    `  ${c.prm}`,
    '',
    '  # a token for exactly that resource (client credentials + RFC 8707 resource indicator)',
    `  ${c.token}`,
    '',
    ...(STATEFUL ? ['  # open an MCP session (the server is stateful: DEMO_STATEFUL=1)', `  ${c.session}`, ''] : []),
    '  # list the tools with it',
    `  ${c.tools}`,
    '',
    EXCHANGE
      ? '  # what reached the MCP server: the verified subject, and the token the gateway exchanged for it (aud, act)'
      : '  # what reached the MCP server: the verified subject, no token',
    `  ${c.whoami}`,
    '',
    ...(STATEFUL
      ? ['  # the session\'s GET SSE stream, through the gateway: a notifications/message every 2 s (Ctrl-C ends it)', `  ${c.stream}`, '']
      : ['  (DEMO_STATEFUL=1 make demo: a stateful MCP server, and the GET SSE stream through the gateway)', '']),
    ...(EXCHANGE ? [] : ['  (DEMO_EXCHANGE=1 make demo: the MCP server requires its own token; the gateways exchange the client\'s (RFC 8693))', '']),
  );
  for (const [name, port] of GATEWAYS.slice(1)) {
    lines.push(
      `Through ${name}: the same commands with port ${port}. The token must name that resource: the`,
      `token for ${first} above gets 401 invalid_token there (audience binding). A token for ${name}:`,
      `  ${commands(port, asBase).token}`,
      '',
    );
  }
  lines.push(
    `With the MCP TypeScript SDK client (401 -> metadata -> AS -> token -> tools), and a step-up to ${PRIVILEGED_SCOPE}:`,
    `  ${c.sdk}`,
    `  ${c.stepUp}`,
    '',
    `Configs and logs: ${rel(LOGS)}/   (requests reaching the MCP server: tail -f ${rel(join(LOGS, 'mcp.log'))})`,
    '',
  );
  return lines.join('\n');
}

function bash(script) {
  return new Promise((resolve) => {
    execFile('bash', ['-c', script], { cwd: ROOT, timeout: 20000 }, (err, stdout, stderr) => resolve({ code: err ? (err.code ?? 1) : 0, stdout, stderr }));
  });
}

/** --check: runs the printed commands (bash + curl) and checks what they print. */
async function checkCommands(asBase) {
  const failures = [];
  for (const [name, port] of GATEWAYS) {
    const u = urls(port, STEP_UP);
    const c = commands(port, asBase);
    const expect = async (what, script, ok) => {
      const r = await bash(script);
      const good = r.code === 0 && ok(r.stdout);
      console.log(`  ${good ? 'ok  ' : 'FAIL'} ${name}: ${what}`);
      if (!good) failures.push(`${name}: ${what}\n$ ${script}\n${r.stdout}${r.stderr}`);
    };
    await expect('401 challenge', c.challenge, (o) => /^HTTP\/1\.1 401/m.test(o) && o.toLowerCase().includes(`www-authenticate: bearer resource_metadata="${u.prm.toLowerCase()}"`));
    await expect('metadata', c.prm, (o) => JSON.parse(o).resource === u.resource);
    // A stateful server answers POSTs as SSE (`data: {…}`); a stateless one with JSON.
    const rpc = (o) => JSON.parse(o.includes('data: ') ? o.split('\n').find((l) => l.startsWith('data: ')).slice(6) : o);
    const open = STATEFUL ? `${c.session}\n` : '';
    await expect('token + tools/list', `${c.token}\n${open}${c.tools}`, (o) => rpc(o).result.tools.some((t) => t.name === 'whoami'));
    await expect('token + whoami', `${c.token}\n${open}${c.whoami}`, (o) => {
      const who = rpc(o).result.structuredContent;
      if (EXCHANGE) return who.subject === CLIENTS.demo.client_id && who.upstream_token?.aud === DEFAULT_UPSTREAM_AUDIENCE && who.upstream_token?.act?.sub === EXCHANGE_CLIENT.client_id;
      return who.subject === CLIENTS.demo.client_id && who.authorization_received === false;
    });
    await expect('SDK client', c.sdk, (o) => o.includes('tools: whoami') && o.includes('"subject":"demo-client"'));
    await expect('SDK client step-up', c.stepUp, (o) => o.includes(' -> 403') && o.includes('"reset":true'));
    if (STATEFUL) {
      await expect('the GET SSE stream through the gateway', `${c.token}\n${open}timeout 5 ${c.stream}; true`, (o) => /^data: .*"method":"notifications\/message".*"tick \d+"/m.test(o));
    }
  }
  // Audience binding between the gateways: one's token is refused by the other.
  if (GATEWAYS.length > 1) {
    const [[a, pa], [b, pb]] = GATEWAYS;
    const cross = `${commands(pa, asBase).token}\n${commands(pb, asBase).tools.replace('curl -s', 'curl -s -o /dev/null -w "%{http_code}"')}`;
    const r = await bash(cross);
    const good = r.stdout.trim() === '401';
    console.log(`  ${good ? 'ok  ' : 'FAIL'} a token for ${a} sent to ${b}: ${r.stdout.trim()}`);
    if (!good) failures.push(`${a} token at the ${b}: ${r.stdout}${r.stderr}`);
  }
  return failures;
}

async function main() {
  mkdirSync(LOGS, { recursive: true });
  for (const [name, port] of Object.entries(PORTS)) {
    if (!(await portFree(port))) {
      throw new Error(`port ${port} (${name}) is in use on 127.0.0.1; free it or set DEMO_${name.toUpperCase()}_PORT`);
    }
  }
  const { startEnvoy, startWorkerdWith } = await loadLaunchers();
  const asBase = `http://127.0.0.1:${PORTS.as}`;

  process.stdout.write('starting the authorization server (oidc-provider) ... ');
  const resources = GATEWAYS.flatMap(([, port]) => resourcesOf(port, STEP_UP));
  const as = await startNode('as', 'as.mjs', ['--port', String(PORTS.as), ...(EXCHANGE ? ['--exchange'] : []), ...resources.flatMap((r) => ['--resource', r])]);
  await waitFor(async () => {
    if (as.exited) throw new Error(`exited; see ${as.log}`);
    return (await send(`${asBase}/.well-known/oauth-authorization-server`)).status === 200;
  }, { what: 'the authorization server' });
  console.log('ok');

  process.stdout.write('starting the MCP server (MCP TypeScript SDK) ... ');
  const mcpArgs = ['--port', String(PORTS.mcp), '--log', ...(STATEFUL ? ['--stateful'] : []), ...privilegedPaths(STEP_UP).flatMap((p) => ['--privileged-path', p]),
    ...(EXCHANGE ? ['--upstream-jwks', `${asBase}/jwks`, '--upstream-issuer', asBase, '--upstream-audience', DEFAULT_UPSTREAM_AUDIENCE] : [])];
  const mcp = await startNode('mcp', 'mcp-server.mjs', mcpArgs);
  await waitFor(async () => {
    if (mcp.exited) throw new Error(`exited; see ${mcp.log}`);
    // GET without a session: 405 (stateless) or 400 (stateful): either way it answers.
    // With DEMO_EXCHANGE, 401 (no token of its own).
    return [400, 401, 405].includes((await send(`http://127.0.0.1:${PORTS.mcp}/mcp`)).status);
  }, { what: 'the MCP server' });
  console.log('ok');

  const upstreamToken = EXCHANGE ? { tokenUrl: `${asBase}/token`, cluster: 'as' } : undefined;
  const configFor = (port) => gatewayConfig({ port, issuer: asBase, jwksUrl: `${asBase}/jwks`, stepUp: STEP_UP, upstreamToken });
  for (const [name, port] of GATEWAYS) {
    writeFileSync(join(LOGS, `${name.split(" ").pop().toLowerCase()}-config.json`), `${JSON.stringify(configFor(port), null, 2)}\n`);
  }

  if (startEnvoy) {
    process.stdout.write('starting Envoy with the mcp-edge-auth Wasm filter ... ');
    const envoy = await startEnvoy({ port: PORTS.envoy, adminPort: PORTS.envoyAdmin, config: configFor(PORTS.envoy), jwksPort: PORTS.as, upstreamPort: PORTS.mcp, clusters: { as: PORTS.as }, logFile: join(LOGS, 'envoy.log') });
    stoppers.push(['envoy', () => envoy.stop()]);
    console.log(`ok (admin: ${envoy.adminUrl}/stats?filter=mcp_edge_auth)`);
  }

  if (startWorkerdWith) {
    process.stdout.write('starting the mcp-edge-auth Worker in workerd ... ');
    const worker = await startWorkerdWith({ port: PORTS.worker, config: configFor(PORTS.worker), upstreamPort: PORTS.mcp, logFile: join(LOGS, 'workerd.log') });
    stoppers.push(['workerd', () => worker.stop()]);
    console.log('ok');
  }

  for (const [name, port] of GATEWAYS) {
    process.stdout.write(`checking ${name}: 401 challenge, metadata, token, tools/list ... `);
    await selfCheck(name, port, asBase);
    console.log('ok');
  }

  console.log(banner(asBase));

  if (CHECK) {
    console.log('--check: running the commands above');
    const failures = await checkCommands(asBase);
    for (const f of failures) console.error(`\n${f}`);
    await stopAll(failures.length ? 1 : 0);
    return;
  }

  // Tell the user if a part dies on its own.
  for (const [name, p] of [['authorization server', as], ['MCP server', mcp]]) {
    p.exitedP.then(() => { if (!stopping) console.error(`the ${name} exited; see ${rel(p.log)}`); });
  }
  console.log('running; Ctrl-C stops everything.');
}

main().catch(async (e) => {
  console.error(`\ndemo failed: ${e.message}\nlogs: ${rel(LOGS)}/`);
  await stopAll(1);
});
