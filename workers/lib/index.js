// mcp-edge-auth for Cloudflare Workers.
//
// The policy (RFC 9728 metadata, RFC 6750 challenges, RFC 8707 audience binding, RFC 9068
// claim checks, key freshness, the refetch cooldown and the verified-token cache) lives in
// Rust, compiled to WebAssembly: the same core the Envoy filter runs. This module does the
// IO around it:
//   * it hands each request to the core and carries out the verdict;
//   * it verifies signatures with WebCrypto (crypto.subtle.verify): the core answers
//     "verify" with a job (algorithm, candidate keys, signed bytes, signature), this module
//     imports the candidate JWKs once per key generation and hands the answer back;
//   * it fetches remote JWKS documents (timeout and size bounded), keeps them per isolate and
//     in the Cache API, refreshes them in the background when their Cache-Control lifetime
//     runs out, and refetches once (cooldown-bounded) for an unknown `kid`;
//   * it posts RFC 7662 introspection requests for opaque tokens when the core asks;
//   * it reads a POST body (bounded) when the core's MCP rules need to see the JSON-RPC
//     messages, and then forwards that buffered body.
// Tokens never reach a log line: logs carry reasons, statuses and paths without queries.

import { initSync, Engine } from './wasm/mcp_edge_auth_worker.js';
import wasmModule from './wasm/mcp_edge_auth_worker_bg.wasm';

let initialized = false;
function ensureInit() {
  if (!initialized) {
    initSync({ module: wasmModule });
    initialized = true;
  }
}

