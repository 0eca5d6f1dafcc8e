import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { PolicyEngine } from '../../../core/engine/engine.ts';
import { Gatekeeper, type CommandSpec, type SessionContext } from '../../../core/gate.ts';
import { InProcessReviews } from '../../../core/reviews.ts';
import { StaticTaskRegistry } from '../../../core/tasks.ts';
import { MemoryAuditSink } from '../../../core/audit/event.ts';
import { HttpDecider } from '../../../sidecar/http/decide.ts';
import { compileRego } from '../../support/bundles.ts';

// GET is allowed, DELETE needs the task reviewer's approval.
const POLICY = `package taskgate
import rego.v1
base := {"mask": [], "obligations": {}}
default decision := {"result": "deny", "reasons": ["default deny"], "mask": [], "obligations": {}}
decision := object.union(base, {"result": "allow", "reasons": ["read"]}) if input.request.method == "GET"
decision := object.union(base, {"result": "review", "reasons": ["delete needs review"],
  "review": {"approvers": ["bob@example.com"], "min_approvals": 1, "timeout_s": 30}}) if {
  input.request.method == "DELETE"
  input.review.status == "none"
}
decision := object.union(base, {"result": "allow", "reasons": ["approved"]}) if {
  input.request.method == "DELETE"
  input.review.status == "approved"
}
`;

const session: SessionContext = {
  id: 's1',
  started_at: new Date().toISOString(),
  identity: { subject: 'alice@example.com', groups: [], issuer: '', type: 'user' },
  task_id: 'OPS-1',
  resource: { protocol: 'http', name: 'api', labels: {} },
};
const cmd = (method: string): CommandSpec => ({ request: { method, path: '/x' } as never, text: `${method} /x`, fingerprint: `fp-${method}` });

describe('HttpDecider cancellation', () => {
  let bundle: Buffer;
  const open: InProcessReviews[] = [];
  before(async () => {
    bundle = await compileRego(POLICY);
  });
  after(() => {
    for (const r of open) r.close();
  });
  async function decider() {
    const engine = new PolicyEngine();
    await engine.load(bundle);
    const reviews = new InProcessReviews();
    open.push(reviews);
    const gate = new Gatekeeper({ engine, tasks: new StaticTaskRegistry([]), reviews, audit: new MemoryAuditSink() });
    return { d: new HttpDecider(gate), reviews };
  }

  it('an immediate decision never asks for the cancellation signal', async () => {
    const { d } = await decider();
    let made = 0;
    const r = await d.decide(session, cmd('GET'), 5_000, () => (made++, new AbortController().signal));
    assert.equal(r.kind, 'decided');
    await new Promise((res) => setTimeout(res, 20));
    assert.equal(made, 0);
  });

  it('a held request subscribes when it has to wait, and the caller going away ends the wait at once', async () => {
    const { d } = await decider();
    const ac = new AbortController();
    let made = 0;
    const t0 = Date.now();
    const pending = d.decide(session, cmd('DELETE'), 20_000, () => (made++, ac.signal));
    await new Promise((res) => setTimeout(res, 50));
    assert.equal(made, 1, 'the signal was made once the answer had to wait');
    ac.abort();
    const r = await pending;
    assert.notEqual(r.kind, 'decided');
    assert.ok(Date.now() - t0 < 2_000, 'answered when the caller went away, not after the 20 s wait bound');
  });

  it('the wait bound counts from the call', async () => {
    const { d } = await decider();
    const t0 = Date.now();
    const r = await d.decide(session, cmd('DELETE'), 150, () => new AbortController().signal);
    assert.equal(r.kind, 'pending');
    const took = Date.now() - t0;
    assert.ok(took >= 140 && took < 1_500, `answered after ${took} ms`);
  });

  it('an AbortSignal already aborted answers without waiting', async () => {
    const { d } = await decider();
    const ac = new AbortController();
    ac.abort();
    const t0 = Date.now();
    const r = await d.decide(session, cmd('DELETE'), 20_000, ac.signal);
    assert.notEqual(r.kind, 'decided');
    assert.ok(Date.now() - t0 < 1_000);
  });
});
