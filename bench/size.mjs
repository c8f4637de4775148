// Sizes of what ships (make bench-size): the Envoy filter module and the Worker's module
// (plus its JavaScript), raw and gzip -9, and for the modules the sizes of their code, data
// and name (function names) sections. Writes .build/bench/size.json.
import { readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';

import { ROOT, writeResult, log } from './lib.mjs';

const FILES = [
  { name: 'Envoy filter', path: '.build/envoy/mcp_edge_auth_envoy.wasm', target: { raw: 512 * 1024 } },
  { name: 'Worker module', path: 'workers/lib/wasm/mcp_edge_auth_worker_bg.wasm', target: { gzip: 1024 * 1024 } },
  { name: 'Worker glue (wasm-bindgen)', path: 'workers/lib/wasm/mcp_edge_auth_worker.js' },
  { name: 'Worker library', path: 'workers/lib/index.js' },
];

/** Sizes of a module's code and data sections and of its `name` section (function names). */
function sections(b) {
  let off = 8;
  const leb = () => {
    let r = 0;
    let shift = 0;
    let x;
    do {
      x = b[off];
      off += 1;
      r += (x & 0x7f) * 2 ** shift;
      shift += 7;
    } while (x & 0x80);
    return r;
  };
  const out = { code: 0, data: 0, names: 0 };
  while (off < b.length) {
    const id = b[off];
    off += 1;
    const len = leb();
    const start = off;
    if (id === 10) out.code = len;
    if (id === 11) out.data = len;
    if (id === 0) {
      const n = leb();
      if (b.subarray(off, off + n).toString() === 'name') out.names = len;
    }
    off = start + len;
  }
  return out;
}

const out = [];
for (const f of FILES) {
  const p = join(ROOT, f.path);
  if (!existsSync(p)) throw new Error(`${f.path} is missing (make envoy-wasm worker-build)`);
  const bytes = readFileSync(p);
  out.push({ ...f, raw: bytes.length, gzip: gzipSync(bytes, { level: 9 }).length, ...(f.path.endsWith('.wasm') ? { sections: sections(bytes) } : {}) });
}
for (const f of out) log(`${f.name}: ${f.raw} bytes, ${f.gzip} gzipped`);
writeResult('size.json', { measured: new Date().toISOString(), files: out });
