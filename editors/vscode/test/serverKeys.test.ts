import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'child_process';
import manifest from '../package.json';
import { PYTHON, REPO_ROOT } from './paths';
import { CLIENT_KEYS, SERVER_KEYS } from '../src/settings';

interface ServerKey { name: string; kind: string; default: unknown; choices: string[]; minimum: number | null }

function serverKeys(): ServerKey[] {
  const script = [
    'import json, dataclasses',
    'from lsp.options import SETTING_KEYS',
    'print(json.dumps([dataclasses.asdict(k) for k in SETTING_KEYS]))',
  ].join('\n');
  const out = execFileSync(PYTHON, ['-c', script], { cwd: REPO_ROOT, encoding: 'utf8' });
  return JSON.parse(out);
}

const properties: Record<string, any> = Object.assign(
  {}, ...(manifest.contributes.configuration as any[]).map((block) => block.properties));

test('package.json declares exactly the settings lsp/options.py understands', () => {
  const server = serverKeys().map((k) => k.name).sort();
  assert.ok(server.length > 0, 'lsp.options.SETTING_KEYS is empty');
  assert.deepEqual([...SERVER_KEYS].sort(), server,
    'left: package.json "msa-server" block; right: lsp.options.SETTING_KEYS');
});

test('types, defaults, choices and minimums agree with the server', () => {
  for (const key of serverKeys()) {
    const declared = properties[key.name];
    assert.ok(declared, `${key.name} missing from package.json`);
    assert.equal(declared.type, key.kind, `${key.name}: type`);
    assert.deepEqual(declared.default, key.default, `${key.name}: default`);
    assert.deepEqual(declared.enum ?? [], key.choices, `${key.name}: enum`);
    assert.equal(declared.minimum ?? null, key.minimum, `${key.name}: minimum`);
  }
});

test('client-only keys are not server keys', () => {
  const server = new Set(serverKeys().map((k) => k.name));
  for (const key of CLIENT_KEYS) assert.ok(!server.has(key), `${key} is a server key; move it to "msa-server"`);
});
