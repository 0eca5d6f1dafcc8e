import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import http2 from 'node:http2';
import {
  HpackDecoder,
  HpackError,
  STATIC_TABLE,
  encodeInteger,
  hpackIndexed,
  hpackLiteral,
  hpackLiteralIndexedName,
} from '../../../ext-authz/h2/hpack.ts';
import { huffmanDecode, huffmanEncode, huffmanEncodedLength } from '../../../ext-authz/h2/huffman.ts';
import { mulberry32 } from '../../support/random.ts';

type Pair = [string, string];

const dehex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const flat = (pairs: Pair[]): string[] => pairs.flat();
const BIG = 1 << 30;


function huff(s: string): Buffer {
  const out = Buffer.alloc(huffmanEncodedLength(s));
  assert.equal(huffmanEncode(s, out, 0), out.length);
  return out;
}

function randomByteString(rand: () => number, length: number, alphabet?: string): string {
  let s = '';
  for (let i = 0; i < length; i++) {
    s += alphabet ? alphabet[Math.floor(rand() * alphabet.length)]! : String.fromCharCode(Math.floor(rand() * 256));
  }
  return s;
}

function throwsHpack(fn: () => unknown, message: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof HpackError, `expected HpackError, got ${String(err)}`);
    assert.match(err.message, /^HPACK: /);
    assert.match(err.message, message);
    return true;
  });
}

/** Checks the table's bookkeeping against its entries. */
function checkTable(d: HpackDecoder): void {
  const size = d.tableEntries().reduce((n, [name, value]) => n + name.length + value.length + 32, 0);
  assert.equal(d.tableSize, size);
  assert.ok(d.tableSize <= d.tableMaxSize && d.tableMaxSize <= d.maxTableSize);
}

describe('huffman (RFC 7541 Appendix B)', () => {
  // RFC 7541 C.4 and C.6 strings (also in golang.org/x/net/http2/hpack's TestHuffmanDecode).
  const vectors: [string, string][] = [
    ['f1e3 c2e5 f23a 6ba0 ab90 f4ff', 'www.example.com'],
    ['a8eb 1064 9cbf', 'no-cache'],
    ['25a8 49e9 5ba9 7d7f', 'custom-key'],
    ['25a8 49e9 5bb8 e8b4 bf', 'custom-value'],
    ['6402', '302'],
    ['aec3 771a 4b', 'private'],
    ['d07a be94 1054 d444 a820 0595 040b 8166 e082 a62d 1bff', 'Mon, 21 Oct 2013 20:13:21 GMT'],
    ['9d29 ad17 1863 c78f 0b97 c8e9 ae82 ae43 d3', 'https://www.example.com'],
    ['9bd9 ab', 'gzip'],
    ['94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f 9587 3160 65c0 03ed 4ee5 b106 3d50 07',
      'foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1'],
  ];

  it('decodes and encodes the RFC 7541 Appendix C strings', () => {
    for (const [hex, text] of vectors) {
      const bytes = dehex(hex);
      assert.equal(huffmanDecode(bytes, 0, bytes.length), text);
      assert.equal(huffmanEncodedLength(text), bytes.length, text);
      assert.equal(huff(text).toString('hex'), bytes.toString('hex'), text);
    }
  });

  it('decodes within [start, end) of a larger array', () => {
    const bytes = Buffer.concat([Buffer.from([0x00, 0x11]), dehex('f1e3 c2e5 f23a 6ba0 ab90 f4ff'), Buffer.from([0x00])]);
    assert.equal(huffmanDecode(new Uint8Array(bytes), 2, bytes.length - 1), 'www.example.com');
    assert.equal(huffmanDecode(bytes, 3, 3), '');
  });

  it('round-trips every byte 0..255 alone and all of them together', () => {
    let all = '';
    for (let c = 0; c < 256; c++) {
      const s = String.fromCharCode(c);
      all += s;
      const enc = huff(s);
      assert.equal(huffmanDecode(enc, 0, enc.length), s, `byte ${c}`);
      for (const n of [2, 3, 7, 8, 9]) {
        const many = s.repeat(n);
        const encMany = huff(many);
        assert.equal(huffmanDecode(encMany, 0, encMany.length), many, `byte ${c} x${n}`);
      }
    }
    const enc = huff(all);
    assert.equal(huffmanDecode(enc, 0, enc.length), all);
  });

  it('round-trips 3,000 random strings (seeded), short and long', () => {
    const rand = mulberry32(7541);
    const text = 'abcdefghijklmnopqrstuvwxyz0123456789-_./:;= ';
    for (let i = 0; i < 3000; i++) {
      const length = i % 100 === 0 ? 5000 + Math.floor(rand() * 5000) : Math.floor(rand() * 200);
      const s = randomByteString(rand, length, i % 2 ? text : undefined);
      const enc = huff(s);
      assert.equal(huffmanDecode(enc, 0, enc.length), s, `string ${i}`);
    }
  });

  it('refuses the EOS symbol in the data', () => {
    throwsHpack(() => huffmanDecode(Buffer.from([0xff, 0xff, 0xff, 0xff, 0xfc]), 0, 5), /EOS/); // EOS, '?'
    throwsHpack(() => huffmanDecode(Buffer.from([0xff, 0xff, 0xff, 0xff]), 0, 4), /EOS/); // EOS, 2 bits of padding
    const eosAfterA = Buffer.from([0x1f, 0xff, 0xff, 0xff, 0xfe]); // 'a' (00011), EOS (30 x 1), padding 1111 1 ... 0
    throwsHpack(() => huffmanDecode(eosAfterA, 0, eosAfterA.length), /EOS/);
    // ' ', 'p', 'F', 'A', EOS, 1 bit of padding (Go's test lists it as excess padding; it holds EOS).
    throwsHpack(() => huffmanDecode(Buffer.from([0x52, 0xbc, 0x30, 0xff, 0xff, 0xff, 0xff]), 0, 7), /EOS/);
  });

  it('refuses padding longer than 7 bits', () => {
    const cases = [
      [0xff], // 8 bits of padding
      [0x1f, 0xff], // 'a', then 11 bits
      [0x1f, 0xff, 0xff],
      [0x1f, 0xff, 0xff, 0xff],
      [0xff, 0x9f, 0xff, 0xff, 0xff], // 29 bits
    ];
    for (const bytes of cases) throwsHpack(() => huffmanDecode(Buffer.from(bytes), 0, bytes.length), /padding longer than 7 bits/);
  });

  it('refuses padding that is not all 1s', () => {
    throwsHpack(() => huffmanDecode(Buffer.from([0x00]), 0, 1), /padding that is not all 1s/); // '0' (00000), 000
    throwsHpack(() => huffmanDecode(Buffer.from([0x1e]), 0, 1), /padding that is not all 1s/); // 'a' (00011), 110
    const enc = huff('www.example.com');
    enc[enc.length - 1]! &= 0xfe;
    throwsHpack(() => huffmanDecode(enc, 0, enc.length), /padding that is not all 1s/);
  });
});

