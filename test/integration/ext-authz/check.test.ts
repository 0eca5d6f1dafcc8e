import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { MemoryAuditSink } from '../../../core/audit/event.ts';
import { PolicyEngine } from '../../../core/engine/engine.ts';
import { Gatekeeper } from '../../../core/gate.ts';
import { OidcAuthenticator } from '../../../core/identity/oidc.ts';
import { Metrics } from '../../../core/metrics.ts';
import { InProcessReviews } from '../../../core/reviews.ts';
import { StaticTaskRegistry } from '../../../core/tasks.ts';
import { startOidcIssuer, type OidcIssuer } from '../../../devenv/oidc-issuer.ts';
import { startExtAuthz, type ExtAuthzHandle } from '../../../ext-authz/server.ts';
import { authzClient, compileAt, envoyCheck, healthStatus, K8S_POLICY, okHeader, type Envoy } from './fixtures.ts';

const hour = () => new Date(Date.now() + 3600_000).toISOString();

describe('ext_authz Check (real gRPC client, real OIDC tokens, compiled policy)', () => {
  let idp: OidcIssuer;
  let srv: ExtAuthzHandle;
  let envoy: Envoy;
  let alice: string;
  let dave: string;
  const audit = new MemoryAuditSink();
  const reviews = new InProcessReviews();
  const metrics = new Metrics();
  const engine = new PolicyEngine({ metrics });

  before(async () => {
    idp = await startOidcIssuer();
    const authenticator = await OidcAuthenticator.discover({ issuer: idp.issuer, audience: idp.audience, allowInsecureLoopback: true });
    await engine.load(await compileAt(K8S_POLICY, 'taskgate/decision'));
    const tasks = new StaticTaskRegistry([
      { id: 'OPS-1', type: 'k8s-debug', assignee: 'alice@example.com', reviewers: ['bob@example.com'], state: 'open', expires_at: hour() },
    ]);
    const gate = new Gatekeeper({ engine, tasks, reviews, audit, metrics });
    srv = await startExtAuthz({
      gate,
      authenticator,
      metrics,
      metricsPort: 0,
      resources: [
        { name: 'k8s-prod', kubernetes: true, upstream_authorization: 'Bearer sa-token-123' },
        { name: 'cards-api', labels: { env: 'prod' } },
      ],
    });
    envoy = authzClient(srv.address);
    alice = await idp.token('alice@example.com');
    dave = await idp.token('dave@example.com');
  });
  after(async () => {
    envoy?.close();
    await srv?.close();
    await idp?.stop();
  });

  const auth = (t: string) => ({ authorization: `Bearer ${t}`, 'x-taskgate-task': 'OPS-1' });
  const body = (res: Record<string, any>) => JSON.parse(res.deniedResponse.body);

  it('allows kubectl get pods: decision id header, upstream credential in, user token and task header out', async () => {
    const res = await envoy.check(envoyCheck('GET', '/api/v1/namespaces/shop/pods?limit=500', auth(alice)));
    assert.equal(res.status.code, 0);
    assert.match(okHeader(res, 'x-taskgate-decision-id') ?? '', /^[0-9a-f-]{36}$/);
    assert.equal(okHeader(res, 'authorization'), 'Bearer sa-token-123');
    assert.ok(res.okResponse.headersToRemove.includes('x-taskgate-task'));
    const ev = audit.ofType('decision').at(-1)!;
    assert.equal(ev.decision, 'allow');
    assert.equal(ev.subject, 'alice@example.com');
    assert.equal(ev.command, 'GET /api/v1/namespaces/shop/pods?limit=500');
    assert.equal((ev.details as { decision_id: string }).decision_id, okHeader(res, 'x-taskgate-decision-id'));
  });

  const corpus: [string, string, boolean][] = [
    ['GET', '/api/v1/namespaces/shop/pods/web-1', true],
    ['GET', '/api/v1/namespaces/shop/pods?watch=true&resourceVersion=5', true],
    ['GET', '/api/v1/namespaces/shop/pods/web-1/log?follow=true', true],
    ['GET', '/api/v1/namespaces/sh%6Fp/pods', true],
    ['GET', '/api/v1/namespaces/kube-system/pods', false],
    ['POST', '/api/v1/namespaces/shop/pods/web-1/exec?command=sh&stdin=true', false],
    ['GET', '/api/v1/namespaces/shop/pods/web-1/exec?command=sh', false],
    ['POST', '/api/v1/namespaces/shop/pods/web-1/portforward', false],
    ['GET', '/api/v1/namespaces/shop/services/web:80/proxy/admin', false],
    ['DELETE', '/api/v1/namespaces/shop/pods', false],
  ];
  for (const [method, path, allowed] of corpus) {
    it(`${allowed ? 'allows' : 'denies'} ${method} ${path}`, async () => {
      const res = await envoy.check(envoyCheck(method, path, auth(alice)));
      assert.equal(res.status.code === 0, allowed);
      if (!allowed) {
        assert.equal(res.deniedResponse.status.code, 'Forbidden');
        const b = body(res);
        assert.equal(b.kind, 'Status');
        assert.equal(b.taskgate.task, 'OPS-1');
        assert.deepEqual(b.taskgate.reasons, ['not permitted for this task']);
        assert.match(b.message, /not permitted for this task \(task OPS-1\)/);
      }
    });
  }

  it('refuses ambiguous paths before the policy', async () => {
    for (const p of ['/api/v1/namespaces/shop/pods/../../kube-system/secrets', '/api/v1/namespaces/shop%2Fpods', '/api/v1//namespaces/shop/pods']) {
      const res = await envoy.check(envoyCheck('GET', p, auth(alice)));
      assert.equal(res.status.code, 7, p);
      assert.equal(res.deniedResponse.status.code, 'BadRequest', p);
    }
  });

  it('denies without a token, with a bad token, and without a task (401/401/403)', async () => {
    const none = await envoy.check(envoyCheck('GET', '/api/v1/namespaces/shop/pods', { 'x-taskgate-task': 'OPS-1' }));
    assert.equal(none.status.code, 16);
    assert.equal(none.deniedResponse.status.code, 'Unauthorized');
    assert.match(body(none).message, /no bearer token/);
    const forged = await idp.signRaw({ sub: 'alice@example.com', aud: 'someone-else', exp: Math.floor(Date.now() / 1000) + 60 });
    const bad = await envoy.check(envoyCheck('GET', '/api/v1/namespaces/shop/pods', auth(forged)));
    assert.equal(bad.status.code, 16);
    assert.match(body(bad).message, /authentication failed/);
    const noTask = await envoy.check(envoyCheck('GET', '/api/v1/namespaces/shop/pods', { authorization: `Bearer ${alice}` }));
    assert.equal(noTask.deniedResponse.status.code, 'Forbidden');
    assert.match(body(noTask).message, /no task/);
  });

  it('denies another user on alice\'s task', async () => {
    const res = await envoy.check(envoyCheck('GET', '/api/v1/namespaces/shop/pods', auth(dave)));
    assert.equal(res.status.code, 7);
  });

  it('takes the task from a /task/<id> path prefix (kubeconfig server URL)', async () => {
    const res = await envoy.check(envoyCheck('GET', '/task/OPS-1/api/v1/namespaces/shop/pods', { authorization: `Bearer ${alice}` }));
    assert.equal(res.status.code, 0);
  });

  it('selects the resource from the route context extension (non-Kubernetes API)', async () => {
    const res = await envoy.check(envoyCheck('GET', '/v1/cards?limit=2', auth(alice), { context: { taskgate_resource: 'cards-api' }, host: 'cards' }));
    assert.equal(res.status.code, 0);
    assert.equal(okHeader(res, 'authorization'), undefined);
    assert.ok(res.okResponse.headersToRemove.includes('authorization'));
    const unknown = await envoy.check(envoyCheck('GET', '/v1/cards', auth(alice), { context: { taskgate_resource: 'nope' } }));
    assert.equal(unknown.status.code, 7);
  });

  it('a review not answered within the deadline is a deny naming the review; a retry after a grant goes through', async () => {
    const t0 = Date.now();
    // A reply at all proves it came before the client's deadline (gRPC rejects late ones with
    // DEADLINE_EXCEEDED); the bound below only catches a server that ignored the deadline and
    // held for its own 25 s maximum, with slack for a loaded CI machine's timers.
    const first = await envoy.check(envoyCheck('DELETE', '/api/v1/namespaces/shop/pods/web-1', auth(alice)), { deadlineMs: 800 });
    assert.ok(Date.now() - t0 < 2000, 'answered within the deadline, not after the server-side maximum hold');
    assert.equal(first.status.code, 7);
    const b = body(first);
    assert.match(b.taskgate.review_id, /^rv_/);
    assert.match(b.message, /pending .*retry after approval/);
    // A retry while pending joins the same review instead of opening another one.
    const again = await envoy.check(envoyCheck('DELETE', '/api/v1/namespaces/shop/pods/web-1', auth(alice)), { deadlineMs: 500 });
    assert.equal(body(again).taskgate.review_id, b.taskgate.review_id);
    assert.equal(reviews.list().length, 1);
    reviews.approve(b.taskgate.review_id, { subject: 'bob@example.com', groups: [] }, { grant_s: 60 });
    const retry = await envoy.check(envoyCheck('DELETE', '/api/v1/namespaces/shop/pods/web-1', auth(alice)), { deadlineMs: 2000 });
    assert.equal(retry.status.code, 0);
    // The grant covers other deletions on this task and resource.
    const other = await envoy.check(envoyCheck('DELETE', '/api/v1/namespaces/shop/pods/web-2', auth(alice)), { deadlineMs: 2000 });
    assert.equal(other.status.code, 0);
  });

  it('a one-shot approval while the client waits lets that request through', async () => {
    const off = reviews.onRequest((id) => setTimeout(() => reviews.approve(id, { subject: 'bob@example.com', groups: [] }), 50));
    try {
      const t = await idp.token('alice@example.com');
      const tasks = srv.authorizer.decider.gate.tasks as StaticTaskRegistry;
      tasks.put({ id: 'OPS-2', type: 'k8s-debug', assignee: 'alice@example.com', reviewers: ['bob@example.com'], state: 'open', expires_at: hour() });
      const res = await envoy.check(envoyCheck('DELETE', '/api/v1/namespaces/shop/pods/web-9', { authorization: `Bearer ${t}`, 'x-taskgate-task': 'OPS-2' }), { deadlineMs: 3000 });
      assert.equal(res.status.code, 0);
    } finally {
      off();
    }
  });

  it('a malformed CheckRequest is a deny and the server keeps serving', async () => {
    const res = await envoy.check({});
    assert.equal(res.status.code, 7);
    assert.match(JSON.parse(res.deniedResponse.body).message, /no attributes/);
    const bad = await envoy.check(envoyCheck('GET', '/api/v1/namespaces/shop/pods', auth(alice), { body: '{not json' }) as never);
    assert.equal(bad.status.code, 0, 'body is only parsed for application/json');
    const badJson = await envoy.check(envoyCheck('POST', '/v1/x', { ...auth(alice), 'content-type': 'application/json' }, { body: '{not json' }));
    assert.equal(badJson.status.code, 7);
    assert.match(body(badJson).message, /not valid JSON/);
    const ok = await envoy.check(envoyCheck('GET', '/api/v1/namespaces/shop/pods', auth(alice)));
    assert.equal(ok.status.code, 0);
  });

  it('fails closed when no policy is loaded: health says NOT_SERVING and checks deny', async () => {
    const emptyEngine = new PolicyEngine();
    const gate = new Gatekeeper({ engine: emptyEngine, tasks: new StaticTaskRegistry(), reviews, audit });
    const s2 = await startExtAuthz({ gate, resources: [{ name: 'x' }] });
    const c = authzClient(s2.address);
    try {
      const res = await c.check(envoyCheck('GET', '/x'));
      assert.equal(res.status.code, 7);
      assert.match(JSON.parse(res.deniedResponse.body).message, /no policy loaded/);
      assert.equal(await healthStatus(s2.address, 'envoy.service.auth.v3.Authorization'), 'NOT_SERVING');
    } finally {
      c.close();
      await s2.close();
    }
  });

  it('serves grpc.health.v1 and Prometheus metrics', async () => {
    assert.equal(await healthStatus(srv.address, 'envoy.service.auth.v3.Authorization'), 'SERVING');
    assert.equal(await healthStatus(srv.address, ''), 'SERVING');
    const m = await fetch(`http://${srv.metricsAddress}/metrics`).then((r) => r.text());
    assert.match(m, /taskgate_http_authorize_duration_seconds_count\{entry="ext_authz",result="allow"\} [1-9]/);
    assert.match(m, /taskgate_decisions_total\{protocol="http",result="deny"\} [1-9]/);
  });

  it('honours a deadline when the task registry hangs: answers in time with a deny', async () => {
    const hanging = { get: () => new Promise<never>(() => {}), onEnded: () => () => {} };
    const gate = new Gatekeeper({ engine, tasks: hanging, reviews, audit });
    const s3 = await startExtAuthz({ gate, resources: [{ name: 'x' }] });
    const c = authzClient(s3.address);
    try {
      const t0 = Date.now();
      const res = await c.check(envoyCheck('GET', '/x'), { deadlineMs: 800 });
      assert.ok(Date.now() - t0 < 800);
      assert.equal(res.status.code, 7);
      assert.match(JSON.parse(res.deniedResponse.body).message, /no decision within the deadline/);
    } finally {
      c.close();
      await s3.close();
    }
  });
});
