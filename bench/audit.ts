/**
 * Audit benchmark: sustained events/s from one process into ClickHouse
 * (clickhouse-server 18.16 on loopback) through SpoolAuditSink + Shipper, the
 * cost of emit() on the hot path (ns per event, p50/p99), and spool bytes per
 * event. Baselines measured in the same run: MemoryAuditSink.emit (an
 * in-memory structuredClone) and a direct INSERT of the same rows without the
 * spool.
 *
 *   node --import tsx bench/audit.ts            # 60 s sustained phase
 *   BENCH_SECONDS=10 node --import tsx bench/audit.ts
 */
import { mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AuditEventInput } from '../core/audit/event.ts';
import { MemoryAuditSink } from '../core/audit/event.ts';
import { migrate } from '../core/audit/migrations.ts';
import { Shipper } from '../core/audit/shipper.ts';
import { SpoolAuditSink } from '../core/audit/spool-sink.ts';
import { listSegments } from '../core/audit/spool/writer.ts';
import { ClickHouseStore } from '../core/audit/store.ts';
import { startClickHouse } from '../devenv/clickhouse.ts';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 60);

function event(i: number): AuditEventInput {
  return {
    type: 'decision',
    session_id: 'sess-' + (i % 100),
    task_id: 'OPS-' + (i % 500),
    task_type: 'schema-migration',
    subject: 'alice@example.com',
    groups: ['dba', 'oncall'],
    identity_type: 'user',
    resource: 'orders-db',
    protocol: 'postgres',
    command: 'SELECT id, total FROM orders WHERE customer_id = $1 LIMIT $2',
    fingerprint: '9f2c1a77be01',
    decision: i % 20 === 0 ? 'deny' : 'allow',
    reasons: ['read access to orders is part of schema-migration'],
    policy_revision: 'rev-42',
    duration_us: 35,
    client_addr: '10.1.2.3',
    details: { decision_id: 'd' + i, eval_ns: 12000 },
  };
}

/** CPU seconds (user+sys) of a process, from /proc (Linux). */
async function procCpu(pid: number): Promise<number> {
  const st = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
  const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11] ?? 0) + Number(f[12] ?? 0)) / 100; // USER_HZ = 100
}

/** The clickhouse-server started for this run (its config lives in ch.dir). */
async function serverPid(chDir: string): Promise<number> {
  for (const d of await readdir('/proc')) {
    if (!/^[0-9]+$/.test(d)) continue;
    const cmd = await readFile(`/proc/${d}/cmdline`, 'utf8').catch(() => '');
    if (cmd.includes(chDir) && cmd.includes('clickhouse')) return Number(d);
  }
  return 0;
}

async function machineCpu(): Promise<{ busy: number; total: number }> {
  const f = (await readFile('/proc/stat', 'utf8')).split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  const idle = f[3]! + (f[4] ?? 0);
  const total = f.reduce((a, b) => a + b, 0);
  return { busy: (total - idle) / 100, total: total / 100 };
}

function pct(sorted: Float64Array, p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]!;
}

/** Times `n` emits one by one (hrtime around each; includes ~30-60 ns timer overhead). */
function timeEmits(emit: (ev: AuditEventInput) => void, evs: AuditEventInput[]): { p50: number; p99: number; mean: number } {
  const lat = new Float64Array(evs.length);
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < evs.length; i++) {
    const a = process.hrtime.bigint();
    emit(evs[i]!);
    lat[i] = Number(process.hrtime.bigint() - a);
  }
  const mean = Number(process.hrtime.bigint() - t0) / evs.length;
  lat.sort();
  return { p50: pct(lat, 0.5), p99: pct(lat, 0.99), mean };
}