describe('HPACK integers and response encoders', () => {
  it('encodes the RFC 7541 C.1 integers', () => {
    const out: number[] = [];
    encodeInteger(10, 5, 0, out);
    assert.deepEqual(out, [0x0a]);
    out.length = 0;
    encodeInteger(1337, 5, 0xe0, out);
    assert.deepEqual(out, [0xff, 0x9a, 0x0a]);
    out.length = 0;
    encodeInteger(42, 8, 0, out);
    assert.deepEqual(out, [0x2a]);
  });

  it('round-trips integers up to 2^32-1 through a size update, and refuses 2^32', () => {
    for (const value of [0, 30, 31, 32, 127, 128, 4096, 16383, 16384, 2 ** 21, 2 ** 28, 2 ** 32 - 1]) {
      const out: number[] = [];
      encodeInteger(value, 5, 0x20, out);
      const d = new HpackDecoder(2 ** 32 - 1);
      assert.deepEqual(d.decode(Buffer.from(out), BIG), []);
      assert.equal(d.tableMaxSize, value);
    }
    throwsHpack(() => new HpackDecoder(2 ** 32 - 1).decode(Buffer.from([0x3f, 0xe1, 0xff, 0xff, 0xff, 0x0f]), BIG), /too large/);
    throwsHpack(() => new HpackDecoder().decode(Buffer.from([0xff, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00]), BIG), /too large/);
  });

  it('exposes the 61-entry static table, index 1 at position 0', () => {
    assert.equal(STATIC_TABLE.length, 61);
    assert.deepEqual(STATIC_TABLE[0], [':authority', '']);
    assert.deepEqual(STATIC_TABLE[1], [':method', 'GET']);
    assert.deepEqual(STATIC_TABLE[7], [':status', '200']);
    assert.deepEqual(STATIC_TABLE[30], ['content-type', '']);
    assert.deepEqual(STATIC_TABLE[60], ['www-authenticate', '']);
    const d = new HpackDecoder();
    for (let i = 1; i <= 61; i++) assert.deepEqual(d.decode(hpackIndexed(i), BIG), [...STATIC_TABLE[i - 1]!]);
  });

  it('encodes response fields that decode without touching the dynamic table', () => {
    assert.equal(hpackIndexed(8).toString('hex'), '88');
    assert.equal(hpackLiteral('grpc-status', '0').toString('hex'), '000b' + Buffer.from('grpc-status').toString('hex') + '0130');
    assert.equal(hpackLiteralIndexedName(31, 'application/grpc').toString('hex'), '0f10' + '10' + Buffer.from('application/grpc').toString('hex'));
    assert.equal(hpackLiteralIndexedName(8, '').toString('hex'), '0800');
    const long = 'x'.repeat(300);
    const block = Buffer.concat([
      hpackIndexed(8),
      hpackLiteralIndexedName(31, 'application/grpc'),
      hpackLiteral('grpc-status', '0'),
      hpackLiteral('grpc-message', Buffer.from('caf\xe9', 'latin1')),
      hpackLiteral('x-long', long),
      hpackLiteralIndexedName(28, Buffer.from('12')),
    ]);
    const d = new HpackDecoder(0);
    assert.deepEqual(d.decode(block, BIG), [
      ':status', '200', 'content-type', 'application/grpc', 'grpc-status', '0',
      'grpc-message', 'caf\xe9', 'x-long', long, 'content-length', '12',
    ]);
    assert.equal(d.tableSize, 0);
    assert.throws(() => hpackIndexed(0), RangeError);
    assert.throws(() => hpackIndexed(62), RangeError);
    assert.throws(() => hpackLiteralIndexedName(62, 'x'), RangeError);
  });
});

