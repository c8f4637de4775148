// A Cache API backend for workerd's `cacheApiOutbound`: workerd sends `cache.put` as a PUT
// whose body is the serialized HTTP response, and `cache.match` as a GET with
// `Cache-Control: only-if-cached` (a 504 is a miss). Entries honour the stored max-age.
import { createServer } from 'node:http';

function parseStored(raw) {
  const split = raw.indexOf('\r\n\r\n');
  const head = raw.subarray(0, split).toString('latin1').split('\r\n');
  const body = raw.subarray(split + 4);
  const status = Number(head[0].split(' ')[1]);
  const headers = head.slice(1).map((l) => [l.slice(0, l.indexOf(':')), l.slice(l.indexOf(':') + 1).trim()]);
  const cc = headers.find(([k]) => k.toLowerCase() === 'cache-control')?.[1] ?? '';
  const maxAge = Number(/max-age=(\d+)/.exec(cc)?.[1] ?? 0);
  return { status, headers, body, expires: Date.now() + maxAge * 1000 };
}

export async function startCacheServer() {
  const store = new Map();
  const state = { puts: 0, hits: 0, misses: 0 };
  const server = createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const key = `${req.headers.host}${req.url}`;
      if (req.method === 'PUT') {
        state.puts += 1;
        store.set(key, parseStored(Buffer.concat(chunks)));
        res.writeHead(204).end();
        return;
      }
      if (req.method === 'PURGE' || req.method === 'DELETE') {
        res.writeHead(store.delete(key) ? 200 : 404).end();
        return;
      }
      const e = store.get(key);
      if (!e || e.expires <= Date.now()) {
        state.misses += 1;
        res.writeHead(504).end();
        return;
      }
      state.hits += 1;
      res.writeHead(e.status, [...e.headers.flat(), 'cf-cache-status', 'HIT']);
      res.end(e.body);
    });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return { port: server.address().port, state, store, stop: () => new Promise((r) => server.close(() => r())) };
}
