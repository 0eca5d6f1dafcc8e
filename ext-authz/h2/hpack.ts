/**
 * HPACK (RFC 7541) for an HTTP/2 server: a header block decoder with its
 * dynamic table, and encoders for response fields that use no dynamic table
 * (so they are valid whatever table size the peer set). Names and values are
 * byte strings (one char per octet, latin1); nothing is lower-cased or
 * validated here.
 */
import { HpackError, huffmanDecode } from './huffman.ts';

export { HpackError };

/** RFC 7541 Appendix A. HPACK index i is STATIC_TABLE[i - 1] (no entry for index 0). */
export const STATIC_TABLE: readonly (readonly [string, string])[] = [
  [':authority', ''], // 1
  [':method', 'GET'], // 2
  [':method', 'POST'], // 3
  [':path', '/'], // 4
  [':path', '/index.html'], // 5
  [':scheme', 'http'], // 6
  [':scheme', 'https'], // 7
  [':status', '200'], // 8
  [':status', '204'], // 9
  [':status', '206'], // 10
  [':status', '304'], // 11
  [':status', '400'], // 12
  [':status', '404'], // 13
  [':status', '500'], // 14
  ['accept-charset', ''], // 15
  ['accept-encoding', 'gzip, deflate'], // 16
  ['accept-language', ''], // 17
  ['accept-ranges', ''], // 18
  ['accept', ''], // 19
  ['access-control-allow-origin', ''], // 20
  ['age', ''], // 21
  ['allow', ''], // 22
  ['authorization', ''], // 23
  ['cache-control', ''], // 24
  ['content-disposition', ''], // 25
  ['content-encoding', ''], // 26
  ['content-language', ''], // 27
  ['content-length', ''], // 28
  ['content-location', ''], // 29
  ['content-range', ''], // 30
  ['content-type', ''], // 31
  ['cookie', ''], // 32
  ['date', ''], // 33
  ['etag', ''], // 34
  ['expect', ''], // 35
  ['expires', ''], // 36
  ['from', ''], // 37
  ['host', ''], // 38
  ['if-match', ''], // 39
  ['if-modified-since', ''], // 40
  ['if-none-match', ''], // 41
  ['if-range', ''], // 42
  ['if-unmodified-since', ''], // 43
  ['last-modified', ''], // 44
  ['link', ''], // 45
  ['location', ''], // 46
  ['max-forwards', ''], // 47
  ['proxy-authenticate', ''], // 48
  ['proxy-authorization', ''], // 49
  ['range', ''], // 50
  ['referer', ''], // 51
  ['refresh', ''], // 52
  ['retry-after', ''], // 53
  ['server', ''], // 54
  ['set-cookie', ''], // 55
  ['strict-transport-security', ''], // 56
  ['transfer-encoding', ''], // 57
  ['user-agent', ''], // 58
  ['vary', ''], // 59
  ['via', ''], // 60
  ['www-authenticate', ''], // 61
];

const STATIC_COUNT = 61;
// Index i at position i, for the decoder's lookups.
const STATIC_NAMES: readonly string[] = ['', ...STATIC_TABLE.map((e) => e[0])];
const STATIC_VALUES: readonly string[] = ['', ...STATIC_TABLE.map((e) => e[1])];

/** RFC 7541 §4.1: the size of an entry is its name and value lengths plus 32. */
const ENTRY_OVERHEAD = 32;
/** Decoded integers above this are refused (RFC 7541 §5.1 leaves the limit to us). */
const MAX_INTEGER = 0xffffffff;

type Latin1Slicer = { latin1Slice(start: number, end: number): string };

/**
 * Decodes the header blocks of one HTTP/2 connection, in order, keeping the
 * dynamic table in step with the peer's encoder. After an HpackError the
 * table state is unspecified: the connection must be closed (COMPRESSION_ERROR).
 */
export class HpackDecoder {
  /** The SETTINGS_HEADER_TABLE_SIZE advertised: the largest size update accepted. */
  readonly maxTableSize: number;
  private maxSize: number;
  private size = 0;
  // Dynamic table: a ring of names/values; the oldest at `first`, newest at first + count - 1.
  private names: string[] = [];
  private values: string[] = [];
  private mask = -1;
  private first = 0;
  private count = 0;
  /** Read position within the block being decoded. */
  private pos = 0;

  /**
   * maxTableSize: the SETTINGS_HEADER_TABLE_SIZE this endpoint advertised
   * (4096 by default); the table starts at this size. Safe for any value of at
   * least 4096: until the peer's first size update its table (4096 at first,
   * RFC 9113 §6.5.2) holds the newest entries of this one, so indices agree.
   * A smaller value is only right if the peer acted on it before its first block.
   */
  constructor(maxTableSize = 4096) {
    if (!Number.isInteger(maxTableSize) || maxTableSize < 0 || maxTableSize > MAX_INTEGER) {
      throw new RangeError(`HpackDecoder: bad maxTableSize ${maxTableSize}`);
    }
    this.maxTableSize = maxTableSize;
    this.maxSize = maxTableSize;
  }