describe('HpackDecoder: RFC 7541 Appendix C', () => {
  type Step = { hex: string; headers: Pair[]; table: Pair[]; size: number };
  function series(tableSize: number, steps: Step[]): void {
    const d = new HpackDecoder(tableSize);
    steps.forEach((step, i) => {
      assert.deepEqual(d.decode(dehex(step.hex), BIG), flat(step.headers), `step ${i} headers`);
      assert.deepEqual(d.tableEntries(), step.table, `step ${i} table`);
      assert.equal(d.tableSize, step.size, `step ${i} table size`);
    });
  }

  it('C.2.1 literal header field with indexing', () => {
    series(4096, [{
      hex: '400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572',
      headers: [['custom-key', 'custom-header']], table: [['custom-key', 'custom-header']], size: 55,
    }]);
  });

  it('C.2.2 literal header field without indexing', () => {
    series(4096, [{ hex: '040c 2f73 616d 706c 652f 7061 7468', headers: [[':path', '/sample/path']], table: [], size: 0 }]);
  });

  it('C.2.3 literal header field never indexed', () => {
    series(4096, [{ hex: '1008 7061 7373 776f 7264 0673 6563 7265 74', headers: [['password', 'secret']], table: [], size: 0 }]);
  });

  it('C.2.4 indexed header field', () => {
    series(4096, [{ hex: '82', headers: [[':method', 'GET']], table: [], size: 0 }]);
  });

  const requests: Pair[][] = [
    [[':method', 'GET'], [':scheme', 'http'], [':path', '/'], [':authority', 'www.example.com']],
    [[':method', 'GET'], [':scheme', 'http'], [':path', '/'], [':authority', 'www.example.com'], ['cache-control', 'no-cache']],
    [[':method', 'GET'], [':scheme', 'https'], [':path', '/index.html'], [':authority', 'www.example.com'], ['custom-key', 'custom-value']],
  ];
  const requestTables: Pair[][] = [
    [[':authority', 'www.example.com']],
    [['cache-control', 'no-cache'], [':authority', 'www.example.com']],
    [['custom-key', 'custom-value'], ['cache-control', 'no-cache'], [':authority', 'www.example.com']],
  ];

  it('C.3 requests without Huffman coding', () => {
    series(4096, [
      { hex: '8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d', headers: requests[0]!, table: requestTables[0]!, size: 57 },
      { hex: '8286 84be 5808 6e6f 2d63 6163 6865', headers: requests[1]!, table: requestTables[1]!, size: 110 },
      { hex: '8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65', headers: requests[2]!, table: requestTables[2]!, size: 164 },
    ]);
  });

  it('C.4 requests with Huffman coding', () => {
    series(4096, [
      { hex: '8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff', headers: requests[0]!, table: requestTables[0]!, size: 57 },
      { hex: '8286 84be 5886 a8eb 1064 9cbf', headers: requests[1]!, table: requestTables[1]!, size: 110 },
      { hex: '8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf', headers: requests[2]!, table: requestTables[2]!, size: 164 },
    ]);
  });

  const date1 = 'Mon, 21 Oct 2013 20:13:21 GMT';
  const date2 = 'Mon, 21 Oct 2013 20:13:22 GMT';
  const loc = 'https://www.example.com';
  const cookie = 'foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1';
  const responses: Pair[][] = [
    [[':status', '302'], ['cache-control', 'private'], ['date', date1], ['location', loc]],
    [[':status', '307'], ['cache-control', 'private'], ['date', date1], ['location', loc]],
    [[':status', '200'], ['cache-control', 'private'], ['date', date2], ['location', loc], ['content-encoding', 'gzip'], ['set-cookie', cookie]],
  ];
  const responseTables: Pair[][] = [
    [['location', loc], ['date', date1], ['cache-control', 'private'], [':status', '302']],
    [[':status', '307'], ['location', loc], ['date', date1], ['cache-control', 'private']],
    [['set-cookie', cookie], ['content-encoding', 'gzip'], ['date', date2]],
  ];

  it('C.5 responses without Huffman coding, 256-octet table with eviction', () => {
    series(256, [
      {
        hex: `4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133
              2032 303a 3133 3a32 3120 474d 546e 1768 7474 7073 3a2f 2f77 7777 2e65 7861 6d70 6c65 2e63 6f6d`,
        headers: responses[0]!, table: responseTables[0]!, size: 222,
      },
      { hex: '4803 3330 37c1 c0bf', headers: responses[1]!, table: responseTables[1]!, size: 222 },
      {
        hex: `88c1 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3220 474d
              54c0 5a04 677a 6970 7738 666f 6f3d 4153 444a 4b48 514b 425a 584f 5157 454f 5049
              5541 5851 5745 4f49 553b 206d 6178 2d61 6765 3d33 3630 303b 2076 6572 7369 6f6e 3d31`,
        headers: responses[2]!, table: responseTables[2]!, size: 215,
      },
    ]);
  });

  it('C.6 responses with Huffman coding, 256-octet table with eviction', () => {
    series(256, [
      {
        hex: `4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6
              2d1b ff6e 919d 29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3`,
        headers: responses[0]!, table: responseTables[0]!, size: 222,
      },
      { hex: '4883 640e ffc1 c0bf', headers: responses[1]!, table: responseTables[1]!, size: 222 },
      {
        hex: `88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a 839b d9ab
              77ad 94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f
              9587 3160 65c0 03ed 4ee5 b106 3d50 07`,
        headers: responses[2]!, table: responseTables[2]!, size: 215,
      },
    ]);
  });

  it('decodes a Uint8Array that is not a Buffer', () => {
    const bytes = dehex('8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff');
    const copy = new Uint8Array(new ArrayBuffer(bytes.length + 4), 2, bytes.length);
    copy.set(bytes);
    assert.deepEqual(new HpackDecoder().decode(copy, BIG), flat(requests[0]!));
  });
});

