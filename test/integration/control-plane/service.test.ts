/**
 * The control plane's rules on both storage engines (PGlite and a real
 * PostgreSQL server), same suite: tasks, review requests, N-of-M approvals,
 * racing approvers, idempotent double approval, self-approval, groups, deny,
 * expiry, grants, closing a task, audit events and the webhook outbox.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { MemoryAuditSink } from '../../../core/audit/event.ts';
import { isTaskgateError } from '../../../core/errors.ts';
import type { ReviewRequestSpec } from '../../../core/reviews.ts';
import { ControlPlaneService, type Caller } from '../../../control-plane/service.ts';
import { migrate } from '../../../control-plane/storage/migrations.ts';
import type { Database } from '../../../control-plane/storage/db.ts';
import { listDeliveries } from '../../../control-plane/storage/repo.ts';
import { EventHub, type ChangeEvent } from '../../../control-plane/events.ts';
import { harnesses } from './engines.ts';

const alice: Caller = { subject: 'alice@example.com', groups: ['engineering'], type: 'user' };
const bob: Caller = { subject: 'bob@example.com', groups: ['dba', 'reviewers'], type: 'user' };
const carol: Caller = { subject: 'carol@example.com', groups: ['sre', 'reviewers'], type: 'user' };
const dave: Caller = { subject: 'dave@example.com', groups: ['contractors'], type: 'user' };
const sidecar: Caller = { subject: 'taskgate-sidecar', groups: [], type: 'service' };

function spec(taskId: string, over: Partial<ReviewRequestSpec['requirement']> = {}, identity = alice): ReviewRequestSpec {
  return {
    task_id: taskId,
    session_id: 'sess-1',
    identity: { subject: identity.subject, groups: identity.groups, issuer: 'https://idp', type: 'user', ...(identity.acting_for ? { acting_for: identity.acting_for } : {}) },
    resource: { protocol: 'postgres', name: 'orders-db', labels: {} },
    protocol: 'postgres',
    command: 'UPDATE orders SET status = $1 WHERE id = $2',
    summary: { statements: [{ command: 'UPDATE', tables: [{ schema: 'public', name: 'orders', access: 'write' }] }] },
    fingerprint: 'fp-1',
    reasons: ['writes to orders need review'],
    requirement: { approvers: ['bob@example.com', 'carol@example.com'], min_approvals: 1, timeout_s: 60, ...over },
  };
}

const code = (e: unknown) => (isTaskgateError(e) ? e.code : String(e));

for (const h of harnesses()) {
  describe(`control-plane service on ${h.name}`, () => {
    let db: Database;
    let svc: ControlPlaneService;
    let audit: MemoryAuditSink;
    let clock = Date.now();
    let seq = 0;
    const newTask = async (over: Record<string, unknown> = {}) =>
      svc.createTask({ id: `OPS-${++seq}`, type: 'schema-migration', assignee: alice.subject, reviewers: [bob.subject, 'group:reviewers'], ttl_s: 3600, ...over }, bob);

    before(async () => {
      db = await h.open();
      assert.deepEqual(await migrate(db), [1]);
      assert.deepEqual(await migrate(db), [], 'migrations are applied once');
      audit = new MemoryAuditSink();
      svc = new ControlPlaneService(db, { audit, now: () => clock, webhooks: [{ name: 'ops' }], admins: ['group:admins'] });
    });
    after(async () => {
      await db.close();
      await h.stop();
    });

    test('tasks: create, refuse duplicates and self-review, list, show', async () => {
      const t = await newTask({ ticket: 'https://tracker/OPS-1', title: 'add index' });
      assert.equal(t.state, 'open');
      assert.deepEqual(t.reviewers, ['bob@example.com', 'group:reviewers']);
      await assert.rejects(svc.createTask({ id: t.id, type: 'x', assignee: 'a', reviewers: ['b'] }, bob), (e) => code(e) === 'conflict');
      await assert.rejects(svc.createTask({ id: 'SELF-1', type: 'x', assignee: 'a', reviewers: ['a'] }, bob), (e) => code(e) === 'input_invalid');
      assert.equal((await svc.getTask(t.id))?.ticket, 'https://tracker/OPS-1');
      assert.ok((await svc.listTasks({ state: 'open' })).some((x) => x.id === t.id));
      assert.equal(audit.ofType('task_created').at(-1)?.task_id, t.id);
    });

    test('one approval of the exact command settles the request once; approving again is idempotent', async () => {
      const t = await newTask();
      const r = await svc.requestReview(spec(t.id), sidecar);
      assert.equal(r.state, 'pending');
      const first = await svc.approve(r.id, bob, { reason: 'ok' });
      assert.equal(first.changed, true);
      assert.equal(first.review.state, 'approved');
      assert.deepEqual(first.review.decided_by, ['bob@example.com']);
      assert.equal(first.review.grant_until, undefined);
      const again = await svc.approve(r.id, bob);
      assert.equal(again.changed, false, 'double approval is a no-op');
      assert.equal(again.review.state, 'approved');
      await assert.rejects(svc.approve(r.id, carol), (e) => code(e) === 'conflict', 'a late approver learns it is already decided');
      assert.equal(audit.events.filter((e) => e.type === 'review_approved' && e.review_id === r.id && e.details?.final === true).length, 1);
      assert.equal(await svc.activeGrant({ task_id: t.id, subject: alice.subject, resource: 'orders-db' }), undefined);
    });

    test('two approvers racing on a 1-of-2 request: exactly one decision', async () => {
      const t = await newTask();
      const r = await svc.requestReview(spec(t.id), sidecar);
      const results = await Promise.allSettled([svc.approve(r.id, bob), svc.approve(r.id, carol)]);
      const ok = results.filter((x) => x.status === 'fulfilled');
      const bad = results.filter((x) => x.status === 'rejected');
      assert.equal(ok.length, 1);
      assert.equal(bad.length, 1);
      assert.equal(code((bad[0] as PromiseRejectedResult).reason), 'conflict');
      const final = (await svc.getReview(r.id))!;
      assert.equal(final.state, 'approved');
      assert.equal(final.decided_by.length, 1);
      assert.equal(audit.events.filter((e) => e.type === 'review_approved' && e.review_id === r.id && e.details?.final === true).length, 1);
    });

    test('2-of-2 with both approving at once: approved by both, one final event', async () => {
      const t = await newTask();
      const r = await svc.requestReview(spec(t.id, { min_approvals: 2 }), sidecar);
      const res = await Promise.all([svc.approve(r.id, bob), svc.approve(r.id, carol)]);
      assert.ok(res.every((x) => x.changed));
      const final = (await svc.getReview(r.id))!;
      assert.equal(final.state, 'approved');
      assert.deepEqual(final.decided_by, ['bob@example.com', 'carol@example.com']);
      assert.equal(audit.events.filter((e) => e.type === 'review_approved' && e.review_id === r.id && e.details?.final === true).length, 1);
    });

    test('N-of-M: one approval of two leaves it pending', async () => {
      const t = await newTask();
      const r = await svc.requestReview(spec(t.id, { min_approvals: 2 }), sidecar);
      const one = await svc.approve(r.id, bob);
      assert.equal(one.review.state, 'pending');
      assert.equal(one.review.approvals.length, 1);
      assert.equal((await svc.approve(r.id, bob)).changed, false, 'the same approver does not count twice');
      assert.equal((await svc.getReview(r.id))!.state, 'pending');
    });

    test('self-approval is refused, including for the human an agent acts for; non-approvers and services are refused', async () => {
      const t = await newTask();
      const mine = await svc.requestReview(spec(t.id, { approvers: ['alice@example.com', 'bob@example.com'] }), sidecar);
      await assert.rejects(svc.approve(mine.id, alice), (e) => code(e) === 'forbidden' && /self-approval/.test((e as Error).message));
      const agent: Caller = { subject: 'ci-bot', groups: [], type: 'service', acting_for: 'carol@example.com' };
      const viaAgent = await svc.requestReview(spec(t.id, {}, agent), sidecar);
      await assert.rejects(svc.approve(viaAgent.id, carol), (e) => code(e) === 'forbidden' && /self-approval/.test((e as Error).message));
      await assert.rejects(svc.approve(viaAgent.id, dave), (e) => code(e) === 'forbidden' && /not an approver/.test((e as Error).message));
      await assert.rejects(svc.approve(viaAgent.id, sidecar), (e) => code(e) === 'forbidden');
      assert.equal((await svc.getReview(viaAgent.id))!.state, 'pending');
      await assert.rejects(
        svc.requestReview(spec(t.id, { approvers: ['alice@example.com'] }), sidecar),
        (e) => code(e) === 'input_invalid' && /never be approved/.test((e as Error).message),
      );
    });

    test('group approvers are checked against the approver token groups', async () => {
      const t = await newTask();
      const r = await svc.requestReview(spec(t.id, { approvers: ['group:dba'] }), sidecar);
      await assert.rejects(svc.approve(r.id, carol), (e) => code(e) === 'forbidden');
      assert.equal((await svc.approve(r.id, bob)).review.state, 'approved');
    });

    test('a deny by any approver ends the request', async () => {
      const t = await newTask();
      const r = await svc.requestReview(spec(t.id, { min_approvals: 2 }), sidecar);
      await svc.approve(r.id, bob);
      const d = await svc.deny(r.id, carol, 'not during business hours');
      assert.equal(d.review.state, 'denied');
      assert.equal(d.review.decision_reason, 'not during business hours');
      await assert.rejects(svc.approve(r.id, dave), (e) => code(e) === 'forbidden');
      assert.equal(audit.ofType('review_denied').at(-1)?.review_id, r.id);
    });

    test('a time-boxed grant covers the task on that resource until it ends', async () => {
      const t = await newTask();
      const r = await svc.requestReview(spec(t.id), sidecar);
      const res = await svc.approve(r.id, bob, { grant_s: 600, reason: 'migration window' });
      assert.ok(res.review.grant_until);
      const g = await svc.activeGrant({ task_id: t.id, subject: alice.subject, resource: 'orders-db' });
      assert.equal(g?.review_id, r.id);
      assert.deepEqual(g?.granted_by, ['bob@example.com']);
      assert.equal(await svc.activeGrant({ task_id: t.id, subject: alice.subject, resource: 'other-db' }), undefined);
      await assert.rejects(svc.approve((await svc.requestReview(spec(t.id), sidecar)).id, bob, { grant_s: 999_999 }), (e) => code(e) === 'input_invalid');
    });

    test('closing a task denies its pending reviews, revokes its grants and notifies', async () => {
      const hub = await EventHub.start(db);
      const seen: ChangeEvent[] = [];
      hub.subscribe((e) => seen.push(e));
      try {
        const t = await newTask();
        const g = await svc.requestReview(spec(t.id), sidecar);
        await svc.approve(g.id, bob, { grant_s: 600 });
        const pending = await svc.requestReview(spec(t.id), sidecar);
        await assert.rejects(svc.endTask(t.id, 'closed', dave), (e) => code(e) === 'forbidden');
        const closed = await svc.endTask(t.id, 'closed', alice);
        assert.equal(closed.state, 'closed');
        const p = (await svc.getReview(pending.id))!;
        assert.equal(p.state, 'denied');
        assert.match(p.decision_reason ?? '', /closed/);
        assert.equal(await svc.activeGrant({ task_id: t.id, subject: alice.subject, resource: 'orders-db' }), undefined);
        await assert.rejects(svc.requestReview(spec(t.id), sidecar), (e) => code(e) === 'conflict');
        assert.equal((await svc.endTask(t.id, 'closed', alice)).state, 'closed', 'closing twice is harmless');
        const deadline = Date.now() + 5000;
        while (!seen.some((e) => e.k === 'task' && e.id === t.id && e.state === 'closed') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
        assert.ok(seen.some((e) => e.k === 'review' && e.id === pending.id && e.state === 'denied'));
        assert.ok(seen.some((e) => e.k === 'task' && e.id === t.id && e.state === 'closed'));
        assert.equal(audit.ofType('task_closed').at(-1)?.task_id, t.id);
      } finally {
        await hub.close();
      }
    });

    test('expiry: the sweeper expires due reviews and tasks; approving an expired request fails', async () => {
      const t = await newTask({ ttl_s: 120 });
      const r = await svc.requestReview(spec(t.id, { timeout_s: 30 }), sidecar);
      const late = await svc.requestReview(spec(t.id, { timeout_s: 30 }), sidecar);
      clock += 31_000;
      await assert.rejects(svc.approve(late.id, bob), (e) => code(e) === 'conflict' && /expired/.test((e as Error).message));
      assert.equal((await svc.getReview(late.id))!.state, 'expired');
      const swept = await svc.sweep();
      assert.ok(swept.reviews >= 1);
      assert.equal((await svc.getReview(r.id))!.state, 'expired');
      assert.ok(audit.ofType('review_expired').some((e) => e.review_id === r.id));
      clock += 120_000;
      await svc.sweep();
      assert.equal((await svc.getTask(t.id))!.state, 'expired');
    });

    test('every change queues webhook deliveries in the outbox', async () => {
      const rows = await listDeliveries(db, { limit: 1000 });
      const events = new Set(rows.map((r) => r.event));
      for (const e of ['task_created', 'review_requested', 'review_approved', 'review_denied', 'review_expired', 'task_closed']) assert.ok(events.has(e), e);
      assert.ok(rows.every((r) => r.state === 'pending' && r.target === 'ops'));
    });
  });
}
