import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { buildBundle } from '../../../compiler/build.ts';
import { PolicyEngine } from '../../../core/engine/engine.ts';
import type { DecisionResult, RequestInput } from '../../../core/policy-contract.ts';
import { classifySql } from '../../../sidecar/postgres/classify.ts';
import { execRequest } from '../../../sidecar/ssh/request.ts';

// The reference policies fed with what the real SSH shell parser and SQL classifier produce
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

function decide(type: string, request: RequestInput, protocol: 'ssh' | 'postgres' = 'ssh') {
  return engine.evaluate({
    version: 1,
    identity: { subject: 'alice@example.com', groups: [], issuer: 'https://idp', type: 'user' },
    task: { id: 'OPS-5', type, assignee: 'alice@example.com', reviewers: ['bob@example.com'], state: 'open', expires_at: '2026-12-01T00:00:00Z' },
    resource: { protocol, name: 'web-1', labels: {} },
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

const sqlCases: [string, string, DecisionResult, string][] = [
  ['read-only', 'SELECT * FROM orders WHERE id = 1', 'allow', ''],
  ['read-only', 'DROP TABLE orders', 'deny', 'DROP TABLE (ddl) is not allowed'],
  ['read-only', 'WITH d AS (DELETE FROM orders RETURNING *) SELECT * FROM d', 'deny', 'writes public.orders'],
  ['read-only', 'EXPLAIN ANALYZE DELETE FROM orders', 'deny', 'EXPLAIN writes public.orders'],
  ['read-only', "COPY orders TO PROGRAM 'curl x'", 'deny', 'copy_program is a dangerous operation'],
  ['read-only', 'COPY orders TO STDOUT', 'allow', ''],
  ['read-only', 'SET ROLE postgres', 'deny', 'SET ROLE is a dangerous operation'],
  ['read-only', "SELECT pg_read_file('/etc/passwd')", 'deny', 'calls pg_read_file()'],
  ['read-only', "SELECT set_config('role', 'postgres', false)", 'deny', 'calls set_config()'],
  ['read-only', 'DO $$ BEGIN END $$', 'deny', 'DO is a dangerous operation'],
  ['read-only', 'SELECT 1; DELETE FROM orders WHERE id = 1', 'deny', 'DELETE (write) is not allowed'],
  ['read-only', 'SELEC * FRM orders', 'deny', 'could not be parsed'],
  ['data-fix', 'UPDATE orders SET x = 1', 'deny', 'without a WHERE clause'],
  ['data-fix', 'UPDATE orders SET x = 1 WHERE id = 2', 'review', 'UPDATE (write) needs review'],
  ['schema-migration', 'CREATE TABLE app.t (id int)', 'review', 'CREATE TABLE (ddl) needs review'],
  ['schema-migration', 'ALTER TABLE billing.ledger ADD COLUMN x int', 'deny', 'may not write'],
  ['incident-debug', 'SELECT pg_terminate_backend(123)', 'review', 'calls pg_terminate_backend()'],
];

describe('reference policies on real SQL classifier output', () => {
  for (const [type, sql, result, reason] of sqlCases) {
    test(`${type}: ${sql} -> ${result}`, async () => {
      const d = decide(type, (await classifySql(sql)).request, 'postgres');
      assert.equal(d.result, result, d.reasons.join(' | '));
      if (reason) assert.ok(d.reasons.some((r) => r.includes(reason)), d.reasons.join(' | '));
    });
  }
});
