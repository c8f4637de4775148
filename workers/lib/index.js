// mcp-edge-auth for Cloudflare Workers.
//
// The policy (RFC 9728 metadata, RFC 6750 challenges, RFC 8707 audience binding, RFC 9068
// claim checks, key freshness, the refetch cooldown and the verified-token cache) lives in
// Rust, compiled to WebAssembly: the same core the Envoy filter runs, including the key
// schedule (when to fetch keys, which request waits for which fetch, cooldowns, retries).
// This module does the IO around it and nothing else:
//   * it hands each request to the core and carries out the verdict;
//   * it verifies signatures with WebCrypto (crypto.subtle.verify): the core answers
//     "verify" with a job (algorithm, candidate keys, signed bytes, signature), this module
//     imports the candidate JWKs once per key generation and hands the answer back;
//   * it carries out the JWKS fetches the core's schedule asks for (timeout and size bounded;
//     a copy another isolate stored in the Cache API serves, except for an unknown `kid`),
//     in the background (ctx.waitUntil) unless a request waits for it, and resumes the
//     requests the schedule wakes;
//   * it posts RFC 7662 introspection requests for opaque tokens when the core asks;
//   * it reads a POST body (bounded) when the core's MCP rules need to see the JSON-RPC
//     messages, and then forwards that buffered body.
// Tokens never reach a log line: logs carry reasons, statuses and paths without queries.

import { initSync, Engine, read_headers, algorithms } from './wasm/mcp_edge_auth_worker.js';
import wasmModule from './wasm/mcp_edge_auth_worker_bg.wasm';

let initialized = false;
/** The request headers the core reads (its READ_HEADERS), lowercase. */
let READ_HEADERS = [];
/** WebCrypto's parameters (ALGORITHMS) by the index a signature job's record names. */
let JOB_ALGORITHMS = [];
/** The module's memory, and views of it (replaced when the memory grows). */
let memory = null;
let memoryView = new Uint8Array(0);
let memoryData = new DataView(new ArrayBuffer(0));
const ENCODER = new TextEncoder();
/** `crypto.subtle`, read once (each read is a call into the runtime). */
let subtle = null;
function ensureInit() {
  if (!initialized) {
    memory = initSync({ module: wasmModule }).memory;
    READ_HEADERS = read_headers().split('\n');
    JOB_ALGORITHMS = algorithms()
      .split('\n')
      .map((name) => (Object.hasOwn(ALGORITHMS, name) ? ALGORITHMS[name] : null));
    subtle = crypto.subtle;
    initialized = true;
  }
}

/** Views of the current memory (a grown memory is a new buffer). */
function refreshViews() {
  if (memoryView.buffer !== memory.buffer) {
    memoryView = new Uint8Array(memory.buffer);
    memoryData = new DataView(memory.buffer);
  }
}

/**
 * Writes a request's head and body where the engine reads them (`Engine.io`), and returns
 * the head's length in bytes. The runtime's encoder writes straight into Wasm memory: no
 * string is copied character by character, nothing is allocated per request. A head that is
 * not all ASCII may take up to three bytes a character: then a second, larger write.
 */
function writeRequest(engine, head, bytes) {
  const written = writeAt(engine, head, bytes, head.length);
  if (written >= 0) return written;
  const again = writeAt(engine, head, bytes, head.length * 3);
  if (again >= 0) return again;
  throw new Error('the request head could not be encoded');
}

/** One try of writeRequest with `room` bytes for the head: its length, or -1 when short. */
function writeAt(engine, head, bytes, room) {
  const at = engine.io(room + bytes.length);
  refreshViews();
  const result = ENCODER.encodeInto(head, memoryView.subarray(at, at + room));
  if (result.read !== head.length) return -1;
  const written = result.written;
  if (bytes.length > 0) memoryView.set(bytes, at + written);
  return written;
}

/**
 * Signature job `job`'s record, read where the engine wrote it (Engine.job_at; little-endian:
 * the record's length u32, input length u32, issuer u32, generation f64, the algorithm (u8,
 * its index in `algorithms()`), the candidate keys (u8 count, u32 each), then the signed
 * bytes and the signature), or null when it is not one. `data` and `signature` are given as
 * offsets into Wasm memory, not as bytes: they stay valid only until the next call into
 * the engine (see #verify).
 */
