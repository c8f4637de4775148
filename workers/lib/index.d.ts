// Types for mcp-edge-auth-worker (lib/index.js).

/** The Worker's ExecutionContext, or anything with waitUntil (used for background key refreshes). */
export interface WaitUntil {
  waitUntil(promise: Promise<unknown>): void;
}

/** Who a verified access token speaks for. */
export interface Identity {
  /** `iss`, as configured. */
  issuer: string;
  /** `sub`, when present. */
  subject: string | null;
  /** `client_id` (RFC 9068), when present. */
  clientId: string | null;
  /** Granted scopes (`scope` or `scp`), sorted, without duplicates. */
  scopes: readonly string[];
  /** `exp`, seconds since the Unix epoch. */
  expiresAt: number;
}

/** Why the request was answered or let through (stable names, safe to log and count). */
export type Reason =
  | 'allowed'
  | 'unprotected'
  | 'metadata'
  | 'preflight'
  | 'method_not_allowed'
  | 'missing'
  | 'malformed'
  | 'invalid'
  | 'expired'
  | 'audience'
  | 'scope'
  | 'origin'
  | 'keys_unavailable'
  | 'unmatched'
  | 'config_error'
  | 'internal_error';

/** Send `response` as it is: metadata, a preflight answer, or a 400/401/403/405/500/503. */
export interface Denied {
  ok: false;
  reason: Reason;
  response: Response;
}

/** Continue with `request`; pass your response through `respond()`. */
export interface Allowed {
  ok: true;
  /** `allowed` (valid token) or `unprotected` (a path no resource covers, with unmatched_requests "allow"). */
  reason: 'allowed' | 'unprotected';
  /** The verified identity; null for unprotected paths. Read-only (frozen when it is shared by the requests of one cached token). */
  readonly identity: Readonly<Identity> | null;
  /** Whether the verified-token cache answered (no signature check for this request). */
  cacheHit: boolean;
  /** Headers derived from claims (claim_to_headers), already set on `request`. Read-only. */
  readonly claimHeaders: ReadonlyArray<readonly [string, string]>;
  /** Headers `respond()` adds to your response (CORS for allowed browser origins). Read-only. */
  readonly responseHeaders: ReadonlyArray<readonly [string, string]>;
  /**
   * The request to continue with: the client's Authorization header and any client-sent
   * copies of the identity headers removed, claim headers added, `access_token` query
   * parameters stripped. The body is the original stream (not read).
   */
  request: Request;
  /**
   * Adds `responseHeaders` to your response and, when the request had list requests
   * (`tools/list`, …) on a resource with MCP rules, filters their answer to what the token may
   * use (a new Response whose body streams through the core). Returns it unchanged when
   * there is nothing to do.
   */
  respond(response: Response): Response;
}

export type AuthResult = Allowed | Denied;

export interface McpEdgeAuthOptions {
  /**
   * "errors" (default): key fetch problems and internal errors; "requests": also one line per
   * request (method, path without query, status, reason); "none"; or your own sink. Tokens
   * are never logged.
   */
  log?: 'errors' | 'requests' | 'none' | ((event: string, fields: Record<string, unknown>) => void);
  /** The fetch used for JWKS documents (default: the global fetch). */
  fetch?: typeof fetch;
  /** Share fetched JWKS documents through the Cache API (default true). */
  cacheApi?: boolean;
}

/** The configuration could not be loaded; `message` names the offending field. */
export class McpEdgeAuthConfigError extends Error {
  name: 'McpEdgeAuthConfigError';
}

/**
 * One configured instance (the core, its keys and verified-token cache). Create it once per
 * isolate (module scope) and call `authorize` for every request; it is safe to call
 * concurrently.
 */
export class McpEdgeAuth {
  /**
   * @param config the mcp-edge-auth configuration: a JSON string or the parsed object.
   * @throws McpEdgeAuthConfigError when the configuration is invalid.
   */
  constructor(config: string | object, options?: McpEdgeAuthOptions);
  authorize(request: Request, ctx?: WaitUntil): Promise<AuthResult>;
  /** Verified-token cache statistics of this isolate. */
  stats(): { entries: number; capacity: number; hits: number; misses: number; pending_jobs: number };
}

/** The environment the one-call API reads. */
export interface McpEdgeAuthEnv {
  /** The configuration (JSON string, or an object from a JSON var). */
  MCP_EDGE_AUTH_CONFIG?: string | object;
  /** "errors" (default), "requests" or "none". */
  MCP_EDGE_AUTH_LOG?: 'errors' | 'requests' | 'none';
}

/**
 * The instance for `env.MCP_EDGE_AUTH_CONFIG`, built once per isolate and configuration.
 * @throws McpEdgeAuthConfigError when the configuration is missing or invalid.
 */
export function fromEnv(env: McpEdgeAuthEnv, options?: McpEdgeAuthOptions): McpEdgeAuth;

/**
 * Checks one request against `env.MCP_EDGE_AUTH_CONFIG`. A missing or invalid configuration
 * fails closed (a 500 response for every request; the log names the field).
 */
export function authorize(request: Request, env: McpEdgeAuthEnv, ctx?: WaitUntil): Promise<AuthResult>;