// ---------------------------------------------------------------------------
// A test-side encoder over a naive model of the dynamic table (newest first),
// used for model-based tests and as the fuzzer's seeds.

class ModelTable {
  entries: Pair[] = [];
  size = 0;
  constructor(public maxSize: number) {}
  add(name: string, value: string): void {
    this.entries.unshift([name, value]);
    this.size += name.length + value.length + 32;
    this.evict();
  }
  resize(maxSize: number): void {
    this.maxSize = maxSize;
    this.evict();
  }
  private evict(): void {
    while (this.size > this.maxSize) {
      const [name, value] = this.entries.pop()!;
      this.size -= name.length + value.length + 32;
    }
  }
}

function pushString(out: number[], s: string, huffman: boolean): void {
  if (huffman) {
    const enc = huff(s);
    encodeInteger(enc.length, 7, 0x80, out);
    for (const b of enc) out.push(b);
  } else {
    encodeInteger(s.length, 7, 0, out);
    for (let i = 0; i < s.length; i++) out.push(s.charCodeAt(i));
  }
}

/** Encodes fields with randomly chosen representations, updating model as a peer encoder would. */
function modelEncode(rand: () => number, model: ModelTable, fields: Pair[], sizeUpdates: number[] = []): Buffer {
  const out: number[] = [];
  for (const size of sizeUpdates) {
    encodeInteger(size, 5, 0x20, out);
    model.resize(size);
  }
  for (const [name, value] of fields) {
    const full = STATIC_TABLE.findIndex(([n, v]) => n === name && v === value);
    const dynFull = model.entries.findIndex(([n, v]) => n === name && v === value);
    const staticName = STATIC_TABLE.findIndex(([n]) => n === name);
    const dynName = model.entries.findIndex(([n]) => n === name);
    const r = rand();
    if (r < 0.5 && (full >= 0 || dynFull >= 0)) {
      encodeInteger(full >= 0 && (dynFull < 0 || rand() < 0.5) ? full + 1 : 62 + dynFull, 7, 0x80, out);
      continue;
    }
    const kind = Math.floor(rand() * 3); // 0: incremental indexing, 1: without indexing, 2: never indexed
    const [prefix, flags] = kind === 0 ? [6, 0x40] : kind === 1 ? [4, 0x00] : [4, 0x10];
    const nameIndex = staticName >= 0 && rand() < 0.7 ? staticName + 1 : dynName >= 0 && rand() < 0.7 ? 62 + dynName : 0;
    encodeInteger(nameIndex, prefix, flags, out);
    if (nameIndex === 0) pushString(out, name, rand() < 0.5);
    pushString(out, value, rand() < 0.5);
    if (kind === 0) model.add(name, value);
  }
  return Buffer.from(out);
}

function randomFields(rand: () => number, n: number): Pair[] {
  const names = ['custom-key', 'x-request-id', 'grpc-timeout', 'te', ':path', ':authority', 'content-type', 'user-agent', 'x-\xe9t\xe9', 'authorization'];
  const values = ['', 'trailers', 'application/grpc', '/pkg.Service/Method', 'a', 'value\xff\x00', '1S'];
  const fields: Pair[] = [];
  for (let i = 0; i < n; i++) {
    const r = rand();
    if (r < 0.2) {
      fields.push([...STATIC_TABLE[Math.floor(rand() * 61)]!]);
    } else {
      const name = rand() < 0.8 ? names[Math.floor(rand() * names.length)]! : randomByteString(rand, 1 + Math.floor(rand() * 20));
      const value = rand() < 0.5 ? values[Math.floor(rand() * values.length)]! : randomByteString(rand, Math.floor(rand() * (rand() < 0.1 ? 400 : 40)));
      fields.push([name, value]);
    }
  }
  return fields;
}

/** Sequences of valid blocks (one connection each) with the table size they assume. */
function modelSequences(seed: number, count: number): { tableSize: number; blocks: Buffer[]; fields: Pair[][] }[] {
  const rand = mulberry32(seed);
  const sequences = [];
  for (let s = 0; s < count; s++) {
    const tableSize = [4096, 256, 100, 0, 65536][s % 5]!;
    const model = new ModelTable(tableSize);
    const blocks: Buffer[] = [];
    const fields: Pair[][] = [];
    for (let b = 0; b < 12; b++) {
      const f = randomFields(rand, 1 + Math.floor(rand() * 15));
      const updates = rand() < 0.15 ? Array.from({ length: 1 + Math.floor(rand() * 2) }, () => Math.floor(rand() * (tableSize + 1))) : [];
      blocks.push(modelEncode(rand, model, f, updates));
      fields.push(f);
    }
    sequences.push({ tableSize, blocks, fields });
  }
  return sequences;
}

