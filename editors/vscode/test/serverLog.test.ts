import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createLogRouter } from '../src/serverLog';

test('levels come from the server prefix, continuation lines keep the last level', () => {
  const route = createLogRouter();
  assert.deepEqual(route('Traceback (most recent call last):'), { level: 'error', text: 'Traceback (most recent call last):' });
  assert.deepEqual(route('2026-11-26 16:19:55,772 INFO lsp.worker_client: worker ready: pid 23250'),
    { level: 'info', text: 'lsp.worker_client: worker ready: pid 23250' });
  assert.deepEqual(route('2026-11-26 16:19:56,001 WARNING lsp.server: setting msa.x: unknown'),
    { level: 'warn', text: 'lsp.server: setting msa.x: unknown' });
  assert.deepEqual(route('2026-11-26 16:19:57,000 ERROR lsp.completion: failed'), { level: 'error', text: 'lsp.completion: failed' });
  assert.deepEqual(route('  File "lsp/completion.py", line 248'), { level: 'error', text: '  File "lsp/completion.py", line 248' });
  assert.deepEqual(route('2026-11-26 16:19:58,000 DEBUG lsp.index: parsed a.py'), { level: 'debug', text: 'lsp.index: parsed a.py' });
  assert.equal(route('2026-11-26 16:19:59,000 CRITICAL lsp: down').level, 'error');
});
