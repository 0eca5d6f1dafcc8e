import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { OidcAuthenticator } from '../../../core/identity/oidc.ts';
import { silentLogger } from '../../../core/log.ts';
import { startControlPlane, type ControlPlane } from '../../../control-plane/server.ts';
import { startOidcIssuer, type OidcIssuer } from '../../../devenv/oidc-issuer.ts';

const BIN = join(import.meta.dirname, '../../../bin/taskgate.js');

describe('taskgate status (real control plane, real OIDC tokens)', () => {
  let idp: OidcIssuer;
  let cp: ControlPlane;
  let alice: string;
  let bob: string;
  before(async () => {
    idp = await startOidcIssuer();
    const authenticator = await OidcAuthenticator.discover({ issuer: idp.issuer, audience: idp.audience, allowInsecureLoopback: true });
    cp = await startControlPlane({ authenticator, serviceTokens: [{ name: 'sidecar-1', token: 'svc' }], admins: ['alice@example.com'], log: silentLogger });
    [alice, bob] = await Promise.all([idp.token('alice@example.com'), idp.token('bob@example.com')]);
    const call = async (path: string, token: string, body: unknown) => {
      const r = await fetch(`${cp.url}/api/v1${path}`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
      assert.ok(r.ok, `${path}: ${r.status} ${await r.clone().text()}`);
      return (await r.json()) as { review?: { id: string } };
    };
    for (const id of ['OPS-1', 'OPS-2']) await call('/tasks', alice, { id, type: 'data-fix', assignee: 'alice@example.com', reviewers: ['bob@example.com'], ttl_s: 3600 });
    const spec = (cmd: string) => ({
      task_id: 'OPS-1',
      session_id: 's1',
      identity: { subject: 'alice@example.com', groups: ['dba'], issuer: idp.issuer, type: 'user' },
      resource: { protocol: 'postgres', name: 'orders-db', labels: {} },
      protocol: 'postgres',
      command: cmd,
      summary: {},
      fingerprint: cmd,
      reasons: ['writes need review'],
      requirement: { approvers: ['bob@example.com'], min_approvals: 1, timeout_s: 600 },
    });
    const granted = await call('/reviews', 'svc', spec('UPDATE orders SET status = $1 WHERE id = $2'));
    await call(`/reviews/${granted.review!.id}/approve`, bob, { grant_s: 1800 });
    await call('/reviews', 'svc', spec('DELETE FROM orders WHERE id = $1'));
  });
  after(async () => {
    await cp?.close();
    await idp?.stop();
  });

  // Async: the control plane runs in this process, so the CLI must not block its event loop.
  const cli = (args: string[], env: Record<string, string>) =>
    new Promise<{ status: number; stdout: string; stderr: string }>((resolve) => {
      execFile(process.execPath, [BIN, ...args], { env: { ...process.env, ...env }, timeout: 60_000 }, (err, stdout, stderr) =>
        resolve({ status: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
      );
    });
  const status = (token: string) => cli(['status', '--server', cp.url, '--json'], { TASKGATE_TOKEN: token });

  it("shows alice her open tasks, her held command and her active grant", async () => {
    const r = await status(alice);
    assert.equal(r.status, 0, r.stderr);
    const s = JSON.parse(r.stdout);
    assert.equal(s.subject, 'alice@example.com');
    assert.deepEqual(s.tasks.map((t: { id: string }) => t.id).sort(), ['OPS-1', 'OPS-2']);
    assert.deepEqual(s.pending.mine.map((x: { command: string }) => x.command), ['DELETE FROM orders WHERE id = $1']);
    assert.equal(s.pending.to_review.length, 0);
    assert.equal(s.grants.length, 1);
    assert.equal(s.grants[0].resource, 'orders-db');
    assert.deepEqual(s.grants[0].by, ['bob@example.com']);
  });

  it('shows bob the request waiting for his review', async () => {
    const r = await status(bob);
    assert.equal(r.status, 0, r.stderr);
    const s = JSON.parse(r.stdout);
    assert.equal(s.tasks.length, 0);
    assert.deepEqual(s.pending.to_review.map((x: { task_id: string }) => x.task_id), ['OPS-1']);
  });

  it('prints a readable summary and a one-line error without a login', async () => {
    const text = await cli(['status', '--server', cp.url], { TASKGATE_TOKEN: alice });
    assert.match(text.stdout, /open tasks \(2\):/);
    assert.match(text.stdout, /active grants \(1\):\n  OPS-1 on orders-db until/);
    const none = await cli(['status', '--server', cp.url, '--token-file', '/nonexistent/token.json'], { TASKGATE_TOKEN: '' });
    assert.equal(none.status, 1);
    assert.match(none.stderr, /not logged in/);
  });
});
