/**
 * Two control-plane replicas on one real PostgreSQL server: a decision made on
 * replica A reaches a sidecar connected to replica B (LISTEN/NOTIFY), a task
 * closed on B ends a command held through A, and both replicas sweeping at
 * once expire each request exactly once.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { MemoryAuditSink } from '../../../core/audit/event.ts';
import { Gatekeeper } from '../../../core/gate.ts';
import { OidcAuthenticator } from '../../../core/identity/oidc.ts';
import { connectControlPlane, type ControlPlaneClient } from '../../../control-plane/client/connect.ts';
import { ControlPlaneHttp } from '../../../control-plane/client/http.ts';
import { startControlPlane, type ControlPlane } from '../../../control-plane/server.ts';
import { startOidcIssuer, type OidcIssuer } from '../../../devenv/oidc-issuer.ts';
import { startPostgres, type PgServer } from '../../../devenv/postgres.ts';
import { waitFor } from '../../../devenv/net.ts';
import { fixtureEngine, session, user, within, write } from './fixture.ts';

describe('two control-plane replicas on one PostgreSQL', () => {
  let pg: PgServer;
  let idp: OidcIssuer;
  let a: ControlPlane;
  let b: ControlPlane;
  let client: ControlPlaneClient;
  let gate: Gatekeeper;
  const auditA = new MemoryAuditSink();
  const auditB = new MemoryAuditSink();

  before(async () => {
    pg = await startPostgres();
    idp = await startOidcIssuer();
    const auth = await OidcAuthenticator.discover({ issuer: idp.issuer, audience: idp.audience, allowInsecureLoopback: true });
    const common = { authenticator: auth, storage: { kind: 'postgres' as const, url: pg.url() }, sidecars: ['taskgate-sidecar'], admins: ['carol@example.com'], sweepIntervalMs: 100 };
    [a, b] = await Promise.all([startControlPlane({ ...common, audit: auditA }), startControlPlane({ ...common, audit: auditB })]);
    // The sidecar authenticates with a real client-credentials token and talks to replica B only.
    client = connectControlPlane({ url: b.url, token: () => idp.serviceToken('taskgate-sidecar') });
    await client.ready();
    gate = new Gatekeeper({ engine: await fixtureEngine(), tasks: client.tasks, reviews: client.reviews, audit: new MemoryAuditSink() });
  });
  after(async () => {
    await client?.close();
    await a?.close();
    await b?.close();
    await idp?.stop();
    await pg?.stop();
  });

  const on = async (cp: ControlPlane, sub: string) => new ControlPlaneHttp({ url: cp.url, token: await idp.token(sub) });
  const holdOn = async (taskId: string, labels: Record<string, string> = {}) => {
    let held!: (id: string) => void;
    const id = new Promise<string>((r) => (held = r));
    const done = gate.decide(session(taskId, user('alice@example.com'), labels), write(), { onHold: (h) => held(h.review_id) });
    return { id: await within(id, 5000, 'hold'), done };
  };

  test('approve on replica A, the sidecar on replica B forwards', async () => {
    await (await on(a, 'carol@example.com')).request('POST', '/api/v1/tasks', { id: 'REP-1', type: 'x', assignee: 'alice@example.com', reviewers: ['bob@example.com'], ttl_s: 600 });
    const h = await holdOn('REP-1');
    const t0 = performance.now();
    await (await on(a, 'bob@example.com')).request('POST', `/api/v1/reviews/${h.id}/approve`, {});
    const out = await within(h.done, 5000, 'decide');
    assert.equal(out.allowed, true);
    assert.ok(performance.now() - t0 < 1000);
    assert.ok(auditA.ofType('review_approved').some((e) => e.review_id === h.id), 'the replica that decided audits it');
  });

  test('closing the task on replica A ends a command held through replica B', async () => {
    await (await on(b, 'carol@example.com')).request('POST', '/api/v1/tasks', { id: 'REP-2', type: 'x', assignee: 'alice@example.com', reviewers: ['bob@example.com'], ttl_s: 600 });
    const ended: string[] = [];
    const un = client.tasks.onEnded((e) => ended.push(e.task_id));
    const h = await holdOn('REP-2');
    await (await on(a, 'carol@example.com')).request('POST', '/api/v1/tasks/REP-2/close', {});
    const out = await within(h.done, 5000, 'decide');
    un();
    assert.equal(out.allowed, false);
    assert.ok(ended.includes('REP-2'));
  });

  test('both replicas sweep; each expired request is expired (and audited) exactly once', async () => {
    await (await on(a, 'carol@example.com')).request('POST', '/api/v1/tasks', { id: 'REP-3', type: 'x', assignee: 'alice@example.com', reviewers: ['bob@example.com'], ttl_s: 600 });
    const holds = await Promise.all([1, 2, 3, 4, 5].map(() => holdOn('REP-3', { timeout_s: '1' })));
    const outs = await within(Promise.all(holds.map((h) => h.done)), 8000, 'expiry');
    assert.ok(outs.every((o) => !o.allowed && o.review?.status === 'expired'));
    // The expiry reaches the sidecar through NOTIFY at commit; the replica emits its audit event right
    // after its commit returns, so give it a moment before counting, and count again after both
    // sweepers have had further rounds (a duplicate would show then).
    const expiredCount = (id: string) => [...auditA.ofType('review_expired'), ...auditB.ofType('review_expired')].filter((e) => e.review_id === id).length;
    await waitFor(() => holds.every((h) => expiredCount(h.id) >= 1), 5000, 20);
    await new Promise((r) => setTimeout(r, 300));
    for (const h of holds) {
      const n = expiredCount(h.id);
      assert.equal(n, 1, `review ${h.id} expired ${n} times`);
    }
  });
});
