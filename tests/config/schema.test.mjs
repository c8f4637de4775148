// Every configuration shipped in the repository validates against config/schema.json AND
// loads in the core (via the check-config CLI, which loads exactly as the hosts do), so the
// schema, the examples, the Envoy/Istio manifests and the Worker config cannot drift apart.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import Ajv2020 from 'ajv/dist/2020.js';
import { parseAllDocuments } from 'yaml';
import { parse as parseToml } from 'smol-toml';
import { ROOT } from '../lib/proc.mjs';

const schema = JSON.parse(readFileSync(join(ROOT, 'config/schema.json'), 'utf8'));
const ajv = new Ajv2020({ allErrors: true, strict: false });
const validate = ajv.compile(schema);
const CLI = join(ROOT, 'target/debug/mcp-edge-auth');

function walk(dir, pred, out = []) {
  if (!existsSync(dir)) return out;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory() && e.name !== 'node_modules') walk(p, pred, out);
    else if (pred(p)) out.push(p);
  }
  return out;
}

/** Finds config JSON strings embedded in YAML (Envoy StringValue, Istio pluginConfig). */
function configsInYaml(file) {
  const found = [];
  const visit = (node) => {
    if (Array.isArray(node)) node.forEach(visit);
    else if (node && typeof node === 'object') {
      if (node.pluginConfig && node.pluginConfig.resources) found.push(node.pluginConfig);
      // Envoy Gateway: EnvoyExtensionPolicy.spec.wasm[].config.
      if (node.kind === 'EnvoyExtensionPolicy') for (const w of node.spec?.wasm ?? []) if (w.config?.resources) found.push(w.config);
      for (const [k, v] of Object.entries(node)) {
        if (k === 'value' && typeof v === 'string' && v.includes('"resources"')) found.push(JSON.parse(v));
        else visit(v);
      }
    }
  };
  for (const doc of parseAllDocuments(readFileSync(file, 'utf8'))) visit(doc.toJS());
  return found;
}

function configsInToml(file) {
  const t = parseToml(readFileSync(file, 'utf8'));
  const found = [];
  const visit = (node) => {
    if (node && typeof node === 'object') {
      for (const [k, v] of Object.entries(node)) {
        if (k === 'MCP_EDGE_AUTH_CONFIG') found.push(typeof v === 'string' ? JSON.parse(v) : v);
        else visit(v);
      }
    }
  };
  visit(t);
  return found;
}

function allConfigs() {
  const list = [];
  for (const f of walk(join(ROOT, 'config/examples'), (p) => p.endsWith('.json'))) list.push([f, JSON.parse(readFileSync(f, 'utf8'))]);
  for (const f of walk(join(ROOT, 'envoy'), (p) => /\.ya?ml$/.test(p))) configsInYaml(f).forEach((c, i) => list.push([`${f}#${i}`, c]));
  for (const f of walk(join(ROOT, 'workers'), (p) => p.endsWith('.toml'))) configsInToml(f).forEach((c, i) => list.push([`${f}#${i}`, c]));
  for (const f of walk(join(ROOT, 'demo'), (p) => p.endsWith('.json') && p.includes('config'))) list.push([f, JSON.parse(readFileSync(f, 'utf8'))]);
  return list;
}

/** The host a shipped config is for: Envoy manifests, Worker configs, or (examples) every host. */
function hostOf(name) {
  if (name.includes('/envoy/')) return ['--host', 'envoy'];
  if (name.includes('/workers/')) return ['--host', 'worker'];
  return [];
}

function coreCheck(config, host = []) {
  try {
    const out = execFileSync(CLI, ['check-config', ...host, '-'], { input: JSON.stringify(config), encoding: 'utf8' });
    return { ok: true, out };
  } catch (e) {
    return { ok: false, out: String(e.stdout) };
  }
}

describe('one config format: schema, examples and manifests agree', () => {
  const configs = allConfigs();

  it('finds the shipped configs', () => {
    assert.ok(configs.length >= 2, `found ${configs.map((c) => c[0]).join(', ')}`);
  });

  for (const [name, config] of configs) {
    it(`${name.replace(ROOT + '/', '')} validates against the schema and loads in the core`, () => {
      const ok = validate(config);
      assert.ok(ok, JSON.stringify(validate.errors, null, 1));
      const r = coreCheck(config, hostOf(name));
      assert.ok(r.ok, r.out);
    });
  }

  it('a broken config is refused by both, naming the field', () => {
    const bad = JSON.parse(readFileSync(join(ROOT, 'config/examples/minimal.json'), 'utf8'));
    bad.resources[0].issuers[0].remote_jwks.http_uri.urii = 'x';
    assert.equal(validate(bad), false);
    const r = coreCheck(bad);
    assert.equal(r.ok, false);
    assert.match(r.out, /resources\[0\]\.issuers\[0\]\.remote_jwks\.http_uri\.urii/);
    const typo = JSON.parse(readFileSync(join(ROOT, 'config/examples/minimal.json'), 'utf8'));
    typo.resources[0].issuers[0].algorithms = ['HS256'];
    assert.equal(validate(typo), false);
    assert.match(coreCheck(typo).out, /resources\[0\]\.issuers\[0\]\.algorithms\[0\]: unsupported algorithm/);
  });
});
