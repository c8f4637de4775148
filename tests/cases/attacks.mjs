// What an attacker tries next, beyond reference §5 — one table, run against every host by
// tests/lib/conformance.mjs (same case format as reference.mjs, plus `raw` token specs:
// { key, rawHeader, rawPayload } signed over exactly those bytes, so duplicate members and
// odd encodings reach the gateway as written).

const P = (extra = '') => `{"iss":"$ISSUER","aud":"$RESOURCE","sub":"user-1","scope":"mcp:read","exp":$EXP${extra}}`;

export const attacks = [
  { name: 'duplicate "alg" in the header: 401', token: { key: 'rs', rawHeader: '{"alg":"RS256","typ":"at+jwt","kid":"k-rs","alg":"none"}', rawPayload: P() }, expect: { status: 401, error: 'invalid_token' } },
  { name: 'duplicate "sub" in the payload: 401', token: { key: 'rs', rawHeader: '{"alg":"RS256","typ":"at+jwt","kid":"k-rs"}', rawPayload: P(',"sub":"admin"') }, expect: { status: 401, error: 'invalid_token' } },
  { name: 'duplicate "aud" in the payload: 401', token: { key: 'rs', rawHeader: '{"alg":"RS256","typ":"at+jwt","kid":"k-rs"}', rawPayload: P(',"aud":"https://other.example/mcp"') }, expect: { status: 401, error: 'invalid_token' } },
  { name: 'exp as a float: 401', token: { key: 'rs', claims: { exp: '$NOW_FLOAT+300' } }, expect: { status: 401, error: 'invalid_token' } },
  { name: 'nbf as a string: 401', token: { key: 'rs', claims: { nbf: '$NOW_STRING-10' } }, expect: { status: 401, error: 'invalid_token' } },
  { name: 'aud with an object member: 401', token: { key: 'rs', claims: { aud: ['$RESOURCE', { x: 1 }] } }, expect: { status: 401, error: 'invalid_token' } },
  { name: 'aud with a null member: 401', token: { key: 'rs', claims: { aud: [null, '$RESOURCE'] } }, expect: { status: 401, error: 'invalid_token' } },
  { name: 'token with base64 padding: 401 or 400', token: { key: 'rs', transform: 'padSegments' }, expect: { status: [400, 401] } },
  { name: 'token with a space inside: 400', token: { key: 'rs', transform: 'spaceInside' }, expect: { status: 400, error: 'invalid_request' } },
  { name: 'token with a tab before it: forwarded or 400, never another token', token: { key: 'rs' }, request: { scheme: 'Bearer\t' }, expect: { status: [200, 400] } },
  { name: 'a thousand segments: 401', request: { auth: `Bearer ${'a.'.repeat(1000)}a` }, expect: { status: 401, error: 'invalid_token' } },
  { name: 'Unicode look-alike issuer: 401', token: { key: 'rs', claims: { iss: '$ISSUER_UNICODE' } }, expect: { status: 401, error: 'invalid_token' } },
  { name: 'Unicode in aud: 401', token: { key: 'rs', claims: { aud: '$RESOURCE_UNICODE' } }, expect: { status: 401, error: 'invalid_token' } },
  { name: 'alg "rs256" in lower case: 401', token: { key: 'rs', rawHeader: '{"alg":"rs256","typ":"at+jwt","kid":"k-rs"}', rawPayload: P() }, expect: { status: 401, error: 'invalid_token' } },
  { name: 'alg ES256 header on an RSA key id: 401', token: { key: 'rs', rawHeader: '{"alg":"ES256","typ":"at+jwt","kid":"k-rs"}', rawPayload: P() }, expect: { status: 401, error: 'invalid_token' } },
  { name: 'crit header naming an unknown extension: 401', token: { key: 'rs', rawHeader: '{"alg":"RS256","typ":"at+jwt","kid":"k-rs","crit":["x-ext"],"x-ext":1}', rawPayload: P() }, expect: { status: 401, error: 'invalid_token' } },
  { name: 'kid pointing at a URL: 401 without lookup', token: { key: 'rs', header: { kid: 'https://evil.example/key' } }, expect: { status: 401, error: 'invalid_token' } },
  { name: 'scope as an array: 401', token: { key: 'rs', claims: { scope: ['mcp:read'] } }, expect: { status: 401, error: 'invalid_token' } },
  { name: 'header injection attempt in the token: 400', request: { auth: 'Bearer abc\\r\\nX-Injected: 1' }, expect: { status: [400, 401] } },
  { name: 'empty Authorization header: 400 or 401', request: { auth: '' }, expect: { status: [400, 401] } },
  { name: 'signed by a published key with use "enc": 401', token: { key: 'enc' }, expect: { status: 401, error: 'invalid_token' } },
  { name: 'RS256 token on a key published for PS256: 401', token: { key: 'wrongalg' }, expect: { status: 401, error: 'invalid_token' } },
  { name: 'spoofed identity header without a token: 401, nothing upstream', request: { headers: [['x-mcp-subject', 'admin']] }, expect: { status: 401, noError: true } },
];
