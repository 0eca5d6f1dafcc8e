import { describe, it, mock } from 'node:test';
import { randomUUID } from 'node:crypto';
import assert from 'node:assert/strict';
import { MaskPlans } from '../../../ext-authz/ext-proc.ts';
import type { AllowResult } from '../../../sidecar/http/authorize.ts';

const allow = (id: string, mask: AllowResult['mask']): AllowResult =>
  ({
    allowed: true,
    decision_id: id,
    set_headers: [],
    remove_headers: [],
    response_headers: [],
    query_set: [],
    query_remove: [],
    forward_target: '/',
    resource: { name: 'api' },
    mask,
    session: { id: 's-' + id, started_at: '', identity: { subject: 'alice', groups: [], issuer: '', type: 'user' }, task_id: 'OPS-1', resource: { protocol: 'http', name: 'api', labels: {} } },
  }) as AllowResult;

describe('MaskPlans (ext_proc recent decisions)', () => {
  it('finds a decision with rules (and its session) and one without rules (empty mask); unknown ids are not found', () => {
    const plans = new MaskPlans();
    const rules = [{ path: 'data.*', strategy: 'redact' }] as unknown as AllowResult['mask'];
    plans.put(allow('d1', rules));
    plans.put(allow('d2', []));
    const a = plans.get('d1');
    assert.deepEqual(a?.mask, rules);
    assert.equal(a?.session?.id, 's-d1');
    assert.deepEqual(plans.get('d2'), { decision_id: 'd2', mask: [] });
    assert.equal(plans.get('d3'), undefined);
  });

  it('forgets decisions after two generations of the time to live', () => {
    mock.timers.enable({ apis: ['Date'], now: 1_000_000 });
    try {
      const plans = new MaskPlans(10_000);
      plans.put(allow('d1', []));
      mock.timers.tick(15_000);
      assert.ok(plans.get('d1'), 'kept for one rotation');
      mock.timers.tick(15_000);
      assert.equal(plans.get('d1'), undefined, 'gone after two');
    } finally {
      mock.timers.reset();
    }
  });

  it('keeps decision ids without rules (UUIDs, in the typed-array set) for one rotation, forgets them after two, and keeps accepting new ones', () => {
    mock.timers.enable({ apis: ['Date'], now: 1_000_000 });
    try {
      const plans = new MaskPlans(10_000);
      const rules = [{ path: 'data.*', strategy: 'redact' }] as unknown as AllowResult['mask'];
      const a = randomUUID();
      const masked = randomUUID();
      plans.put(allow(a, []));
      plans.put(allow(masked, rules));
      assert.deepEqual(plans.get(a), { decision_id: a, mask: [] });
      assert.deepEqual(plans.get(masked)?.mask, rules);
      assert.equal(plans.get(randomUUID()), undefined);
      mock.timers.tick(12_000);
      const b = randomUUID();
      plans.put(allow(b, []));
      assert.deepEqual(plans.get(a), { decision_id: a, mask: [] }, 'previous generation still answers');
      assert.ok(plans.get(masked));
      mock.timers.tick(12_000);
      plans.put(allow(randomUUID(), []));
      assert.equal(plans.get(a), undefined, 'two rotations later');
      assert.equal(plans.get(masked), undefined);
      assert.deepEqual(plans.get(b), { decision_id: b, mask: [] }, 'one rotation later');
      mock.timers.tick(25_000);
      assert.equal(plans.get(b), undefined, 'idle past two generations: all gone');
      const c = randomUUID();
      plans.put(allow(c, []));
      assert.deepEqual(plans.get(c), { decision_id: c, mask: [] });
    } finally {
      mock.timers.reset();
    }
  });
});
