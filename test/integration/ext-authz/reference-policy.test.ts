import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { MemoryAuditSink } from '../../../core/audit/event.ts';
import { PolicyEngine } from '../../../core/engine/engine.ts';
import { Gatekeeper } from '../../../core/gate.ts';
import type { Authenticator } from '../../../core/identity/identity.ts';
import { InProcessReviews } from '../../../core/reviews.ts';
import { StaticTaskRegistry } from '../../../core/tasks.ts';
import { buildBundle } from '../../../compiler/build.ts';
import { startExtAuthz, type ExtAuthzHandle } from '../../../ext-authz/server.ts';
import { authzClient, envoyCheck, type Envoy } from './fixtures.ts';

/** The reference policies and task-type catalog (policies/) behind ext_authz, with kubectl-shaped requests. */
describe('ext_authz with the reference policies (policies/)', () => {
  let srv: ExtAuthzHandle;
  let envoy: Envoy;
  let dir: string;
  const reviews = new InProcessReviews();
  const users: Authenticator = { authenticate: async (t) => ({ subject: t, groups: ['engineering'], issuer: 'test', type: 'user' }) };
  const hour = new Date(Date.now() + 3600_000).toISOString();

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'taskgate-ref-'));
    const built = await buildBundle({ dir: resolve(import.meta.dirname, '../../../policies'), out: join(dir, 'bundle.tar.gz') });
    const engine = new PolicyEngine();
    await engine.load(await readFile(built.out));
    const tasks = new StaticTaskRegistry([
      { id: 'RO-1', type: 'read-only', assignee: 'alice@example.com', reviewers: ['bob@example.com'], state: 'open', expires_at: hour },
      { id: 'INC-7', type: 'incident-debug', assignee: 'alice@example.com', reviewers: ['bob@example.com'], state: 'open', expires_at: hour },
    ]);
    srv = await startExtAuthz({ gate: new Gatekeeper({ engine, tasks, reviews, audit: new MemoryAuditSink() }), authenticator: users, resources: [{ name: 'k8s-prod', kubernetes: true }] });
    envoy = authzClient(srv.address);
  });
  after(async () => {
    envoy?.close();
    await srv?.close();
    for (const p of reviews.list()) reviews.deny(p.id, { subject: 'bob@example.com', groups: [] }, 'test over');
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const check = (task: string, method: string, path: string, deadlineMs = 2000) =>
    envoy.check(envoyCheck(method, path, { authorization: 'Bearer alice@example.com', 'x-taskgate-task': task }), { deadlineMs });

  const cases: [string, string, string, 'allow' | 'deny' | 'review'][] = [
    ['RO-1', 'GET', '/api/v1/namespaces/shop/pods?limit=500', 'allow'],
    ['RO-1', 'GET', '/api/v1/namespaces/shop/pods?watch=true', 'allow'],
    ['RO-1', 'GET', '/apis/apps/v1/namespaces/shop/deployments/web', 'allow'],
    ['RO-1', 'GET', '/api', 'allow'],
    ['RO-1', 'GET', '/api/v1/namespaces/shop/secrets/db', 'deny'],
    ['RO-1', 'DELETE', '/api/v1/namespaces/shop/pods/web-1', 'deny'],
    ['RO-1', 'POST', '/api/v1/namespaces/shop/pods/web-1/exec?command=sh', 'deny'],
    ['RO-1', 'GET', '/api/v1/namespaces/shop/services/web:80/proxy/admin', 'deny'],
    ['INC-7', 'DELETE', '/api/v1/namespaces/shop/pods/web-1', 'review'],
    ['INC-7', 'POST', '/api/v1/namespaces/shop/pods/web-1/attach', 'deny'],
  ];
  for (const [task, method, path, want] of cases) {
    it(`${task} (${task === 'RO-1' ? 'read-only' : 'incident-debug'}): ${method} ${path} -> ${want}`, async () => {
      const res = await check(task, method, path, want === 'review' ? 600 : 2000);
      if (want === 'allow') return assert.equal(res.status.code, 0, res.deniedResponse?.body);
      assert.equal(res.status.code, 7);
      const b = JSON.parse(res.deniedResponse.body);
      if (want === 'review') assert.match(b.taskgate.review_id, /^rv_/);
      else assert.equal(b.taskgate.review_id, undefined);
    });
  }
});