  /** The dynamic table's current size in octets (RFC 7541 §4.1). */
  get tableSize(): number {
    return this.size;
  }

  /** The dynamic table's current maximum size, as last set by the peer. */
  get tableMaxSize(): number {
    return this.maxSize;
  }

  /** A copy of the dynamic table, newest entry (index 62) first. */
  tableEntries(): [string, string][] {
    const out: [string, string][] = [];
    for (let i = this.count - 1; i >= 0; i--) {
      const slot = (this.first + i) & this.mask;
      out.push([this.names[slot]!, this.values[slot]!]);
    }
    return out;
  }

  /**
   * Decodes one complete header block into [name0, value0, name1, value1, …]
   * in wire order. If the header list size (RFC 7541 §4.1) exceeds
   * maxHeaderListSize, the whole block is still decoded, so the dynamic table
   * stays in step, and null is returned. Throws HpackError on malformed input.
   */
  decode(block: Uint8Array, maxHeaderListSize: number): string[] | null {
    const buf = Buffer.isBuffer(block) ? block : Buffer.from(block.buffer, block.byteOffset, block.byteLength);
    const end = buf.length;
    const out: string[] = [];
    let listSize = 0;
    let fieldSeen = false;
    this.pos = 0;
    while (this.pos < end) {
      const b = buf[this.pos]!;
      let name: string;
      let value: string;
      if (b & 0x80) {
        // Indexed header field (§6.1).
        const index = this.readInteger(buf, end, 7);
        if (index <= STATIC_COUNT) {
          if (index === 0) throw new HpackError('index 0 in an indexed header field');
          name = STATIC_NAMES[index]!;
          value = STATIC_VALUES[index]!;
        } else {
          const slot = this.slotOf(index);
          name = this.names[slot]!;
          value = this.values[slot]!;
        }
      } else if (b & 0x40) {
        // Literal header field with incremental indexing (§6.2.1).
        const index = this.readInteger(buf, end, 6);
        name = index === 0 ? this.readString(buf, end) : this.nameOf(index);
        value = this.readString(buf, end);
        this.add(name, value);
      } else if (b & 0x20) {
        // Dynamic table size update (§6.3), only at the start of a block (§4.2).
        if (fieldSeen) throw new HpackError('dynamic table size update after a header field');
        const newSize = this.readInteger(buf, end, 5);
        if (newSize > this.maxTableSize) {
          throw new HpackError(`dynamic table size update to ${newSize} exceeds the advertised ${this.maxTableSize}`);
        }
        this.maxSize = newSize;
        this.evictTo(newSize);
        continue;
      } else {
        // Literal header field without indexing (0000) or never indexed (0001) (§6.2.2, §6.2.3).
        const index = this.readInteger(buf, end, 4);
        name = index === 0 ? this.readString(buf, end) : this.nameOf(index);
        value = this.readString(buf, end);
      }
      fieldSeen = true;
      listSize += name.length + value.length + ENTRY_OVERHEAD;
      if (listSize <= maxHeaderListSize) out.push(name, value);
    }
    return listSize <= maxHeaderListSize ? out : null;
  }

  /** Reads an integer with an N-bit prefix (§5.1) at this.pos, advancing it. */
  private readInteger(buf: Buffer, end: number, prefixBits: number): number {
    const max = (1 << prefixBits) - 1;
    let value = buf[this.pos++]! & max;
    if (value < max) return value;
    let multiplier = 1;
    for (let i = 0; i < 5; i++) {
      if (this.pos >= end) throw new HpackError('truncated integer');
      const b = buf[this.pos++]!;
      value += (b & 0x7f) * multiplier;
      if ((b & 0x80) === 0) {
        if (value > MAX_INTEGER) throw new HpackError(`integer ${value} is too large`);
        return value;
      }
      multiplier *= 128;
    }
    throw new HpackError('integer is too large (over 5 continuation octets)');
  }

  /** Reads a string literal (§5.2) at this.pos, advancing it. */
  private readString(buf: Buffer, end: number): string {
    if (this.pos >= end) throw new HpackError('truncated string literal');
    const huffman = (buf[this.pos]! & 0x80) !== 0;
    const length = this.readInteger(buf, end, 7);
    const start = this.pos;
    if (length > end - start) {
      throw new HpackError(`string length ${length} exceeds the ${end - start} octets left in the block`);
    }
    this.pos = start + length;
    return huffman ? huffmanDecode(buf, start, start + length) : (buf as unknown as Latin1Slicer).latin1Slice(start, start + length);
  }

  /** The ring slot of dynamic table index (> 61), or HpackError. */
  private slotOf(index: number): number {
    const i = index - STATIC_COUNT; // 1 = newest
    if (i > this.count) throw new HpackError(`index ${index} is out of range`);
    return (this.first + this.count - i) & this.mask;
  }

  private nameOf(index: number): string {
    return index <= STATIC_COUNT ? STATIC_NAMES[index]! : this.names[this.slotOf(index)]!;
  }

