/**
 * Frontend (client -> server) messages: decoders for the ones the sidecar
 * inspects. Everything else is forwarded as the raw bytes received.
 * Builders for frontend messages come from pg-protocol's serializer.
 */
import { ProtocolError } from './framing.ts';
import { PayloadReader } from './reader.ts';

export const PROTOCOL_3_0 = 196608;
export const SSL_REQUEST_CODE = 80877103;
export const GSSENC_REQUEST_CODE = 80877104;
export const CANCEL_REQUEST_CODE = 80877102;

export const F = {
  Query: 0x51, // Q
  Parse: 0x50, // P
  Bind: 0x42, // B
  Describe: 0x44, // D
  Execute: 0x45, // E
  Sync: 0x53, // S
  Close: 0x43, // C
  Flush: 0x48, // H
  Terminate: 0x58, // X
  CopyData: 0x64, // d
  CopyDone: 0x63, // c
  CopyFail: 0x66, // f
  FunctionCall: 0x46, // F
  Password: 0x70, // p (PasswordMessage, SASLInitialResponse, SASLResponse, GSSResponse)
} as const;

export type StartupPacket =
  | { kind: 'ssl' }
  | { kind: 'gssenc' }
  | { kind: 'cancel'; pid: number; secret: number }
  | { kind: 'startup'; version: number; params: Record<string, string> };

/** Decodes a startup-phase packet payload (after its int32 length). */
export function decodeStartup(payload: Buffer): StartupPacket {
  const r = new PayloadReader(payload);
  const code = r.int32('protocol version');
  if (code === SSL_REQUEST_CODE) return { kind: 'ssl' };
  if (code === GSSENC_REQUEST_CODE) return { kind: 'gssenc' };
  if (code === CANCEL_REQUEST_CODE) {
    const pid = r.int32('process id');
    const secret = r.int32('secret key');
    return { kind: 'cancel', pid, secret };
  }
  const params: Record<string, string> = Object.create(null);
  for (;;) {
    const k = r.cstring('startup parameter name');
    if (k === '') break;
    params[k] = r.cstring(`startup parameter ${k}`);
  }
  return { kind: 'startup', version: code, params };
}

export function decodeQuery(payload: Buffer): string {
  const r = new PayloadReader(payload);
  const q = r.cstring('query text');
  r.end('Query');
  return q;
}

export interface ParseMsg {
  name: string;
  text: string;
  paramTypes: number[];
}

export function decodeParse(payload: Buffer): ParseMsg {
  const r = new PayloadReader(payload);
  const name = r.cstring('statement name');
  const text = r.cstring('query text');
  const n = r.int16('parameter count');
  if (n < 0) throw new ProtocolError('Parse: negative parameter count');
  const paramTypes: number[] = [];
  for (let i = 0; i < n; i++) paramTypes.push(r.uint32('parameter type'));
  r.end('Parse');
  return { name, text, paramTypes };
}

export interface BindMsg {
  portal: string;
  statement: string;
  /** Result column format codes as sent: [] = all text, [f] = all f, else one per column. */
  resultFormats: number[];
}

export function decodeBind(payload: Buffer): BindMsg {
  const r = new PayloadReader(payload);
  const portal = r.cstring('portal name');
  const statement = r.cstring('statement name');
  const nf = r.int16('parameter format count');
  if (nf < 0) throw new ProtocolError('Bind: negative format count');
  for (let i = 0; i < nf; i++) r.int16('parameter format');
  const np = r.int16('parameter count');
  if (np < 0) throw new ProtocolError('Bind: negative parameter count');
  for (let i = 0; i < np; i++) {
    const len = r.int32('parameter length');
    if (len < -1) throw new ProtocolError('Bind: invalid parameter length');
    if (len > 0) r.bytes(len, 'parameter value');
  }
  const nr = r.int16('result format count');
  if (nr < 0) throw new ProtocolError('Bind: negative result format count');
  const resultFormats: number[] = [];
  for (let i = 0; i < nr; i++) resultFormats.push(r.int16('result format'));
  r.end('Bind');
  return { portal, statement, resultFormats };
}

export interface TargetMsg {
  /** 'S' statement or 'P' portal. */
  kind: 'S' | 'P';
  name: string;
}

/** Describe and Close share one layout. */
export function decodeTarget(payload: Buffer, what: string): TargetMsg {
  const r = new PayloadReader(payload);
  const k = r.byte(`${what} kind`);
  if (k !== 0x53 && k !== 0x50) throw new ProtocolError(`${what}: kind must be 'S' or 'P'`);
  const name = r.cstring(`${what} name`);
  r.end(what);
  return { kind: k === 0x53 ? 'S' : 'P', name };
}

export function decodeExecute(payload: Buffer): { portal: string; maxRows: number } {
  const r = new PayloadReader(payload);
  const portal = r.cstring('portal name');
  const maxRows = r.int32('row limit');
  r.end('Execute');
  return { portal, maxRows };
}

export function decodeFunctionCall(payload: Buffer): { oid: number } {
  const r = new PayloadReader(payload);
  return { oid: r.uint32('function oid') };
}

/** PasswordMessage: the cleartext password (here: the OIDC token). */
export function decodePassword(payload: Buffer): string {
  const r = new PayloadReader(payload);
  const s = r.cstring('password');
  r.end('PasswordMessage');
  return s;
}

/** Parses `-c name=value` / `--name=value` pairs of the startup `options` parameter (backslash escapes spaces). */
export function parseStartupOptions(options: string): { name: string; value: string }[] {
  const words: string[] = [];
  let cur = '';
  let has = false;
  for (let i = 0; i < options.length; i++) {
    const ch = options[i]!;
    if (ch === '\\' && i + 1 < options.length) {
      cur += options[++i];
      has = true;
    } else if (ch === ' ' || ch === '\t' || ch === '\n') {
      if (has) words.push(cur);
      cur = '';
      has = false;
    } else {
      cur += ch;
      has = true;
    }
  }
  if (has) words.push(cur);
  const out: { name: string; value: string }[] = [];
  for (let i = 0; i < words.length; i++) {
    let w = words[i]!;
    if (w === '-c') {
      const next = words[++i];
      if (next === undefined) throw new ProtocolError('startup options: -c without a setting');
      w = next;
    } else if (w.startsWith('-c')) w = w.slice(2);
    else if (w.startsWith('--')) w = w.slice(2);
    else throw new ProtocolError(`startup options: unsupported switch "${w}" (only -c name=value)`);
    const eq = w.indexOf('=');
    if (eq <= 0) throw new ProtocolError(`startup options: "${w}" is not name=value`);
    out.push({ name: w.slice(0, eq).replace(/-/g, '_').toLowerCase(), value: w.slice(eq + 1) });
  }
  return out;
}
