/**
 * ClickHouse fills a materialized view in a separate step of the INSERT, so a
 * server killed between the two keeps events without their summary rows. The
 * shipper's re-check repairs them with repairSummaries(); this proves the
 * repair is exact and idempotent on current ClickHouse (chDB).
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { migrate, repairSummaries } from '../../../core/audit/migrations.ts';
import { loadSpool } from '../../../core/audit/query.ts';
import { SpoolAuditSink } from '../../../core/audit/spool-sink.ts';
import { ChdbStore } from '../../../core/audit/store.ts';

describe('summary repair after an interrupted insert', () => {
  it('rebuilds per-task summaries and denied counts for stored events, exactly once however often it runs', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tg-repair-'));
    const store = await ChdbStore.open();
    try {
      await migrate(store);
      const sink = await SpoolAuditSink.open({ dir, fsync: 'none' });
      const N = 500;
      for (let i = 0; i < N; i++) {
        sink.emit({ type: 'decision', task_id: `OPS-${i % 5}`, subject: 'alice@example.com', decision: i % 4 ? 'allow' : 'deny', protocol: 'postgres', resource: 'db' });
      }
      await sink.close();
      await loadSpool(store, dir, 'events');
      const source = (await readFile(join(dir, 'source'), 'utf8')).trim();
      const events = async () => Number((await store.rows<{ n: string }>('SELECT sum(n) AS n FROM (SELECT uniqExactMerge(events) AS n FROM task_summary GROUP BY task_id)'))[0]!.n);
      const denied = async () => Number((await store.rows<{ n: string }>('SELECT sum(n) AS n FROM (SELECT uniqExactMerge(attempts) AS n FROM denied_attempts GROUP BY day, subject, task_id, resource, protocol)'))[0]!.n);
      assert.equal(await events(), N);
      assert.equal(await denied(), N / 4);
      // The server died between the events part and the view parts: the summaries lost these rows.
      await store.exec('TRUNCATE TABLE task_summary');
      await store.exec('TRUNCATE TABLE denied_attempts');
      assert.equal(await events(), 0);
      await repairSummaries(store, source, 1, N);
      assert.equal(await events(), N);
      assert.equal(await denied(), N / 4);
      await repairSummaries(store, source, 1, N); // repeated (a second retry): still counted once
      await repairSummaries(store, source, 100, 200);
      assert.equal(await events(), N);
      assert.equal(await denied(), N / 4);
      // Another source's range is untouched.
      await repairSummaries(store, 'some-other-sidecar', 1, N);
      assert.equal(await events(), N);
    } finally {
      await store.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
