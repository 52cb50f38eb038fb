import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  CLIENT_KEYS, SERVER_KEYS, affectsLaunch, affectsServer, configurationAnswers, configurationChange, defaultOf, serverLaunch,
  serverSettings,
} from '../src/settings';

const reader = (values: Record<string, unknown>) => (key: string) => values[key];

test('server and client keys are disjoint and all under msa.', () => {
  assert.ok(SERVER_KEYS.length >= 18);
  for (const key of [...SERVER_KEYS, ...CLIENT_KEYS]) assert.match(key, /^msa\.[A-Za-z.]+$/);
  assert.deepEqual(SERVER_KEYS.filter((k) => CLIENT_KEYS.includes(k)), []);
  assert.ok(CLIENT_KEYS.includes('msa.server.command'));
  assert.ok(!SERVER_KEYS.includes('msa.server.python'));
});

test('contract defaults', () => {
  assert.equal(defaultOf('msa.cache.maxGiB'), 20);
  assert.equal(defaultOf('msa.inlineCompletion.enable'), true);
  assert.equal(defaultOf('msa.completion.maxTokens'), 64);
  assert.equal(defaultOf('msa.completion.debounceMs'), 150);
  assert.equal(defaultOf('msa.reasoning'), 'adaptive');
  assert.equal(defaultOf('msa.index.maxFileSize'), 1000000);
  assert.equal(defaultOf('msa.index.includeSecrets'), false);
  assert.equal(defaultOf('msa.diagnostics.debounceMs'), 200);
  assert.throws(() => defaultOf('msa.nope'), /unknown setting/);
});

test('serverSettings nests keys and leaves client keys out', () => {
  const nested = serverSettings(reader({
    model: '/models/qwen', 'worker.address': 'unix:/tmp/w.sock', 'worker.command': ['python', '-m', 'inference'],
    'index.exclude': ['**/gen/**'], 'server.command': ['x'], 'completion.maxTokens': 32,
  }));
  assert.equal(nested.model, '/models/qwen');
  assert.deepEqual((nested.worker as Record<string, unknown>).address, 'unix:/tmp/w.sock');
  assert.deepEqual((nested.worker as Record<string, unknown>).command, ['python', '-m', 'inference']);
  assert.deepEqual(nested.index, { exclude: ['**/gen/**'], maxFileSize: 1000000, includeSecrets: false });
  assert.deepEqual(nested.completion, { maxTokens: 32, debounceMs: 150, memberNames: true });
  assert.deepEqual(nested.inlineCompletion, { enable: true });
  assert.equal('server' in nested, false);
  assert.equal('trace' in nested, false);
  // every server key appears exactly at its path
  for (const key of SERVER_KEYS) {
    let node: any = nested;
    for (const part of key.split('.').slice(1)) node = node[part];
    assert.notEqual(node, undefined, key);
  }
});

test('configurationChange wraps the settings in the msa section', () => {
  const change = configurationChange(reader({ reasoning: 'disabled' }));
  assert.equal(change.settings.msa.reasoning, 'disabled');
  assert.equal(change.settings.msa.layout, 'parallel');
});

test('affectsServer / affectsLaunch', () => {
  assert.equal(affectsServer((s) => s === 'msa.worker.address'), true);
  assert.equal(affectsServer((s) => s === 'msa.server.python' || s === 'editor.fontSize'), false);
  assert.equal(affectsLaunch((s) => s === 'msa.server'), true);
  assert.equal(affectsLaunch((s) => s === 'msa.model'), false);
});

test('serverLaunch: command, python, default, errors', () => {
  assert.deepEqual(serverLaunch(reader({ 'server.command': ['/opt/msa/bin/msa-lsp', 'serve', '--log-level', 'DEBUG'] })),
    { command: '/opt/msa/bin/msa-lsp', args: ['serve', '--log-level', 'DEBUG'] });
  assert.deepEqual(serverLaunch(reader({ 'server.command': [], 'server.python': '/venv/bin/python' })),
    { command: '/venv/bin/python', args: ['-P', '-m', 'lsp', 'serve'] });
  assert.deepEqual(serverLaunch(reader({})), { command: 'msa-lsp', args: ['serve'] });
  assert.throws(() => serverLaunch(reader({ 'server.command': 'msa-lsp serve' })), /array of strings/);
  assert.throws(() => serverLaunch(reader({ 'server.command': [' ', 'serve'] })), /empty program/);
});

test('configurationAnswers replaces the msa section and keeps others', () => {
  const answers = configurationAnswers(
    [{ section: 'msa' }, { section: 'editor' }],
    [{ server: { python: '/x' }, model: 'm' }, { tabSize: 4 }],
    reader({ model: 'm' }),
  ) as any[];
  assert.equal(answers[0].model, 'm');
  assert.equal('server' in answers[0], false);
  assert.deepEqual(answers[1], { tabSize: 4 });
});
