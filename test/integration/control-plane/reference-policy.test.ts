/**
 * The reference policies (policies/, compiled with the real `opa build -t
 * wasm`) with the control plane: a data-fix task's UPDATE is held for the
 * task's reviewers or group:dba; a dba approves through the API and the policy
 * allows it on re-evaluation; once the task is closed the same command is
 * denied outright.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { buildBundle } from '../../../compiler/build.ts';
import { MemoryAuditSink } from '../../../core/audit/event.ts';
import { PolicyEngine } from '../../../core/engine/engine.ts';
import { Gatekeeper } from '../../../core/gate.ts';
import { OidcAuthenticator } from '../../../core/identity/oidc.ts';
import { connectControlPlane, type ControlPlaneClient } from '../../../control-plane/client/connect.ts';
import { ControlPlaneHttp } from '../../../control-plane/client/http.ts';
import { startControlPlane, type ControlPlane } from '../../../control-plane/server.ts';
import { startOidcIssuer, type OidcIssuer } from '../../../devenv/oidc-issuer.ts';
import { session, user, within, write } from './fixture.ts';

describe('reference policies held through the control plane', () => {
  let idp: OidcIssuer;
  let cp: ControlPlane;
  let client: ControlPlaneClient;
  let gate: Gatekeeper;
  const token = 'ref-policy-sidecar-token-0123456789';

  before(async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tg-cp-ref-'));
    const engine = new PolicyEngine();
    try {
      await buildBundle({ dir: new URL('../../../policies', import.meta.url).pathname, out: join(dir, 'b.tar.gz') });
      await engine.load(await readFile(join(dir, 'b.tar.gz')));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
    idp = await startOidcIssuer();
    const auth = await OidcAuthenticator.discover({ issuer: idp.issuer, audience: idp.audience, allowInsecureLoopback: true });
    cp = await startControlPlane({ authenticator: auth, serviceTokens: [{ name: 'sc', token }], admins: ['carol@example.com'] });
    client = connectControlPlane({ url: cp.url, token });
    await client.ready();
    gate = new Gatekeeper({ engine, tasks: client.tasks, reviews: client.reviews, audit: new MemoryAuditSink() });
    await new ControlPlaneHttp({ url: cp.url, token: await idp.token('carol@example.com') }).request('POST', '/api/v1/tasks', {
      id: 'FIX-1',
      type: 'data-fix',
      assignee: 'alice@example.com',
      reviewers: ['carol@example.com'],
      ttl_s: 600,
    });
  });
  after(async () => {
    await client?.close();
    await cp?.close();
    await idp?.stop();
  });

  test('data-fix UPDATE: held for $reviewers or group:dba, approved by a dba, allowed; denied after the task closes', async () => {
    const alice = user('alice@example.com', ['engineering', 'dba']);
    let held!: (h: { review_id: string; approvers: string[] }) => void;
    const hold = new Promise<{ review_id: string; approvers: string[] }>((r) => (held = r));
    const done = gate.decide(session('FIX-1', alice), write(), { onHold: (h) => held(h) });
    const h = await within(hold, 5000, 'hold');
    assert.deepEqual([...h.approvers].sort(), ['carol@example.com', 'group:dba']);
    // bob is in group dba (his token says so); alice is too, but it is her own request.
    await assert.rejects(new ControlPlaneHttp({ url: cp.url, token: await idp.token('alice@example.com') }).request('POST', `/api/v1/reviews/${h.review_id}/approve`, {}), /self-approval/);
    await new ControlPlaneHttp({ url: cp.url, token: await idp.token('bob@example.com') }).request('POST', `/api/v1/reviews/${h.review_id}/approve`, { reason: 'ok' });
    const out = await within(done, 5000, 'decide');
    assert.equal(out.allowed, true, out.decision.reasons.join('; '));
    assert.match(out.decision.reasons.join(' '), /approved by bob@example.com/);

    await new ControlPlaneHttp({ url: cp.url, token: await idp.token('carol@example.com') }).request('POST', '/api/v1/tasks/FIX-1/close', {});
    const after = await within(gate.decide(session('FIX-1', alice), write()), 5000, 'decide after close');
    assert.equal(after.allowed, false);
    assert.equal(after.review, undefined, 'no review is even asked for a closed task');
  });
});
