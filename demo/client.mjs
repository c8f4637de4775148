// An MCP client built only from the official TypeScript SDK (`@modelcontextprotocol/sdk`):
// `Client` + `StreamableHTTPClientTransport` with the SDK's `ClientCredentialsProvider`. Given
// nothing but the MCP URL and client credentials it does what any spec-following client does:
// gets 401, follows `resource_metadata` to the Protected Resource Metadata, checks its
// `resource`, finds the authorization server, gets a token for that resource and retries.
//
// Two small additions, both outside the SDK's logic:
//   - `recordingFetch` logs every HTTP exchange, so tests can assert the discovery sequence;
//   - `StepUpClientCredentialsProvider`: the SDK's provider always requests its configured
//     scope, even after a 403 `insufficient_scope` challenge names more. This subclass adds the
//     challenged scopes to its next token request (what SEP-835 asks of clients), so a step-up
//     actually happens. The SDK itself still decides when to re-authorize.
//
// Run it: `node demo/client.mjs http://localhost:9410/mcp [--client-id ID --client-secret S]
//   [--scope "mcp:read"] [--issuer http://127.0.0.1:9400] [--call TOOL]`.
import dns from 'node:dns';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { ClientCredentialsProvider } from '@modelcontextprotocol/sdk/client/auth-extensions.js';

// The gateways listen on 127.0.0.1; `localhost` must reach them, never ::1 first.
dns.setDefaultResultOrder('ipv4first');

/** Splits a challenge's auth-params (quoted values) into an object. */
export function challengeParams(value) {
  const params = {};
  if (!value) return params;
  for (const m of value.matchAll(/([a-zA-Z_]+)="((?:[^"\\]|\\.)*)"/g)) params[m[1]] = m[2];
  return params;
}

/** A ClientCredentialsProvider that honours the scope of a 403 insufficient_scope challenge. */
export class StepUpClientCredentialsProvider extends ClientCredentialsProvider {
  constructor(options) {
    super(options);
    this.extraScopes = new Set();
  }

  /** Called with the `scope` of an insufficient_scope challenge. */
  stepUp(scope) {
    for (const s of String(scope).split(' ').filter(Boolean)) this.extraScopes.add(s);
  }

  prepareTokenRequest(scope) {
    const all = new Set([...(scope ?? '').split(' ').filter(Boolean), ...this.extraScopes]);
    return super.prepareTokenRequest([...all].join(' ') || undefined);
  }
}

/**
 * A fetch that records every exchange: { method, url, status, authorization (bool),
 * wwwAuthenticate, requestBody (token requests), responseJson (when JSON) }. When `provider`
 * is given and a response is 403 insufficient_scope, the challenged scope goes to
 * `provider.stepUp` before the SDK re-authorizes.
 */
export function recordingFetch({ log = [], provider, verbose = false } = {}) {
  const f = async (url, init = {}) => {
    const headers = new Headers(init.headers);
    const entry = {
      method: init.method ?? 'GET',
      url: String(url),
      authorization: headers.get('authorization'),
      requestBody: typeof init.body === 'string' ? init.body : init.body instanceof URLSearchParams ? init.body.toString() : undefined,
    };
    const res = await fetch(url, init);
    entry.status = res.status;
    entry.wwwAuthenticate = res.headers.get('www-authenticate') ?? undefined;
    if ((res.headers.get('content-type') ?? '').includes('json')) {
      try { entry.responseJson = await res.clone().json(); } catch { /* not JSON after all */ }
    }
    log.push(entry);
    if (verbose) console.log(`  ${entry.method} ${entry.url} -> ${entry.status}${entry.wwwAuthenticate ? `  WWW-Authenticate: ${entry.wwwAuthenticate}` : ''}`);
    if (provider && res.status === 403) {
      const p = challengeParams(entry.wwwAuthenticate);
      if (p.error === 'insufficient_scope' && p.scope) provider.stepUp(p.scope);
    }
    return res;
  };
  f.log = log;
  return f;
}

/**
 * Connects an SDK client to `url` with client credentials.
 * @returns {Promise<{client: Client, transport: StreamableHTTPClientTransport, provider, log: object[], close(): Promise<void>}>}
 */
export async function connect(url, { clientId, clientSecret, scope, expectedIssuer, headers, stepUp = false, verbose = false, connect: doConnect = true } = {}) {
  const Provider = stepUp ? StepUpClientCredentialsProvider : ClientCredentialsProvider;
  const provider = new Provider({ clientId, clientSecret, scope, ...(expectedIssuer ? { expectedIssuer } : {}) });
  const log = [];
  const transport = new StreamableHTTPClientTransport(new URL(url), {
    authProvider: provider,
    fetch: recordingFetch({ log, provider: stepUp ? provider : undefined, verbose }),
    ...(headers ? { requestInit: { headers } } : {}),
  });
  const client = new Client({ name: 'mcp-edge-auth-demo-client', version: '1.0.0' });
  if (doConnect) await client.connect(transport);
  return { client, transport, provider, log, close: () => client.close() };
}

// ---- CLI ---------------------------------------------------------------------------------
if (import.meta.url === `file://${process.argv[1]}`) {
  const args = process.argv.slice(2);
  const opt = (name, dflt) => { const i = args.indexOf(name); return i >= 0 ? args[i + 1] : dflt; };
  const url = args.find((a, i) => !a.startsWith('--') && !(args[i - 1] ?? '').startsWith('--'));
  if (!url) {
    console.error('usage: node demo/client.mjs MCP_URL [--client-id demo-client] [--client-secret demo-secret] [--scope "mcp:read"] [--issuer http://127.0.0.1:9400] [--call whoami]');
    process.exit(2);
  }
  const tool = opt('--call', 'whoami');
  const issuer = opt('--issuer', `http://127.0.0.1:${process.env.DEMO_AS_PORT ?? 9400}`);
  console.log(`connecting to ${url} (the SDK follows the 401 challenge by itself):`);
  const c = await connect(url, {
    clientId: opt('--client-id', 'demo-client'),
    clientSecret: opt('--client-secret', 'demo-secret'),
    scope: opt('--scope', 'mcp:read'),
    // Credentials go only to this authorization server (the demo's, unless told otherwise).
    expectedIssuer: issuer,
    stepUp: true,
    verbose: true,
    connect: false,
  });
  try {
    await c.client.connect(c.transport);
    const { tools } = await c.client.listTools();
    console.log(`tools: ${tools.map((t) => t.name).join(', ')}`);
    const result = await c.client.callTool({ name: tool, arguments: {} });
    console.log(`${tool}: ${result.content?.[0]?.text}`);
    await c.close();
  } catch (e) {
    console.error(`\nfailed: ${e?.message ?? e}`);
    // What the resource's metadata named, to tell an untrusted AS from a dead one.
    const named = c.log.flatMap((x) => x.responseJson?.authorization_servers ?? []);
    if (named.length && !named.includes(issuer)) {
      console.error(`The resource names the authorization server ${named.join(', ')}, but this client sends credentials only to ${issuer}. If you trust it, pass --issuer ${named[0]}.`);
    } else if (/fetch failed|ECONNREFUSED/.test(String(e?.message ?? e) + String(e?.cause ?? ''))) {
      console.error(`Nothing answered: is the gateway at ${url} running (make demo)?`);
    }
    process.exit(1);
  }
}