function readJob(engine, job) {
  const at = engine.job_at(job);
  if (at === 0) return null;
  refreshViews();
  const d = memoryData;
  if (at + 22 > d.byteLength) return null;
  const end = at + d.getUint32(at, true);
  const inputLen = d.getUint32(at + 4, true);
  const count = d.getUint8(at + 21);
  const data = at + 22 + 4 * count;
  if (end > d.byteLength || data + inputLen > end) return null;
  const candidates = [];
  for (let i = 0; i < count; i += 1) candidates.push(d.getUint32(at + 22 + 4 * i, true));
  return {
    issuer: d.getUint32(at + 8, true),
    generation: d.getFloat64(at + 12, true),
    params: JOB_ALGORITHMS[d.getUint8(at + 20)] ?? null,
    candidates,
    data,
    signature: data + inputLen,
    end,
  };
}

/**
 * A forward in its field form (see `forward_text` in crates/worker/src/lib.rs): U+001E, then
 * each field after a U+001F: reason, cache_hit (1|0), lists, new_path ("": none), keep slot
 * and number ("": not kept), the header names to remove (count first), the headers to add
 * and the response headers (count first, then name and value), then "0" (no identity) or
 * "1" and the identity: issuer, subject, client_id (each optional: "" for none, "=" before
 * a value), expires_at, the scopes (count first). Anything malformed throws (a 500): never
 * a forward made of misread fields.
 */
function readForward(text) {
  const f = text.split('\x1f');
  let at = 7;
  const list = (width) => {
    const count = Number(f[at]);
    at += 1;
    if (!Number.isInteger(count) || count < 0 || at + count * width > f.length) throw new Error('a malformed forward');
    const out = [];
    for (let i = 0; i < count; i += 1, at += width) out.push(width === 1 ? f[at] : [f[at], f[at + 1]]);
    return out;
  };
  const remove = list(1);
  const add = list(2);
  const response = list(2);
  let identity = null;
  if (f[at] === '1') {
    const expiresAt = Number(f[at + 4]);
    if (!Number.isSafeInteger(expiresAt) || expiresAt < 0) throw new Error('a malformed forward');
    at += 5;
    identity = { issuer: f[at - 4], subject: optional(f[at - 3]), client_id: optional(f[at - 2]), scopes: list(1), expires_at: expiresAt };
  } else if (f[at] === '0') {
    at += 1;
  } else {
    throw new Error('a malformed forward');
  }
  if (at !== f.length) throw new Error('a malformed forward');
  const v = {
    kind: 'forward',
    remove_headers: remove,
    add_headers: add,
    new_path: f[4] === '' ? null : f[4],
    response_headers: response,
    reason: f[1],
    cache_hit: f[2] === '1',
    lists: Number(f[3]),
    identity,
  };
  if (f[5] !== '') v.keep = { slot: Number(f[5]), n: Number(f[6]) };
  return v;
}

