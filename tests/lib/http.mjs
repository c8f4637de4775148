// A raw HTTP/1.1 client: unlike fetch it can send repeated headers, odd header values and
// bodies of any size, and it reports exactly what came back.
import { request } from 'node:http';

/**
 * @param {string} url
 * @param {{method?: string, headers?: Array<[string,string]>|Record<string,string>, body?: string}} opts
 * @returns {Promise<{status:number, headers:Record<string,string|string[]>, body:string, json:()=>any}>}
 */
export function send(url, { method = 'GET', headers = [], body } = {}) {
  const u = new URL(url);
  const flat = [];
  const pairs = Array.isArray(headers) ? headers : Object.entries(headers);
  // With headers given as a flat array Node sends no Host header of its own (setHost only
  // applies to object headers), and HTTP/1.1 servers answer 400 without one.
  if (!pairs.some(([k]) => k.toLowerCase() === 'host')) flat.push('host', u.host);
  for (const [k, v] of pairs) flat.push(k, v);
  return new Promise((resolve, reject) => {
    const req = request(
      { host: u.hostname, port: u.port, path: u.pathname + u.search, method, headers: flat },
      (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString();
          resolve({ status: res.statusCode, headers: res.headers, body: text, json: () => JSON.parse(text) });
        });
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.setTimeout(20000, () => req.destroy(new Error('request timed out')));
    if (body !== undefined) req.write(body);
    req.end();
  });
}
