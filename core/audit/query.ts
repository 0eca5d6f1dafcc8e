/**
 * Querying audit: the same SQL over a ClickHouse server, or — with no server
 * configured — over the local spool with chDB (the spool's intact records are
 * loaded into chDB tables created by the same migrations, so every documented
 * query runs unchanged).
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { migrate } from './migrations.ts';
import { scanBuffer } from './spool/segment.ts';
import { listSegments } from './spool/writer.ts';
import { ChdbStore, ClickHouseStore, type AuditStore } from './store.ts';

export interface AuditLocation {
  /** ClickHouse HTTP URL; absent = embedded (chDB over the spool). */
  clickhouse?: string;
  username?: string;
  password?: string;
  /** Spool root: events in <spool>/events, recordings in <spool>/recordings. */
  spool: string;
}

export const DEFAULT_SPOOL = '.taskgate/audit';

export function spoolDirs(root: string): { events: string; recordings: string } {
  return { events: join(root, 'events'), recordings: join(root, 'recordings') };
}

/** Loads every intact record of a spool directory into `table`; returns the count and damaged bytes. */
export async function loadSpool(store: AuditStore, dir: string, table: string): Promise<{ rows: number; damaged_bytes: number }> {
  let rows = 0;
  let damaged = 0;
  for (const seg of await listSegments(dir)) {
    const buf = await readFile(join(dir, seg));
    const scan = scanBuffer(buf, true);
    for (const d of scan.damaged) damaged += d.end - d.start;
    if (scan.records.length === 0) continue;
    const body = scan.damaged.length === 0 ? buf.subarray(0, scan.consumed) : Buffer.concat(scan.records.map((r) => buf.subarray(r.start, r.end)));
    await store.insertRows(table, body);
    rows += scan.records.length;
  }
  return { rows, damaged_bytes: damaged };
}

/** Opens the store to query: the ClickHouse server, or a chDB session loaded from the spool. */
export async function openQueryStore(loc: AuditLocation): Promise<AuditStore> {
  if (loc.clickhouse) {
    const o: ConstructorParameters<typeof ClickHouseStore>[0] = { url: loc.clickhouse };
    if (loc.username) o.username = loc.username;
    if (loc.password) o.password = loc.password;
    return new ClickHouseStore(o);
  }
  const store = await ChdbStore.open();
  try {
    await migrate(store);
    const dirs = spoolDirs(loc.spool);
    await loadSpool(store, dirs.events, 'events');
    await loadSpool(store, dirs.recordings, 'recordings');
  } catch (e) {
    await store.close();
    throw e;
  }
  return store;
}

const esc = (s: string) => s.replace(/\\/g, '\\\\').replace(/'/g, "\\'");

/** The task timeline: who, what, decisions, approvals, sessions — in order. */
export function taskTimelineSql(taskId: string): string {
  return `SELECT
  formatDateTime(ts, '%F %T') AS time,
  type,
  subject,
  protocol,
  resource,
  session_id,
  command,
  decision,
  review_id,
  arrayStringConcat(approvers, ',') AS approvers,
  arrayStringConcat(reasons, '; ') AS reasons
FROM events FINAL
WHERE task_id = '${esc(taskId)}'
ORDER BY ts_us, seq`;
}

/** Events after a (ts_us) position, oldest first: the `tail` poll. */
export function tailSql(afterTsUs: number, limit: number): string {
  return `SELECT * FROM events FINAL WHERE ts_us > ${Math.floor(afterTsUs)} ORDER BY ts_us, seq LIMIT ${limit}`;
}
