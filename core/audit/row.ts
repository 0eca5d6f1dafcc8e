/**
 * The stored form of an audit event: one flat row, identical in the spool
 * (one NDJSON line), in ClickHouse (table `events`) and in chDB. The line *is*
 * a ClickHouse JSONEachRow row, so the shipper sends spool bytes unparsed.
 *
 * Canonical serialisation (schema_version 1), the input of the hash chain:
 *   JSON.stringify of the row object WITHOUT `hash`, keys in ROW_FIELDS order,
 *   every field present (absent = '' / 0 / []), `ts` omitted (it is derived
 *   from ts_us), `masked` split into masked_fields (sorted) + masked_counts,
 *   `details` as a JSON string with sorted keys.
 *   hash = hex(SHA-256(canonical)); prev_hash = hash of the source's previous
 *   event (64 zeros for the first).
 * A line in the spool is the canonical text with `,"hash":"…","ts":"…"` and a
 * CRC-32 of everything before it (`,"_crc":"xxxxxxxx"}`) appended.
 */
import { createHash } from 'node:crypto';
import { crc32 } from 'node:zlib';
import type { AuditEvent, AuditEventInput, AuditEventType } from './event.ts';
import { AUDIT_SCHEMA_VERSION } from './event.ts';

export const ZERO_HASH = '0'.repeat(64);

export interface AuditRow {
  seq: number;
  schema_version: number;
  id: string;
  ts_us: number;
  source: string;
  type: AuditEventType;
  session_id: string;
  task_id: string;
  task_type: string;
  subject: string;
  groups: string[];
  identity_type: string;
  acting_for: string;
  resource: string;
  protocol: string;
  command: string;
  fingerprint: string;
  decision: string;
  reasons: string[];
  policy_revision: string;
  review_id: string;
  approvers: string[];
  rows: number;
  bytes: number;
  masked_fields: string[];
  masked_counts: number[];
  duration_us: number;
  client_addr: string;
  details: string;
  prev_hash: string;
  hash: string;
  /** Derived: `YYYY-MM-DD hh:mm:ss` UTC of ts_us (the DateTime column). Not hashed. */
  ts?: string;
}

type Kind = 's' | 'n' | 'as' | 'an';
/** Canonical field order (everything but hash and ts). */
export const ROW_FIELDS: ReadonlyArray<readonly [keyof AuditRow, Kind]> = [
  ['seq', 'n'],
  ['schema_version', 'n'],
  ['id', 's'],
  ['ts_us', 'n'],
  ['source', 's'],
  ['type', 's'],
  ['session_id', 's'],
  ['task_id', 's'],
  ['task_type', 's'],
  ['subject', 's'],
  ['groups', 'as'],
  ['identity_type', 's'],
  ['acting_for', 's'],
  ['resource', 's'],
  ['protocol', 's'],
  ['command', 's'],
  ['fingerprint', 's'],
  ['decision', 's'],
  ['reasons', 'as'],
  ['policy_revision', 's'],
  ['review_id', 's'],
  ['approvers', 'as'],
  ['rows', 'n'],
  ['bytes', 'n'],
  ['masked_fields', 'as'],
  ['masked_counts', 'an'],
  ['duration_us', 'n'],
  ['client_addr', 's'],
  ['details', 's'],
  ['prev_hash', 's'],
];

/** Sorted-key JSON (details): stable whatever order the emitter used. */
export function stableJson(v: unknown): string {
  if (v === null || typeof v !== 'object') return JSON.stringify(v) ?? 'null';
  if (Array.isArray(v)) return '[' + v.map(stableJson).join(',') + ']';
  const o = v as Record<string, unknown>;
  const keys = Object.keys(o).filter((k) => o[k] !== undefined).sort();
  return '{' + keys.map((k) => JSON.stringify(k) + ':' + stableJson(o[k])).join(',') + '}';
}

const nonNeg = (n: number | undefined): number => (typeof n === 'number' && Number.isFinite(n) && n > 0 ? Math.floor(n) : 0);

/**
 * Builds the canonical row text (without hash) from an emitted event plus the
 * sink's stamps. The object literal fixes the key order (= ROW_FIELDS).
 */
