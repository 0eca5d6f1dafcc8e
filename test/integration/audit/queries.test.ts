/**
 * Runs every SQL block of docs/audit-queries.md against generated events on
 * chDB (ClickHouse 26.x) and on clickhouse-server 18.16, and checks each
 * answer against what the generated scenario must produce.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { AuditEventInput } from '../../../core/audit/event.ts';
import { migrate } from '../../../core/audit/migrations.ts';
import { loadSpool } from '../../../core/audit/query.ts';
import { Shipper } from '../../../core/audit/shipper.ts';
import { SpoolAuditSink } from '../../../core/audit/spool-sink.ts';
import { ChdbStore, ClickHouseStore, type AuditStore } from '../../../core/audit/store.ts';
import { startClickHouse, type ClickHouseServer } from '../../../devenv/clickhouse.ts';

interface DocQuery {
  n: number;
  title: string;
  sql: string;
}

export async function docQueries(): Promise<DocQuery[]> {
  const md = await readFile(new URL('../../../docs/audit-queries.md', import.meta.url), 'utf8');
  const out: DocQuery[] = [];
  const re = /^## (\d+)\. (.+)$\n+```sql\n([\s\S]*?)```/gm;
  for (const m of md.matchAll(re)) out.push({ n: Number(m[1]), title: m[2]!, sql: m[3]!.trim() });
  return out;
}

const pg = { protocol: 'postgres', resource: 'orders-db' };
/** A day in the life of two tasks, an intruder and an agent. */
const SCENARIO: AuditEventInput[] = [
  { type: 'task_created', task_id: 'OPS-123', task_type: 'schema-migration', subject: 'control-plane' },
  { type: 'session_start', session_id: 's1', task_id: 'OPS-123', task_type: 'schema-migration', subject: 'alice', ...pg, client_addr: '10.0.0.5' },
  { type: 'decision', session_id: 's1', task_id: 'OPS-123', task_type: 'schema-migration', subject: 'alice', ...pg, command: 'SELECT email FROM users WHERE id = $1', decision: 'allow', policy_revision: 'r1', rows: 5 },
  { type: 'masking_applied', session_id: 's1', task_id: 'OPS-123', subject: 'alice', ...pg, masked: { 'public.users.email': 5, 'public.users.card': 2 } },
  { type: 'decision', session_id: 's1', task_id: 'OPS-123', subject: 'alice', ...pg, command: 'ALTER TABLE orders ADD COLUMN note text', decision: 'review', policy_revision: 'r1' },
  { type: 'review_requested', session_id: 's1', task_id: 'OPS-123', subject: 'alice', review_id: 'rev-1', approvers: ['bob'] },
  { type: 'review_approved', session_id: 's1', task_id: 'OPS-123', subject: 'alice', review_id: 'rev-1', approvers: ['bob'] },
  { type: 'decision', session_id: 's1', task_id: 'OPS-123', subject: 'alice', ...pg, command: 'ALTER TABLE orders ADD COLUMN note text', decision: 'allow', review_id: 'rev-1', approvers: ['bob'], policy_revision: 'r1', details: { grant: false } },
  { type: 'decision', session_id: 's1', task_id: 'OPS-123', subject: 'alice', ...pg, command: 'DROP TABLE orders', decision: 'deny', reasons: ['DROP is not part of schema-migration'], policy_revision: 'r1' },
  { type: 'decision', session_id: 's1', task_id: 'OPS-123', subject: 'alice', ...pg, command: 'DROP TABLE users', decision: 'deny', reasons: ['DROP is not part of schema-migration'], policy_revision: 'r1' },
  { type: 'session_start', session_id: 's2', task_id: 'OPS-124', task_type: 'restart-service', subject: 'carol', protocol: 'ssh', resource: 'web-1' },
  { type: 'decision', session_id: 's2', task_id: 'OPS-124', subject: 'carol', protocol: 'ssh', resource: 'web-1', command: 'sudo systemctl restart nginx', decision: 'allow', policy_revision: 'r1' },
  { type: 'session_end', session_id: 's2', task_id: 'OPS-124', subject: 'carol', protocol: 'ssh', resource: 'web-1', duration_us: 4_000_000 },
  { type: 'task_closed', task_id: 'OPS-124', subject: 'control-plane' },
  { type: 'decision', session_id: 's3', task_id: 'OPS-999', subject: 'mallory', ...pg, command: 'SELECT * FROM users', decision: 'deny', reasons: ['unknown task'], policy_revision: 'r1' },
  { type: 'decision', session_id: 's3', task_id: 'OPS-999', subject: 'mallory', ...pg, command: 'SELECT * FROM cards', decision: 'deny', reasons: ['unknown task'], policy_revision: 'r1' },
  { type: 'decision', session_id: 's3', task_id: 'OPS-999', subject: 'mallory', ...pg, command: 'COPY users TO STDOUT', decision: 'deny', reasons: ['audit spool is full: commands are denied until it drains (fail closed)'], policy_revision: 'r1' },
  { type: 'decision', session_id: 's4', task_id: 'OPS-123', subject: 'agent-7', identity_type: 'service', acting_for: 'alice', protocol: 'http', resource: 'k8s', command: 'GET /api/v1/pods', decision: 'allow', policy_revision: 'r2' },
  { type: 'decision', session_id: 's4', task_id: 'OPS-123', subject: 'agent-7', identity_type: 'service', acting_for: 'alice', protocol: 'http', resource: 'k8s', command: 'DELETE /api/v1/namespaces/prod/pods/x', decision: 'deny', reasons: ['delete needs review'], policy_revision: 'r2' },
  { type: 'task_closed', task_id: 'OPS-123', subject: 'control-plane' },
  { type: 'decision', session_id: 's1', task_id: 'OPS-123', subject: 'alice', ...pg, command: 'SELECT count(*) FROM orders', decision: 'deny', reasons: ['task OPS-123 is closed'], policy_revision: 'r2' },
  { type: 'session_end', session_id: 's1', task_id: 'OPS-123', subject: 'alice', ...pg },
];

