/** Tracker payload mapping, hub signatures, outgoing signatures and the strict control-plane config. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseConfig } from '../../../control-plane/config.ts';
import { hubSignature, mapGithubIssue, mapJiraIssue, verifyHubSignature } from '../../../control-plane/webhooks/inbound.ts';
import { signPayload, slackMessage, verifyPayload } from '../../../control-plane/webhooks/outbound.ts';

const gh = (labels: string[], assignees: string[] = ['octocat'], action = 'opened') => ({
  action,
  repository: { full_name: 'acme/ops' },
  issue: { number: 7, state: 'open', title: 't', html_url: 'https://github.com/acme/ops/issues/7', assignees: assignees.map((login) => ({ login })), labels: labels.map((name) => ({ name })) },
});

test('GitHub mapping: type and reviewer labels, user map, template, ignores', () => {
  const m = { secret: 's', users: { octocat: 'alice@example.com' }, user_template: '{login}@corp.example', task_id: 'GH-{number}' };
  const a = mapGithubIssue('issues', gh(['taskgate:type/data-fix', 'taskgate:reviewer/hubot', 'taskgate:reviewer/group:dba']), m);
  assert.deepEqual(a, {
    action: 'upsert',
    task: { id: 'GH-7', type: 'data-fix', assignee: 'alice@example.com', reviewers: ['hubot@corp.example', 'group:dba'], ticket: 'https://github.com/acme/ops/issues/7', title: 't' },
  });
  assert.equal(mapGithubIssue('issues', gh(['taskgate:type/a', 'taskgate:type/b']), m).action, 'ignore');
  assert.equal(mapGithubIssue('issues', gh(['taskgate:type/a'], []), m).action, 'ignore');
  assert.equal(mapGithubIssue('push', {}, m).action, 'ignore');
  assert.deepEqual(mapGithubIssue('issues', gh(['taskgate:type/a'], ['octocat'], 'closed'), m), { action: 'close', task_id: 'GH-7', reason: 'GitHub issue acme/ops#7 closed' });
  assert.throws(() => mapGithubIssue('issues', { action: 'opened' }, m), /repository.full_name/);
});

test('Jira mapping: custom fields, type map, user attribute, closed statuses', () => {
  const m = { secret: 's', type_field: 'customfield_1.value', type_map: { Migration: 'schema-migration' }, reviewer_field: 'customfield_2', user_attribute: 'accountId' as const, users: { a1: 'alice@example.com', b2: 'bob@example.com' } };
  const p = (type: string, status = 'In Progress') => ({
    webhookEvent: 'jira:issue_updated',
    issue: { key: 'OPS-9', fields: { summary: 's', status: { name: status }, customfield_1: { value: type }, assignee: { accountId: 'a1' }, customfield_2: { accountId: 'b2' } } },
  });
  assert.deepEqual(mapJiraIssue(p('Migration'), m), { action: 'upsert', task: { id: 'OPS-9', type: 'schema-migration', assignee: 'alice@example.com', reviewers: ['bob@example.com'], title: 's' } });
  assert.equal(mapJiraIssue(p('Other'), m).action, 'ignore');
  assert.equal(mapJiraIssue(p('Migration', 'Done'), m).action, 'close');
});

test('hub signatures: accepted when exact, refused when missing, malformed or wrong', () => {
  const body = Buffer.from('{"a":1}');
  verifyHubSignature('k', body, hubSignature('k', body), 'X');
  assert.throws(() => verifyHubSignature('k', body, undefined, 'X'), /missing X/);
  assert.throws(() => verifyHubSignature('k', body, 'sha1=abc', 'X'), /sha256=/);
  assert.throws(() => verifyHubSignature('k', Buffer.from('{"a":2}'), hubSignature('k', body), 'X'), /does not match/);
});

test('outgoing signatures carry a timestamp checked against a replay window', () => {
  const now = Date.now();
  const sig = signPayload('k', 'body', Math.floor(now / 1000));
  verifyPayload('k', 'body', sig, 300, now);
  assert.throws(() => verifyPayload('k', 'body', sig, 300, now + 600_000), /tolerance/);
  assert.throws(() => verifyPayload('k', 'other', sig, 300, now), /does not match/);
  const slack = slackMessage({ event: 'task_closed', task: { id: 'T-1', state: 'closed' } });
  assert.equal(slack.text, ':lock: Task T-1 closed');
});

test('config: strict keys, env secrets, storage choice, and a config no sidecar could use is refused', () => {
  const base = { oidc: { issuer: 'https://idp', audience: 'taskgate' }, service_tokens: [{ name: 's', token: 'env:TOK' }] };
  const c = parseConfig({ ...base, listen: '0.0.0.0:9000', storage: { postgres: { url: 'postgres://x/y' } } }, { TOK: 'secret' });
  assert.equal(c.port, 9000);
  assert.deepEqual(c.storage, { kind: 'postgres', url: 'postgres://x/y' });
  assert.equal(c.options.serviceTokens?.[0]?.token, 'secret');
  assert.throws(() => parseConfig({ ...base, colour: 'blue' }, { TOK: 'x' }), /config.colour: unknown key/);
  assert.throws(() => parseConfig(base, {}), /TOK is not set/);
  assert.throws(() => parseConfig({ oidc: base.oidc }, {}), /no sidecar can connect/);
  assert.throws(() => parseConfig({ ...base, webhooks: [{ name: 'w', url: 'https://h', secret: 's', events: [] }] }, { TOK: 'x' }), /never fire/);
  assert.throws(() => parseConfig({ ...base, webhooks: [{ name: 'w', url: 'https://h', secret: 's', events: ['review_maybe'] }] }, { TOK: 'x' }), /unknown event/);
});
