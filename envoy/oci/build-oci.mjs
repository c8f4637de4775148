#!/usr/bin/env node
// Packs the filter as a Wasm OCI image in the "compat" layout that Istio's WasmPlugin
// (`url: oci://…`) pulls: one gzipped tar layer holding `plugin.wasm`, an OCI image manifest
// annotated `module.wasm.image/variant: compat`, written as an OCI image layout directory
// (oci-layout, index.json, blobs/sha256/…) that `skopeo copy oci:DIR:TAG docker://…` pushes.
//
// The build is reproducible: fixed tar metadata (mtime 0, uid/gid 0, mode 0644) and a gzip
// header without a timestamp, so the same plugin.wasm always gives the same digests.
//
// Usage: node envoy/oci/build-oci.mjs <plugin.wasm> <out-dir> [tag]
// Prints the manifest digest (sha256:…): the value of WasmPlugin.spec.sha256 (without the
// "sha256:" prefix), or use it in the URL (oci://registry/repo@sha256:…).
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';

const [wasmPath, outDir, tag = 'latest'] = process.argv.slice(2);
if (!wasmPath || !outDir) {
  console.error('usage: build-oci.mjs <plugin.wasm> <out-dir> [tag]');
  process.exit(2);
}

const sha256 = (buf) => createHash('sha256').update(buf).digest('hex');

/** A one-file ustar archive. */
function tar(name, data) {
  const header = Buffer.alloc(512, 0);
  const put = (off, len, str) => header.write(str, off, len, 'ascii');
  const octal = (off, len, n) => put(off, len, n.toString(8).padStart(len - 1, '0') + '\0');
  put(0, 100, name);
  octal(100, 8, 0o644); // mode
  octal(108, 8, 0); // uid
  octal(116, 8, 0); // gid
  octal(124, 12, data.length); // size
  octal(136, 12, 0); // mtime
  put(148, 8, '        '); // checksum placeholder (spaces while summing)
  put(156, 1, '0'); // regular file
  put(257, 6, 'ustar\0');
  put(263, 2, '00');
  let sum = 0;
  for (const b of header) sum += b;
  put(148, 8, sum.toString(8).padStart(6, '0') + '\0 ');
  const pad = Buffer.alloc((512 - (data.length % 512)) % 512, 0);
  return Buffer.concat([header, data, pad, Buffer.alloc(1024, 0)]);
}

const wasm = readFileSync(wasmPath);
if (wasm.length < 8 || wasm.readUInt32BE(0) !== 0x0061736d) {
  console.error(`${wasmPath} is not a Wasm module`);
  process.exit(1);
}
const layerTar = tar('plugin.wasm', wasm);
// level 9, and Node writes a gzip header with mtime 0: byte-for-byte reproducible.
const layer = gzipSync(layerTar, { level: 9 });

const config = Buffer.from(
  JSON.stringify({
    architecture: 'wasm',
    os: 'wasip1',
    config: {},
    rootfs: { type: 'layers', diff_ids: [`sha256:${sha256(layerTar)}`] },
  }),
);
const manifest = Buffer.from(
  JSON.stringify({
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: `sha256:${sha256(config)}`, size: config.length },
    layers: [
      {
        mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip',
        digest: `sha256:${sha256(layer)}`,
        size: layer.length,
        annotations: { 'org.opencontainers.image.title': 'plugin.wasm' },
      },
    ],
    annotations: {
      'module.wasm.image/variant': 'compat',
      'org.opencontainers.image.title': 'mcp-edge-auth',
      'org.opencontainers.image.description': 'mcp-edge-auth: OAuth 2.1 resource-server filter for MCP servers (proxy-wasm, Envoy and Istio)',
    },
  }),
);
const digest = `sha256:${sha256(manifest)}`;

rmSync(outDir, { recursive: true, force: true });
mkdirSync(join(outDir, 'blobs', 'sha256'), { recursive: true });
for (const blob of [layer, config, manifest]) writeFileSync(join(outDir, 'blobs', 'sha256', sha256(blob)), blob);
writeFileSync(join(outDir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
writeFileSync(
  join(outDir, 'index.json'),
  JSON.stringify({
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.index.v1+json',
    manifests: [
      {
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        digest,
        size: manifest.length,
        annotations: { 'org.opencontainers.image.ref.name': tag },
      },
    ],
  }),
);
// The raw module's own digest, for WasmPlugin `url: https://…/plugin.wasm` deployments.
writeFileSync(join(outDir, 'plugin.wasm.sha256'), `${sha256(wasm)}  plugin.wasm\n`);
console.log(digest);
