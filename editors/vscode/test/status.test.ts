import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MsaStatus, cacheFillPercent, describeStatus, validateStatus } from '../src/status';

function status(over: Partial<{ index: Partial<MsaStatus['index']>; worker: Partial<MsaStatus['worker']>; cache: Partial<MsaStatus['cache']> }> = {}): MsaStatus {
  return {
    index: { state: 'ready', files: 120, done: 120, ...over.index },
    worker: { state: 'ready', message: '', model: '/models/qwen2.5-coder-1.5b', ...over.worker },
    cache: { segments: 120, tokens: 250000, filled: 30, ...over.cache },
  };
}

test('ready: files, cache fill and model name', () => {
  const view = describeStatus(status());
  assert.equal(view.text, '$(check) msa: 120 files · cache 25% · qwen2.5-coder-1.5b');
  assert.equal(view.severity, 'ok');
  assert.match(view.tooltip, /Cache: 30\/120 files \(25%\), 120 segments, 250k tokens/);
  assert.match(view.tooltip, /Model: \/models\/qwen2.5-coder-1.5b/);
});

test('indexing shows progress and spins', () => {
  const view = describeStatus(status({ index: { state: 'indexing', files: 400, done: 37 }, worker: { state: 'starting' } }));
  assert.equal(view.text, '$(sync~spin) msa: indexing 37/400 · worker starting');
  assert.equal(view.severity, 'busy');
});

test('worker off and worker error', () => {
  assert.equal(describeStatus(status({ worker: { state: 'off', model: '' } })).text, '$(circle-slash) msa: 120 files · no worker');
  const err = describeStatus(status({ worker: { state: 'error', message: 'CUDA out of memory' } }));
  assert.equal(err.text, '$(warning) msa: 120 files · worker error');
  assert.equal(err.severity, 'warning');
  assert.match(err.tooltip, /Worker: error — CUDA out of memory/);
});

test('index error wins over worker state', () => {
  const view = describeStatus(status({ index: { state: 'error' }, worker: { state: 'error' } }));
  assert.equal(view.severity, 'error');
  assert.match(view.text, /^\$\(error\) msa: index error · worker error$/);
});

test('cache fill is the share of indexed files in the cache, clamped, absent without files', () => {
  const cache = (filled: number) => ({ segments: 3, tokens: 10, filled });
  assert.equal(cacheFillPercent({ index: { state: 'ready', files: 0, done: 0 }, cache: cache(0) }), undefined);
  assert.equal(cacheFillPercent({ index: { state: 'ready', files: 3, done: 3 }, cache: cache(2) }), 66);
  assert.equal(cacheFillPercent({ index: { state: 'ready', files: 3, done: 3 }, cache: cache(9) }), 100);
  assert.equal(describeStatus(status({ index: { files: 0, done: 0 }, cache: { segments: 0, filled: 0 } })).text,
    '$(check) msa: 0 files · qwen2.5-coder-1.5b');
});

test('validateStatus rejects malformed notifications', () => {
  assert.equal(validateStatus(status()), undefined);
  assert.match(validateStatus(null)!, /not an object/);
  assert.match(validateStatus({ index: { state: 'ready' } })!, /worker/);
  assert.match(validateStatus({ index: { state: 'ready' }, worker: { state: 'off' } })!, /cache/);
});
