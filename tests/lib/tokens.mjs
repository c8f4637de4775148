// Test keys and tokens, minted with `jose` (an independent JOSE implementation), plus the
// hand-crafted malformed tokens no library would produce.
import * as jose from 'jose';
import { createHmac } from 'node:crypto';

export const b64u = (v) => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url');

/** A signing key with its public JWK. alg: RS256 | PS256 | ES256 | ES384 | EdDSA | RS384… */
export async function makeKey(alg = 'RS256', kid = `${alg.toLowerCase()}-${Math.random().toString(36).slice(2, 8)}`, opts = {}) {
  const { publicKey, privateKey } = await jose.generateKeyPair(alg, { extractable: true, ...(alg === 'EdDSA' ? { crv: 'Ed25519' } : {}), ...opts });
  const jwk = { ...(await jose.exportJWK(publicKey)), kid, alg, use: 'sig' };
  return { alg, kid, privateKey, publicKey, jwk };
}

export const jwks = (...keys) => ({ keys: keys.map((k) => k.jwk ?? k) });

export const nowSeconds = () => Math.floor(Date.now() / 1000);

/**
 * Signs claims with a key. `header` overrides protected header fields (set a field to
 * undefined to drop it). Defaults: typ at+jwt, kid of the key, exp in 5 minutes.
 */
export async function mint(key, claims = {}, header = {}) {
  const now = nowSeconds();
  const payload = { iat: now, exp: now + 300, ...claims };
  for (const k of Object.keys(payload)) if (payload[k] === undefined) delete payload[k];
  const h = { alg: key.alg, typ: 'at+jwt', kid: key.kid, ...header };
  for (const k of Object.keys(h)) if (h[k] === undefined) delete h[k];
  return new jose.CompactSign(new TextEncoder().encode(JSON.stringify(payload))).setProtectedHeader(h).sign(key.privateKey);
}

/** A token assembled from raw header/payload strings or objects and a raw signature. */
export function raw(header, payload, signature = 'c2lnbmF0dXJl') {
  const enc = (v) => (typeof v === 'string' ? Buffer.from(v).toString('base64url') : b64u(v));
  return `${enc(header)}.${enc(payload)}.${signature}`;
}

/** Re-signs with HMAC-SHA256 using `secret` bytes (the classic "HS256 with the public key"). */
export function hs256(header, payload, secret) {
  const input = `${b64u(header)}.${b64u(payload)}`;
  const sig = createHmac('sha256', secret).update(input).digest('base64url');
  return `${input}.${sig}`;
}

/** Replaces the payload of a signed token, keeping the old signature. */
export function tamper(token, claims) {
  const [h, p, s] = token.split('.');
  const payload = { ...JSON.parse(Buffer.from(p, 'base64url')), ...claims };
  return `${h}.${b64u(payload)}.${s}`;
}

const SUBTLE_ALGS = {
  RS256: { name: 'RSASSA-PKCS1-v1_5' },
  PS256: { name: 'RSA-PSS', saltLength: 32 },
  ES256: { name: 'ECDSA', hash: 'SHA-256' },
  ES384: { name: 'ECDSA', hash: 'SHA-384' },
  EdDSA: { name: 'Ed25519' },
};

/**
 * Signs exactly the given header and payload strings (no re-serialisation), so that a test
 * can send duplicate members or unusual encodings signed by a real key.
 */
export async function signRaw(key, headerString, payloadString) {
  const input = `${Buffer.from(headerString).toString('base64url')}.${Buffer.from(payloadString).toString('base64url')}`;
  const sig = await crypto.subtle.sign(SUBTLE_ALGS[key.alg], key.privateKey, new TextEncoder().encode(input));
  return `${input}.${Buffer.from(sig).toString('base64url')}`;
}