describe('HpackDecoder: dynamic table', () => {
  it('agrees with a naive model over 60 connections of random representations, eviction and size updates', () => {
    const rand = mulberry32(42);
    for (let conn = 0; conn < 60; conn++) {
      const tableSize = [4096, 256, 100, 0, 65536, 1000][conn % 6]!;
      const model = new ModelTable(tableSize);
      const d = new HpackDecoder(tableSize);
      for (let b = 0; b < 40; b++) {
        const fields = randomFields(rand, 1 + Math.floor(rand() * 20));
        const updates = rand() < 0.1 ? Array.from({ length: 1 + Math.floor(rand() * 2) }, () => Math.floor(rand() * (tableSize + 1))) : [];
        const block = modelEncode(rand, model, fields, updates);
        assert.deepEqual(d.decode(block, BIG), flat(fields), `conn ${conn} block ${b}`);
        assert.deepEqual(d.tableEntries(), model.entries, `conn ${conn} block ${b} table`);
        assert.equal(d.tableSize, model.size);
        assert.equal(d.tableMaxSize, model.maxSize);
      }
    }
  });

  it('wraps and grows its ring: 5,000 insertions of mixed sizes, every index checked', () => {
    const d = new HpackDecoder(4096);
    const model = new ModelTable(4096);
    const rand = mulberry32(9);
    for (let i = 0; i < 5000; i++) {
      const name = `n${i % 7}`;
      const value = 'v'.repeat(Math.floor(rand() * (i % 500 === 0 ? 3000 : 20))) + i;
      const out: number[] = [0x40];
      pushString(out, name, false);
      pushString(out, value, i % 2 === 0);
      d.decode(Buffer.from(out), BIG);
      model.add(name, value);
      if (i % 250 === 0 || i === 4999) {
        assert.deepEqual(d.tableEntries(), model.entries, `after ${i}`);
        for (let k = 0; k < model.entries.length; k++) {
          const index: number[] = [];
          encodeInteger(62 + k, 7, 0x80, index);
          assert.deepEqual(d.decode(Buffer.from(index), BIG), [...model.entries[k]!]);
        }
      }
    }
    assert.ok(model.entries.length > 50, `${model.entries.length} entries`);
    checkTable(d);
  });

  it('empties the table for an entry larger than it, without adding it', () => {
    const d = new HpackDecoder(256);
    const out: number[] = [];
    for (const [n, v] of [['a', 'b'], ['c', 'x'.repeat(300)]] as Pair[]) {
      out.push(0x40);
      pushString(out, n, false);
      pushString(out, v, false);
    }
    assert.deepEqual(d.decode(Buffer.from(out.slice(0, 5)), BIG), ['a', 'b']);
    assert.equal(d.tableSize, 34);
    assert.deepEqual(d.decode(Buffer.from(out.slice(5)), BIG), ['c', 'x'.repeat(300)]);
    assert.deepEqual(d.tableEntries(), []);
    assert.equal(d.tableSize, 0);
  });

  it('accepts several size updates at the start of a block; shrinking evicts, 0 empties', () => {
    const d = new HpackDecoder(4096);
    d.decode(dehex('8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d'), BIG);
    d.decode(dehex('8286 84be 5808 6e6f 2d63 6163 6865'), BIG);
    assert.equal(d.tableSize, 110);
    assert.deepEqual(d.decode(dehex('3f 21 be'), BIG), ['cache-control', 'no-cache']); // size 64: keeps only the newest (53 octets)
    assert.deepEqual(d.tableEntries(), [['cache-control', 'no-cache']]);
    assert.equal(d.tableMaxSize, 64);
    assert.deepEqual(d.decode(dehex('20 3fe11f 82'), BIG), [':method', 'GET']); // 0 then back to 4096
    assert.deepEqual(d.tableEntries(), []);
    assert.equal(d.tableMaxSize, 4096);
  });

  it('returns null for a header list over maxHeaderListSize, yet keeps the table in step', () => {
    const d = new HpackDecoder();
    const big = 'v'.repeat(1000);
    const out: number[] = [0x82, 0x40];
    pushString(out, 'x-big', true);
    pushString(out, big, false);
    out.push(0x84);
    const block = Buffer.from(out);
    const listSize = (7 + 3 + 32) + (5 + 1000 + 32) + (5 + 1 + 32);
    assert.equal(d.decode(block, listSize - 1), null);
    assert.deepEqual(d.tableEntries(), [['x-big', big]]);
    assert.deepEqual(d.decode(Buffer.from([0xbe, 0x82]), 100), null); // 1037 + 42 > 100
    assert.deepEqual(d.decode(Buffer.from([0x82, 0xbe]), 1079), [':method', 'GET', 'x-big', big]); // exactly the limit
    assert.deepEqual(new HpackDecoder().decode(block, listSize), [':method', 'GET', 'x-big', big, ':path', '/']);
    assert.deepEqual(d.decode(Buffer.alloc(0), 0), []);
  });

  it('an indexed reference returns the name and value of the entry', () => {
    const d = new HpackDecoder();
    const out: number[] = [0x40];
    pushString(out, 'x-a', false);
    pushString(out, 'some value', true);
    const first = d.decode(Buffer.from(out), BIG)!;
    const again = d.decode(Buffer.from([0xbe]), BIG)!;
    assert.equal(again[0], first[0]);
    assert.equal(again[1], first[1]);
    assert.equal(again[0], d.tableEntries()[0]![0]);
  });
});

