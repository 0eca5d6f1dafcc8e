/**
 * End to end through the data path: a real Gatekeeper (fixture policy compiled
 * to WASM) with ControlPlaneTasks/ControlPlaneReviews talking to a real
 * control-plane server, users authenticated with real OIDC tokens from an
 * in-process oidc-provider. A held gate.decide() resolves when a reviewer
 * approves through the HTTP API (push, not polling); deny, self-approval,
 * task close, grants, expiry, restart while waiting, and fail-closed when the
 * control plane is down.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { MemoryAuditSink } from '../../../core/audit/event.ts';
import { Gatekeeper, type GateOutcome } from '../../../core/gate.ts';
import { OidcAuthenticator } from '../../../core/identity/oidc.ts';
import { connectControlPlane, type ControlPlaneClient } from '../../../control-plane/client/connect.ts';
import { ControlPlaneHttp } from '../../../control-plane/client/http.ts';
import { startControlPlane, type ControlPlane, type ControlPlaneOptions } from '../../../control-plane/server.ts';
import { startOidcIssuer, type OidcIssuer } from '../../../devenv/oidc-issuer.ts';
import { freePort, waitFor } from '../../../devenv/net.ts';
import { fixtureEngine, session, user, within, write } from './fixture.ts';

const SIDECAR_TOKEN = 'sidecar-token-' + 'x'.repeat(24);

describe('control plane push to a waiting Gatekeeper', () => {
  let idp: OidcIssuer;
  let auth: OidcAuthenticator;
  let cp: ControlPlane;
  let client: ControlPlaneClient;
  let gate: Gatekeeper;
  let admin: ControlPlaneHttp;
  let bob: ControlPlaneHttp;
  let alice: ControlPlaneHttp;
  let audit: MemoryAuditSink;
  let seq = 0;
  const alic = user('alice@example.com', ['engineering', 'dba']);

  const base = (): ControlPlaneOptions => ({
    authenticator: auth,
    serviceTokens: [{ name: 'sidecar-test', token: SIDECAR_TOKEN }],
    admins: ['carol@example.com'],
    sweepIntervalMs: 200,
  });
  const as = async (url: string, sub: string) => new ControlPlaneHttp({ url, token: await idp.token(sub) });
  const newTask = async (http = admin) => {
    const id = `OPS-${++seq}`;
    await http.request('POST', '/api/v1/tasks', { id, type: 'schema-migration', assignee: 'alice@example.com', reviewers: ['bob@example.com', 'group:reviewers'], ttl_s: 600 });
    return id;
  };
  const held = (g: Gatekeeper, taskId: string, labels: Record<string, string> = {}) => {
    let onHold!: (id: string) => void;
    const heldId = new Promise<string>((r) => (onHold = r));
    const done = g.decide(session(taskId, alic, labels), write(`UPDATE orders SET n = ${++seq} WHERE id = $1`), { onHold: (h) => onHold(h.review_id) });
    return { reviewId: within(heldId, 5000, 'hold'), done: done as Promise<GateOutcome> };
  };

  before(async () => {
    idp = await startOidcIssuer();
    auth = await OidcAuthenticator.discover({ issuer: idp.issuer, audience: idp.audience, allowInsecureLoopback: true });
    audit = new MemoryAuditSink();
    cp = await startControlPlane({ ...base(), audit });
    client = connectControlPlane({ url: cp.url, token: SIDECAR_TOKEN });
    await client.ready();
    gate = new Gatekeeper({ engine: await fixtureEngine(), tasks: client.tasks, reviews: client.reviews, audit: new MemoryAuditSink() });
    admin = await as(cp.url, 'carol@example.com');
    bob = await as(cp.url, 'bob@example.com');
    alice = await as(cp.url, 'alice@example.com');
  });
  after(async () => {
    await client?.close();
    await cp?.close();
    await idp?.stop();
  });

  test('a held command resolves allowed when the reviewer approves through the API', async () => {
    const task = await newTask();
    const h = held(gate, task);
    const id = await h.reviewId;
    const t0 = performance.now();
    const r = await bob.request<{ review: { state: string } }>('POST', `/api/v1/reviews/${id}/approve`, { reason: 'looks right' });
    assert.equal(r.review.state, 'approved');
    const out = await within(h.done, 5000, 'decide');
    const ms = performance.now() - t0;
    assert.equal(out.allowed, true);
    assert.equal(out.review?.status, 'approved');
    assert.deepEqual(out.review?.by, ['bob@example.com']);
    assert.ok(ms < 1000, `approve-to-forward took ${ms} ms`);
    assert.ok(audit.ofType('review_requested').some((e) => e.review_id === id));
    assert.ok(audit.ofType('review_approved').some((e) => e.review_id === id && e.details?.actor === 'bob@example.com'));
  });

  test('a deny reaches the waiting command with the reviewer reason', async () => {
    const task = await newTask();
    const h = held(gate, task);
    await bob.request('POST', `/api/v1/reviews/${await h.reviewId}/deny`, { reason: 'not now' });
    const out = await within(h.done, 5000, 'decide');
    assert.equal(out.allowed, false);
    assert.match(out.decision.reasons.join(' '), /denied: not now/);
  });

  test('self-approval through the API is refused with 403 and the command keeps waiting', async () => {
    const task = await newTask();
    const h = held(gate, task);
    const id = await h.reviewId;
    await assert.rejects(alice.request('POST', `/api/v1/reviews/${id}/approve`, {}), (e: Error & { code?: string }) => e.code === 'forbidden' && /self-approval/.test(e.message));
    const dave = await as(cp.url, 'dave@example.com');
    await assert.rejects(dave.request('POST', `/api/v1/reviews/${id}/approve`, {}), (e: Error & { code?: string }) => e.code === 'forbidden');
    const res = await fetch(`${cp.url}/api/v1/reviews/${id}/approve`, { method: 'POST', headers: { authorization: `Bearer ${await idp.token('dave@example.com')}` } });
    assert.equal(res.status, 403);
    const bad = await fetch(`${cp.url}/api/v1/reviews`, { headers: { authorization: 'Bearer not-a-token' } });
    assert.equal(bad.status, 401);
    // carol approves through her `reviewers` group
    const carol = await as(cp.url, 'carol@example.com');
    await carol.request('POST', `/api/v1/reviews/${id}/approve`, {});
    assert.equal((await within(h.done, 5000, 'decide')).allowed, true);
  });

  test('a user token cannot file reviews or read the sidecar stream', async () => {
    await assert.rejects(bob.request('POST', '/api/v1/reviews', {}), (e: Error & { code?: string }) => e.code === 'forbidden');
    const res = await fetch(`${cp.url}/api/v1/stream`, { headers: { authorization: `Bearer ${await idp.token('bob@example.com')}` } });
    assert.equal(res.status, 403);
    await assert.rejects(bob.request('POST', '/api/v1/tasks', { id: 'X-1', type: 't', assignee: 'a', reviewers: ['b'] }), (e: Error & { code?: string }) => e.code === 'forbidden');
  });

  test('closing the task ends a held command at once and fires onEnded', async () => {
    const task = await newTask();
    const ended: string[] = [];
    const un = client.tasks.onEnded((ev) => ended.push(`${ev.task_id}:${ev.state}`));
    try {
      const h = held(gate, task);
      await h.reviewId;
      await alice.request('POST', `/api/v1/tasks/${encodeURIComponent(task)}/close`, { reason: 'done' });
      const out = await within(h.done, 5000, 'decide');
      assert.equal(out.allowed, false);
      assert.match(out.decision.reasons.join(' '), /denied/);
      await waitFor(() => ended.includes(`${task}:closed`), 5000, 10);
      const after = await within(gate.decide(session(task, alic), write()), 5000, 'decide after close');
      assert.equal(after.allowed, false);
      assert.deepEqual(after.decision.reasons, ['task is not open']);
    } finally {
      un();
    }
  });

  test('a time-boxed grant lets the next command on that resource through without a new review', async () => {
    const task = await newTask();
    const h = held(gate, task);
    await bob.request('POST', `/api/v1/reviews/${await h.reviewId}/approve`, { grant_s: 300 });
    const out = await within(h.done, 5000, 'decide');
    assert.equal(out.allowed, true, `decision: ${JSON.stringify({ reasons: out.decision.reasons, review: out.review })}`);
    assert.equal(out.review?.grant, true);
    const next = await within(gate.decide(session(task, alic), write('DELETE FROM orders WHERE id = $1')), 5000, 'decide with grant');
    assert.equal(next.allowed, true);
    assert.equal(next.review?.grant, true);
  });

  test('an unanswered review expires on the server and the command is denied', async () => {
    const task = await newTask();
    const h = held(gate, task, { timeout_s: '1' });
    const id = await h.reviewId;
    const out = await within(h.done, 5000, 'decide');
    assert.equal(out.allowed, false);
    assert.equal(out.review?.status, 'expired');
    const r = await bob.request<{ review: { state: string } }>('GET', `/api/v1/reviews/${id}`);
    assert.equal(r.review.state, 'expired');
    assert.ok(audit.ofType('review_expired').some((e) => e.review_id === id));
  });
});

describe('control-plane restart and outage', () => {
  let idp: OidcIssuer;
  let auth: OidcAuthenticator;
  let dir: string;
  before(async () => {
    idp = await startOidcIssuer();
    auth = await OidcAuthenticator.discover({ issuer: idp.issuer, audience: idp.audience, allowInsecureLoopback: true });
    dir = await mkdtemp(join(tmpdir(), 'tg-cp-restart-'));
  });
  after(async () => {
    await idp?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  test('restart while a command waits: the request persists, the client reconnects and still gets the decision', async () => {
    const port = await freePort();
    const opts = (): ControlPlaneOptions => ({
      authenticator: auth,
      port,
      storage: { kind: 'pglite', dataDir: join(dir, 'data') },
      serviceTokens: [{ name: 'sidecar-test', token: SIDECAR_TOKEN }],
      admins: ['carol@example.com'],
    });
    let cp = await startControlPlane(opts());
    const client = connectControlPlane({ url: cp.url, token: SIDECAR_TOKEN, maxBackoffMs: 300 });
    try {
      await client.ready();
      const gate = new Gatekeeper({ engine: await fixtureEngine(), tasks: client.tasks, reviews: client.reviews, audit: new MemoryAuditSink() });
      const carol = new ControlPlaneHttp({ url: cp.url, token: await idp.token('carol@example.com') });
      await carol.request('POST', '/api/v1/tasks', { id: 'RST-1', type: 'schema-migration', assignee: 'alice@example.com', reviewers: ['bob@example.com'], ttl_s: 600 });
      let heldId!: (id: string) => void;
      const idP = new Promise<string>((r) => (heldId = r));
      const done = gate.decide(session('RST-1', alic()), write(), { onHold: (h) => heldId(h.review_id) });
      const id = await within(idP, 5000, 'hold');

      await cp.close();
      await waitFor(() => !client.stream.connected, 5000, 10);
      cp = await startControlPlane(opts());
      await within(client.ready(10_000), 11_000, 'reconnect');
      const bob = new ControlPlaneHttp({ url: cp.url, token: await idp.token('bob@example.com') });
      const r = await bob.request<{ review: { state: string; command: string } }>('GET', `/api/v1/reviews/${id}`);
      assert.equal(r.review.state, 'pending', 'the request survived the restart');
      await bob.request('POST', `/api/v1/reviews/${id}/approve`, {});
      const out = await within(done, 5000, 'decide');
      assert.equal(out.allowed, true);
    } finally {
      await client.close();
      await cp.close();
    }
  });

  test('control plane down: a held command is denied at its timeout (fail closed), and the client reconnects by itself', async () => {
    const port = await freePort();
    const opts: ControlPlaneOptions = { authenticator: auth, port, serviceTokens: [{ name: 'sidecar-test', token: SIDECAR_TOKEN }], admins: ['carol@example.com'] };
    let cp = await startControlPlane(opts);
    const client = connectControlPlane({ url: cp.url, token: SIDECAR_TOKEN, maxBackoffMs: 300, graceMs: 200 });
    try {
      await client.ready();
      const gate = new Gatekeeper({ engine: await fixtureEngine(), tasks: client.tasks, reviews: client.reviews, audit: new MemoryAuditSink() });
      const carol = new ControlPlaneHttp({ url: cp.url, token: await idp.token('carol@example.com') });
      await carol.request('POST', '/api/v1/tasks', { id: 'DOWN-1', type: 'schema-migration', assignee: 'alice@example.com', reviewers: ['bob@example.com'], ttl_s: 600 });
      let heldId!: (id: string) => void;
      const idP = new Promise<string>((r) => (heldId = r));
      const t0 = Date.now();
      const done = gate.decide(session('DOWN-1', alic(), { timeout_s: '2' }), write(), { onHold: (h) => heldId(h.review_id) });
      await within(idP, 5000, 'hold');
      await cp.close();
      const out = await within(done, 6000, 'decide while down');
      const waited = Date.now() - t0;
      assert.equal(out.allowed, false);
      assert.equal(out.review?.status, 'error');
      assert.match(out.decision.reasons.join(' '), /fail closed/);
      assert.ok(waited >= 1900 && waited < 5000, `denied after ${waited} ms (timeout 2 s)`);
      const whileDown = await within(gate.decide(session('DOWN-1', alic()), write('INSERT INTO orders VALUES ($1)')), 6000, 'decide while down');
      assert.equal(whileDown.allowed, false, 'with the registry unreachable a new command is denied');

      cp = await startControlPlane({ ...opts, storage: { kind: 'pglite' } });
      await within(client.ready(10_000), 11_000, 'reconnect');
      assert.equal(client.stream.connected, true);
    } finally {
      await client.close();
      await cp.close();
    }
  });

  const alic = () => user('alice@example.com', ['engineering']);
});
