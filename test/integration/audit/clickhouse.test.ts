import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { migrate, schemaVersion } from '../../../core/audit/migrations.ts';
import { readRecording, SpoolRecordingSink } from '../../../core/audit/recordings.ts';
import { Shipper } from '../../../core/audit/shipper.ts';
import { SpoolAuditSink } from '../../../core/audit/spool-sink.ts';
import { listSegments } from '../../../core/audit/spool/writer.ts';
import { ChdbStore, ClickHouseStore, type AuditStore } from '../../../core/audit/store.ts';
import { verifyStore } from '../../../core/audit/verify.ts';
import { startClickHouse, type ClickHouseServer } from '../../../devenv/clickhouse.ts';

const here = dirname(fileURLToPath(import.meta.url));
let ch: ClickHouseServer;
const dirs: string[] = [];
async function tmp(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'tg-audit-int-'));
  dirs.push(d);
  return d;
}

before(async () => {
  ch = await startClickHouse();
});
after(async () => {
  await ch?.stop();
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

async function freshDb(name: string): Promise<ClickHouseStore> {
  await ch.query(`CREATE DATABASE IF NOT EXISTS ${name}`);
  return new ClickHouseStore({ url: ch.url, database: name, requestTimeoutMs: 5_000 });
}

async function num(store: AuditStore, sql: string): Promise<number> {
  const r = await store.rows<{ n: string | number }>(sql);
  return Number(r[0]!.n);
}

describe('audit against clickhouse-server 18.16', () => {
  it('ClickHouse killed mid-stream of 100,000 events and restarted: every event arrives exactly once', { timeout: 240_000 }, async () => {
    const store = await freshDb('killtest');
    await migrate(store);
    const dir = await tmp();
    // Small segments: the outage also hits inserts pipelined across segment boundaries.
    const sink = await SpoolAuditSink.open({ dir, fsync: 'interval', segmentBytes: 3 << 20 });
    const shipper = new Shipper({ dir, store, batchBytes: 1 << 20, lingerMs: 20, backoffInitialMs: 50, backoffMaxMs: 500, deleteShipped: false });
    shipper.start();
    const N = 100_000;
    let killed = false;
    try {
      for (let i = 0; i < N; i++) {
        sink.emit({ type: 'decision', task_id: `OPS-${i % 97}`, subject: `u${i % 13}@example.com`, decision: i % 7 ? 'allow' : 'deny', command: `SELECT ${i}`, protocol: 'postgres' });
        if (i % 2000 === 1999) await new Promise((r) => setTimeout(r, 2));
        if (i === N / 2) {
          // Half emitted: let the shipper get going, then kill ClickHouse under it.
          const deadline = Date.now() + 60_000;
          while (shipper.stats.shipped < 10_000 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
          await ch.kill();
          killed = true;
        }
        if (i === Math.floor(N * 0.8)) await ch.restart(); // the rest of the stream spans the outage
      }
      await sink.flush();
      assert.ok(killed, 'ClickHouse was killed during the stream');
      await shipper.drain(120_000, N);
    } finally {
      await shipper.stop();
      await sink.close();
    }
    assert.ok(shipper.stats.failures > 0, 'the outage was seen by the shipper');
    // Exactly once: raw count (no FINAL) equals distinct ids equals N.
    assert.equal(await num(store, 'SELECT count() AS n FROM events'), N);
    assert.equal(await num(store, 'SELECT uniqExact(id) AS n FROM events'), N);
    // Same id set as the spool.
    const spoolIds = new Set<string>();
    for (const s of await listSegments(dir)) {
      for (const l of (await readFile(join(dir, s), 'utf8')).split('\n')) if (l) spoolIds.add((JSON.parse(l) as { id: string }).id);
    }
    const stored = await store.rows<{ id: string }>('SELECT toString(id) AS id FROM events');
    assert.equal(spoolIds.size, N);
    assert.deepEqual(new Set(stored.map((r) => r.id)), spoolIds);
    const v = await verifyStore(store);
    assert.equal(v.ok, true, JSON.stringify(v.problems.slice(0, 3)));
    // The summaries count each event once too.
    assert.equal(await num(store, 'SELECT sum(n) AS n FROM (SELECT uniqExactMerge(events) AS n FROM task_summary GROUP BY task_id)'), N);
    await store.close();
  });

  it('pipelined inserts across many segments: every event once, shipped segments deleted, cursor at the end', { timeout: 120_000 }, async () => {
    const store = await freshDb('segments');
    await migrate(store);
    const dir = await tmp();
    const sink = await SpoolAuditSink.open({ dir, fsync: 'interval', segmentBytes: 256 << 10 });
    const shipper = new Shipper({ dir, store, batchBytes: 128 << 10, lingerMs: 5 });
    shipper.start();
    const N = 20_000;
    try {
      for (let i = 0; i < N; i++) {
        sink.emit({ type: 'command', task_id: `OPS-${i % 11}`, command: `SELECT ${i}`, protocol: 'postgres' });
        if (i % 500 === 499) await new Promise((r) => setTimeout(r, 1));
      }
      await sink.flush();
      assert.ok((await listSegments(dir)).length > 1, 'the stream spans several segments');
      await shipper.drain(60_000, N);
    } finally {
      await shipper.stop();
      await sink.close();
    }
    assert.equal(shipper.stats.shipped, N);
    assert.equal(await num(store, 'SELECT count() AS n FROM events'), N);
    assert.equal(await num(store, 'SELECT uniqExact(seq) AS n FROM events'), N);
    assert.equal(await num(store, 'SELECT max(seq) AS n FROM events'), N);
    // Everything but the segment still open for writing is gone; the cursor sits at its end.
    const left = await listSegments(dir);
    assert.equal(left.length, 1, `segments left: ${left.join(', ')}`);
    const cursor = JSON.parse(await readFile(join(dir, 'cursor.json'), 'utf8')) as { segment: string; seq: number };
    assert.equal(cursor.segment, left[0]);
    assert.equal(cursor.seq, N);
    await store.close();
  });

  it('SIGKILL of the emitting process mid-batch: no acknowledged event is lost; the chain resumes', { timeout: 120_000 }, async () => {
    const store = await freshDb('sigkill');
    await migrate(store);
    const dir = await tmp();
    const child = spawn(process.execPath, ['--import', 'tsx', join(here, 'emitter-child.ts'), dir], { stdio: ['ignore', 'pipe', 'inherit'] });
    let acked = 0;
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('child did not acknowledge events in time')), 60_000);
      child.stdout!.on('data', (d: Buffer) => {
        for (const m of d.toString().matchAll(/ack (\d+)/g)) acked = Math.max(acked, Number(m[1]));
        if (acked >= 20_000) {
          clearTimeout(t);
          child.kill('SIGKILL');
          resolve();
        }
      });
    });
    await new Promise<void>((r) => (child.exitCode !== null || child.signalCode !== null ? r() : child.once('exit', () => r())));
    // Restart the "sidecar": the chain continues after the last intact record.
    const sink = await SpoolAuditSink.open({ dir });
    sink.emit({ type: 'session_start', task_id: 'OPS-KILL', subject: 'restarted' });
    await sink.flush();
    await sink.close();
    const sh = new Shipper({ dir, store });
    await sh.drain(60_000);
    const present = await num(store, `SELECT countIf(seq <= ${acked}) AS n FROM events FINAL WHERE task_id = 'OPS-KILL'`);
    assert.equal(present, acked, `all ${acked} acknowledged events delivered`);
    const v = await verifyStore(store);
    assert.equal(v.ok, true, JSON.stringify(v.problems.slice(0, 3)));
    await store.close();
  });

  it('migration from an older schema version keeps data (and backfills the summaries)', async () => {
    const store = await freshDb('migr');
    const r1 = await migrate(store, 1);
    assert.equal(r1.to, 1);
    const dir = await tmp();
    const sink = await SpoolAuditSink.open({ dir });
    for (let i = 0; i < 30; i++) sink.emit({ type: 'decision', task_id: 'OPS-OLD', subject: 'old', decision: i < 10 ? 'deny' : 'allow' });
    await sink.flush();
    await sink.close();
    await new Shipper({ dir, store }).drain(30_000);
    const r = await migrate(store);
    assert.deepEqual(r.applied, ['2 recordings', '3 task_summary', '4 denied_attempts']);
    assert.equal(await schemaVersion(store), 4);
    assert.equal(await num(store, "SELECT count() AS n FROM events FINAL WHERE task_id = 'OPS-OLD'"), 30);
    assert.equal(await num(store, "SELECT uniqExactIfMerge(denied) AS n FROM task_summary WHERE task_id = 'OPS-OLD'"), 10);
    assert.equal(await num(store, "SELECT uniqExactMerge(attempts) AS n FROM denied_attempts WHERE subject = 'old'"), 10);
    assert.equal((await verifyStore(store)).ok, true);
    await store.close();
  });

  it('the shipper refuses to write into a schema that is too old (no silent field loss)', async () => {
    const store = await freshDb('tooold');
    const dir = await tmp();
    const rec = await SpoolRecordingSink.open({ dir });
    rec.append('s', { kind: 'asciicast', seq: 0, data: '{"version":2}' });
    await rec.flush();
    await rec.close();
    await migrate(store, 1);
    const sh = new Shipper({ dir, store, table: 'recordings' });
    await assert.rejects(sh.shipOnce(), /run `taskgate audit migrate`/);
    await migrate(store);
    await sh.drain(10_000);
    assert.equal((await readRecording(store, 's')).length, 1);
    await store.close();
  });

  it('chDB (ClickHouse 26.x) and 18.16 accept the same schema', async () => {
    const chdb = await ChdbStore.open();
    try {
      assert.match(await chdb.version(), /^2\d\./);
      assert.equal((await migrate(chdb)).to, 4);
      const srv = await freshDb('same');
      assert.match(await srv.version(), /^18\.16/);
      assert.equal((await migrate(srv)).to, 4);
      const cols = 'SELECT name, type FROM system.columns WHERE database = currentDatabase() AND table = \'events\' ORDER BY name';
      assert.deepEqual(await chdb.rows(cols.replace('currentDatabase()', "'default'")), await srv.rows(cols));
      await srv.close();
    } finally {
      await chdb.close();
    }
  });
});
