import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MODEL_ITEM_DETAIL, withoutModelItems } from '../src/modelItems';

test('the model item leaves arrays and lists; symbol items stay', () => {
  const items = [{ label: 'User', detail: 'py/app/models.py' }, { label: 'or x', detail: MODEL_ITEM_DETAIL }];
  assert.deepEqual(withoutModelItems(items).map((i) => i.label), ['User']);
  const list = { isIncomplete: true, items: [...items] };
  assert.deepEqual(withoutModelItems(list), { isIncomplete: true, items: [items[0]] });
  assert.equal(withoutModelItems(null), null);
  assert.equal(withoutModelItems(undefined), undefined);
});
