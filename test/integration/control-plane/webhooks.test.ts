/**
 * Webhooks against real HTTP servers: outgoing deliveries are signed
 * (verified by the receiver), retried on 500 with backoff from the durable
 * outbox, formatted for Slack on a Slack target; incoming GitHub and Jira issue
 * webhooks create and close tasks, and unsigned or mis-signed ones are refused.
 */
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { MemoryAuditSink } from '../../../core/audit/event.ts';
import type { Authenticator } from '../../../core/identity/identity.ts';
import { TaskgateError } from '../../../core/errors.ts';
import { startControlPlane, type ControlPlane } from '../../../control-plane/server.ts';
import { hubSignature } from '../../../control-plane/webhooks/inbound.ts';
import { verifyPayload } from '../../../control-plane/webhooks/outbound.ts';
import { listDeliveries } from '../../../control-plane/storage/repo.ts';
import { waitFor } from '../../../devenv/net.ts';

/** Bearer tokens are `user:<subject>:<groups>` here: this suite is about webhooks (the OIDC path is covered in push.test.ts). */
const fakeAuth: Authenticator = {
  async authenticate(t) {
    const [kind, sub, groups] = t.split(':');
    if (kind !== 'user' || !sub) throw new TaskgateError('auth_failed', 'bad token');
    return { subject: sub, groups: groups ? groups.split(',') : [], issuer: 'test', type: 'user' };
  },
};

