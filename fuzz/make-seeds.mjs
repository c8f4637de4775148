// Seeds the fuzz corpora with real material: tokens minted by `jose` (RS256, ES256, EdDSA),
// their JWKS, example configs, JSON-RPC bodies and introspection answers.
import { mkdirSync, writeFileSync, readFileSync, readdirSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { makeKey, jwks, mint } from '../tests/lib/tokens.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const corpus = (t) => { const d = join(here, 'corpus', t); mkdirSync(d, { recursive: true }); return d; };
const put = (t, name, data) => writeFileSync(join(corpus(t), name), data);

const keys = [await makeKey('RS256', 'k-rs'), await makeKey('ES256', 'k-es'), await makeKey('EdDSA', 'k-ed')];
const claims = { iss: 'https://as.example.com', aud: 'https://mcp.example.com/mcp', sub: 'user', scope: 'mcp:read' };
for (const k of keys) {
  const t = await mint(k, claims);
  put('jws', `${k.alg}.txt`, t);
  put('bearer', `${k.alg}.txt`, `Bearer ${t}`);
  // b64: a token's segments (unpadded base64url) and one as standard base64 with padding.
  const [h, p, s] = t.split('.');
  put('b64', `${k.alg}-header.txt`, h);
  put('b64', `${k.alg}-signature.txt`, s);
  put('b64', `${k.alg}-payload-std.txt`, Buffer.from(p, 'base64url').toString('base64'));
}
put('jwks', 'all.json', JSON.stringify(jwks(...keys)));
for (const k of keys) put('jwks', `${k.alg}.json`, JSON.stringify(jwks(k)));
for (const f of readdirSync(join(here, '..', 'config', 'examples'))) put('config', f, readFileSync(join(here, '..', 'config', 'examples', f)));
put('mcp_body', 'call.json', JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'admin_reset' } }));
put('mcp_body', 'batch.json', JSON.stringify([{ jsonrpc: '2.0', id: 1, method: 'tools/list' }, { jsonrpc: '2.0', method: 'notifications/initialized' }]));
put('introspection', 'active.json', JSON.stringify({ active: true, aud: 'https://mcp.example.com/mcp', exp: 1900000000, scope: 'mcp:read', sub: 'u' }));
put('decide', 'wellknown.txt', 'GET/.well-known/oauth-protected-resource/mcp');
// p256: a private scalar (32 bytes), a message, and the optional tamper / raw signature bytes
// the target's Arbitrary input reads after it.
put('p256', 'scalar.bin', Buffer.concat([Buffer.alloc(31, 0x11), Buffer.from([0x2a]), Buffer.from('{"alg":"ES256"}.payload')]));
// lists: sse flag, batch flag, chunk size, then the upstream's answer.
const toolsAnswer = JSON.stringify({ jsonrpc: '2.0', id: 7, result: { tools: [{ name: 'echo' }, { name: 'admin_reset' }], nextCursor: 'c' } });
put('lists', 'json.bin', Buffer.concat([Buffer.from([0, 0, 16]), Buffer.from(toolsAnswer)]));
put('lists', 'sse.bin', Buffer.concat([Buffer.from([1, 0, 7]), Buffer.from(`event: message\ndata: {"jsonrpc":"2.0","method":"notifications/message"}\n\nevent: message\r\ndata: ${toolsAnswer}\r\n\r\n`)]));
put('lists', 'batch.bin', Buffer.concat([Buffer.from([0, 1, 64]), Buffer.from(JSON.stringify([{ jsonrpc: '2.0', id: 'p', result: { prompts: [{ name: 'secret' }, { name: 'hello' }] } }, { jsonrpc: '2.0', id: 1, result: { tools: [{ name: 'admin_x' }] } }]))]));
// rsa: key 0, scheme 0 (RS256), a message; the Arbitrary enum's first variant.
put('rsa', 'genuine.bin', Buffer.concat([Buffer.from([0, 0, 0]), Buffer.from('{"alg":"RS256"}.payload')]));
// Every target in the Makefile gets a corpus directory, seeded or empty.
for (const t of (process.env.FUZZ_TARGETS ?? '').split(/\s+/).filter(Boolean)) corpus(t);
console.log('seeded fuzz/corpus');
