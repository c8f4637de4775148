// Runs a wasm32-wasip1 command module under Node's V8 with node:wasi, passing on its
// arguments:   node --no-liftoff bench/wasm-run.mjs module.wasm [args…]
// `make bench-micro` uses it for the core microbenchmarks (crates/bench): `--no-liftoff`
// makes V8 compile the module with its optimising compiler (TurboFan) only, which is how
// Envoy's V8 runtime runs a filter; Liftoff, V8's baseline compiler, would measure code
// Envoy never runs.
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { WASI } from 'node:wasi';

const [file, ...args] = process.argv.slice(2);
if (!file) {
  console.error('usage: node --no-liftoff bench/wasm-run.mjs module.wasm [args…]');
  process.exit(2);
}
const wasi = new WASI({ version: 'preview1', args: [basename(file), ...args], env: {}, returnOnExit: true });
const module = await WebAssembly.compile(readFileSync(file));
const instance = await WebAssembly.instantiate(module, wasi.getImportObject());
process.exitCode = wasi.start(instance);
