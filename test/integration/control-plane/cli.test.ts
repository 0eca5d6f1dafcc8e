/**
 * The CLI against a running control plane, as a user runs it: `taskgate task
 * create|list|show|close` and `taskgate review list|show|approve|deny` with
 * the user's OIDC token (TASKGATE_TOKEN), including the error a non-approver
 * gets.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { after, before, describe, test } from 'node:test';
import { OidcAuthenticator } from '../../../core/identity/oidc.ts';
import { startControlPlane, type ControlPlane } from '../../../control-plane/server.ts';
import { startOidcIssuer, type OidcIssuer } from '../../../devenv/oidc-issuer.ts';
import type { ReviewRequestSpec } from '../../../core/reviews.ts';
import { ControlPlaneHttp } from '../../../control-plane/client/http.ts';

const BIN = new URL('../../../bin/taskgate.js', import.meta.url).pathname;

describe('taskgate task / review CLI', () => {
  let idp: OidcIssuer;
  let cp: ControlPlane;
  const cli = async (sub: string, args: string[]) => {
    const token = await idp.token(sub);
    return new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
      execFile('node', [BIN, ...args, '--server', cp.url], { env: { ...process.env, TASKGATE_TOKEN: token }, timeout: 60_000 }, (err, stdout, stderr) =>
        resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
      );
    });
  };

  before(async () => {
    idp = await startOidcIssuer();
    const auth = await OidcAuthenticator.discover({ issuer: idp.issuer, audience: idp.audience, allowInsecureLoopback: true });
    cp = await startControlPlane({ authenticator: auth, admins: ['carol@example.com'], serviceTokens: [{ name: 'sc', token: 'cli-test-sidecar-token-0123456789' }] });
  });
  after(async () => {
    await cp?.close();
    await idp?.stop();
  });

  test('task create, list, show, and a review approved from the CLI; task close', async () => {
    const c = await cli('carol@example.com', ['task', 'create', 'CLI-1', '--type', 'data-fix', '--assignee', 'alice@example.com', '--reviewer', 'bob@example.com', 'group:dba', '--expires-in', '2h', '--title', 'fix names']);
    assert.equal(c.code, 0, c.stderr);
    assert.match(c.stdout, /created task CLI-1 \(open\)/);
    assert.match(c.stdout, /reviewers: bob@example.com, group:dba/);
    const denied = await cli('dave@example.com', ['task', 'create', 'CLI-2', '--type', 'x', '--assignee', 'a', '--reviewer', 'b']);
    assert.equal(denied.code, 1);
    assert.match(denied.stderr, /error\[forbidden\]/);
    const list = await cli('alice@example.com', ['task', 'list', '--state', 'open']);
    assert.match(list.stdout, /^CLI-1\topen\tdata-fix\talice@example.com/m);
    const show = await cli('alice@example.com', ['task', 'show', 'CLI-1', '--json']);
    assert.equal(JSON.parse(show.stdout).title, 'fix names');

    const sidecar = new ControlPlaneHttp({ url: cp.url, token: 'cli-test-sidecar-token-0123456789' });
    const spec: ReviewRequestSpec = {
      task_id: 'CLI-1',
      session_id: 's1',
      identity: { subject: 'alice@example.com', groups: [], issuer: idp.issuer, type: 'user' },
      resource: { protocol: 'postgres', name: 'orders-db', labels: {} },
      protocol: 'postgres',
      command: 'DELETE FROM items WHERE id = $1',
      summary: {},
      fingerprint: 'fp',
      reasons: ['DELETE needs review'],
      requirement: { approvers: ['bob@example.com', 'group:dba'], min_approvals: 1, timeout_s: 300 },
    };
    const { review } = await sidecar.request<{ review: { id: string } }>('POST', '/api/v1/reviews', spec);
    const pending = await cli('bob@example.com', ['review', 'list']);
    assert.match(pending.stdout, new RegExp(`^${review.id}\\tpending\\tCLI-1\\talice@example.com\\torders-db\\t0/1\\tDELETE FROM items`, 'm'));
    assert.equal((await cli('dave@example.com', ['review', 'list'])).stdout.trim(), 'nothing waits for you');
    const self = await cli('alice@example.com', ['review', 'approve', review.id]);
    assert.equal(self.code, 1);
    assert.match(self.stderr, /error\[forbidden\]: self-approval is not allowed/);
    const ok = await cli('bob@example.com', ['review', 'approve', review.id, '--grant', '30m', '-m', 'window']);
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /review .* is approved, grant until/);
    const again = await cli('bob@example.com', ['review', 'approve', review.id]);
    assert.match(again.stdout, /\(already recorded\)/);
    const shown = await cli('bob@example.com', ['review', 'show', review.id]);
    assert.match(shown.stdout, /approvals: {2}bob@example.com approve grant 1800s "window"/);

    const closed = await cli('alice@example.com', ['task', 'close', 'CLI-1', '--reason', 'done']);
    assert.equal(closed.code, 0, closed.stderr);
    assert.match(closed.stdout, /task CLI-1 is closed/);
  });
});
