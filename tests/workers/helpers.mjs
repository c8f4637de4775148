// Shared pieces of the Worker-specific tests: a small config in the one format, token
// helpers and a streaming HTTP client that timestamps every chunk.
import { request } from 'node:http';
import { readFileSync } from 'node:fs';

import { mint } from '../lib/tokens.mjs';

export const ISSUER = 'http://127.0.0.1:9/worker-issuer';
export const LOCAL_ISSUER = 'http://127.0.0.1:9/worker-local-issuer';

/**
 * A one-resource config protecting http://localhost:port/mcp. `remote` adds fields to the
 * remote_jwks object; `localJwk` adds a second issuer with inline keys.
 */
export function workerConfig({ port, jwksUrl, remote = {}, localJwk, resource = {}, top = {} }) {
  const issuers = [
    {
      issuer: ISSUER,
      algorithms: ['RS256', 'ES256', 'EdDSA', 'PS256'],
      remote_jwks: { http_uri: { uri: jwksUrl, timeout_ms: 1000 }, refetch_cooldown_seconds: 1, retry_after_seconds: 7, ...remote },
    },
  ];
  if (localJwk) issuers.push({ issuer: LOCAL_ISSUER, local_jwks: { keys: [localJwk] } });
  return {
    resources: [
      {
        resource: `http://localhost:${port}/mcp`,
        authorization_servers: [ISSUER],
        scopes_supported: ['mcp:read', 'mcp:write'],
        required_scopes: ['mcp:read'],
        issuers,
        claim_to_headers: [
          { header_name: 'x-mcp-subject', claim_name: 'sub' },
          { header_name: 'x-mcp-client-id', claim_name: 'client_id' },
        ],
        allowed_origins: ['https://app.example.com'],
        ...resource,
      },
    ],
    ...top,
  };
}

/** A valid token for the config above (fresh `jti` each call, so the token cache misses). */
export async function tokenFor(key, port, claims = {}, issuer = ISSUER) {
  return mint(key, {
    iss: issuer,
    aud: `http://localhost:${port}/mcp`,
    sub: 'user-1',
    client_id: 'client-1',
    scope: 'mcp:read',
    jti: Math.random().toString(36).slice(2),
    ...claims,
  });
}

export const bearer = (t) => [['authorization', `Bearer ${t}`]];

/**
 * Sends a request and records when each body chunk arrived (ms since the request was sent).
 * @returns {Promise<{status:number, headers:object, chunks:Array<{at:number, text:string}>, body:string}>}
 */
export function streamingGet(url, { method = 'GET', headers = [] } = {}) {
  const u = new URL(url);
  const flat = ['host', u.host];
  for (const [k, v] of headers) flat.push(k, v);
  const start = Date.now();
  return new Promise((resolve, reject) => {
    const req = request({ host: u.hostname, port: u.port, path: u.pathname + u.search, method, headers: flat }, (res) => {
      const chunks = [];
      res.setEncoding('utf8');
      res.on('data', (c) => chunks.push({ at: Date.now() - start, text: c }));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, chunks, body: chunks.map((c) => c.text).join('') }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.setTimeout(20000, () => req.destroy(new Error('request timed out')));
    req.end();
  });
}

/** When each SSE event (`data:` line) arrived, from the chunks of streamingGet. */
export function eventTimes(chunks) {
  const times = [];
  for (const c of chunks) {
    const n = (c.text.match(/^data:/gm) ?? []).length;
    for (let i = 0; i < n; i += 1) times.push(c.at);
  }
  return times;
}

export const readLog = (file) => {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return '';
  }
};

/** JSON log lines of mcp-edge-auth in a workerd log. */
export function logEvents(file) {
  return readLog(file)
    .split('\n')
    .filter((l) => l.includes('"logger":"mcp-edge-auth"'))
    .map((l) => {
      try {
        return JSON.parse(l.slice(l.indexOf('{')));
      } catch {
        return null;
      }
    })
    .filter(Boolean);
}