type Row = Record<string, unknown>;
/** What each documented query must answer for SCENARIO. */
const EXPECT: Record<number, (rows: Row[]) => void> = {
  1: (r) => {
    assert.equal(r.length, SCENARIO.filter((e) => e.task_id === 'OPS-123').length);
    assert.equal(r[0]!.type, 'task_created');
  },
  2: (r) => assert.deepEqual(r.map((x) => x.command), ['sudo systemctl restart nginx']),
  3: (r) => assert.deepEqual(r.map((x) => [x.subject, Number(x.denied)]), [['alice', 3], ['mallory', 3], ['agent-7', 1]]),
  4: (r) => assert.deepEqual(r.slice(0, 2).map((x) => [x.subject, Number(x.attempts)]), [['alice', 3], ['mallory', 3]]),
  5: (r) => assert.deepEqual(r.map((x) => [x.subject, x.field, Number(x.values_masked)]), [['alice', 'public.users.email', 5], ['alice', 'public.users.card', 2]]),
  6: (r) => assert.deepEqual(r.map((x) => [x.reviewer, Number(x.approvals)]), [['bob', 1]]),
  7: (r) => assert.deepEqual(r.map((x) => [x.session_id, x.subject]), [['s1', 'alice']]),
  8: (r) => assert.deepEqual(r.map((x) => x.command), ['SELECT count(*) FROM orders']),
  9: (r) => {
    assert.equal(r.length, 1);
    assert.equal(r[0]!.outcome, 'review_approved');
    assert.ok(Number(r[0]!.seconds) >= 0);
  },
  10: (r) => assert.deepEqual(r.map((x) => [x.subject, x.acting_for, Number(x.decisions), Number(x.denied)]), [['agent-7', 'alice', 2, 1]]),
  11: (r) => {
    const t = r.find((x) => x.task_id === 'OPS-123')!;
    assert.equal(Number(t.events), SCENARIO.filter((e) => e.task_id === 'OPS-123').length);
    assert.equal(Number(t.denied), 4);
    assert.equal(Number(t.approvals), 1);
    assert.equal(t.task_type, 'schema-migration');
    assert.equal(r.length, 3);
  },
  12: (r) => assert.deepEqual(r.map((x) => [x.command, x.approved_by]), [['ALTER TABLE orders ADD COLUMN note text', 'bob']]),
  13: (r) => assert.deepEqual(r.map((x) => x.subject), ['mallory']),
  14: (r) => assert.deepEqual(r.map((x) => [x.policy_revision, Number(x.decisions)]), [['r1', 9], ['r2', 3]]),
};

let ch: ClickHouseServer;
let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'tg-audit-q-'));
  const sink = await SpoolAuditSink.open({ dir, fsync: 'none' });
  for (const ev of SCENARIO) {
    sink.emit(ev);
    await new Promise((r) => setTimeout(r, 2)); // distinct, ordered timestamps
  }
  await sink.flush();
  await sink.close();
  ch = await startClickHouse();
});
after(async () => {
  await ch?.stop();
  await rm(dir, { recursive: true, force: true });
});

async function runAll(store: AuditStore): Promise<void> {
  const qs = await docQueries();
  assert.ok(qs.length >= 10, `at least ten documented queries (found ${qs.length})`);
  for (const q of qs) {
    const check = EXPECT[q.n];
    assert.ok(check, `query ${q.n} (${q.title}) has an expectation in this test`);
    let rows: Row[];
    try {
      rows = await store.rows<Row>(q.sql);
    } catch (e) {
      throw new Error(`query ${q.n} (${q.title}) failed on ${store.kind}: ${(e as Error).message}`);
    }
    try {
      check(rows);
    } catch (e) {
      throw new Error(`query ${q.n} (${q.title}) on ${store.kind}: ${(e as Error).message}\n${JSON.stringify(rows, null, 1).slice(0, 1500)}`);
    }
  }
}

describe('docs/audit-queries.md', () => {
  it('every query answers correctly on chDB (ClickHouse 26.x) over the spool', async () => {
    const store = await ChdbStore.open();
    try {
      await migrate(store);
      await loadSpool(store, dir, 'events');
      await runAll(store);
    } finally {
      await store.close();
    }
  });

  it('every query answers correctly on clickhouse-server 18.16 after shipping', async () => {
    const store = new ClickHouseStore({ url: ch.url });
    try {
      await migrate(store);
      await new Shipper({ dir, store, deleteShipped: false }).drain(30_000);
      await runAll(store);
    } finally {
      await store.close();
    }
  });
});
