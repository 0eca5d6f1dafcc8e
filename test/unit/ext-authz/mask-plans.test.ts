import { describe, it, mock } from 'node:test';
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
});