/** WebCrypto parameters per JWS algorithm: for importKey and for verify. */
const ALGORITHMS = {
  RS256: [{ name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' }, { name: 'RSASSA-PKCS1-v1_5' }],
  RS384: [{ name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-384' }, { name: 'RSASSA-PKCS1-v1_5' }],
  RS512: [{ name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-512' }, { name: 'RSASSA-PKCS1-v1_5' }],
  // RFC 7518 §3.5: the salt is as long as the hash.
  PS256: [{ name: 'RSA-PSS', hash: 'SHA-256' }, { name: 'RSA-PSS', saltLength: 32 }],
  PS384: [{ name: 'RSA-PSS', hash: 'SHA-384' }, { name: 'RSA-PSS', saltLength: 48 }],
  PS512: [{ name: 'RSA-PSS', hash: 'SHA-512' }, { name: 'RSA-PSS', saltLength: 64 }],
  // JWS ECDSA signatures are r || s, which is also WebCrypto's format.
  ES256: [{ name: 'ECDSA', namedCurve: 'P-256' }, { name: 'ECDSA', hash: 'SHA-256' }],
  ES384: [{ name: 'ECDSA', namedCurve: 'P-384' }, { name: 'ECDSA', hash: 'SHA-384' }],
  EdDSA: [{ name: 'Ed25519' }, { name: 'Ed25519' }],
};

/** Prefix of the Cache API keys under which fetched JWKS documents are shared. */
const CACHE_KEY_PREFIX = 'https://mcp-edge-auth.invalid/jwks?uri=';
const FETCHED_AT = 'x-mcp-edge-auth-fetched-at';
const TTL = 'x-mcp-edge-auth-ttl';

/** The configuration could not be loaded. `message` names the offending field. */
export class McpEdgeAuthConfigError extends Error {
  constructor(message) {
    super(message);
    this.name = 'McpEdgeAuthConfigError';
  }
}

const nowSeconds = () => Math.floor(Date.now() / 1000);

function jsonResponse(status, error, description, extra = {}) {
  return new Response(JSON.stringify({ error, error_description: description }), {
    status,
    headers: { 'content-type': 'application/json', 'cache-control': 'no-store', ...extra },
  });
}

function toResponse(v) {
  const headers = new Headers();
  for (const [k, val] of v.headers) headers.append(k, val);
  const empty = v.status === 204 || v.status === 304 || v.body === '';
  return new Response(empty ? null : v.body, { status: v.status, headers });
}

/** Reads a body, refusing more than `max` bytes. */
async function readCapped(body, max) {
  if (!body) return new Uint8Array(0);
  const reader = body.getReader();
  const chunks = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.byteLength;
    if (total > max) {
      reader.cancel().catch(() => {});
      throw new Error(`the response body is larger than the limit (${max} bytes)`);
    }
    chunks.push(value);
  }
  const out = new Uint8Array(total);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.byteLength;
  }
  return out;
}

/** Reads a request body up to `limit` bytes: { bytes } or { tooLarge: true }. */
async function readUpTo(request, limit) {
  const declared = Number(request.headers.get('content-length'));
  if (Number.isFinite(declared) && declared > limit) {
    request.body?.cancel().catch(() => {});
    return { tooLarge: true, bytes: EMPTY };
  }
  try {
    return { tooLarge: false, bytes: await readCapped(request.body, limit) };
  } catch {
    return { tooLarge: true, bytes: EMPTY };
  }
}

const EMPTY = new Uint8Array(0);

/** Largest header block handed to the core (the core ignores larger ones; we answer 431). */
const MAX_HEADER_BLOCK = 1024 * 1024;

/** Longest introspection answer read. */
const MAX_INTROSPECTION_BODY = 64 * 1024;

/** The path of a URL without its query, for logs (a query may carry a token). */
const logPath = (url) => url.pathname;

function makeLogger(option) {
  if (typeof option === 'function') return { requests: true, emit: option };
  const level = option ?? 'errors';
  const emit = (event, fields) => {
    const line = JSON.stringify({ logger: 'mcp-edge-auth', event, ...fields });
    if (event.endsWith('_failed') || event.endsWith('_rejected') || event === 'internal_error') console.error(line);
    else console.log(line);
  };
  if (level === 'none') return { requests: false, emit: () => {} };
  return { requests: level === 'requests', emit };
}

/**
 * One configured instance: the core, its key store and verified-token cache, the WebCrypto
 * key cache and the in-flight JWKS fetches. Create one per configuration and keep it at
 * module scope (per isolate); `authorize` is safe to call concurrently.
 */
export class McpEdgeAuth {
  #engine;
  #log;
  #fetch;
  #cacheApi;
  #keys = new Map(); // "issuer/generation/index" -> Promise<CryptoKey|null>
  #ready = new WeakMap(); // such a promise -> its CryptoKey, once imported
  #keyGeneration = new Map(); // issuer -> generation the key cache holds
  #inflight = new Map(); // issuer -> Promise<void>
  #sources = new Map(); // issuer -> remote source (or null)
  #nextRefreshCheck = 0;

  /**
   * @param {string|object} config the one JSON config format (a string or a parsed object)
   * @param {{log?: 'errors'|'requests'|'none'|((event: string, fields: object) => void), fetch?: typeof fetch, cacheApi?: boolean}} [options]
   */
  constructor(config, options = {}) {
    if (config === undefined || config === null || config === '') {
      throw new McpEdgeAuthConfigError('config: no configuration given (set MCP_EDGE_AUTH_CONFIG)');
    }
    const json = typeof config === 'string' ? config : JSON.stringify(config);
    ensureInit();
    try {
      this.#engine = new Engine(json);
    } catch (e) {
      throw new McpEdgeAuthConfigError(typeof e === 'string' ? e : String(e?.message ?? e));
    }
    // A secret key for the verified-token cache's hash. A hit is always confirmed against the
    // whole token; the key only keeps clients from aiming tokens at one slot. Workers refuse
    // randomness at global scope: an instance built there keeps the fixed key.
    try {
      this.#engine.seed_cache(crypto.getRandomValues(new Uint8Array(16)));
    } catch {
      // The fixed key: still exact (tokens are compared), only not secret.
    }
    this.#log = makeLogger(options.log);
    this.#fetch = options.fetch ?? ((input, init) => fetch(input, init));
    this.#cacheApi = options.cacheApi !== false;
  }

  /**
   * Checks one request. Resolves to either `{ ok: false, response }` (send it as is) or
   * `{ ok: true, identity, request, respond }`: continue with `request` (the upstream request,
   * header changes applied: token and client-sent identity headers removed, claim headers
   * added, `access_token` query parameters stripped) and pass your response through
   * `respond()` (adds CORS headers for allowed browser origins).
   * @param {Request} request
   * @param {{waitUntil(p: Promise<unknown>): void}} [ctx] the Worker's ExecutionContext, for background key refreshes
   */
  async authorize(request, ctx) {
    const started = Date.now();
    let url;
    try {
      url = new URL(request.url);
    } catch {
      return this.#denied(jsonResponse(400, 'invalid_request', 'The request URL is malformed'), 'malformed');
    }
    let v;
    try {
      ({ v, request } = await this.#decideFully(request, url, ctx));
    } catch (e) {
      // Fail closed: an internal error never lets a request through.
      this.#log.emit('internal_error', { error: String(e?.message ?? e).slice(0, 200) });
      return this.#denied(jsonResponse(500, 'server_error', 'The request could not be checked'), 'internal_error');
    }
    if (v.kind === 'respond') {
      this.#logRequest(request, url, v.status, v.reason, false, started);
      return this.#denied(toResponse(v), v.reason);
    }
    // Forward.
    const changed = v.remove_headers.length > 0 || v.add_headers.length > 0 || v.new_path !== null;
    let upstream = request;
    if (changed) {
      const target = v.new_path === null ? request.url : url.origin + v.new_path;
      upstream = new Request(target, request);
      for (const name of v.remove_headers) upstream.headers.delete(name);
      for (const [name, value] of v.add_headers) upstream.headers.append(name, value);
    }
    this.#logRequest(request, url, 0, v.reason, v.cache_hit, started);
    const responseHeaders = v.response_headers;
    const id = v.identity;
    return {
      ok: true,
      reason: v.reason,
      cacheHit: v.cache_hit,
      identity: id
        ? { issuer: id.issuer, subject: id.subject ?? null, clientId: id.client_id ?? null, scopes: id.scopes, expiresAt: id.expires_at }
        : null,
      claimHeaders: v.add_headers,
      responseHeaders,
      request: upstream,
      respond(response) {
        if (responseHeaders.length === 0) return response;
        const init = { status: response.status, statusText: response.statusText, headers: response.headers };
        if (response.webSocket) init.webSocket = response.webSocket;
        const out = new Response(response.body, init);
        for (const [name, value] of responseHeaders) {
          if (name === 'vary') out.headers.append(name, value);
          else out.headers.set(name, value);
        }
        return out;
      },
    };
  }

  /** Verified-token cache statistics of this isolate. */
  stats() {
    return JSON.parse(this.#engine.stats());
  }

  #denied(response, reason) {
    return { ok: false, reason, response };
  }

  #logRequest(request, url, status, reason, cacheHit, started) {
    if (!this.#log.requests) return;
    this.#log.emit('request', {
      method: request.method,
      path: logPath(url),
      status: status || undefined,
      reason,
      cache_hit: cacheHit,
      ms: Date.now() - started,
    });
  }

  #decide(head, body) {
    return JSON.parse(this.#engine.decide(head, body.state, body.bytes, nowSeconds()));
  }

  /**
   * Runs the core until it answers respond or forward, doing the IO it asks for. Returns the
   * verdict and the request to forward (rebuilt around the buffered body when the core had
   * to read it).
   */
  async #decideFully(request, url, ctx) {
    // One string for the core: method, scheme, authority, path, then `name:value` lines
    // (Headers values hold neither CR nor LF, and a URL's parts no LF).
    let headerBlock = '';
    for (const [name, value] of request.headers) headerBlock += `\n${name}:${value}`;
    if (headerBlock.length > MAX_HEADER_BLOCK) {
      return { v: { kind: 'respond', status: 431, headers: [['content-type', 'application/json'], ['cache-control', 'no-store']], body: JSON.stringify({ error: 'invalid_request', error_description: 'The request headers are too large' }), reason: 'malformed' }, request };
    }
    const head = `${request.method}\n${url.protocol.slice(0, -1)}\n${url.host}\n${url.pathname}${url.search}${headerBlock}`;
    this.#refreshInBackground(ctx);

    // MCP rules look at the JSON-RPC messages of a POST: read the body (bounded) first.
    let body = { state: 0, bytes: EMPTY };
    if (request.method === 'POST') {
      const limit = this.#engine.body_limit(head);
      if (limit >= 0) {
        const read = await readUpTo(request, limit);
        body = read.tooLarge ? { state: 2, bytes: EMPTY } : { state: 1, bytes: read.bytes };
        if (!read.tooLarge) {
          const init = { method: request.method, headers: request.headers, body: read.bytes, redirect: 'manual' };
          if (request.cf) init.cf = request.cf;
          request = new Request(request.url, init);
        }
      }
    }

    let v = this.#decide(head, body);
    // Each round is one fetch, one signature check or one introspection; the core's cooldown
    // ends fetch loops, and this bound ends anything else.
    for (let round = 0; ; round += 1) {
      if (v.kind === 'respond' || v.kind === 'forward') return { v, request };
      if (round >= 6) {
        if (v.job !== undefined) this.#engine.cancel(v.job);
        return { v: JSON.parse(this.#engine.keys_unavailable(v.issuer)), request };
      }
      if (v.kind === 'fetch_keys') {
        await this.#ensureKeys(v.issuer, v.unknown_kid, ctx);
        v = this.#decide(head, body);
      } else if (v.kind === 'verify') {
        v = (await this.#verify(v)) ?? this.#decide(head, body);
      } else if (v.kind === 'introspect') {
        v = await this.#introspect(v);
      } else {
        throw new Error(`unexpected verdict ${v.kind}`);
      }
    }
  }

  /** Posts an RFC 7662 introspection request; any failure is a 503 (the core decides). */
  async #introspect(job) {
    const e = this.#engine;
    const form = e.introspection_body(job.job);
    if (form === undefined) return JSON.parse(e.resume(job.job, false, nowSeconds()));
    let answered = false;
    let status = 0;
    let bytes = EMPTY;
    try {
      const headers = new Headers();
      for (const [name, value] of job.headers) headers.set(name, value);
      const res = await this.#boundedFetch(job.uri, { method: 'POST', headers, body: form }, job.timeout_ms, MAX_INTROSPECTION_BODY);
      status = res.status;
      bytes = res.body;
      answered = true;
    } catch (err) {
      this.#log.emit('introspection_failed', { uri: job.uri, error: String(err?.message ?? err).slice(0, 200) });
    }
    return JSON.parse(e.resume_introspection(job.job, answered, status, bytes, nowSeconds()));
  }

  /**
   * Carries out a signature job with WebCrypto. Returns the resumed verdict, or null when the
   * issuer's keys changed under the job (the caller decides again).
   */
  async #verify(job) {
    const e = this.#engine;
    // The signed bytes, then the signature: one copy out of Wasm.
    const bytes = e.job_bytes(job.job);
    const params = ALGORITHMS[job.alg];
    if (!bytes || !params || !(job.input_len <= bytes.length)) {
      return JSON.parse(e.resume(job.job, false, nowSeconds()));
    }
    const data = bytes.subarray(0, job.input_len);
    const signature = bytes.subarray(job.input_len);
    // Collect the keys before the first await, while the job's key generation is current.
    const keys = [];
    for (const index of job.candidates) {
      const key = this.#cryptoKey(job.issuer, job.generation, index);
      if (key === undefined) {
        e.cancel(job.job);
        return null;
      }
      keys.push(key);
    }
    let valid = false;
    for (const pending of keys) {
      // An imported key is used as is; only the first use of a key waits for its import.
      const key = this.#ready.get(pending) ?? (await pending);
      if (!key) continue;
      try {
        if (await crypto.subtle.verify(params[1], key, signature, data)) {
          valid = true;
          break;
        }
      } catch {
        // A malformed signature (wrong length, …) is simply not valid.
      }
    }
    return JSON.parse(e.resume(job.job, valid, nowSeconds()));
  }

  /** The imported CryptoKey (a promise) for one key of one generation; undefined when stale. */
  #cryptoKey(issuer, generation, index) {
    const id = `${issuer}/${generation}/${index}`;
    const cached = this.#keys.get(id);
    if (cached) return cached;
    const raw = this.#engine.key_jwk(issuer, index, generation);
    if (raw === undefined) return undefined;
    if (this.#keyGeneration.get(issuer) !== generation) {
      for (const k of [...this.#keys.keys()]) if (k.startsWith(`${issuer}/`)) this.#keys.delete(k);
      this.#keyGeneration.set(issuer, generation);
    }
    const { alg, jwk } = JSON.parse(raw);
    const params = ALGORITHMS[alg];
    const p = params
      ? crypto.subtle.importKey('jwk', jwk, params[0], false, ['verify']).then(
          (key) => {
            this.#ready.set(p, key);
            return key;
          },
          (err) => {
            this.#log.emit('key_import_failed', { issuer: this.#source(issuer)?.issuer, alg, error: String(err?.message ?? err).slice(0, 200) });
            return null;
          },
        )
      : Promise.resolve(null);
    this.#keys.set(id, p);
    return p;
  }

  #source(issuer) {
    if (!this.#sources.has(issuer)) {
      const raw = this.#engine.key_source(issuer);
      this.#sources.set(issuer, raw === undefined ? null : JSON.parse(raw));
    }
    return this.#sources.get(issuer);
  }

  /** Starts background refreshes of keys past their Cache-Control lifetime (at most once a second). */
  #refreshInBackground(ctx) {
    const t = nowSeconds();
    if (t < this.#nextRefreshCheck) return;
    this.#nextRefreshCheck = t + 1;
    for (const issuer of this.#engine.refresh_due(t)) {
      // Keys never loaded are fetched by the request that needs them (and it waits).
      if (this.#inflight.has(issuer) || this.#engine.loaded_at(issuer) < 0) continue;
      const p = this.#ensureKeys(issuer, false, ctx).catch(() => {});
      if (ctx && typeof ctx.waitUntil === 'function') ctx.waitUntil(p);
    }
  }

  /** One fetch per issuer at a time; concurrent requests wait for the same one. */
  #ensureKeys(issuer, unknownKid, ctx) {
    let p = this.#inflight.get(issuer);
    if (!p) {
      p = this.#loadKeys(issuer, unknownKid, ctx).finally(() => this.#inflight.delete(issuer));
      this.#inflight.set(issuer, p);
    }
    return p;
  }

  async #loadKeys(issuer, unknownKid, ctx) {
    const src = this.#source(issuer);
    if (!src) return;
    // A fresher copy another isolate stored is as good as a fetch, except when a `kid` is
    // unknown: then only the JWKS endpoint itself can tell.
    if (!unknownKid && (await this.#fromCacheApi(issuer, src))) return;
    let fetched;
    try {
      fetched = await this.#fetchJwks(src);
    } catch (err) {
      this.#engine.fetch_started(issuer, nowSeconds());
      this.#log.emit('jwks_fetch_failed', { issuer: src.issuer, uri: src.uri, error: String(err?.message ?? err).slice(0, 200) });
      return;
    }
    const t = nowSeconds();
    // The cooldown counts from the end of the fetch: concurrent requests joined this fetch
    // instead of being refused while it ran.
    this.#engine.fetch_started(issuer, t);
    const report = JSON.parse(this.#engine.install_jwks(issuer, fetched.body, fetched.cacheControl ?? undefined, t));
    if (!report.ok) {
      this.#log.emit('jwks_rejected', { issuer: src.issuer, uri: src.uri, error: report.error, skipped: report.skipped });
      return;
    }
    if (report.skipped.length > 0) {
      this.#log.emit('jwks_keys_skipped', { issuer: src.issuer, skipped: report.skipped });
    }
    if (report.changed) this.#log.emit('jwks_installed', { issuer: src.issuer, keys: report.keys, refresh_in: report.refresh_at - t });
    const put = this.#toCacheApi(src, fetched.body, t, report.refresh_at - t);
    if (ctx && typeof ctx.waitUntil === 'function') ctx.waitUntil(put);
    else await put;
  }

  async #fetchJwks(src) {
    try {
      const res = await this.#boundedFetch(
        src.uri,
        { method: 'GET', headers: { accept: 'application/jwk-set+json, application/json' } },
        src.timeout_ms,
        src.max_body_bytes,
        true,
      );
      return { body: res.body, cacheControl: res.headers.get('cache-control') };
    } catch (err) {
      // Name the setting that bounded the fetch, for the operator reading the log.
      const msg = String(err?.message ?? err);
      if (msg.startsWith('the response body is larger')) throw new Error(`the JWKS is larger than max_body_bytes (${src.max_body_bytes})`);
      if (msg.startsWith('timed out')) throw new Error(`${msg} (http_uri.timeout_ms)`);
      throw err;
    }
  }

  /**
   * fetch() bounded in time (the whole exchange, body included) and in body size; redirects
   * are not followed. With `only200`, any other status is an error (and its body unread).
   */
  async #boundedFetch(url, init, timeoutMs, maxBytes, only200 = false) {
    const controller = new AbortController();
    let timer;
    const deadline = new Promise((_, reject) => {
      timer = setTimeout(() => {
        const err = new Error(`timed out after ${timeoutMs} ms`);
        controller.abort(err);
        reject(err);
      }, timeoutMs);
    });
    const run = async () => {
      const res = await this.#fetch(url, { ...init, redirect: 'manual', signal: controller.signal });
      if (only200 && res.status !== 200) {
        res.body?.cancel().catch(() => {});
        throw new Error(`status ${res.status}`);
      }
      const declared = Number(res.headers.get('content-length'));
      if (Number.isFinite(declared) && declared > maxBytes) {
        res.body?.cancel().catch(() => {});
        throw new Error(`the response body is larger than the limit (${maxBytes} bytes)`);
      }
      const body = await readCapped(res.body, maxBytes);
      return { status: res.status, headers: res.headers, body };
    };
    try {
      return await Promise.race([run(), deadline]);
    } finally {
      clearTimeout(timer);
    }
  }

  #cache() {
    if (!this.#cacheApi || typeof caches === 'undefined' || !caches.default) return null;
    return caches.default;
  }

  async #fromCacheApi(issuer, src) {
    const cache = this.#cache();
    if (!cache) return false;
    try {
      const res = await cache.match(CACHE_KEY_PREFIX + encodeURIComponent(src.uri));
      if (!res) return false;
      const fetchedAt = Number(res.headers.get(FETCHED_AT));
      const ttl = Number(res.headers.get(TTL));
      const t = nowSeconds();
      const remaining = fetchedAt + ttl - t;
      if (!Number.isFinite(remaining) || remaining <= 0 || fetchedAt <= this.#engine.loaded_at(issuer)) {
        res.body?.cancel().catch(() => {});
        return false;
      }
      const body = await readCapped(res.body, src.max_body_bytes);
      const report = JSON.parse(this.#engine.install_jwks(issuer, body, `max-age=${remaining}`, t));
      if (report.ok && report.changed) this.#log.emit('jwks_installed', { issuer: src.issuer, keys: report.keys, refresh_in: report.refresh_at - t, from: 'cache_api' });
      return report.ok;
    } catch {
      return false;
    }
  }

  async #toCacheApi(src, body, fetchedAt, ttl) {
    const cache = this.#cache();
    if (!cache || !(ttl > 0)) return;
    try {
      await cache.put(
        CACHE_KEY_PREFIX + encodeURIComponent(src.uri),
        new Response(body, {
          headers: {
            'content-type': 'application/json',
            'cache-control': `max-age=${ttl}`,
            [FETCHED_AT]: String(fetchedAt),
            [TTL]: String(ttl),
          },
        }),
      );
    } catch {
      // The Cache API is an optimisation (and a no-op on some hosts).
    }
  }
}

// ---- the one-call API -----------------------------------------------------------------

const instances = new Map(); // config text -> McpEdgeAuth | McpEdgeAuthConfigError
const byObject = new WeakMap(); // config object (a JSON var) -> its text

function configKey(raw) {
  if (typeof raw === 'string') return raw;
  if (raw !== null && typeof raw === 'object') {
    let text = byObject.get(raw);
    if (text === undefined) {
      text = JSON.stringify(raw);
      byObject.set(raw, text);
    }
    return text;
  }
  return JSON.stringify(raw ?? null);
}

/**
 * The McpEdgeAuth for a Worker's environment: `env.MCP_EDGE_AUTH_CONFIG` (a JSON string or
 * object) and `env.MCP_EDGE_AUTH_LOG` ("errors", "requests" or "none"). Built once per
 * isolate and configuration. Throws McpEdgeAuthConfigError when the config is invalid.
 */
export function fromEnv(env, options = {}) {
  const raw = env?.MCP_EDGE_AUTH_CONFIG;
  const key = configKey(raw);
  let inst = instances.get(key);
  if (!inst) {
    try {
      inst = new McpEdgeAuth(raw, { log: env?.MCP_EDGE_AUTH_LOG, ...options });
    } catch (e) {
      inst = e instanceof McpEdgeAuthConfigError ? e : new McpEdgeAuthConfigError(String(e?.message ?? e));
      console.error(JSON.stringify({ logger: 'mcp-edge-auth', event: 'config_rejected', error: inst.message }));
    }
    if (instances.size >= 8) instances.clear();
    instances.set(key, inst);
  }
  if (inst instanceof Error) throw inst;
  return inst;
}

/**
 * Checks one request against the configuration in `env.MCP_EDGE_AUTH_CONFIG`. An invalid or
 * missing configuration fails closed: every request gets a 500 and the log names the field.
 * @param {Request} request
 * @param {object} env
 * @param {{waitUntil(p: Promise<unknown>): void}} [ctx]
 */
export async function authorize(request, env, ctx) {
  let auth;
  try {
    auth = fromEnv(env);
  } catch {
    return {
      ok: false,
      reason: 'config_error',
      response: jsonResponse(500, 'server_error', 'The authorization layer is not configured'),
    };
  }
  const result = await auth.authorize(request, ctx);
  // After an internal error, start the next request from a fresh instance.
  if (result.reason === 'internal_error') instances.delete(configKey(env?.MCP_EDGE_AUTH_CONFIG));
  return result;
}
