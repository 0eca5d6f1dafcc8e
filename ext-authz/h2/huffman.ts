/**
 * The HPACK Huffman code (RFC 7541 §5.2, Appendix B): a table-driven decoder
 * and an encoder. Strings are byte strings: one char per octet (latin1).
 */

/** A malformed or unacceptable HPACK header block (an HTTP/2 COMPRESSION_ERROR). */
export class HpackError extends Error {
  constructor(message: string) {
    super(`HPACK: ${message}`);
    this.name = 'HpackError';
  }
}

// Appendix B, transcribed from golang.org/x/net/http2/hpack/tables.go
// (huffmanCodes, huffmanCodeLen). Index = symbol; codes are right-aligned.
const CODES = new Uint32Array([
  0x1ff8, 0x7fffd8, 0xfffffe2, 0xfffffe3, 0xfffffe4, 0xfffffe5, 0xfffffe6, 0xfffffe7,
  0xfffffe8, 0xffffea, 0x3ffffffc, 0xfffffe9, 0xfffffea, 0x3ffffffd, 0xfffffeb, 0xfffffec,
  0xfffffed, 0xfffffee, 0xfffffef, 0xffffff0, 0xffffff1, 0xffffff2, 0x3ffffffe, 0xffffff3,
  0xffffff4, 0xffffff5, 0xffffff6, 0xffffff7, 0xffffff8, 0xffffff9, 0xffffffa, 0xffffffb,
  0x14, 0x3f8, 0x3f9, 0xffa, 0x1ff9, 0x15, 0xf8, 0x7fa,
  0x3fa, 0x3fb, 0xf9, 0x7fb, 0xfa, 0x16, 0x17, 0x18,
  0x0, 0x1, 0x2, 0x19, 0x1a, 0x1b, 0x1c, 0x1d,
  0x1e, 0x1f, 0x5c, 0xfb, 0x7ffc, 0x20, 0xffb, 0x3fc,
  0x1ffa, 0x21, 0x5d, 0x5e, 0x5f, 0x60, 0x61, 0x62,
  0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6a,
  0x6b, 0x6c, 0x6d, 0x6e, 0x6f, 0x70, 0x71, 0x72,
  0xfc, 0x73, 0xfd, 0x1ffb, 0x7fff0, 0x1ffc, 0x3ffc, 0x22,
  0x7ffd, 0x3, 0x23, 0x4, 0x24, 0x5, 0x25, 0x26,
  0x27, 0x6, 0x74, 0x75, 0x28, 0x29, 0x2a, 0x7,
  0x2b, 0x76, 0x2c, 0x8, 0x9, 0x2d, 0x77, 0x78,
  0x79, 0x7a, 0x7b, 0x7ffe, 0x7fc, 0x3ffd, 0x1ffd, 0xffffffc,
  0xfffe6, 0x3fffd2, 0xfffe7, 0xfffe8, 0x3fffd3, 0x3fffd4, 0x3fffd5, 0x7fffd9,
  0x3fffd6, 0x7fffda, 0x7fffdb, 0x7fffdc, 0x7fffdd, 0x7fffde, 0xffffeb, 0x7fffdf,
  0xffffec, 0xffffed, 0x3fffd7, 0x7fffe0, 0xffffee, 0x7fffe1, 0x7fffe2, 0x7fffe3,
  0x7fffe4, 0x1fffdc, 0x3fffd8, 0x7fffe5, 0x3fffd9, 0x7fffe6, 0x7fffe7, 0xffffef,
  0x3fffda, 0x1fffdd, 0xfffe9, 0x3fffdb, 0x3fffdc, 0x7fffe8, 0x7fffe9, 0x1fffde,
  0x7fffea, 0x3fffdd, 0x3fffde, 0xfffff0, 0x1fffdf, 0x3fffdf, 0x7fffeb, 0x7fffec,
  0x1fffe0, 0x1fffe1, 0x3fffe0, 0x1fffe2, 0x7fffed, 0x3fffe1, 0x7fffee, 0x7fffef,
  0xfffea, 0x3fffe2, 0x3fffe3, 0x3fffe4, 0x7ffff0, 0x3fffe5, 0x3fffe6, 0x7ffff1,
  0x3ffffe0, 0x3ffffe1, 0xfffeb, 0x7fff1, 0x3fffe7, 0x7ffff2, 0x3fffe8, 0x1ffffec,
  0x3ffffe2, 0x3ffffe3, 0x3ffffe4, 0x7ffffde, 0x7ffffdf, 0x3ffffe5, 0xfffff1, 0x1ffffed,
  0x7fff2, 0x1fffe3, 0x3ffffe6, 0x7ffffe0, 0x7ffffe1, 0x3ffffe7, 0x7ffffe2, 0xfffff2,
  0x1fffe4, 0x1fffe5, 0x3ffffe8, 0x3ffffe9, 0xffffffd, 0x7ffffe3, 0x7ffffe4, 0x7ffffe5,
  0xfffec, 0xfffff3, 0xfffed, 0x1fffe6, 0x3fffe9, 0x1fffe7, 0x1fffe8, 0x7ffff3,
  0x3fffea, 0x3fffeb, 0x1ffffee, 0x1ffffef, 0xfffff4, 0xfffff5, 0x3ffffea, 0x7ffff4,
  0x3ffffeb, 0x7ffffe6, 0x3ffffec, 0x3ffffed, 0x7ffffe7, 0x7ffffe8, 0x7ffffe9, 0x7ffffea,
  0x7ffffeb, 0xffffffe, 0x7ffffec, 0x7ffffed, 0x7ffffee, 0x7ffffef, 0x7fffff0, 0x3ffffee,
]);
const LENGTHS = new Uint8Array([
  13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28,
  28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 28,
  6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6,
  5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10,
  13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
  7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6,
  15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5,
  6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28,
  20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23,
  24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24,
  22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23,
  21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23,
  26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25,
  19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27,
  20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23,
  26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26,
]);
const EOS_CODE = 0x3fffffff;
const EOS_LENGTH = 30;