const ch = await startClickHouse();
const dir = await mkdtemp(join(tmpdir(), 'tg-bench-audit-'));
const store = new ClickHouseStore({ url: ch.url });
try {
  await migrate(store);
  const evs = Array.from({ length: 200_000 }, (_, i) => event(i));

  // --- hot path: emit cost -----------------------------------------------------
  const mem = new MemoryAuditSink();
  const base = timeEmits((e) => mem.emit(e), evs.slice(0, 50_000));
  const sink = await SpoolAuditSink.open({ dir: join(dir, 'emit'), fsync: 'interval' });
  // Emit in bursts of 1,000 (the writer drains between bursts, as between requests).
  const lat = new Float64Array(100_000);
  for (let b = 0; b < 100; b++) {
    for (let i = 0; i < 1000; i++) {
      const e = evs[b * 1000 + i]!;
      const a = process.hrtime.bigint();
      sink.emit(e);
      lat[b * 1000 + i] = Number(process.hrtime.bigint() - a);
    }
    await new Promise((r) => setImmediate(r));
  }
  await sink.flush();
  await sink.close();
  lat.sort();
  const emitP50 = pct(lat, 0.5);
  const emitP99 = pct(lat, 0.99);
  let segBytes = 0;
  for (const s of await listSegments(join(dir, 'emit'))) segBytes += (await stat(join(dir, 'emit', s))).size;
  const bytesPerEvent = segBytes / 100_000;

  // --- baseline: direct insert of spool rows, no spool in between ------------------
  // Into the same schema (events + its materialized views) in a second database.
  await store.exec('CREATE DATABASE IF NOT EXISTS direct_baseline');
  const direct = new ClickHouseStore({ url: ch.url, database: 'direct_baseline' });
  await migrate(direct);
  const segs = await listSegments(join(dir, 'emit'));
  const rows = await readFile(join(dir, 'emit', segs[0]!));
  const chPid = await serverPid(ch.dir);
  const chCpuDirect0 = await procCpu(chPid);
  const tb = performance.now();
  let directN = 0;
  const chunk = rows.subarray(0, rows.lastIndexOf(10, 8 << 20) + 1);
  const perChunk = chunk.toString().split('\n').length - 1;
  while (performance.now() - tb < Math.min(10_000, SECONDS * 1000 / 4)) {
    await direct.insertRows('events', chunk);
    directN += perChunk;
  }
  const directRate = directN / ((performance.now() - tb) / 1000);
  const chUsDirect = ((await procCpu(chPid)) - chCpuDirect0) * 1e6 / directN;
  await direct.close();
  // Its background merges would otherwise go on into the sustained window and take the server's CPU.
  await store.exec('DROP DATABASE direct_baseline');

  // --- sustained: emit -> spool -> shipper -> ClickHouse for SECONDS -----------------
  const sdir = join(dir, 'sustained');
  const s2 = await SpoolAuditSink.open({ dir: sdir, fsync: 'interval', maxBytes: 2 * 1024 ** 3 });
  const shipper = new Shipper({ dir: sdir, store, lingerMs: 50, ...(process.env.SHIP_BATCH_MB ? { batchBytes: Number(process.env.SHIP_BATCH_MB) << 20 } : {}) });
  shipper.start();
  const elu0 = performance.eventLoopUtilization();
  const cpu0 = { node: process.cpuUsage(), ch: await procCpu(chPid), m: await machineCpu() };
  const t0 = performance.now();
  let emitted = 0;
  let blocked = 0;
  let backlogWaits = 0;
  // Closed loop: emit as fast as delivery sustains. The backlog (emitted, not yet
  // in ClickHouse) is capped, so the emitter cannot starve the shipper or the
  // server of CPU by running ahead; the sustained rate is what gets delivered.
  const BACKLOG = Number(process.env.BENCH_BACKLOG ?? 200_000);
  while (performance.now() - t0 < SECONDS * 1000) {
    if (!s2.writable()) {
      blocked++;
      await new Promise((r) => setTimeout(r, 5));
      continue;
    }
    if (s2.lastSeq - shipper.shippedSeq > BACKLOG) {
      backlogWaits++;
      await new Promise((r) => setTimeout(r, 5));
      continue;
    }
    for (let k = 0; k < 1000; k++) s2.emit(evs[(emitted + k) % evs.length]!);
    emitted += 1000;
    await new Promise((r) => setImmediate(r));
  }
  const windowS = (performance.now() - t0) / 1000;
  const shippedInWindow = shipper.shippedSeq;
  const nodeCpu = process.cpuUsage(cpu0.node);
  const mainBusy = performance.eventLoopUtilization(elu0).utilization;
  const chCpu = (await procCpu(chPid)) - cpu0.ch;
  const m1 = await machineCpu();
  const machineBusy = (m1.busy - cpu0.m.busy) / windowS;
  await s2.flush();
  await shipper.drain(120_000, s2.lastSeq);
  await shipper.stop();
  await s2.close();
  const src = s2.source.replace(/'/g, '');
  const total = Number((await store.rows<{ n: string }>(`SELECT count() AS n FROM events WHERE source = '${src}'`))[0]!.n);
  const rate = shippedInWindow / windowS;
  // Inserts the server slowed down because a partition had too many parts (parts_to_delay_insert).
  const delayed = Object.fromEntries(
    (await store.rows<{ event: string; value: string }>("SELECT event, value FROM system.events WHERE event LIKE 'DelayedInserts%' OR event IN ('InsertQuery', 'Merge', 'MergedRows', 'MergesTimeMilliseconds')")).map((r) => [r.event, Number(r.value)]),
  );

  const out = {
    clickhouse: await store.version(),
    seconds: Math.round(windowS),
    sustained_events_per_s: Math.round(rate),
    target_events_per_s: 100_000,
    direct_insert_baseline_events_per_s: Math.round(directRate),
    ratio_vs_direct_insert: +(rate / directRate).toFixed(2),
    emitted,
    delivered_total: total,
    delivered_all: total === emitted,
    emit_ns_p50: Math.round(emitP50),
    emit_ns_p99: Math.round(emitP99),
    emit_target_p99_ns: 5000,
    memory_sink_emit_ns_p50: Math.round(base.p50),
    memory_sink_emit_ns_p99: Math.round(base.p99),
    ratio_emit_p99_vs_memory_sink: +(emitP99 / base.p99).toFixed(2),
    spool_bytes_per_event: Math.round(bytesPerEvent),
    fail_closed_waits: blocked,
    server_insert_queries: delayed.InsertQuery ?? 0,
    server_delayed_inserts: delayed.DelayedInserts ?? 0,
    server_delayed_insert_ms: delayed.DelayedInsertsMilliseconds ?? 0,
    // Background merges over the whole run (all tables, views included): rows rewritten and thread time.
    server_merges: delayed.Merge ?? 0,
    server_merged_rows: delayed.MergedRows ?? 0,
    server_merge_thread_s: Math.round((delayed.MergesTimeMilliseconds ?? 0) / 1000),
    backlog_cap_waits: backlogWaits,
    // CPU in the sustained window, in cores (1.0 = one core busy for the whole window).
    cpu_cores_node_process: +((nodeCpu.user + nodeCpu.system) / 1e6 / windowS).toFixed(2),
    cpu_cores_node_main_thread: +mainBusy.toFixed(2),
    cpu_cores_clickhouse_server: +(chCpu / windowS).toFixed(2),
    cpu_cores_machine_busy: +machineBusy.toFixed(2),
    cpu_cores_other_processes: +(machineBusy - (nodeCpu.user + nodeCpu.system) / 1e6 / windowS - chCpu / windowS).toFixed(2),
    node_us_per_delivered_event: +(((nodeCpu.user + nodeCpu.system) / shippedInWindow)).toFixed(2),
    clickhouse_us_per_delivered_event: +((chCpu * 1e6) / shippedInWindow).toFixed(2),
    clickhouse_us_per_event_direct_insert: +chUsDirect.toFixed(2),
  };
  console.log(JSON.stringify(out, null, 2));
} finally {
  await store.close();
  await ch.stop();
  await rm(dir, { recursive: true, force: true });
}