describe('HpackDecoder: malformed blocks', () => {
  const decode = (hex: string, tableSize = 4096) => () => new HpackDecoder(tableSize).decode(dehex(hex), BIG);

  it('index 0', () => throwsHpack(decode('80'), /^HPACK: index 0 in an indexed header field$/));

  it('an index beyond the static and dynamic tables', () => {
    throwsHpack(decode('c6'), /^HPACK: index 70 is out of range$/);
    throwsHpack(decode('be'), /^HPACK: index 62 is out of range$/);
    throwsHpack(decode('7f00 0161'), /^HPACK: index 63 is out of range$/); // literal, indexed name
    throwsHpack(decode('0f30 0161'), /^HPACK: index 63 is out of range$/);
    throwsHpack(decode('4001 6101 62 bf'), /^HPACK: index 63 is out of range$/); // one entry: 62 exists, 63 does not
    assert.deepEqual(decode('4001 6101 62 be')(), ['a', 'b', 'a', 'b']);
  });

  it('a table size update above the advertised maximum', () => {
    throwsHpack(decode('3fe2 1f'), /^HPACK: dynamic table size update to 4097 exceeds the advertised 4096$/);
    throwsHpack(decode('21', 0), /size update to 1 exceeds the advertised 0/);
    assert.deepEqual(decode('3fe1 1f')(), []);
  });

  it('a table size update after a header field', () => {
    throwsHpack(decode('8220'), /^HPACK: dynamic table size update after a header field$/);
    throwsHpack(decode('2082 3fe11f'), /after a header field/);
  });

  it('a truncated integer', () => {
    throwsHpack(decode('ff'), /^HPACK: truncated integer$/);
    throwsHpack(decode('ff80'), /^HPACK: truncated integer$/);
    throwsHpack(decode('4001 61ff'), /^HPACK: truncated integer$/); // value length
  });

  it('an integer over 2^32-1 or over 5 continuation octets', () => {
    throwsHpack(decode('ffff ffff ff0f'), /^HPACK: integer \d+ is too large$/);
    throwsHpack(decode('ff80 8080 8080 00'), /^HPACK: integer is too large \(over 5 continuation octets\)$/);
  });

  it('a string longer than the block, and a missing string', () => {
    throwsHpack(decode('0005 6162'), /^HPACK: string length 5 exceeds the 2 octets left in the block$/);
    throwsHpack(decode('0001 61'), /^HPACK: truncated string literal$/);
    throwsHpack(decode('40'), /^HPACK: truncated string literal$/);
    throwsHpack(decode('04'), /^HPACK: truncated string literal$/);
    throwsHpack(decode('0001 61ff ffff ff07'), /string length 16777342 exceeds the 0 octets left/);
  });

  it('bad Huffman in a name or value', () => {
    throwsHpack(decode('0081 0001 61'), /padding that is not all 1s/);
    throwsHpack(decode('0001 6181 ff'), /padding longer than 7 bits/);
    throwsHpack(decode('0001 6184 ffff ffff'), /EOS/);
  });
});

// ---------------------------------------------------------------------------
// Differential test against nghttp2 (node:http2's client): a raw TCP server
// reads the client's frames, and every header block is decoded here.

type Capture = { blocks: Buffer[]; streams: number[]; paddedFrames: number; priorityFrames: number; continuations: number };

