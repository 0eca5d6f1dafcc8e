import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { migrate } from '../../../core/audit/migrations.ts';
import { loadSpool } from '../../../core/audit/query.ts';
import { readRecording, SpoolRecordingSink } from '../../../core/audit/recordings.ts';
import { Shipper, type DamageReport } from '../../../core/audit/shipper.ts';
import { SpoolAuditSink } from '../../../core/audit/spool-sink.ts';
import { listSegments } from '../../../core/audit/spool/writer.ts';
import { ChdbStore } from '../../../core/audit/store.ts';
import { verifySpool, verifyStore } from '../../../core/audit/verify.ts';

const dirs: string[] = [];
async function tmp(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'tg-audit-unit-'));
  dirs.push(d);
  return d;
}
after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

async function lines(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const s of await listSegments(dir)) out.push(...(await readFile(join(dir, s), 'utf8')).split('\n').filter(Boolean));
  return out;
}

describe('SpoolAuditSink', () => {
  it('stamps id, µs timestamp, source, seq and a hash chain; lines are valid JSONEachRow with a CRC', async () => {
    const dir = await tmp();
    const sink = await SpoolAuditSink.open({ dir, fsync: 'always' });
    sink.emit({ type: 'decision', task_id: 'OPS-1', subject: 'alice', decision: 'allow', masked: { 'users.email': 3 } });
    sink.emit({ type: 'command', task_id: 'OPS-1', details: { b: 1, a: 'x' } });
    await sink.flush();
    assert.equal(sink.acknowledgedSeq, 2);
    await sink.close();
    const rows = (await lines(dir)).map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.equal(rows.length, 2);
    assert.match(String(rows[0]!.id), /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    assert.equal(rows[0]!.seq, 1);
    assert.equal(rows[1]!.seq, 2);
    assert.equal(rows[0]!.prev_hash, '0'.repeat(64));
    assert.equal(rows[1]!.prev_hash, rows[0]!.hash);
    assert.ok(Number(rows[1]!.ts_us) > Number(rows[0]!.ts_us));
    assert.deepEqual(rows[0]!.masked_fields, ['users.email']);
    assert.deepEqual(rows[0]!.masked_counts, [3]);
    assert.equal(rows[1]!.details, '{"a":"x","b":1}');
    assert.equal((await verifySpool(dir)).ok, true);
  });

  it('seals and writes the events of a batch window together: on disk once the window has passed, at once on flush() or close()', async () => {
    const dir = await tmp();
    const sink = await SpoolAuditSink.open({ dir, fsync: 'none', batchWindowMs: 300 });
    const t0 = Date.now();
    sink.emit({ type: 'command', command: 'a' });
    await new Promise((r) => setTimeout(r, 30));
    assert.deepEqual(await lines(dir), [], 'nothing written before the window has passed');
    sink.emit({ type: 'command', command: 'b' });
    let got: string[] = [];
    while (got.length < 2 && Date.now() - t0 < 10_000) {
      await new Promise((r) => setTimeout(r, 20));
      got = await lines(dir);
    }
    assert.ok(Date.now() - t0 >= 290, 'written once the window has passed');
    assert.deepEqual(got.map((l) => (JSON.parse(l) as { command: string }).command), ['a', 'b']);
    await sink.close();

    const dir2 = await tmp();
    const slow = await SpoolAuditSink.open({ dir: dir2, fsync: 'none', batchWindowMs: 60_000 });
    slow.emit({ type: 'command', command: 'c' });
    const t1 = Date.now();
    await slow.flush();
    assert.ok(Date.now() - t1 < 5_000, 'flush() does not wait for the window');
    assert.equal((await lines(dir2)).length, 1);
    slow.emit({ type: 'command', command: 'd' });
    await slow.close();
    assert.ok(Date.now() - t1 < 10_000, 'close() does not wait for the window');
    assert.deepEqual((await lines(dir2)).map((l) => (JSON.parse(l) as { command: string }).command), ['c', 'd']);
    assert.equal((await verifySpool(dir2)).ok, true);
  });

  it('resumes seq and chain after a restart, in a new segment', async () => {
    const dir = await tmp();
    let sink = await SpoolAuditSink.open({ dir });
    for (let i = 0; i < 5; i++) sink.emit({ type: 'command' });
    await sink.flush();
    const source = sink.source;
    await sink.close();
    sink = await SpoolAuditSink.open({ dir });
    assert.equal(sink.source, source);
    for (let i = 0; i < 5; i++) sink.emit({ type: 'command' });
    await sink.flush();
    await sink.close();
    assert.equal((await listSegments(dir)).length, 2);
    const v = await verifySpool(dir);
    assert.equal(v.ok, true, JSON.stringify(v.problems));
    assert.equal(v.sources[0]!.last_seq, 10);
  });

  it('rotates segments by size', async () => {
    const dir = await tmp();
    const sink = await SpoolAuditSink.open({ dir, segmentBytes: 4096, maxBatch: 4 });
    for (let i = 0; i < 200; i++) sink.emit({ type: 'command', command: 'SELECT ' + i });
    await sink.flush();
    await sink.close();
    assert.ok((await listSegments(dir)).length > 5);
    assert.equal((await lines(dir)).length, 200);
  });

  it('a small spool bound gets small segments (a segment counts against the bound until fully shipped)', async () => {
    const dir = await tmp();
    // 32 MiB bound: segments of 2 MiB (1/16), not the 64 MiB default.
    const sink = await SpoolAuditSink.open({ dir, maxBytes: 32 << 20 });
    for (let i = 0; i < 6000; i++) sink.emit({ type: 'command', command: 'x'.repeat(900) + i });
    await sink.flush();
    await sink.close();
    const segs = await listSegments(dir);
    assert.ok(segs.length >= 2, `${segs.length} segment(s)`);
    for (const sgm of segs) assert.ok((await stat(join(dir, sgm))).size <= (2 << 20) + (3 << 20), `${sgm} is no larger than 2 MiB plus one write`);
  });

  it('spool full: fail closed (writable() false) until the shipper drains it; nothing dropped', async () => {
    const dir = await tmp();
    const sink = await SpoolAuditSink.open({ dir, maxBytes: 64 * 1024, segmentBytes: 8 * 1024 });
    for (let i = 0; i < 100; i++) sink.emit({ type: 'command', command: 'x'.repeat(900) });
    await sink.flush();
    assert.equal(sink.writable(), false, 'over the bound: the gate must deny');
    // Deny decisions are still recorded while closed (reserve above the bound).
    sink.emit({ type: 'decision', decision: 'deny', reasons: ['audit spool is full'] });
    await sink.flush();
    assert.equal(sink.dropped, 0);
    const store = await ChdbStore.open();
    try {
      await migrate(store);
      const sh = new Shipper({ dir, store });
      await sh.drain(30_000);
      await new Promise((r) => setTimeout(r, 700)); // the sink rescans the spool size every 500 ms
      assert.equal(sink.writable(), true, 'drained: writable again');
      const n = await store.rows<{ n: string }>('SELECT count() AS n FROM events FINAL');
      assert.equal(Number(n[0]!.n), 101);
    } finally {
      await sink.close();
      await store.close();
    }
  });

  it("spool full with onFull='drop': drops are counted and a gap marker is recorded", async () => {
    const dir = await tmp();
    const sink = await SpoolAuditSink.open({ dir, maxBytes: 16 * 1024, onFull: 'drop', segmentBytes: 4096 });
    for (let i = 0; i < 60; i++) {
      sink.emit({ type: 'command', command: 'y'.repeat(900) });
      await sink.flush();
    }
    assert.ok(sink.dropped > 0);
    assert.equal(sink.writable(), true);
    // A shipper deletes shipped segments (never the one being written).
    for (const s of (await listSegments(dir)).slice(0, -1)) await rm(join(dir, s));
    await new Promise((r) => setTimeout(r, 700));
    sink.emit({ type: 'command' });
    await sink.flush();
    await sink.close();
    const rows = (await lines(dir)).map((l) => JSON.parse(l) as { type: string; details: string });
    const marker = rows.find((r) => r.type === 'error');
    assert.ok(marker, 'gap marker written');
    assert.equal(JSON.parse(marker.details).audit_dropped, sink.dropped);
  });
});

describe('shipper over a damaged spool (chDB)', () => {
  it('torn tail: ships the intact events and reports the damaged byte range', async () => {
    const dir = await tmp();
    let sink = await SpoolAuditSink.open({ dir });
    for (let i = 0; i < 50; i++) sink.emit({ type: 'command', task_id: 'OPS-7', command: 'ls ' + i });
    await sink.flush();
    await sink.close();
    const [seg] = await listSegments(dir);
    const path = join(dir, seg!);
    const full = await readFile(path);
    // Tear the last record in half, as a crash mid-write would.
    const cut = full.length - 120;
    await truncate(path, cut);
    // The restarted sidecar writes on in a new segment.
    sink = await SpoolAuditSink.open({ dir });
    sink.emit({ type: 'command', task_id: 'OPS-7', command: 'after restart' });
    await sink.flush();
    await sink.close();

    const store = await ChdbStore.open();
    try {
      await migrate(store);
      const damage: DamageReport[] = [];
      const sh = new Shipper({ dir, store, onDamage: (d) => damage.push(d) });
      await sh.drain(30_000);
      const rows = await store.rows<{ n: string }>("SELECT count() AS n FROM events FINAL WHERE task_id = 'OPS-7'");
      assert.equal(Number(rows[0]!.n), 50, '49 intact + 1 after restart');
      assert.equal(damage.length, 1);
      assert.equal(damage[0]!.reason, 'torn_tail');
      assert.equal(damage[0]!.segment, seg);
      assert.equal(damage[0]!.end, cut);
      assert.equal(damage[0]!.after_seq, 49);
      // The restarted sink reused seq 50 for its first event, chained to 49: the chain is whole.
      const v = await verifyStore(store);
      assert.equal(v.ok, true, JSON.stringify(v.problems));
    } finally {
      await store.close();
    }
  });

  it('a corrupted record in the middle is skipped and reported; the chain shows it missing', async () => {
    const dir = await tmp();
    const sink = await SpoolAuditSink.open({ dir });
    for (let i = 0; i < 10; i++) sink.emit({ type: 'command', command: 'cmd ' + i });
    await sink.flush();
    await sink.close();
    const [seg] = await listSegments(dir);
    const path = join(dir, seg!);
    const text = await readFile(path, 'utf8');
    await writeFile(path, text.replace('cmd 4', 'cmd X'));
    const store = await ChdbStore.open();
    try {
      await migrate(store);
      const damage: DamageReport[] = [];
      await new Shipper({ dir, store, onDamage: (d) => damage.push(d) }).drain(30_000);
      assert.equal(damage.length, 1);
      assert.equal(damage[0]!.reason, 'checksum');
      assert.deepEqual([damage[0]!.after_seq, damage[0]!.before_seq], [4, 6]);
      const v = await verifyStore(store);
      assert.equal(v.ok, false);
      assert.equal(v.problems[0]!.kind, 'missing');
      assert.equal(v.problems[0]!.seq, 6);
    } finally {
      await store.close();
    }
  });
});

describe('chain verification (chDB)', () => {
  async function loaded(): Promise<{ store: ChdbStore; dir: string }> {
    const dir = await tmp();
    const sink = await SpoolAuditSink.open({ dir });
    for (let i = 0; i < 20; i++) sink.emit({ type: 'decision', task_id: 'OPS-9', subject: 'bob', decision: 'allow', command: 'q' + i, groups: ['a', 'b'], rows: i });
    await sink.flush();
    await sink.close();
    const store = await ChdbStore.open();
    await migrate(store);
    await loadSpool(store, dir, 'events');
    return { store, dir };
  }

  it('an intact chain verifies', async () => {
    const { store } = await loaded();
    try {
      const v = await verifyStore(store);
      assert.equal(v.ok, true, JSON.stringify(v.problems));
      assert.equal(v.sources[0]!.events, 20);
    } finally {
      await store.close();
    }
  });

  it('detects a removed event', async () => {
    const { store } = await loaded();
    try {
      await store.exec('ALTER TABLE events DELETE WHERE seq = 7 SETTINGS mutations_sync = 1');
      const v = await verifyStore(store);
      assert.equal(v.ok, false);
      assert.deepEqual(v.problems.map((p) => [p.kind, p.seq]), [['missing', 8]]);
    } finally {
      await store.close();
    }
  });

  it('detects an altered event', async () => {
    const { store } = await loaded();
    try {
      await store.exec("ALTER TABLE events UPDATE decision = 'deny' WHERE seq = 12 SETTINGS mutations_sync = 1");
      const v = await verifyStore(store);
      assert.equal(v.ok, false);
      assert.deepEqual(v.problems.map((p) => [p.kind, p.seq]), [['altered', 12]]);
    } finally {
      await store.close();
    }
  });

  it('detects an altered event in the spool (CRC recomputed by the attacker)', async () => {
    const dir = await tmp();
    const sink = await SpoolAuditSink.open({ dir });
    for (let i = 0; i < 5; i++) sink.emit({ type: 'command', subject: 'eve' });
    await sink.flush();
    await sink.close();
    const [seg] = await listSegments(dir);
    const path = join(dir, seg!);
    const ls = (await readFile(path, 'utf8')).split('\n').filter(Boolean);
    const { crcHex } = await import('../../../core/audit/row.ts');
    const body = ls[2]!.slice(0, -19).replace('"eve"', '"mallory"');
    ls[2] = body + ',"_crc":"' + crcHex(body) + '"}';
    await writeFile(path, ls.join('\n') + '\n');
    const v = await verifySpool(dir);
    assert.equal(v.ok, false);
    assert.deepEqual(v.problems.map((p) => [p.kind, p.seq]), [['altered', 3]]);
  });
});

describe('recordings', () => {
  it('appends asciicast and pg transcripts per session; reads them back in order, once', async () => {
    const dir = await tmp();
    const rec = await SpoolRecordingSink.open({ dir });
    rec.append('sess-1', { kind: 'asciicast', seq: 0, data: '{"version":2,"width":80,"height":24}' });
    rec.append('sess-1', { kind: 'asciicast', seq: 1, data: '[0.1,"o","$ ls\\r\\n"]' });
    rec.append('sess-2', { kind: 'pg_transcript', seq: 0, data: '{"q":"SELECT 1"}' });
    rec.append('sess-1', { kind: 'asciicast', seq: 2, data: '[0.2,"o","a b c\\r\\n"]' });
    await rec.flush();
    await rec.close();
    const store = await ChdbStore.open();
    try {
      await migrate(store);
      const sh = new Shipper({ dir, store, table: 'recordings' });
      await sh.drain(30_000);
      // Redelivery (a lost cursor) must not duplicate a chunk.
      await rm(join(dir, 'cursor.json'));
      const again = new Shipper({ dir, store, table: 'recordings', deleteShipped: false });
      await again.drain(30_000);
      const chunks = await readRecording(store, 'sess-1');
      assert.deepEqual(chunks.map((c) => c.seq), [0, 1, 2]);
      assert.equal(chunks[1]!.data, '[0.1,"o","$ ls\\r\\n"]');
      assert.equal((await readRecording(store, 'sess-2'))[0]!.kind, 'pg_transcript');
    } finally {
      await store.close();
    }
  });
});
