// The gateway configuration (the one JSON format, config/README.md) of the demo and the
// end-to-end tests: the demo MCP server behind a gateway on `port`, trusting the demo
// authorization server (oidc-provider) at `issuer`.
//
// How the privileged tool is protected (`stepUp`):
//   'tool'  (the default): one resource, /mcp, with an `mcp.rules` entry for tools/call of
//           the privileged tool: a per-tool step-up, enforced by reading the JSON-RPC body.
//   'route': a second resource, /admin/mcp, whose required_scopes include mcp:admin; the MCP
//           server offers the privileged tool only there (for gateways without body rules).
export const BASE_SCOPE = 'mcp:read';
export const PRIVILEGED_SCOPE = 'mcp:admin';
export const PRIVILEGED_TOOL = 'admin_reset';
/** Scopes the demo authorization server knows. */
export const SCOPES = [BASE_SCOPE, PRIVILEGED_SCOPE];

/** The clients registered at the demo authorization server (client credentials only). */
export const CLIENTS = {
  // May ask for both scopes; the demo's copy-paste commands use it.
  demo: { client_id: 'demo-client', client_secret: 'demo-secret', scope: `${BASE_SCOPE} ${PRIVILEGED_SCOPE}` },
  // May only ever get mcp:read: a step-up to mcp:admin is refused by the AS.
  reader: { client_id: 'reader-client', client_secret: 'reader-secret', scope: BASE_SCOPE },
  // Its tokens live SHORT_TTL seconds (the expired-token scenario).
  shortLived: { client_id: 'short-lived-client', client_secret: 'short-lived-secret', scope: BASE_SCOPE },
};
/** Access-token lifetimes (seconds). */
export const SHORT_TTL = 2;
export const DEFAULT_TTL = 600;

/**
 * RFC 8693 token exchange (demo/as.mjs with `exchange: true`): the audience the AS mints
 * exchanged tokens for by default — the MCP server's own upstream identity, deliberately not a
 * gateway resource, so a client's token for the gateway can never pass as an upstream token.
 */
export const DEFAULT_UPSTREAM_AUDIENCE = 'urn:mcp-edge-auth:demo-upstream';
/**
 * The gateway's client at the AS for token exchange (the `upstream_token` credentials). One
 * client serves both client_secret_basic and client_secret_post: oidc-provider accepts either
 * mechanism for a client registered with either of the two methods.
 */
export const EXCHANGE_CLIENT = { client_id: 'mcp-edge-auth-exchanger', client_secret: 'exchanger-secret' };

/** The URLs of a gateway on `port` (clients must use exactly these: `localhost`, not 127.0.0.1). */
export function urls(port, stepUp = 'tool') {
  const origin = `http://localhost:${port}`;
  const privilegedPath = stepUp === 'tool' ? '/mcp' : '/admin/mcp';
  return {
    base: `http://127.0.0.1:${port}`,
    origin,
    resource: `${origin}/mcp`,
    prm: `${origin}/.well-known/oauth-protected-resource/mcp`,
    privileged: `${origin}${privilegedPath}`,
    privilegedPrm: `${origin}/.well-known/oauth-protected-resource${privilegedPath}`,
  };
}

/** The resource indicators a gateway on `port` serves (the AS must know each). */
export function resourcesOf(port, stepUp = 'tool') {
  const u = urls(port, stepUp);
  return stepUp === 'tool' ? [u.resource] : [u.resource, u.privileged];
}

/** Where the MCP server offers the privileged tool. */
export const privilegedPaths = (stepUp = 'tool') => (stepUp === 'tool' ? ['/mcp'] : ['/admin/mcp']);

/**
 * The `upstream_token` block of a resource (RFC 8693 exchange at the AS before forwarding).
 * @param {{tokenUrl:string, cluster?:string, client?:{client_id:string, client_secret:string},
 *   clientAuth?:'client_secret_basic'|'client_secret_post', audience?:string|string[], scope?:string}} o
 */
export function upstreamTokenConfig({ tokenUrl, cluster = 'as', client = EXCHANGE_CLIENT, clientAuth = 'client_secret_basic', audience = DEFAULT_UPSTREAM_AUDIENCE, scope }) {
  return {
    // `cluster` is for Envoy (a cluster pointing at the AS); the Worker fetches the uri.
    http_uri: { uri: tokenUrl, cluster, timeout_ms: 2000 },
    client_id: client.client_id,
    client_secret: client.client_secret,
    client_auth: clientAuth,
    audience: Array.isArray(audience) ? [...audience] : [audience],
    ...(scope !== undefined ? { scope } : {}),
  };
}

/**
 * @param {{port:number, issuer:string, jwksUrl:string, stepUp?:'route'|'tool', remote?:object, issuerFields?:object,
 *   upstreamToken?:object}} o
 *   remote: extra `remote_jwks` fields; issuerFields: extra issuer fields; upstreamToken: when
 *   an object (see `upstreamTokenConfig`), every resource exchanges the client's token for an
 *   upstream one.
 */
export function gatewayConfig({ port, issuer, jwksUrl, stepUp = 'tool', remote = {}, issuerFields = {}, upstreamToken }) {
  const u = urls(port, stepUp);
  const common = {
    authorization_servers: [issuer],
    scopes_supported: [BASE_SCOPE, PRIVILEGED_SCOPE],
    issuers: [{
      issuer,
      algorithms: ['RS256'],
      ...issuerFields,
      // `cluster` is for Envoy (a cluster pointing at the AS); the Worker fetches the uri.
      remote_jwks: { http_uri: { uri: jwksUrl, cluster: 'jwks', timeout_ms: 2000 }, ...remote },
    }],
    claim_to_headers: [
      { header_name: 'x-mcp-subject', claim_name: 'sub' },
      { header_name: 'x-mcp-client-id', claim_name: 'client_id' },
    ],
    ...(upstreamToken && typeof upstreamToken === 'object' ? { upstream_token: upstreamTokenConfig(upstreamToken) } : {}),
  };
  if (stepUp === 'tool') {
    return {
      resources: [{
        resource: u.resource,
        resource_name: 'mcp-edge-auth demo MCP server',
        required_scopes: [BASE_SCOPE],
        ...common,
        mcp: { rules: [{ method: 'tools/call', name: PRIVILEGED_TOOL, scopes: [PRIVILEGED_SCOPE] }] },
      }],
    };
  }
  return {
    resources: [
      { resource: u.resource, resource_name: 'mcp-edge-auth demo MCP server', required_scopes: [BASE_SCOPE], ...common },
      { resource: u.privileged, resource_name: 'mcp-edge-auth demo MCP server (admin tools)', required_scopes: [BASE_SCOPE, PRIVILEGED_SCOPE], ...common },
    ],
  };
}
