/**
 * Backend (server -> client) messages: builders for the ones the sidecar
 * speaks itself (authentication, errors, notices, ReadyForQuery) and
 * decoders / re-encoders for the ones it inspects (RowDescription, DataRow,
 * ErrorResponse, ReadyForQuery, CommandComplete).
 */
import { ProtocolError } from './framing.ts';
import { MessageWriter, PayloadReader } from './reader.ts';

export const B = {
  Authentication: 0x52, // R
  ParameterStatus: 0x53, // S
  BackendKeyData: 0x4b, // K
  ReadyForQuery: 0x5a, // Z
  RowDescription: 0x54, // T
  DataRow: 0x44, // D
  CommandComplete: 0x43, // C
  EmptyQuery: 0x49, // I
  ErrorResponse: 0x45, // E
  NoticeResponse: 0x4e, // N
  Notification: 0x41, // A
  ParseComplete: 0x31, // 1
  BindComplete: 0x32, // 2
  CloseComplete: 0x33, // 3
  NoData: 0x6e, // n
  ParameterDescription: 0x74, // t
  PortalSuspended: 0x73, // s
  CopyIn: 0x47, // G
  CopyOut: 0x48, // H
  CopyBoth: 0x57, // W
  CopyData: 0x64, // d
  CopyDone: 0x63, // c
  FunctionCallResponse: 0x56, // V
  NegotiateProtocolVersion: 0x76, // v
} as const;

/** Error and notice fields, keyed by their one-letter codes. */
export interface ErrorFields {
  severity: string;
  code: string;
  message: string;
  detail?: string;
  hint?: string;
  [field: string]: string | undefined;
}

const FIELD_CODES: Record<string, string> = {
  severity: 'S',
  severity_nonlocalized: 'V',
  code: 'C',
  message: 'M',
  detail: 'D',
  hint: 'H',
  position: 'P',
  where: 'W',
  schema: 's',
  table: 't',
  column: 'c',
  constraint: 'n',
  file: 'F',
  line: 'L',
  routine: 'R',
};
const FIELD_NAMES: Record<string, string> = Object.fromEntries(Object.entries(FIELD_CODES).map(([k, v]) => [v, k]));

function fieldsMessage(type: 'E' | 'N', f: ErrorFields): Buffer {
  const w = new MessageWriter();
  const fields: [string, string | undefined][] = [['severity_nonlocalized', f.severity], ...Object.entries(f)];
  for (const [k, v] of fields) {
    const c = FIELD_CODES[k];
    if (!c || v === undefined) continue;
    w.byte(c.charCodeAt(0)).cstring(sanitize(v));
  }
  w.byte(0);
  return w.build(type);
}

/** NUL bytes cannot travel inside a C string. */
function sanitize(s: string): string {
  return s.includes('\0') ? s.replace(/\0/g, '') : s;
}

export function errorResponse(f: ErrorFields): Buffer {
  return fieldsMessage('E', f);
}

export function noticeResponse(f: ErrorFields): Buffer {
  return fieldsMessage('N', f);
}

export function decodeErrorFields(payload: Buffer): ErrorFields {
  const r = new PayloadReader(payload);
  const out: ErrorFields = { severity: '', code: '', message: '' };
  for (;;) {
    const c = r.byte('error field code');
    if (c === 0) break;
    const v = r.cstring('error field');
    const name = FIELD_NAMES[String.fromCharCode(c)] ?? String.fromCharCode(c);
    out[name] = v;
  }
  return out;
}

export function readyForQuery(status: 'I' | 'T' | 'E'): Buffer {
  return new MessageWriter().byte(status.charCodeAt(0)).build('Z');
}

export function authenticationOk(): Buffer {
  return new MessageWriter().int32(0).build('R');
}

export function authenticationCleartextPassword(): Buffer {
  return new MessageWriter().int32(3).build('R');
}

export function parameterStatus(name: string, value: string): Buffer {
  return new MessageWriter().cstring(name).cstring(value).build('S');
}

export function backendKeyData(pid: number, secret: number): Buffer {
  return new MessageWriter().int32(pid).int32(secret).build('K');
}

export function commandComplete(tag: string): Buffer {
  return new MessageWriter().cstring(tag).build('C');
}

export interface FieldDesc {
  name: string;
  tableOid: number;
  attnum: number;
  typeOid: number;
  typeSize: number;
  typeMod: number;
  format: number;
}

export function decodeRowDescription(payload: Buffer): FieldDesc[] {
  const r = new PayloadReader(payload);
  const n = r.int16('field count');
  if (n < 0) throw new ProtocolError('RowDescription: negative field count');
  const out: FieldDesc[] = [];
  for (let i = 0; i < n; i++) {
    out.push({
      name: r.cstring('field name'),
      tableOid: r.uint32('table oid'),
      attnum: r.int16('attribute number'),
      typeOid: r.uint32('type oid'),
      typeSize: r.int16('type size'),
      typeMod: r.int32('type modifier'),
      format: r.int16('format code'),
    });
  }
  r.end('RowDescription');
  return out;
}

export function rowDescription(fields: FieldDesc[]): Buffer {
  const w = new MessageWriter().int16(fields.length);
  for (const f of fields) {
    w.cstring(f.name).int32(f.tableOid).int16(f.attnum).int32(f.typeOid).int16(f.typeSize).int32(f.typeMod).int16(f.format);
  }
  return w.build('T');
}

/** DataRow values as views into the payload (null for SQL NULL). */
export function decodeDataRow(payload: Buffer): (Buffer | null)[] {
  const r = new PayloadReader(payload);
  const n = r.int16('column count');
  if (n < 0) throw new ProtocolError('DataRow: negative column count');
  const out: (Buffer | null)[] = new Array(n);
  for (let i = 0; i < n; i++) {
    const len = r.int32('value length');
    if (len < -1) throw new ProtocolError('DataRow: invalid value length');
    out[i] = len === -1 ? null : r.bytes(len, 'value');
  }
  r.end('DataRow');
  return out;
}

/** Re-frames a DataRow with correct lengths. */
export function dataRow(values: (Buffer | null)[]): Buffer {
  let len = 4 + 2;
  for (const v of values) len += 4 + (v ? v.length : 0);
  const out = Buffer.allocUnsafe(1 + len);
  out[0] = 0x44;
  out.writeInt32BE(len, 1);
  out.writeInt16BE(values.length, 5);
  let off = 7;
  for (const v of values) {
    if (v === null) {
      out.writeInt32BE(-1, off);
      off += 4;
    } else {
      out.writeInt32BE(v.length, off);
      v.copy(out, off + 4);
      off += 4 + v.length;
    }
  }
  return out;
}

/** ReadyForQuery transaction status: I idle, T in a transaction block, E failed transaction block. */
export function decodeReadyForQuery(payload: Buffer): 'I' | 'T' | 'E' {
  const s = String.fromCharCode(payload[0] ?? 0);
  if (s !== 'I' && s !== 'T' && s !== 'E') throw new ProtocolError(`ReadyForQuery: unknown status ${JSON.stringify(s)}`);
  return s;
}

export function decodeCommandTag(payload: Buffer): string {
  return new PayloadReader(payload).cstring('command tag');
}

/** Rows affected/returned from a CommandComplete tag (`SELECT 5`, `INSERT 0 3`, `COPY 10`); 0 if none. */
export function tagRows(tag: string): number {
  const sp = tag.lastIndexOf(' ');
  if (sp < 0) return 0;
  const n = Number(tag.slice(sp + 1));
  return Number.isFinite(n) ? n : 0;
}