  /** Adds an entry, evicting the oldest first (§4.4). */
  private add(name: string, value: string): void {
    const entrySize = name.length + value.length + ENTRY_OVERHEAD;
    if (entrySize > this.maxSize) {
      this.evictTo(0);
      return;
    }
    this.evictTo(this.maxSize - entrySize);
    if (this.count === this.mask + 1) this.grow();
    const slot = (this.first + this.count) & this.mask;
    this.names[slot] = name;
    this.values[slot] = value;
    this.count++;
    this.size += entrySize;
  }

  /** Evicts the oldest entries until the table's size is at most target. */
  private evictTo(target: number): void {
    while (this.size > target) {
      const slot = this.first;
      this.size -= this.names[slot]!.length + this.values[slot]!.length + ENTRY_OVERHEAD;
      this.names[slot] = '';
      this.values[slot] = '';
      this.first = (slot + 1) & this.mask;
      this.count--;
    }
  }

  /** Doubles the ring's capacity, moving the oldest entry to slot 0. */
  private grow(): void {
    const capacity = Math.max(16, (this.mask + 1) * 2);
    const names = new Array<string>(capacity).fill('');
    const values = new Array<string>(capacity).fill('');
    for (let i = 0; i < this.count; i++) {
      const slot = (this.first + i) & this.mask;
      names[i] = this.names[slot]!;
      values[i] = this.values[slot]!;
    }
    this.names = names;
    this.values = values;
    this.mask = capacity - 1;
    this.first = 0;
  }
}

/**
 * Appends an HPACK integer (§5.1) to out: the first octet is firstByteFlags
 * (the bits above the prefix) OR'd with the prefix. value: 0..2^32-1.
 */
export function encodeInteger(value: number, prefixBits: number, firstByteFlags: number, out: number[]): void {
  if (!Number.isInteger(value) || value < 0 || value > MAX_INTEGER) throw new RangeError(`encodeInteger: bad value ${value}`);
  const max = (1 << prefixBits) - 1;
  if (value < max) {
    out.push(firstByteFlags | value);
    return;
  }
  out.push(firstByteFlags | max);
  let rest = value - max;
  while (rest >= 128) {
    out.push((rest % 128) | 0x80);
    rest = Math.floor(rest / 128);
  }
  out.push(rest);
}

/** Octets of integer value with an N-bit prefix. */
function integerLength(value: number, prefixBits: number): number {
  const max = (1 << prefixBits) - 1;
  if (value < max) return 1;
  let n = 2;
  for (let rest = value - max; rest >= 128; rest = Math.floor(rest / 128)) n++;
  return n;
}

/** Writes integer value with an N-bit prefix at offset; returns the offset after it. */
function writeInteger(out: Buffer, offset: number, value: number, prefixBits: number, firstByteFlags: number): number {
  const max = (1 << prefixBits) - 1;
  if (value < max) {
    out[offset++] = firstByteFlags | value;
    return offset;
  }
  out[offset++] = firstByteFlags | max;
  let rest = value - max;
  while (rest >= 128) {
    out[offset++] = (rest % 128) | 0x80;
    rest = Math.floor(rest / 128);
  }
  out[offset++] = rest;
  return offset;
}

/** Octets of a plain (non-Huffman) string literal, length prefix included. */
function stringLength(s: string | Buffer): number {
  return integerLength(s.length, 7) + s.length;
}

/** Writes a plain string literal (H = 0) at offset; a string is written as latin1. */
function writeString(out: Buffer, offset: number, s: string | Buffer): number {
  offset = writeInteger(out, offset, s.length, 7, 0);
  if (typeof s === 'string') {
    for (let i = 0; i < s.length; i++) {
      const c = s.charCodeAt(i);
      if (c > 0xff) throw new RangeError(`hpack: char ${c} at ${i} is not a byte`);
      out[offset++] = c;
    }
    return offset;
  }
  return offset + s.copy(out, offset);
}

function checkStaticIndex(index: number): void {
  if (!Number.isInteger(index) || index < 1 || index > STATIC_COUNT) throw new RangeError(`hpack: bad static index ${index}`);
}

/** "Literal header field without indexing — new name" (§6.2.2), plain strings; name used as given. */
export function hpackLiteral(name: string, value: string | Buffer): Buffer {
  const out = Buffer.allocUnsafe(1 + stringLength(name) + stringLength(value));
  out[0] = 0x00;
  writeString(out, writeString(out, 1, name), value);
  return out;
}

/** "Literal header field without indexing — indexed name" (§6.2.2, 4-bit prefix), plain value. */
export function hpackLiteralIndexedName(staticIndex: number, value: string | Buffer): Buffer {
  checkStaticIndex(staticIndex);
  const out = Buffer.allocUnsafe(integerLength(staticIndex, 4) + stringLength(value));
  writeString(out, writeInteger(out, 0, staticIndex, 4, 0x00), value);
  return out;
}

/** "Indexed header field" (§6.1, 7-bit prefix) for a static table entry. */
export function hpackIndexed(staticIndex: number): Buffer {
  checkStaticIndex(staticIndex);
  const out = Buffer.allocUnsafe(1);
  out[0] = 0x80 | staticIndex;
  return out;
}