/** An optional field of a forward's field form: "" for none, "=" before a value. */
function optional(field) {
  if (field === '') return null;
  if (field.charCodeAt(0) !== 0x3d) throw new Error('a malformed forward');
  return field.slice(1);
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

/**
 * The body of an answer to list requests, filtered by the core (per-caller discovery): null
 * when the core lets it pass as it is, else `{ body, remove, cacheControl }`. Each chunk goes
 * through the core, which hands back what may go on now (a JSON answer at its end, an SSE
 * event as soon as it is complete); once every list request is answered the rest passes
 * without crossing into Wasm. A filter the core no longer has fails the stream (never an
 * unfiltered list).
 */
function filterLists(engine, id, response, log) {
  let block = '';
  for (const [name, value] of response.headers) block += `${name}:${value}\n`;
  const plan = JSON.parse(engine.list_open(id, response.status, block));
  if (plan.mode === 'pass') return null;
  if (plan.mode === 'lost' || !response.body) {
    engine.list_drop(id);
    if (plan.mode === 'lost') throw new Error('the list filter of this answer was evicted');
    return null;
  }
  let passing = false;
  // A refused answer (too large, compressed, not JSON) is logged once, by the core's words.
  const report = () => {
    const detail = engine.list_refusal(id);
    if (detail) log.emit('list_rejected', { detail });
  };
  const ts = new TransformStream({
    transform(chunk, controller) {
      if (passing) {
        controller.enqueue(chunk);
        return;
      }
      const out = engine.list_push(id, chunk);
      if (out === undefined) throw new Error('the list filter of this answer was evicted');
      if (out.length > 0) controller.enqueue(out);
      report();
      passing = engine.list_passing(id);
    },
    flush(controller) {
      const out = engine.list_finish(id);
      if (out === undefined) throw new Error('the list filter of this answer was evicted');
      report();
      engine.list_drop(id);
      if (out.length > 0) controller.enqueue(out);
    },
  });
  return { body: response.body.pipeThrough(ts), remove: plan.remove, cacheControl: plan.cache_control };
}

/** The identity of a forward verdict as `authorize` hands it to the caller. */
function callerIdentity(id) {
  return id ? { issuer: id.issuer, subject: id.subject ?? null, clientId: id.client_id ?? null, scopes: id.scopes, expiresAt: id.expires_at } : null;
}

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
/** A kept verdict's number is below this (see Engine.decide). */
const KEPT_N_LIMIT = 2 ** 40;
/** The body argument of a request decided on its headers. */
const NO_BODY = Object.freeze({ state: 0, bytes: EMPTY });

/** Loopback and private addresses, which workerd refuses unless its network allows them. */
const LOCAL_HOST = /^(localhost|127\.|10\.|192\.168\.|172\.(1[6-9]|2\d|3[01])\.|\[::1\]|\[f[cd])/i;

/**
 * How a JWKS fetch failed, as the core's outcome code (see Engine.handle_fetch): 1 body too
 * large, 2 timeout, 5 the runtime refused the address, 3 any other connection failure.
 * workerd refuses private and loopback addresses with a bare "internal error" unless the
 * Worker's global outbound is a network service that allows them.
 */
function fetchFailure(err, uri) {
  const msg = String(err?.message ?? err);
  if (msg.startsWith('the response body is larger')) return 1;
  if (msg.startsWith('timed out')) return 2;
  let host = '';
  try {
    host = new URL(uri).host;
  } catch {
    // A URL the config accepted always parses.
  }
  if (/internal error/i.test(msg) && LOCAL_HOST.test(host)) return 5;
  return 3;
}

/** Largest header block handed to the core (the core ignores larger ones; we answer 431). */
const MAX_HEADER_BLOCK = 1024 * 1024;

/** Longest introspection answer read. */
const MAX_INTROSPECTION_BODY = 64 * 1024;

/** The path of a URL without its query, for logs (a query may carry a token). */
const logPath = (url) => url.pathname;

/**
 * The parts of a request's URL the core needs: `{ href, scheme, host, path (with the
 * query), pathname, origin }`. The runtime hands a Worker its request URL parsed and serialized
 * again (WHATWG), so for a plain `http(s)://host/path?query` splitting the string is exact
 * and spares a URL object and its getters on every request; anything else (user info, a
 * fragment, another scheme) goes through `URL`. Throws on a malformed URL.
 */
function urlParts(href) {
  const sep = href.indexOf('://');
  const scheme = href.slice(0, sep);
  const slash = sep > 0 ? href.indexOf('/', sep + 3) : -1;
  if ((scheme === 'https' || scheme === 'http') && slash > sep + 3 && !href.includes('#')) {
    const host = href.slice(sep + 3, slash);
    if (!host.includes('@')) {
      let path = href.slice(slash);
      let q = path.indexOf('?');
      if (q === path.length - 1) {
        // An empty query: URL.search is '' (a query that merely ends in '?' is kept whole).
        path = path.slice(0, -1);
        q = -1;
      }
      return { href, scheme, host, path, pathname: q < 0 ? path : path.slice(0, q), origin: href.slice(0, slash) };
    }
  }
  const u = new URL(href);
  return { href, scheme: u.protocol.slice(0, -1), host: u.host, path: `${u.pathname}${u.search}`, pathname: u.pathname, origin: u.origin };
}

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
  #keys = new Map(); // issuer -> { generation, keys: [index] -> Promise<CryptoKey|null> }
  #ready = new WeakMap(); // such a promise -> its CryptoKey, once imported
  #waiters = new Map(); // wait number -> resolve()
  #due = 0; // Date.now() at which the key schedule next has work
  #kept = []; // slot -> { n, v }: forward verdicts the engine sends again as `again`
  #timer = null; // deadline timer while requests wait

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
  authorize(request, ctx) {
    // Each Date.now() is a call into the runtime: only when request lines are logged.
    const started = this.#log.requests ? Date.now() : 0;
    let url;
    try {
      url = urlParts(request.url);
    } catch {
      return Promise.resolve(this.#denied(jsonResponse(400, 'invalid_request', 'The request URL is malformed'), 'malformed'));
    }
    // A request the core decides at once (a cache hit, a refusal) is carried out without
    // an await in between; one that waits (keys, a signature, a body, introspection) goes on
    // asynchronously. Either way the caller gets a promise, and an internal error a 500.
    try {
      const decided = this.#decideFully(request, url, ctx);
      if (decided instanceof Promise) {
        // One promise for both outcomes (a `.catch` after the `.then` is one more turn).
        return decided.then(
          (d) => {
            try {
              return this.#carryOut(d, url, started);
            } catch (e) {
              return this.#failed(e);
            }
          },
          (e) => this.#failed(e),
        );
      }
      return Promise.resolve(this.#carryOut(decided, url, started));
    } catch (e) {
      return Promise.resolve(this.#failed(e));
    }
  }

  /** Fail closed: an internal error never lets a request through. */
  #failed(e) {
    broken.add(this);
    this.#log.emit('internal_error', { error: String(e?.message ?? e).slice(0, 200) });
    return this.#denied(jsonResponse(500, 'server_error', 'The request could not be checked'), 'internal_error');
  }

  /** The caller's result for the core's final verdict: the refusal, or the forward carried out. */
  #carryOut({ v, request }, url, started) {
    if (v.kind === 'respond') {
      this.#logRequest(request, url, v.status, v.reason, false, started);
      return this.#denied(toResponse(v), v.reason);
    }
    // Forward.
    const changed = v.remove_headers.length > 0 || v.add_headers.length > 0 || v.new_path !== null;
    let upstream = request;
    if (changed) {
      // The same URL: a copy of the request (its URL is not parsed again).
      upstream = v.new_path === null ? new Request(request) : new Request(url.origin + v.new_path, request);
      // One Headers object for every change (each property read is a call into the runtime,
      // and so is each edit). A name the core both removes and adds (a claim header, an
      // exchanged token's) is one `set`, which replaces every value the client sent; the core
      // adds each name once.
      // Plain loops: a closure per `some` call and an iterator per `for…of` cost more than
      // the comparisons themselves (a forward has a few names).
      const headers = upstream.headers;
      const adds = v.add_headers;
      const removes = v.remove_headers;
      for (let i = 0; i < removes.length; i += 1) {
        const name = removes[i];
        let added = false;
        for (let k = 0; k < adds.length && !added; k += 1) added = adds[k][0] === name;
        if (!added) headers.delete(name);
      }
      for (let i = 0; i < adds.length; i += 1) {
        const [name, value] = adds[i];
        if (removes.includes(name)) headers.set(name, value);
        else headers.append(name, value);
      }
    }
    this.#logRequest(request, url, 0, v.reason, v.cache_hit, started);
    const responseHeaders = v.response_headers;
    const lists = v.lists;
    const engine = this.#engine;
    const log = this.#log;
    return {
      ok: true,
      reason: v.reason,
      cacheHit: v.cache_hit,
      identity: v.callerIdentity ?? callerIdentity(v.identity),
      claimHeaders: v.add_headers,
      responseHeaders,
      request: upstream,
      respond(response) {
        // A request with list requests (tools/list, …): the core says whether the answer is
        // filtered; its body then streams through the core (SSE events go on one by one).
        const listed = lists ? filterLists(engine, lists, response, log) : null;
        if (responseHeaders.length === 0 && listed === null) return response;
        const init = { status: response.status, statusText: response.statusText, headers: response.headers };
        if (response.webSocket) init.webSocket = response.webSocket;
        const out = new Response(listed ? listed.body : response.body, init);
        if (listed) {
          for (const name of listed.remove) out.headers.delete(name);
          out.headers.set('cache-control', listed.cacheControl);
        }
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

  /**
   * A verdict of the engine (JSON; see the crate docs). The engine marks a forward it will
   * send again (`keep`: a verified-token cache hit hands back the same identity every time);
   * it is kept here, frozen, with the identity as the caller sees it, and the next time
   * arrives as `{"kind":"again","slot","n"}`, neither serialised nor parsed. A kept verdict
   * that is not the one the engine names throws (a 500, and a fresh instance): never
   * another caller's identity.
   */
  #verdict(text) {
    const v = text.charCodeAt(0) === 0x1e ? readForward(text) : JSON.parse(text);
    if (v.kind === 'again') return this.#again(v.slot, v.n);
    if (v.keep) {
      const { slot, n } = v.keep;
      this.#kept[slot] = undefined;
      // What the caller is handed from a kept verdict is frozen: one caller's code cannot
      // change what the next request of the same token forwards.
      v.callerIdentity = callerIdentity(v.identity);
      Object.freeze(v.callerIdentity);
      Object.freeze(v.identity.scopes);
      for (const pair of v.add_headers) Object.freeze(pair);
      Object.freeze(v.add_headers);
      Object.freeze(v.response_headers);
      Object.freeze(v.remove_headers);
      this.#kept[slot] = { n, v: Object.freeze(v) };
    }
    return v;
  }

  /** The kept verdict in `slot`, which must be number `n`. */
  #again(slot, n) {
    const kept = this.#kept[slot];
    if (kept === undefined || kept.n !== n) throw new Error('the engine named a verdict this isolate does not hold');
    return kept.v;
  }

  #decide(head, body, previous = 0, now = Date.now()) {
    const e = this.#engine;
    const headLen = writeRequest(e, head, body.bytes);
    // A kept forward comes back as one number (slot × 2^40 + n), a signature job as -2 - job
    // (its record is read by #verify); any other verdict as JSON (-1).
    const kept = e.decide(headLen, body.state, body.bytes.length, now, previous);
    if (kept >= 0) return this.#again(Math.floor(kept / KEPT_N_LIMIT), kept % KEPT_N_LIMIT);
    if (kept === -1) return this.#verdict(e.verdict());
    return { kind: 'verify', job: -2 - kept };
  }

  /**
   * Runs the core until it answers respond or forward, doing the IO it asks for. Returns the
   * verdict and the request to forward (rebuilt around the buffered body when the core had
   * to read it).
   */
  #decideFully(request, url, ctx) {
    // One string for the core: method, scheme, authority, path, then `name:value` lines
    // (Headers values hold neither CR nor LF, and a URL's parts no LF). Only the headers the
    // core reads, each fetched by name: every header iterated is a call into the runtime,
    // and iterating a typical MCP request's ten was a fifth of a cache hit's cost. A
    // repeated header arrives joined (`a, b`) either way, and the core refuses it so.
    const headers = request.headers;
    let headerBlock = '';
    for (const name of READ_HEADERS) {
      const value = headers.get(name);
      if (value !== null) headerBlock += `\n${name}:${value}`;
    }
    if (headerBlock.length > MAX_HEADER_BLOCK) {
      return { v: { kind: 'respond', status: 431, headers: [['content-type', 'application/json'], ['cache-control', 'no-store']], body: JSON.stringify({ error: 'invalid_request', error_description: 'The request headers are too large' }), reason: 'malformed' }, request };
    }
    const method = request.method;
    const head = `${method}\n${url.scheme}\n${url.host}\n${url.path}${headerBlock}`;
    const now = Date.now();
    this.#pump(ctx, now);

    // MCP rules look at the JSON-RPC messages of a POST: read the body (bounded) first.
    if (method === 'POST') {
      const limit = this.#engine.body_limit(writeRequest(this.#engine, head, EMPTY));
      if (limit >= 0) return this.#decideWithBody(request, url, head, limit, ctx);
    }
    const v = this.#decide(head, NO_BODY, 0, now);
    if (v.kind === 'respond' || v.kind === 'forward') return { v, request };
    return this.#rounds(v, request, head, NO_BODY, ctx);
  }

  /** `#decideFully` for a request whose body the core reads first. */
  async #decideWithBody(request, url, head, limit, ctx) {
    const read = await readUpTo(request, limit);
    const body = read.tooLarge ? { state: 2, bytes: EMPTY } : { state: 1, bytes: read.bytes };
    if (!read.tooLarge) {
      const init = { method: request.method, headers: request.headers, body: read.bytes, redirect: 'manual' };
      if (request.cf) init.cf = request.cf;
      request = new Request(url.href, init);
    }
    return this.#rounds(this.#decide(head, body), request, head, body, ctx);
  }

  /**
   * The rounds after the first verdict, until respond or forward. Each round is one wait for
   * keys or for a token exchange (the core decides whether a request may wait, and never lets
   * it wait for ever), one signature check or one introspection.
   */
  async #rounds(v, request, head, body, ctx) {
    for (;;) {
      if (v.kind === 'respond' || v.kind === 'forward') return { v, request };
      if (v.kind === 'wait') {
        const wait = v.wait;
        const woken = new Promise((resolve) => this.#waiters.set(wait, resolve));
        this.#pump(ctx);
        await woken;
        v = this.#decide(head, body, wait);
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
    if (form === undefined) return this.#verdict(e.resume(job.job, false, Date.now()));
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
    return this.#verdict(e.resume_introspection(job.job, answered, status, bytes, Date.now()));
  }

  /**
   * Carries out a signature job with WebCrypto. Returns the resumed verdict, or null when the
   * issuer's keys changed under the job (the caller decides again).
   */
  async #verify(job) {
    const e = this.#engine;
    const j = readJob(e, job.job);
    const params = j?.params;
    if (!params) return this.#verdict(e.resume(job.job, false, Date.now()));
    // Collect the keys before the first await, while the job's key generation is current.
    const keys = [];
    for (const index of j.candidates) {
      const key = this.#cryptoKey(j.issuer, j.generation, index);
      if (key === undefined) {
        e.cancel(job.job);
        return null;
      }
      keys.push(key);
    }
    // The signed bytes and the signature lie in Wasm memory until the next call into the
    // engine, which another request may make as soon as this one awaits. One key, already
    // imported: the loop below verifies before its first await, and WebCrypto copies its
    // inputs before verify returns, so they are handed over in place. Otherwise (the first
    // use of a key, or more than one candidate) they are copied first. (A key import above
    // may have grown the memory: views are made after it.)
    refreshViews();
    const inPlace = keys.length === 1 && this.#ready.has(keys[0]);
    const data = inPlace ? memoryView.subarray(j.data, j.signature) : memoryView.slice(j.data, j.signature);
    const signature = inPlace ? memoryView.subarray(j.signature, j.end) : memoryView.slice(j.signature, j.end);
    let valid = false;
    for (const pending of keys) {
      // An imported key is used as is; only the first use of a key waits for its import.
      const key = this.#ready.get(pending) ?? (await pending);
      if (!key) continue;
      try {
        if (await subtle.verify(params[1], key, signature, data)) {
          valid = true;
          break;
        }
      } catch {
        // A malformed signature (wrong length, …) is simply not valid.
      }
    }
    return this.#verdict(e.resume(job.job, valid, Date.now()));
  }

  /** The imported CryptoKey (a promise) for one key of one generation; undefined when stale. */
  #cryptoKey(issuer, generation, index) {
    let set = this.#keys.get(issuer);
    const cached = set?.generation === generation ? set.keys[index] : undefined;
    if (cached) return cached;
    const raw = this.#engine.key_jwk(issuer, index, generation);
    if (raw === undefined) return undefined;
    // A new generation replaces the issuer's imported keys.
    if (set?.generation !== generation) {
      set = { generation, keys: [] };
      this.#keys.set(issuer, set);
    }
    const { alg, jwk } = JSON.parse(raw);
    const params = ALGORITHMS[alg];
    const p = params
      ? subtle.importKey('jwk', jwk, params[0], false, ['verify']).then(
          (key) => {
            this.#ready.set(p, key);
            return key;
          },
          (err) => {
            this.#log.emit('key_import_failed', { issuer, alg, error: String(err?.message ?? err).slice(0, 200) });
            return null;
          },
        )
      : Promise.resolve(null);
    set.keys[index] = p;
    return p;
  }

  /**
   * Carries out what the key schedule wants now: starts its fetches (in the background:
   * a request that waits for one awaits its wake-up, not the fetch), then resumes the
   * requests it wakes. Cheap when nothing is due. `now`: Date.now() (one reading a request).
   */
  #pump(ctx, now = Date.now()) {
    const e = this.#engine;
    if (now >= this.#due || this.#waiters.size > 0) {
      for (let raw = e.poll_fetch(now); raw !== undefined; raw = e.poll_fetch(now)) {
        const p = this.#carryFetch(JSON.parse(raw));
        if (ctx && typeof ctx.waitUntil === 'function') ctx.waitUntil(p);
      }
      // Token exchanges (upstream_token) the core wants: one per subject token, however many
      // requests wait for it.
      for (let raw = e.poll_exchange(); raw !== undefined; raw = e.poll_exchange()) {
        const p = this.#carryExchange(JSON.parse(raw));
        if (ctx && typeof ctx.waitUntil === 'function') ctx.waitUntil(p);
      }
      for (let raw = e.poll_exchange_overdue(now); raw !== undefined; raw = e.poll_exchange_overdue(now)) {
        this.#logExchange(JSON.parse(raw));
      }
      this.#setDue();
    }
    this.#wakeReady();
  }

  #setDue() {
    const due = this.#engine.next_due();
    this.#due = due < 0 ? Infinity : due;
  }

  /** Resumes the requests the schedule wakes; while some wait, a timer keeps their deadline. */
  #wakeReady() {
    // No request waits (and so no timer runs): the schedule has nobody to wake.
    if (this.#waiters.size === 0 && this.#timer === null) return;
    const e = this.#engine;
    const now = Date.now();
    for (let w = e.poll_wake(now); w !== undefined; w = e.poll_wake(now)) {
      const resolve = this.#waiters.get(w);
      if (resolve) {
        this.#waiters.delete(w);
        resolve();
      }
    }
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
    const t = e.poll_timeout();
    if (t >= 0 && this.#waiters.size > 0) {
      this.#timer = setTimeout(() => {
        this.#timer = null;
        this.#pump(undefined);
      }, Math.max(1, t - Date.now()));
    }
  }

  /** One fetch of the schedule: the Cache API or the JWKS endpoint, the outcome to the core. */
  async #carryFetch(job) {
    const e = this.#engine;
    let report;
    try {
      // A fresher copy another isolate stored is as good as a fetch, except when a `kid` is
      // unknown: then only the JWKS endpoint itself can tell.
      if (!job.unknown_kid && (await this.#fromCacheApi(job))) {
        report = e.handle_fetch(job.id, 6, 0, undefined, EMPTY, Date.now());
      } else {
        const res = await this.#boundedFetch(job.uri, { method: 'GET', headers: { accept: job.accept } }, job.timeout_ms, job.max_body_bytes, true);
        const cacheControl = res.headers.get('cache-control') ?? undefined;
        report = e.handle_fetch(job.id, 0, res.status, cacheControl, res.body, Date.now());
        const r = report === undefined ? undefined : JSON.parse(report);
        if (r?.ok && r.refresh_in > 0) await this.#toCacheApi(job.uri, res.body, nowSeconds(), r.refresh_in);
      }
    } catch (err) {
      report = e.handle_fetch(job.id, fetchFailure(err, job.uri), 0, undefined, EMPTY, Date.now());
    }
    if (report !== undefined) this.#logFetch(JSON.parse(report), job);
    this.#setDue();
    this.#wakeReady();
  }

  /** One RFC 8693 token exchange the core asked for; the answer goes back to the core. */
  async #carryExchange(job) {
    const e = this.#engine;
    const form = e.exchange_body(job.id);
    let report;
    if (form === undefined) return;
    try {
      const headers = new Headers();
      for (const [name, value] of job.headers) headers.set(name, value);
      const res = await this.#boundedFetch(job.uri, { method: 'POST', headers, body: form }, job.timeout_ms, job.max_body_bytes);
      report = e.handle_exchange(job.id, 0, res.status, res.body, Date.now());
    } catch (err) {
      report = e.handle_exchange(job.id, fetchFailure(err, job.uri), 0, EMPTY, Date.now());
    }
    if (report !== undefined) this.#logExchange(JSON.parse(report));
    this.#wakeReady();
  }

  #logExchange(r) {
    // Issued tokens are routine; refusals and failures are what an operator looks for.
    if (r.ok) return;
    this.#log.emit(r.event, { uri: r.uri, error: r.error, retry_in_ms: r.retry_in_ms ?? undefined });
  }

  #logFetch(r, job) {
    if (!r.ok) {
      this.#log.emit(r.event, { issuer: r.issuer, uri: job.uri, error: r.error, retry_in_ms: r.retry_in_ms ?? undefined });
      return;
    }
    if (r.skipped.length > 0) this.#log.emit('jwks_keys_skipped', { issuer: r.issuer, skipped: r.skipped });
    if (r.changed) this.#log.emit('jwks_installed', { issuer: r.issuer, keys: r.keys, refresh_in: r.refresh_in, trigger: job.trigger });
  }

  /**
   * fetch() bounded in time (the whole exchange, body included) and in body size; redirects
   * are not followed. With `only200`, the body of any other status is left unread.
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
        return { status: res.status, headers: res.headers, body: EMPTY };
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

  /** Installs a copy of the JWKS another isolate stored, if it is fresher than ours. */
  async #fromCacheApi(job) {
    const cache = this.#cache();
    if (!cache) return false;
    try {
      const res = await cache.match(CACHE_KEY_PREFIX + encodeURIComponent(job.uri));
      if (!res) return false;
      const fetchedAt = Number(res.headers.get(FETCHED_AT));
      const ttl = Number(res.headers.get(TTL));
      const t = nowSeconds();
      const remaining = fetchedAt + ttl - t;
      if (!Number.isFinite(remaining) || remaining <= 0 || fetchedAt <= this.#engine.loaded_at(job.issuer)) {
        res.body?.cancel().catch(() => {});
        return false;
      }
      const body = await readCapped(res.body, job.max_body_bytes);
      const ok = this.#engine.handle_document(job.issuer, body, `max-age=${ttl}`, fetchedAt, Date.now());
      if (ok) this.#log.emit('jwks_installed', { issuer: job.name, refresh_in: remaining, from: 'cache_api' });
      return ok;
    } catch {
      return false;
    }
  }

  async #toCacheApi(uri, body, fetchedAt, ttl) {
    const cache = this.#cache();
    if (!cache || !(ttl > 0)) return;
    try {
      await cache.put(
        CACHE_KEY_PREFIX + encodeURIComponent(uri),
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
const broken = new WeakSet(); // instances that failed with an internal error
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
  // After an internal error, the next request starts from a fresh instance.
  if (inst !== undefined && broken.has(inst)) inst = undefined;
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
export function authorize(request, env, ctx) {
  let auth;
  try {
    auth = fromEnv(env);
  } catch {
    return Promise.resolve({
      ok: false,
      reason: 'config_error',
      response: jsonResponse(500, 'server_error', 'The authorization layer is not configured'),
    });
  }
  return auth.authorize(request, ctx);
}