/** Lets an http2 client send requests to a raw socket; returns the header blocks in wire order. */
async function captureRequests(
  requests: Pair[][],
  options: { headerTableSize?: number; padding?: boolean; weight?: number; sensitive?: string[]; waitForSettings?: boolean },
): Promise<Capture> {
  const capture: Capture = { blocks: [], streams: [], paddedFrames: 0, priorityFrames: 0, continuations: 0 };
  const sockets: net.Socket[] = [];
  let fail: (err: Error) => void = () => {};
  let done: () => void = () => {};
  const finished = new Promise<void>((resolve, reject) => {
    done = resolve;
    fail = reject;
  });
  const server = net.createServer((socket) => {
    sockets.push(socket);
    // SETTINGS, optionally with SETTINGS_HEADER_TABLE_SIZE.
    const settings = options.headerTableSize === undefined ? Buffer.alloc(0) : Buffer.from([0, 1, 0, 0, 0, 0]);
    if (options.headerTableSize !== undefined) settings.writeUInt32BE(options.headerTableSize, 2);
    const header = Buffer.from([0, 0, settings.length, 4, 0, 0, 0, 0, 0]);
    socket.write(Buffer.concat([header, settings]));
    let pending = Buffer.alloc(0);
    let prefaceSeen = false;
    let fragments: Buffer[] = [];
    let fragmentStream = 0;
    socket.on('error', () => {});
    socket.on('data', (data: Buffer) => {
      try {
        pending = Buffer.concat([pending, data]);
        if (!prefaceSeen) {
          if (pending.length < 24) return;
          assert.equal(pending.subarray(0, 24).toString('latin1'), 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');
          pending = pending.subarray(24);
          prefaceSeen = true;
        }
        while (pending.length >= 9) {
          const length = pending.readUIntBE(0, 3);
          if (pending.length < 9 + length) break;
          const type = pending[3]!;
          const flags = pending[4]!;
          const stream = pending.readUInt32BE(5) & 0x7fffffff;
          let payload = pending.subarray(9, 9 + length);
          pending = pending.subarray(9 + length);
          if (fragments.length > 0) assert.equal(type, 9, 'CONTINUATION expected');
          if (type === 4 && (flags & 0x1) === 0) socket.write(Buffer.from([0, 0, 0, 4, 0x1, 0, 0, 0, 0])); // SETTINGS ACK
          if (type === 1) {
            let padLength = 0;
            if (flags & 0x8) {
              padLength = payload[0]!;
              payload = payload.subarray(1);
              capture.paddedFrames++;
            }
            if (flags & 0x20) {
              payload = payload.subarray(5);
              capture.priorityFrames++;
            }
            payload = payload.subarray(0, payload.length - padLength);
            fragmentStream = stream;
          } else if (type === 9) {
            assert.equal(stream, fragmentStream);
            capture.continuations++;
          } else {
            continue;
          }
          fragments.push(payload);
          if (flags & 0x4) {
            capture.blocks.push(Buffer.concat(fragments));
            capture.streams.push(stream);
            fragments = [];
            if (capture.blocks.length === requests.length) done();
          }
        }
      } catch (err) {
        fail(err as Error);
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  const client = http2.connect(`http://127.0.0.1:${port}`, options.padding ? { paddingStrategy: http2.constants.PADDING_STRATEGY_MAX } : {});
  client.on('error', () => {});
  const timer = setTimeout(() => fail(new Error(`timed out with ${capture.blocks.length}/${requests.length} blocks`)), 5000);
  try {
    if (options.waitForSettings) await new Promise<void>((resolve) => client.once('remoteSettings', () => resolve()));
    for (const fields of requests) {
      const headers: http2.OutgoingHttpHeaders = {};
      for (const [name, value] of fields) {
        const prev = headers[name];
        headers[name] = prev === undefined ? value : Array.isArray(prev) ? [...prev, value] : [String(prev), value];
      }
      if (options.sensitive) (headers as Record<symbol, unknown>)[http2.sensitiveHeaders] = options.sensitive;
      const stream = client.request(headers, options.weight === undefined ? { endStream: true } : { endStream: true, weight: options.weight });
      stream.on('error', () => {});
    }
    await finished;
  } finally {
    clearTimeout(timer);
    client.destroy();
    for (const socket of sockets) socket.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
  return capture;
}

/** gRPC-like requests: pseudo-headers first, repeated names adjacent (as one array in the headers object). */
function grpcRequests(seed: number, n: number): Pair[][] {
  const rand = mulberry32(seed);
  const hex = '0123456789abcdef';
  const poor = '{}<>^~\\|`';
  const requests: Pair[][] = [];
  for (let i = 0; i < n; i++) {
    const fields: Pair[] = [
      [':method', i % 5 === 4 ? 'GET' : 'POST'],
      [':path', `/taskgate.v1.Service/Method${i % 7}`],
      [':scheme', 'http'],
      [':authority', i % 11 === 10 ? `other-${i}.example:8443` : 'localhost:50051'],
      ['content-type', 'application/grpc'],
      ['te', 'trailers'],
      ['user-agent', 'grpc-node-js/1.14.7'],
      ['grpc-timeout', `${1 + (i % 13)}S`],
      ['x-request-id', randomByteString(rand, 32, hex)],
      ['x-repeated', 'first'],
      ['x-repeated', `second-${i % 3}`],
      ['x-repeated', ''],
      ['x-compresses-well', 'e'.repeat(50 + ((i * 37) % 400))],
      ['x-compresses-badly', randomByteString(rand, 20 + Math.floor(rand() * 80), poor)],
      ['x-latin1', `caf\xe9 \xff\x80 ${i % 4}`],
      ['x-empty', ''],
      ['authorization', `Bearer ${randomByteString(rand, 40, hex)}`],
    ];
    for (let k = 0; k < i % 4; k++) fields.push([`x-extra-${k}-${i % 9}`, randomByteString(rand, 10 + Math.floor(rand() * 200), 'abcdefghijklmnopqrstuvwxyz0123456789-_')]);
    if (i % 15 === 7) for (let k = 0; k < 5; k++) fields.push([`x-huge-${k}`, randomByteString(rand, 4500, hex + poor)]); // > 16,384 octets: CONTINUATION
    requests.push(fields);
  }
  return requests;
}

describe('HpackDecoder vs nghttp2 (node:http2 client)', () => {
  it('decodes 60 requests on one connection: dynamic table, eviction, Huffman choices, never-indexed, padding, CONTINUATION', async () => {
    const requests = grpcRequests(1, 60);
    const capture = await captureRequests(requests, { padding: true, weight: 20, sensitive: ['authorization'] });
    assert.equal(capture.blocks.length, requests.length);
    assert.ok(capture.paddedFrames > 0, 'no PADDED HEADERS frame seen');
    assert.ok(capture.continuations > 0, 'no CONTINUATION frame seen');
    const d = new HpackDecoder();
    let indexed = 0;
    capture.blocks.forEach((block, k) => {
      const stream = capture.streams[k]!;
      const fields = requests[(stream - 1) / 2]!;
      assert.deepEqual(d.decode(block, BIG), flat(fields), `stream ${stream}`);
      checkTable(d);
      indexed += block.filter((b) => (b & 0xc0) === 0xc0).length > 0 ? 1 : 0;
    });
    assert.ok(indexed > 50, 'nghttp2 used the dynamic table');
    assert.ok(d.tableSize > 3000, `table size ${d.tableSize}`);
    assert.equal(d.tableMaxSize, 4096);
    // authorization was sent never indexed (0001xxxx, name index 23 = 0x1f 0x08) and is not in the table.
    for (const block of capture.blocks) assert.ok(block.includes(Buffer.from([0x1f, 0x08])));
    assert.ok(!d.tableEntries().some(([name]) => name === 'authorization'));
    assert.ok(capture.priorityFrames > 0, 'no HEADERS frame with PRIORITY seen');
  });

  it('follows the table size update nghttp2 sends after SETTINGS_HEADER_TABLE_SIZE 512', async () => {
    const requests = grpcRequests(2, 40);
    const capture = await captureRequests(requests, { headerTableSize: 512, waitForSettings: true });
    const d = new HpackDecoder(4096);
    capture.blocks.forEach((block, k) => {
      const stream = capture.streams[k]!;
      assert.deepEqual(d.decode(block, BIG), flat(requests[(stream - 1) / 2]!), `stream ${stream}`);
      checkTable(d);
    });
    assert.equal(capture.blocks[0]![0]! & 0xe0, 0x20, 'first block starts with a size update');
    assert.equal(d.tableMaxSize, 512);
    assert.ok(d.tableSize > 0 && d.tableSize <= 512);
  });
});

// ---------------------------------------------------------------------------

describe('HpackDecoder fuzz (seeded)', () => {
  const appendixC: { tableSize: number; blocks: Buffer[] }[] = [
    { tableSize: 4096, blocks: ['8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d', '8286 84be 5808 6e6f 2d63 6163 6865', '8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65'].map(dehex) },
    { tableSize: 4096, blocks: ['8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff', '8286 84be 5886 a8eb 1064 9cbf', '8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf'].map(dehex) },
    { tableSize: 256, blocks: ['4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6 2d1b ff6e 919d 29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3', '4883 640e ffc1 c0bf'].map(dehex) },
  ];

  function decodeOrHpackError(d: HpackDecoder, block: Uint8Array, maxList: number, what: () => string): string[] | null | HpackError {
    try {
      const result = d.decode(block, maxList);
      if (result !== null && (result.length % 2 !== 0 || result.some((s) => typeof s !== 'string'))) assert.fail(`${what()}: bad result`);
      return result;
    } catch (err) {
      if (err instanceof HpackError) return err;
      assert.fail(`${what()}: ${String((err as Error)?.stack ?? err)}`);
    }
  }

  it('20,000 mutated and random blocks decode or throw HpackError, nothing else', () => {
    const seeds = [...appendixC, ...modelSequences(3, 40)];
    const rand = mulberry32(20_000);
    const started = Date.now();
    for (let i = 0; i < 20_000; i++) {
      const seq = seeds[Math.floor(rand() * seeds.length)]!;
      const target = Math.floor(rand() * seq.blocks.length);
      const d = new HpackDecoder(seq.tableSize);
      for (let k = 0; k < target; k++) d.decode(seq.blocks[k]!, BIG); // valid history: a populated table
      let block: number[];
      if (rand() < 0.1) {
        block = Array.from({ length: Math.floor(rand() * 64) }, () => Math.floor(rand() * 256));
      } else {
        block = [...seq.blocks[target]!];
        const mutations = 1 + Math.floor(rand() * 4);
        for (let m = 0; m < mutations; m++) {
          const at = Math.floor(rand() * (block.length + 1));
          switch (Math.floor(rand() * 6)) {
            case 0: if (at < block.length) block[at]! ^= 1 << Math.floor(rand() * 8); break;
            case 1: if (at < block.length) block[at] = Math.floor(rand() * 256); break;
            case 2: block.splice(at, 0, Math.floor(rand() * 256)); break;
            case 3: block.splice(at, 1); break;
            case 4: block.length = Math.min(block.length, at); break;
            case 5: block.splice(at, 0, ...seeds[Math.floor(rand() * seeds.length)]!.blocks[0]!.subarray(0, 1 + Math.floor(rand() * 20))); break;
          }
        }
      }
      const bytes = Buffer.from(block);
      const what = () => `case ${i}: ${bytes.toString('hex')}`;
      decodeOrHpackError(d, bytes, rand() < 0.2 ? Math.floor(rand() * 300) : BIG, what);
      checkTable(d);
      // The decoder keeps working (or keeps failing cleanly) after whatever happened.
      decodeOrHpackError(d, seq.blocks[0]!, BIG, () => `${what()} (then the first block again)`);
      checkTable(d);
    }
    assert.ok(Date.now() - started < 20_000);
  });

  it('every truncation of valid blocks decodes to a prefix of the whole, or throws HpackError', () => {
    const seeds = [...appendixC, ...modelSequences(4, 5)];
    let truncations = 0;
    for (const seq of seeds) {
      const history = new HpackDecoder(seq.tableSize);
      for (const block of seq.blocks) {
        const snapshot = history.tableEntries();
        const whole = history.decode(block, BIG)!;
        for (let cut = 0; cut < block.length; cut++) {
          const d = new HpackDecoder(seq.tableSize); // the same table state: replay the blocks before
          for (const prior of seq.blocks.slice(0, seq.blocks.indexOf(block))) d.decode(prior, BIG);
          if (cut === 0) assert.deepEqual(d.tableEntries(), snapshot);
          const result = decodeOrHpackError(d, block.subarray(0, cut), BIG, () => `cut ${cut} of ${block.toString('hex')}`);
          if (Array.isArray(result)) assert.deepEqual(result, whole.slice(0, result.length));
          truncations++;
        }
      }
    }
    assert.ok(truncations > 1000);
  });
});
