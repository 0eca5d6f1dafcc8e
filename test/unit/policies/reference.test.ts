import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { buildBundle } from '../../../compiler/build.ts';
import { PolicyEngine } from '../../../core/engine/engine.ts';
import type { DecisionResult, RequestInput } from '../../../core/policy-contract.ts';
import { execRequest } from '../../../sidecar/ssh/request.ts';

// The reference policies fed with what the real SSH shell parser produces
// (not hand-written programs[]): the conventions of both sides must agree.
const POLICIES = join(import.meta.dirname, '..', '..', '..', 'policies');
const NOW = Date.parse('2026-06-01T00:00:00Z');
let tmp: string;
const engine = new PolicyEngine({ now: () => NOW });

before(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'taskgate-reference-'));
  const r = await buildBundle({ dir: POLICIES, out: join(tmp, 'bundle.tar.gz') });
  await engine.load(await readFile(r.out));
});
after(async () => {
  await rm(tmp, { recursive: true, force: true });
});

function decide(type: string, request: RequestInput) {
  return engine.evaluate({
    version: 1,
    identity: { subject: 'alice@example.com', groups: [], issuer: 'https://idp', type: 'user' },
    task: { id: 'OPS-5', type, assignee: 'alice@example.com', reviewers: ['bob@example.com'], state: 'open', expires_at: '2026-12-01T00:00:00Z' },
    resource: { protocol: 'ssh', name: 'web-1', labels: {} },
    request,
    review: { status: 'none', by: [] },
    session: { id: 's', started_at: '2026-06-01T00:00:00Z' },
    now: '2026-06-01T00:00:00Z',
  });
}

const cases: [string, string, DecisionResult, string][] = [
  ['read-only', 'tail -n 100 /var/log/syslog', 'allow', ''],
  ['read-only', 'grep -c ERROR /var/log/app.log | sort | uniq', 'allow', ''],
  ['read-only', 'ls; rm -rf /tmp/x', 'deny', 'rm -rf /tmp/x is not allowed'],
  ['read-only', 'echo $(rm x)', 'deny', 'rm x is not allowed'],
  ['read-only', 'bash -c "rm x"', 'deny', 'rm x is not allowed'],
  ['read-only', 'sudo rm x', 'deny', 'rm x is not allowed'],
  ['read-only', 'env rm x', 'deny', 'rm x is not allowed'],
  ['read-only', 'ls | xargs rm', 'deny', 'rm'],
  ['read-only', 'find /tmp -name x -exec rm {} \\;', 'deny', 'not allowed'],
  ['read-only', '$CMD /etc', 'deny', 'computed at run time'],
  ['read-only', 'echo hi > /etc/motd', 'deny', 'writing /etc/motd with a redirection'],
  ['read-only', "echo 'unterminated", 'deny', 'could not be parsed'],
  ['read-only', "echo 'rm -rf /'", 'allow', ''],
  ['incident-debug', 'sudo systemctl restart nginx', 'review', 'systemctl restart nginx needs review'],
  ['incident-debug', 'systemctl status nginx', 'allow', ''],
  ['deploy', 'sudo systemctl restart app', 'allow', ''],
  ['break-glass', 'rm -rf /var/cache/app', 'review', 'needs review'],
];

describe('reference policies on real shell-parser output', () => {
  for (const [type, command, result, reason] of cases) {
    test(`${type}: ${command} -> ${result}`, () => {
      const d = decide(type, execRequest(command));
      assert.equal(d.result, result, d.reasons.join(' | '));
      if (reason) assert.ok(d.reasons.some((r) => r.includes(reason)), d.reasons.join(' | '));
    });
  }
});
