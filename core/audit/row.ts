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
import { crc32 } from 'node:zlib';
import { sha256hex } from '../hash.ts';
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
  const keys = Object.keys(o);
  // Emitters mostly write keys in order already: skip the sort then (same result).
  for (let i = 1; i < keys.length; i++) {
    if (keys[i - 1]! > keys[i]!) {
      keys.sort();
      break;
    }
  }
  let out = '{';
  for (const k of keys) {
    const x = o[k];
    if (x === undefined) continue;
    if (out.length > 1) out += ',';
    out += jsonString(k) + ':' + stableJson(x);
  }
  return out + '}';
}

/** What JSON.stringify must escape: quote, backslash, control characters, (lone) surrogates. */
const NEEDS_ESCAPE = /[\u0000-\u001f"\\\ud800-\udfff]/;

/** JSON.stringify(s) for a string, without the call when nothing needs escaping. */
function jsonString(s: string): string {
  return NEEDS_ESCAPE.test(s) ? JSON.stringify(s) : '"' + s + '"';
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

type Stamp = { seq: number; id: string; ts_us: number; source: string; prev_hash: string };

/** A string field: JSON text, '""' when absent, undefined when not a string (the caller falls back). */
function sField(v: unknown): string | undefined {
  if (typeof v === 'string') return jsonString(v);
  return v === undefined || v === null ? '""' : undefined;
}

function sArray(v: unknown): string | undefined {
  if (v === undefined || v === null) return '[]';
  if (!Array.isArray(v)) return undefined;
  let out = '[';
  for (let i = 0; i < v.length; i++) {
    const x: unknown = v[i];
    if (typeof x !== 'string') return undefined;
    out += (i ? ',' : '') + jsonString(x);
  }
  return out + ']';
}

/**
 * The canonical text without its closing brace, built by concatenation in
 * ROW_FIELDS order: byte-identical to canonicalFromInput (a unit test holds
 * them equal), about twice as fast. Undefined when a field has a type the
 * fast path does not handle (canonicalFromInput then decides).
 */
function openCanonical(ev: AuditEventInput, st: Stamp): string | undefined {
  const type = ev.type as unknown;
  if (typeof type !== 'string') return undefined;
  const session = sField(ev.session_id);
  const task = sField(ev.task_id);
  const taskType = sField(ev.task_type);
  const subject = sField(ev.subject);
  const groups = sArray(ev.groups);
  const idType = sField(ev.identity_type);
  const actingFor = sField(ev.acting_for);
  const resource = sField(ev.resource);
  const protocol = sField(ev.protocol);
  const command = sField(ev.command);
  const fingerprint = sField(ev.fingerprint);
  const decision = sField(ev.decision);
  const reasons = sArray(ev.reasons);
  const revision = sField(ev.policy_revision);
  const review = sField(ev.review_id);
  const approvers = sArray(ev.approvers);
  const client = sField(ev.client_addr);
  if (
    session === undefined || task === undefined || taskType === undefined || subject === undefined || groups === undefined ||
    idType === undefined || actingFor === undefined || resource === undefined || protocol === undefined || command === undefined ||
    fingerprint === undefined || decision === undefined || reasons === undefined || revision === undefined || review === undefined ||
    approvers === undefined || client === undefined
  ) {
    return undefined;
  }
  let mf = '[]';
  let mc = '[]';
  if (ev.masked) {
    const keys = Object.keys(ev.masked).sort();
    if (keys.length > 0) {
      mf = '[';
      mc = '[';
      for (let i = 0; i < keys.length; i++) {
        mf += (i ? ',' : '') + jsonString(keys[i]!);
        mc += (i ? ',' : '') + nonNeg(ev.masked[keys[i]!]);
      }
      mf += ']';
      mc += ']';
    }
  }
  return (
    '{"seq":' + st.seq +
    ',"schema_version":' + AUDIT_SCHEMA_VERSION +
    ',"id":' + jsonString(st.id) +
    ',"ts_us":' + st.ts_us +
    ',"source":' + jsonString(st.source) +
    ',"type":' + jsonString(type) +
    ',"session_id":' + session +
    ',"task_id":' + task +
    ',"task_type":' + taskType +
    ',"subject":' + subject +
    ',"groups":' + groups +
    ',"identity_type":' + idType +
    ',"acting_for":' + actingFor +
    ',"resource":' + resource +
    ',"protocol":' + protocol +
    ',"command":' + command +
    ',"fingerprint":' + fingerprint +
    ',"decision":' + decision +
    ',"reasons":' + reasons +
    ',"policy_revision":' + revision +
    ',"review_id":' + review +
    ',"approvers":' + approvers +
    ',"rows":' + nonNeg(ev.rows) +
    ',"bytes":' + nonNeg(ev.bytes) +
    ',"masked_fields":' + mf +
    ',"masked_counts":' + mc +
    ',"duration_us":' + nonNeg(ev.duration_us) +
    ',"client_addr":' + client +
    ',"details":' + (ev.details ? JSON.stringify(stableJson(ev.details)) : '""') +
    ',"prev_hash":' + jsonString(st.prev_hash)
  );
}

/** Upper bound of the bytes sealEventInto() appends after the canonical text. */
const SEAL_TAIL_MAX = 160;
const HASH_MARK = ',"hash":"';
const TS_MARK = '","ts":"';
const CRC_MARK = ',"_crc":"';

/**
 * Seals one event into `buf` at `off`: its spool line (canonical text + hash
 * + ts + CRC + '\n'), the same bytes as sealLine(c, sha256hex(c), ts) with
 * c = canonicalFromInput(ev, st), but encoded once and hashed / checksummed
 * in place. Returns the end offset and the hash (the next prev_hash), or
 * undefined when `buf` may be too small (the caller grows it and retries).
 */
export function sealEventInto(buf: Buffer, off: number, ev: AuditEventInput, st: Stamp): { end: number; hash: string } | undefined {
  const open = openCanonical(ev, st) ?? canonicalFromInput(ev, st).slice(0, -1);
  if (buf.length - off < open.length * 3 + SEAL_TAIL_MAX) return undefined;
  const b = buf as FastBuffer;
  let p = off + (b.utf8Write ? b.utf8Write(open, off) : buf.write(open, off, 'utf8'));
  buf[p] = 0x7d; // '}' closes the canonical text
  const hash = sha256hex(buf.subarray(off, p + 1));
  const mid = HASH_MARK + hash + TS_MARK + chDateTime(st.ts_us) + '"' + CRC_MARK;
  const crcAt = p + mid.length - CRC_MARK.length;
  p += b.latin1Write ? b.latin1Write(mid, p) : buf.write(mid, p, 'latin1');
  let crc = crc32(buf.subarray(off, crcAt)) >>> 0;
  for (let i = 7; i >= 0; i--) {
    buf[p + i] = HEX[crc & 15]!;
    crc >>>= 4;
  }
  buf[p + 8] = 0x22; // "
  buf[p + 9] = 0x7d; // }
  buf[p + 10] = 0x0a; // \n
  return { end: p + 11, hash };
}

/** Buffer's unvalidated writers (present in every Node release; the typed write() is the fallback). */
type FastBuffer = Buffer & { utf8Write?: (s: string, off: number) => number; latin1Write?: (s: string, off: number) => number };
const HEX = Buffer.from('0123456789abcdef');

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

/** `YYYY-MM-DD hh:mm:ss` (UTC) for a µs timestamp: the ClickHouse DateTime column. */
let dtSecond = -1;
let dtText = '';
export function chDateTime(tsUs: number): string {
  const sec = Math.floor(tsUs / 1_000_000);
  if (sec !== dtSecond) {
    const iso = new Date(sec * 1000).toISOString();
    dtText = iso.slice(0, 10) + ' ' + iso.slice(11, 19);
    dtSecond = sec;
  }
  return dtText;
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
