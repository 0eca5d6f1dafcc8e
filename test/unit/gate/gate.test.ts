import { before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { PolicyEngine } from '../../../core/engine/engine.ts';
import { Gatekeeper, type SessionContext, type CommandSpec } from '../../../core/gate.ts';
import { InProcessReviews, type ReviewService } from '../../../core/reviews.ts';
import { StaticTaskRegistry, type TaskRecord } from '../../../core/tasks.ts';
import { MemoryAuditSink } from '../../../core/audit/event.ts';
import { compileRego } from '../../support/bundles.ts';

// A task-aware policy: assignee check, write needs review by the task's reviewers, drop is denied.
const POLICY = `package taskgate
import rego.v1
base := {"mask": [], "obligations": {}}
default decision := {"result": "deny", "reasons": ["default deny"], "mask": [], "obligations": {}}
decision := object.union(base, {"result": "deny", "reasons": [sprintf("task %s is unknown", [input.task.id])]}) if not input.task.type
decision := object.union(base, {"result": "deny", "reasons": [sprintf("task %s is %s", [input.task.id, input.task.state])]}) if {
  input.task.type
  input.task.state != "open"
}
ok if {
  input.task.type
  input.task.state == "open"
  input.identity.subject == input.task.assignee
}
decision := object.union(base, {"result": "allow", "reasons": ["read allowed"]}) if { ok; input.request.op == "read" }
decision := object.union(base, {"result": "deny", "reasons": ["drop is never allowed"]}) if { ok; input.request.op == "drop" }
decision := object.union(base, {"result": "review", "reasons": ["writes need review"],
  "review": {"approvers": input.task.reviewers, "min_approvals": 1, "timeout_s": 1}}) if { ok; input.request.op == "write"; input.review.status == "none" }
decision := object.union(base, {"result": "allow", "reasons": ["write approved"]}) if {
  ok; input.request.op == "write"; input.review.status == "approved"; count(input.review.by) >= 1
}
`;

const task = (over: Partial<TaskRecord> = {}): TaskRecord => ({
  id: 'OPS-1',
  type: 'data-fix',
  assignee: 'alice@example.com',
  reviewers: ['bob@example.com'],
  state: 'open',
  expires_at: new Date(Date.now() + 3600_000).toISOString(),
  ...over,
});

const session = (over: Partial<SessionContext> = {}): SessionContext => ({
  id: 's1',
  started_at: new Date().toISOString(),
  identity: { subject: 'alice@example.com', groups: ['dba'], issuer: 'https://idp', type: 'user' },
  task_id: 'OPS-1',
  resource: { protocol: 'postgres', name: 'orders-db', labels: {} },
  ...over,
});

const cmd = (op: string): CommandSpec => ({ request: { op } as never, text: `${op} something`, fingerprint: `fp-${op}` });
const bob = { subject: 'bob@example.com', groups: [] };

describe('Gatekeeper', () => {
  let bundle: Buffer;
  before(async () => {
    bundle = await compileRego(POLICY);
  });

  async function setup(opts: { tasks?: TaskRecord[]; reviews?: ReviewService } = {}) {
    const engine = new PolicyEngine();
    await engine.load(bundle);
    const tasks = new StaticTaskRegistry(opts.tasks ?? [task()]);
    const reviews = (opts.reviews as InProcessReviews) ?? new InProcessReviews();
    const audit = new MemoryAuditSink();
    return { gate: new Gatekeeper({ engine, tasks, reviews, audit }), tasks, reviews, audit, engine };
  }

  it('allows, denies, and audits each decision with task, identity and reasons', async () => {
    const { gate, audit } = await setup();
    const a = await gate.decide(session(), cmd('read'));
    assert.equal(a.allowed, true);
    const d = await gate.decide(session(), cmd('drop'));
    assert.equal(d.allowed, false);
    assert.deepEqual(d.decision.reasons, ['drop is never allowed']);
    const ev = audit.ofType('decision');
    assert.equal(ev.length, 2);
    assert.equal(ev[1]!.decision, 'deny');
    assert.equal(ev[1]!.task_id, 'OPS-1');
    assert.equal(ev[1]!.task_type, 'data-fix');
    assert.equal(ev[1]!.subject, 'alice@example.com');
    assert.equal(ev[1]!.command, 'drop something');
    assert.match(ev[1]!.policy_revision!, /^sha256:/);
  });

  it('the task block comes from the registry, never the client: unknown and closed tasks are denied', async () => {
    const { gate, tasks } = await setup();
    const unknown = await gate.decide(session({ task_id: 'NOPE-9' }), cmd('read'));
    assert.equal(unknown.allowed, false);
    assert.deepEqual(unknown.decision.reasons, ['task NOPE-9 is unknown']);
    tasks.end('OPS-1');
    const closed = await gate.decide(session(), cmd('read'));
    assert.deepEqual(closed.decision.reasons, ['task OPS-1 is closed']);
  });

  it('an expired task is reported to the policy as expired', async () => {
    const { gate } = await setup({ tasks: [task({ expires_at: new Date(Date.now() - 1000).toISOString() })] });
    const o = await gate.decide(session(), cmd('read'));
    assert.deepEqual(o.decision.reasons, ['task OPS-1 is expired']);
  });

  it('holds a write for review, tells the caller who reviews, and allows it once approved', async () => {
    const { gate, reviews, audit } = await setup();
    let held: { review_id: string; approvers: string[] } | undefined;
    const p = gate.decide(session(), cmd('write'), { onHold: (n) => (held = n) });
    await new Promise((r) => setImmediate(r));
    assert.ok(held);
    assert.deepEqual(held.approvers, ['bob@example.com']);
    assert.throws(() => reviews.approve(held!.review_id, { subject: 'alice@example.com', groups: [] }), /self-approval/);
    assert.throws(() => reviews.approve(held!.review_id, { subject: 'mallory@example.com', groups: [] }), /not an approver/);
    reviews.approve(held.review_id, bob);
    const o = await p;
    assert.equal(o.allowed, true);
    assert.deepEqual(o.decision.reasons, ['write approved']);
    assert.equal(o.review?.status, 'approved');
    const ev = audit.ofType('decision')[0]!;
    assert.equal(ev.review_id, held.review_id);
    assert.deepEqual(ev.approvers, ['bob@example.com']);
  });

  it('a denied or expired review is a deny naming the review', async () => {
    const { gate, reviews } = await setup();
    let id = '';
    const p = gate.decide(session(), cmd('write'), { onHold: (n) => (id = n.review_id) });
    await new Promise((r) => setImmediate(r));
    reviews.deny(id, bob, 'not during the freeze');
    const o = await p;
    assert.equal(o.allowed, false);
    assert.match(o.decision.reasons[0]!, new RegExp(`review ${id} denied: not during the freeze`));
    const t0 = Date.now();
    const expired = await gate.decide(session(), cmd('write'));
    assert.equal(expired.allowed, false);
    assert.match(expired.decision.reasons[0]!, /expired/);
    assert.ok(Date.now() - t0 >= 900);
  });

  it('a time-boxed grant lets later writes through without a new review', async () => {
    const { gate, reviews } = await setup();
    let id = '';
    const p = gate.decide(session(), cmd('write'), { onHold: (n) => (id = n.review_id) });
    await new Promise((r) => setImmediate(r));
    reviews.approve(id, bob, { grant_s: 60 });
    assert.equal((await p).allowed, true);
    let heldAgain = false;
    const second = await gate.decide(session(), { ...cmd('write'), fingerprint: 'other' }, { onHold: () => (heldAgain = true) });
    assert.equal(second.allowed, true);
    assert.equal(heldAgain, false);
    assert.equal(second.review?.grant, true);
  });

  it('fails closed when the review service is down or the audit spool is full', async () => {
    const down: ReviewService = {
      request: async () => {
        throw new Error('connect ECONNREFUSED');
      },
      activeGrant: async () => undefined,
    };
    const { gate } = await setup({ reviews: down });
    const o = await gate.decide(session(), cmd('write'));
    assert.equal(o.allowed, false);
    assert.match(o.decision.reasons[0]!, /review service unavailable: connect ECONNREFUSED \(fail closed\)/);

    const s2 = await setup();
    s2.audit.writable = () => false;
    const full = await s2.gate.decide(session(), cmd('read'));
    assert.equal(full.allowed, false);
    assert.match(full.decision.reasons[0]!, /audit spool is full/);
  });

  it('caches first-pass decisions per task/identity/fingerprint and drops them when the task ends', async () => {
    const { gate, tasks } = await setup();
    const a = await gate.decide(session(), cmd('read'));
    const a2 = await gate.decide(session(), cmd('read'));
    const b = await gate.decide(session(), cmd('read'));
    assert.ok(a.decision.eval_ns > 0);
    assert.ok(a2.decision.eval_ns > 0, 'cached the second time the command is evaluated, not the first (admission)');
    assert.equal(b.decision.eval_ns, 0, 'third decision served from cache');
    tasks.end('OPS-1');
    const c = await gate.decide(session(), cmd('read'));
    assert.equal(c.allowed, false);
  });

  it('another identity on the same task does not share cache entries', async () => {
    const { gate } = await setup();
    await gate.decide(session(), cmd('read'));
    const mallory = await gate.decide(session({ identity: { subject: 'mallory@example.com', groups: [], issuer: 'x', type: 'user' } }), cmd('read'));
    assert.equal(mallory.allowed, false);
  });
  it('extra input fields: a function is built only when the policy is evaluated, and never replaces a contract field', async () => {
    const { gate } = await setup();
    let built = 0;
    // `request` here would replace the contract's request (op "read") with op "drop": ignored.
    const extra = () => (built++, { request: { op: 'drop' }, parsed_path: ['x'] });
    const spec: CommandSpec = { ...cmd('read'), input_extra: extra };
    const first = await gate.decide(session(), spec);
    assert.equal(first.allowed, true, 'the contract request (op read) decided, not the extra field');
    assert.equal(built, 1);
    await gate.decide(session(), spec); // second evaluation: admitted to the cache
    assert.equal(built, 2);
    const cached = await gate.decide(session(), spec);
    assert.equal(cached.decision.eval_ns, 0, 'served from the cache');
    assert.equal(built, 2, 'a cached decision does not build the extra input');
    const input = gate.buildInput(session(), task(), { op: 'read' } as never, { status: 'none', by: [] }, extra) as unknown as Record<string, unknown>;
    assert.deepEqual(input.parsed_path, ['x']);
    assert.deepEqual(input.request, { op: 'read' });
  });
});
