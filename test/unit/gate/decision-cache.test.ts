import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { DecisionCache } from '../../../core/decision-cache.ts';
import type { EvaluatedDecision } from '../../../core/policy-contract.ts';

const allow = (why: string): EvaluatedDecision => ({ result: 'allow', reasons: [why], mask: [], obligations: {}, policy_revision: 'r1', eval_ns: 1000 });
const key = (fp: string, task = 'OPS-1') => DecisionCache.key({ task_id: task, identity: { subject: 'alice', groups: ['dev'] }, resource: { name: 'db' } }, fp, 'r1');

describe('decision cache', () => {
  it('caches a decision the second time its key is evaluated, then serves it (eval_ns 0) until it expires', () => {
    const c = new DecisionCache(100);
    const k = key('select 1');
    c.set(k, allow('first'), 1_000);
    assert.equal(c.get(k, 0), undefined, 'one evaluation is not enough to be cached');
    c.set(k, allow('second'), 1_000);
    assert.deepEqual(c.get(k, 0), { ...allow('second'), eval_ns: 0 });
    assert.equal(c.get(k, 1_000), undefined, 'expired');
  });

  it('one-off keys do not fill the cache or evict the entries that are read', () => {
    const c = new DecisionCache(1_000);
    const hot = Array.from({ length: 500 }, (_, i) => key(`hot ${i}`));
    for (const k of hot) c.set(k, allow(k), 1e12);
    for (const k of hot) c.set(k, allow(k), 1e12);
    assert.ok(c.size >= 490, `${c.size} of 500 cached on their second evaluation (the rest: a slot taken by another key)`);
    for (const k of hot) if (!c.get(k, 0)) c.set(k, allow(k), 1e12);
    assert.equal(c.size, 500);
    for (let i = 0; i < 100_000; i++) c.set(key(`one-off ${i}`), allow('x'), 1e12);
    // a few one-offs collide with a remembered hash and get in; the hot set stays
    assert.ok(c.size <= 1_000);
    const kept = hot.filter((k) => c.get(k, 0) !== undefined).length;
    assert.ok(kept >= 450, `${kept} of 500 hot entries kept`);
  });

  it('stays bounded (LRU) when many keys repeat, and drops a task\'s entries when it ends', () => {
    const c = new DecisionCache(1_000);
    for (let i = 0; i < 5_000; i++) {
      const k = key(`q ${i}`, i % 2 ? 'OPS-1' : 'OPS-2');
      c.set(k, allow('x'), 1e12);
      c.set(k, allow('x'), 1e12);
    }
    assert.equal(c.size, 1_000);
    assert.ok(c.get(key('q 4999', 'OPS-1'), 0), 'most recent kept');
    assert.equal(c.get(key('q 0', 'OPS-2'), 0), undefined, 'oldest evicted');
    c.dropTask('OPS-1');
    assert.equal(c.size, 500);
  });
});