// Decoder: a nibble-at-a-time state machine over the code tree (as in
// nghttp2). A state is an internal node of the tree (0 = root); 256 states.
// With no code shorter than 5 bits, a nibble completes at most one symbol.
// TRANSITIONS[state << 4 | nibble] = next state | symbol << 8 | flags.
const EMIT = 1 << 16;
const FAIL = 1 << 17;
const TRANSITIONS = new Uint32Array(256 * 16);
/** Per state, as an end state: 0 = valid, 1 = padding over 7 bits, 2 = padding not all 1s. */
const END_STATE = new Uint8Array(256);

(function buildDecoder(): void {
  // Tree: children of internal node n at CHILD[2n] / CHILD[2n + 1];
  // a value >= 0x10000 is a leaf for symbol (value - 0x10000).
  const LEAF = 0x10000;
  const child = new Int32Array(256 * 2).fill(-1);
  const depth = new Uint8Array(256);
  const allOnes = new Uint8Array(256);
  allOnes[0] = 1;
  let nodes = 1;
  for (let sym = 0; sym <= 256; sym++) {
    const code = sym === 256 ? EOS_CODE : CODES[sym]!;
    const len = sym === 256 ? EOS_LENGTH : LENGTHS[sym]!;
    let node = 0;
    for (let i = len - 1; i >= 0; i--) {
      const bit = (code >>> i) & 1;
      const slot = node * 2 + bit;
      if (i === 0) {
        if (child[slot] !== -1) throw new Error('huffman table: code is not prefix-free');
        child[slot] = LEAF + sym;
      } else {
        let next = child[slot]!;
        if (next === -1) {
          next = nodes++;
          child[slot] = next;
          depth[next] = depth[node]! + 1;
          allOnes[next] = allOnes[node]! & bit;
        } else if (next >= LEAF) {
          throw new Error('huffman table: code is not prefix-free');
        }
        node = next;
      }
    }
  }
  if (nodes !== 256) throw new Error(`huffman table: ${nodes} internal nodes, expected 256`);
  for (let state = 0; state < 256; state++) {
    END_STATE[state] = allOnes[state] ? (depth[state]! > 7 ? 1 : 0) : 2;
    for (let nibble = 0; nibble < 16; nibble++) {
      let node = state;
      let entry = 0;
      for (let i = 3; i >= 0; i--) {
        const next = child[node * 2 + ((nibble >>> i) & 1)]!;
        if (next >= LEAF) {
          const sym = next - LEAF;
          if (sym === 256) { entry |= FAIL; break; }
          entry |= EMIT | (sym << 8);
          node = 0;
        } else {
          node = next;
        }
      }
      TRANSITIONS[(state << 4) | nibble] = entry | node;
    }
  }
})();

