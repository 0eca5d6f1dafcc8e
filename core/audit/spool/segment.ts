/**
 * Spool segment framing: a segment is a file of NDJSON lines, each ending in
 * `,"_crc":"xxxxxxxx"}` where xxxxxxxx is the CRC-32 (hex) of the line up to
 * that suffix. The first key of every line is the record's spool sequence
 * number (`{"seq":N,…` for events, `{"spool_seq":N,…` for recordings).
 *
 * A codec only: scans buffers, no I/O.
 */
import { crc32 } from 'node:zlib';

export const SEGMENT_PREFIX = 'seg-';
export const SEGMENT_SUFFIX = '.ndjson';
/** `,"_crc":"` + 8 hex + `"}` */
const CRC_SUFFIX_LEN = 19;
const CRC_MARK = Buffer.from(',"_crc":"');
const NL = 0x0a;

export function segmentName(firstSeq: number): string {
  return SEGMENT_PREFIX + String(firstSeq).padStart(16, '0') + SEGMENT_SUFFIX;
}

export function isSegmentName(n: string): boolean {
  return n.startsWith(SEGMENT_PREFIX) && n.endsWith(SEGMENT_SUFFIX);
}

export interface ScannedRecord {
  /** Byte offset of the line in the buffer (relative to the scan base). */
  start: number;
  /** Offset just past the trailing newline. */
  end: number;
  seq: number;
}

export interface DamagedRange {
  start: number;
  end: number;
  reason: 'checksum' | 'framing' | 'torn_tail';
}

export interface ScanResult {
  records: ScannedRecord[];
  damaged: DamagedRange[];
  /** Bytes consumed: up to and including the last newline (a partial last line is not consumed). */
  consumed: number;
}

function hexNibble(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x61 && c <= 0x66) return c - 0x57;
  return -1;
}

/** Validates one line (without its newline); returns its seq or -1. */
export function checkLine(buf: Buffer, start: number, end: number): number {
  const len = end - start;
  if (len < CRC_SUFFIX_LEN + 8 || buf[start] !== 0x7b || buf[end - 1] !== 0x7d || buf[end - 2] !== 0x22) return -1;
  const m = end - CRC_SUFFIX_LEN;
  if (buf.compare(CRC_MARK, 0, CRC_MARK.length, m, m + CRC_MARK.length) !== 0) return -1;
  let want = 0;
  for (let i = m + CRC_MARK.length; i < m + CRC_MARK.length + 8; i++) {
    const h = hexNibble(buf[i]!);
    if (h < 0) return -1;
    want = want * 16 + h;
  }
  if (crc32(buf.subarray(start, m)) >>> 0 !== want) return -1;
  // {"<key>":<digits>
  let i = start + 2;
  while (i < m && buf[i] !== 0x22) i++;
  if (buf[i + 1] !== 0x3a) return -1;
  i += 2;
  let seq = 0;
  let digits = 0;
  while (i < m && buf[i]! >= 0x30 && buf[i]! <= 0x39) {
    seq = seq * 10 + (buf[i]! - 0x30);
    i++;
    digits++;
  }
  return digits > 0 ? seq : -1;
}

/**
 * Scans whole lines of `buf`. `final` says no more bytes will follow (the
 * writer moved on to a newer segment): a trailing partial line is then a torn
 * tail, reported as damaged and consumed.
 */
export function scanBuffer(buf: Buffer, final: boolean): ScanResult {
  const records: ScannedRecord[] = [];
  const damaged: DamagedRange[] = [];
  let pos = 0;
  for (;;) {
    const nl = buf.indexOf(NL, pos);
    if (nl < 0) break;
    const seq = checkLine(buf, pos, nl);
    if (seq >= 0) records.push({ start: pos, end: nl + 1, seq });
    else addDamage(damaged, pos, nl + 1, isBlank(buf, pos, nl) ? 'framing' : 'checksum');
    pos = nl + 1;
  }
  if (final && pos < buf.length) {
    addDamage(damaged, pos, buf.length, 'torn_tail');
    pos = buf.length;
  }
  return { records, damaged, consumed: pos };
}

function isBlank(buf: Buffer, s: number, e: number): boolean {
  for (let i = s; i < e; i++) if (buf[i] !== 0) return false;
  return true;
}

function addDamage(list: DamagedRange[], start: number, end: number, reason: DamagedRange['reason']): void {
  const last = list[list.length - 1];
  if (last && last.end === start && last.reason === reason) last.end = end;
  else list.push({ start, end, reason });
}