export function canonicalFromInput(
  ev: AuditEventInput,
  stamp: { seq: number; id: string; ts_us: number; source: string; prev_hash: string },
): string {
  let mf: string[] = [];
  let mc: number[] = [];
  if (ev.masked) {
    mf = Object.keys(ev.masked).sort();
    mc = mf.map((k) => nonNeg(ev.masked![k]));
  }
  return JSON.stringify({
    seq: stamp.seq,
    schema_version: AUDIT_SCHEMA_VERSION,
    id: stamp.id,
    ts_us: stamp.ts_us,
    source: stamp.source,
    type: ev.type,
    session_id: ev.session_id ?? '',
    task_id: ev.task_id ?? '',
    task_type: ev.task_type ?? '',
    subject: ev.subject ?? '',
    groups: ev.groups ?? [],
    identity_type: ev.identity_type ?? '',
    acting_for: ev.acting_for ?? '',
    resource: ev.resource ?? '',
    protocol: ev.protocol ?? '',
    command: ev.command ?? '',
    fingerprint: ev.fingerprint ?? '',
    decision: ev.decision ?? '',
    reasons: ev.reasons ?? [],
    policy_revision: ev.policy_revision ?? '',
    review_id: ev.review_id ?? '',
    approvers: ev.approvers ?? [],
    rows: nonNeg(ev.rows),
    bytes: nonNeg(ev.bytes),
    masked_fields: mf,
    masked_counts: mc,
    duration_us: nonNeg(ev.duration_us),
    client_addr: ev.client_addr ?? '',
    details: ev.details ? stableJson(ev.details) : '',
    prev_hash: stamp.prev_hash,
  });
}

/** Canonical text of a stored row (as read back from ClickHouse, chDB or the spool). */
export function canonicalFromRow(r: Record<string, unknown>): string {
  const o: Record<string, unknown> = {};
  for (const [k, kind] of ROW_FIELDS) {
    const v = r[k];
    switch (kind) {
      case 's':
        o[k] = v === undefined || v === null ? '' : String(v);
        break;
      case 'n':
        o[k] = v === undefined || v === null || v === '' ? 0 : Number(v);
        break;
      case 'as':
        o[k] = Array.isArray(v) ? v.map(String) : [];
        break;
      case 'an':
        o[k] = Array.isArray(v) ? v.map(Number) : [];
        break;
    }
  }
  return JSON.stringify(o);
}

export function sha256hex(s: string): string {
  return createHash('sha256').update(s).digest('hex');
}

/** `YYYY-MM-DD hh:mm:ss` (UTC) for a µs timestamp: the ClickHouse DateTime column. */
export function chDateTime(tsUs: number): string {
  const iso = new Date(Math.floor(tsUs / 1000)).toISOString();
  return iso.slice(0, 10) + ' ' + iso.slice(11, 19);
}

/** RFC 3339 with microseconds. */
export function rfc3339Micro(tsUs: number): string {
  const iso = new Date(Math.floor(tsUs / 1000)).toISOString();
  return iso.slice(0, 19) + '.' + String(tsUs % 1_000_000).padStart(6, '0') + 'Z';
}

/** Appends hash, ts and the record checksum to a canonical text: one spool line (with '\n'). */
export function sealLine(canonical: string, hash: string, tsUs: number): string {
  const body = canonical.slice(0, -1) + ',"hash":"' + hash + '","ts":"' + chDateTime(tsUs) + '"';
  return body + ',"_crc":"' + crcHex(body) + '"}\n';
}

export function crcHex(s: string | Uint8Array): string {
  return (crc32(s) >>> 0).toString(16).padStart(8, '0');
}

/** The AuditEvent view of a row (API consumers, `audit tail --json`). */
export function rowToEvent(r: AuditRow): AuditEvent {
  const ev: AuditEvent = {
    schema_version: Number(r.schema_version),
    id: r.id,
    ts: rfc3339Micro(Number(r.ts_us)),
    source: r.source,
    seq: Number(r.seq),
    prev_hash: r.prev_hash,
    hash: r.hash,
    type: r.type,
  };
  const strs = ['session_id', 'task_id', 'task_type', 'subject', 'identity_type', 'acting_for', 'resource', 'protocol', 'command', 'fingerprint', 'policy_revision', 'review_id', 'client_addr'] as const;
  for (const k of strs) if (r[k]) (ev as unknown as Record<string, unknown>)[k] = r[k];
  if (r.decision) ev.decision = r.decision as AuditEvent['decision'];
  if (r.groups.length) ev.groups = r.groups;
  if (r.reasons.length) ev.reasons = r.reasons;
  if (r.approvers.length) ev.approvers = r.approvers;
  if (Number(r.rows)) ev.rows = Number(r.rows);
  if (Number(r.bytes)) ev.bytes = Number(r.bytes);
  if (Number(r.duration_us)) ev.duration_us = Number(r.duration_us);
  if (r.masked_fields.length) ev.masked = Object.fromEntries(r.masked_fields.map((f, i) => [f, Number(r.masked_counts[i] ?? 0)]));
  if (r.details) ev.details = JSON.parse(r.details) as Record<string, unknown>;
  return ev;
}