let scratch = Buffer.allocUnsafe(1024);

type Latin1Slicer = { latin1Slice(start: number, end: number): string };

/**
 * Decodes the Huffman-coded octets src[start, end) to a byte string.
 * Throws HpackError on the EOS symbol, padding over 7 bits, or padding that
 * is not the most-significant bits of EOS (all 1s).
 */
export function huffmanDecode(src: Uint8Array, start: number, end: number): string {
  // Each symbol takes at least 5 bits.
  const max = (((end - start) * 8) / 5) | 0;
  if (scratch.length < max) scratch = Buffer.allocUnsafe(Math.max(max, scratch.length * 2));
  const out = scratch;
  let n = 0;
  let state = 0;
  for (let i = start; i < end; i++) {
    const b = src[i]!;
    let e = TRANSITIONS[(state << 4) | (b >>> 4)]!;
    if (e & FAIL) throw new HpackError('Huffman-coded string contains the EOS symbol');
    if (e & EMIT) out[n++] = e >>> 8;
    state = e & 0xff;
    e = TRANSITIONS[(state << 4) | (b & 0x0f)]!;
    if (e & FAIL) throw new HpackError('Huffman-coded string contains the EOS symbol');
    if (e & EMIT) out[n++] = e >>> 8;
    state = e & 0xff;
  }
  const endState = END_STATE[state]!;
  if (endState !== 0) {
    throw new HpackError(endState === 1
      ? 'Huffman-coded string has padding longer than 7 bits'
      : 'Huffman-coded string has padding that is not all 1s');
  }
  return (out as unknown as Latin1Slicer).latin1Slice(0, n);
}

/** The length in octets of the Huffman coding of byte string s. */
export function huffmanEncodedLength(s: string): number {
  let bits = 0;
  for (let i = 0; i < s.length; i++) bits += LENGTHS[s.charCodeAt(i) & 0xff]!;
  return (bits + 7) >>> 3;
}

/**
 * Writes the Huffman coding of byte string s to out at offset, padded with the
 * most-significant bits of EOS; returns the offset after it. out must have
 * room for huffmanEncodedLength(s) octets. Throws RangeError on a char above 0xff.
 */
export function huffmanEncode(s: string, out: Buffer, offset: number): number {
  let o = offset;
  let cur = 0; // pending bits, fewer than 8
  let pending = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c > 0xff) throw new RangeError(`huffmanEncode: char ${c} at ${i} is not a byte`);
    const code = CODES[c]!;
    let len = LENGTHS[c]!;
    while (len > 0) {
      const room = 8 - pending;
      if (len >= room) {
        len -= room;
        out[o++] = ((cur << room) | ((code >>> len) & ((1 << room) - 1))) & 0xff;
        cur = 0;
        pending = 0;
      } else {
        cur = (cur << len) | (code & ((1 << len) - 1));
        pending += len;
        len = 0;
      }
    }
  }
  if (pending > 0) out[o++] = ((cur << (8 - pending)) | ((1 << (8 - pending)) - 1)) & 0xff;
  return o;
}