interface Received {
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

async function receiver(respond: (n: number) => number): Promise<{ url: string; got: Received[]; server: Server }> {
  const got: Received[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      got.push({ headers: req.headers, body: Buffer.concat(chunks).toString() });
      res.writeHead(respond(got.length)).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`, got, server };
}

describe('webhooks', () => {
  let cp: ControlPlane;
  let flaky: Awaited<ReturnType<typeof receiver>>;
  let slack: Awaited<ReturnType<typeof receiver>>;
  const audit = new MemoryAuditSink();
  const api = async (path: string, init: { method?: string; token?: string; body?: unknown; headers?: Record<string, string>; raw?: string } = {}) => {
    const res = await fetch(cp.url + path, {
      method: init.method ?? 'GET',
      headers: { ...(init.token ? { authorization: `Bearer ${init.token}` } : {}), 'content-type': 'application/json', ...init.headers },
      ...(init.raw !== undefined ? { body: init.raw } : init.body !== undefined ? { body: JSON.stringify(init.body) } : {}),
    });
    return { status: res.status, json: (await res.json()) as Record<string, any> };
  };

  before(async () => {
    flaky = await receiver((n) => (n <= 2 ? 500 : 200));
    slack = await receiver(() => 200);
    cp = await startControlPlane({
      authenticator: fakeAuth,
      audit,
      admins: ['group:admins'],
      webhookBackoffMs: 100,
      webhooks: [
        { name: 'generic', url: flaky.url, secret: 'generic-secret', events: ['task_created', 'task_closed'] },
        { name: 'slack', url: slack.url, secret: 'slack-secret', format: 'slack', events: ['task_created'] },
      ],
      github: { secret: 'gh-secret', users: { octocat: 'alice@example.com', hubot: 'bob@example.com' } },
      jira: { secret: 'jira-secret', reviewer_field: 'customfield_10042', type_map: { 'DB Change': 'schema-migration' } },
    });
  });
  after(async () => {
    await cp.close();
    flaky.server.close();
    slack.server.close();
  });

  test('deliveries are signed, retried on 500 with backoff, and delivered once the receiver recovers', async () => {
    const t = await api('/api/v1/tasks', { method: 'POST', token: 'user:carol:admins', body: { id: 'WH-1', type: 'schema-migration', assignee: 'alice', reviewers: ['bob'] } });
    assert.equal(t.status, 201);
    await waitFor(() => flaky.got.length >= 3, 10_000, 20);
    const [a, b, c] = flaky.got as [Received, Received, Received];
    assert.equal(a.headers['x-taskgate-delivery'], c.headers['x-taskgate-delivery'], 'the same delivery is retried');
    assert.deepEqual([a, b, c].map((r) => r.headers['x-taskgate-attempt']), ['1', '2', '3']);
    assert.equal(c.body, a.body);
    for (const r of [a, b, c]) verifyPayload('generic-secret', r.body, r.headers['x-taskgate-signature'] as string);
    assert.throws(() => verifyPayload('wrong-secret', c.body, c.headers['x-taskgate-signature'] as string), /does not match/);
    assert.throws(() => verifyPayload('generic-secret', c.body.replace('WH-1', 'WH-2'), c.headers['x-taskgate-signature'] as string), /does not match/);
    const body = JSON.parse(c.body);
    assert.equal(body.event, 'task_created');
    assert.equal(body.task.id, 'WH-1');
    assert.equal(c.headers['x-taskgate-event'], 'task_created');
    await waitFor(async () => (await listDeliveries(cp.db)).some((d) => d.target === 'generic' && d.state === 'delivered' && d.attempts === 3), 5000, 20);
    await waitFor(() => slack.got.length >= 1, 5000, 20);
    const s = JSON.parse(slack.got[0]!.body);
    assert.match(s.text, /Task WH-1 \(schema-migration\) opened for alice/);
    assert.ok(Array.isArray(s.blocks));
    verifyPayload('slack-secret', slack.got[0]!.body, slack.got[0]!.headers['x-taskgate-signature'] as string);
  });

  const gh = (event: string, payload: unknown, secret = 'gh-secret') => {
    const raw = JSON.stringify(payload);
    return api('/hooks/github', { method: 'POST', raw, headers: { 'x-github-event': event, 'x-hub-signature-256': hubSignature(secret, raw) } });
  };
  const issue = (action: string, labels: string[], state = 'open') => ({
    action,
    repository: { full_name: 'acme/ops' },
    issue: { number: 42, state, title: 'Add index on orders', html_url: 'https://github.com/acme/ops/issues/42', assignee: { login: 'octocat' }, assignees: [{ login: 'octocat' }], labels: labels.map((name) => ({ name })) },
  });

  test('GitHub: a labelled issue opens a task, a relabel updates it, closing the issue closes it', async () => {
    const ignored = await gh('issues', issue('opened', ['bug']));
    assert.equal(ignored.status, 202);
    assert.match(ignored.json.ignored, /no taskgate:type/);
    const created = await gh('issues', issue('labeled', ['taskgate:type/schema-migration', 'taskgate:reviewer/hubot']));
    assert.equal(created.status, 201);
    assert.deepEqual(
      { id: created.json.task.id, type: created.json.task.type, assignee: created.json.task.assignee, reviewers: created.json.task.reviewers, source: created.json.task.source },
      { id: 'acme/ops#42', type: 'schema-migration', assignee: 'alice@example.com', reviewers: ['bob@example.com'], source: 'github' },
    );
    assert.equal(created.json.task.ticket, 'https://github.com/acme/ops/issues/42');
    const updated = await gh('issues', issue('labeled', ['taskgate:type/schema-migration', 'taskgate:reviewer/group:dba']));
    assert.equal(updated.status, 200);
    assert.deepEqual(updated.json.task.reviewers, ['group:dba']);
    const closed = await gh('issues', issue('closed', ['taskgate:type/schema-migration'], 'closed'));
    assert.equal(closed.status, 200);
    assert.equal(closed.json.task.state, 'closed');
    assert.ok(audit.ofType('task_closed').some((e) => e.task_id === 'acme/ops#42' && e.reasons?.[0]?.includes('GitHub issue acme/ops#42 closed')));
  });

  test('GitHub: a missing or wrong signature is refused with 401 and changes nothing', async () => {
    const raw = JSON.stringify(issue('opened', ['taskgate:type/x']));
    const none = await api('/hooks/github', { method: 'POST', raw, headers: { 'x-github-event': 'issues' } });
    assert.equal(none.status, 401);
    const wrong = await gh('issues', { ...issue('opened', ['taskgate:type/x']), repository: { full_name: 'acme/other' } }, 'not-the-secret');
    assert.equal(wrong.status, 401);
    assert.match(wrong.json.error.message, /does not match/);
    assert.equal((await api('/api/v1/tasks/acme%2Fother%2342', { token: 'user:carol:admins' })).status, 404);
  });

  test('Jira: an issue with a mapped type opens a task with the reviewer field; Done closes it', async () => {
    const payload = (status: string, event = 'jira:issue_updated') => ({
      webhookEvent: event,
      issue: {
        key: 'DB-7',
        self: 'https://acme.atlassian.net/rest/api/2/issue/10007',
        fields: {
          summary: 'Backfill column',
          issuetype: { name: 'DB Change' },
          status: { name: status },
          assignee: { emailAddress: 'alice@example.com', accountId: 'a1' },
          customfield_10042: [{ emailAddress: 'bob@example.com' }, { emailAddress: 'carol@example.com' }],
        },
      },
    });
    const send = (p: unknown, secret = 'jira-secret') => {
      const raw = JSON.stringify(p);
      return api('/hooks/jira', { method: 'POST', raw, headers: { 'x-hub-signature': hubSignature(secret, raw) } });
    };
    const created = await send(payload('To Do', 'jira:issue_created'));
    assert.equal(created.status, 201);
    assert.equal(created.json.task.type, 'schema-migration');
    assert.deepEqual(created.json.task.reviewers, ['bob@example.com', 'carol@example.com']);
    assert.equal(created.json.task.ticket, 'https://acme.atlassian.net/browse/DB-7');
    assert.equal((await send(payload('Done'), 'bad')).status, 401);
    const done = await send(payload('Done'));
    assert.equal(done.json.task.state, 'closed');
  });
});
