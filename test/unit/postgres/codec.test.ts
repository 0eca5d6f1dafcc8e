import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { serialize } from 'pg-protocol';
import {
  authenticationCleartextPassword,
  backendKeyData,
  commandComplete,
  dataRow,
  decodeDataRow,
  decodeErrorFields,
  decodeRowDescription,
  errorResponse,
  parameterStatus,
  readyForQuery,
  rowDescription,
} from '../../../sidecar/postgres/codec/backend.ts';
import { FrameReader, ProtocolError, type Frame } from '../../../sidecar/postgres/codec/framing.ts';
import {
  decodeBind,
  decodeExecute,
  decodeParse,
  decodeQuery,
  decodeStartup,
  decodeTarget,
  parseStartupOptions,
} from '../../../sidecar/postgres/codec/frontend.ts';

const FRONTEND: Buffer[] = [
  serialize.query('SELECT 1; SELECT \'zoë 💳\''),
  serialize.parse({ name: 's1', text: 'SELECT $1::int', types: [23] }),
  serialize.bind({ portal: 'p1', statement: 's1', values: ['42', null, Buffer.from([1, 2, 3])], binary: true }),
  serialize.describe({ type: 'P', name: 'p1' }),
  serialize.execute({ portal: 'p1', rows: 10 }),
  serialize.close({ type: 'S', name: 's1' }),
  serialize.flush(),
  serialize.sync(),
  serialize.copyData(Buffer.from('1\tabc\n')),
  serialize.copyDone(),
  serialize.copyFail('nope'),
  serialize.end(),
];

const FIELDS = [
  { name: 'id', tableOid: 16384, attnum: 1, typeOid: 23, typeSize: 4, typeMod: -1, format: 0 },
  { name: 'card', tableOid: 16384, attnum: 4, typeOid: 25, typeSize: -1, typeMod: -1, format: 1 },
];
const BACKEND: Buffer[] = [
  authenticationCleartextPassword(),
  parameterStatus('server_version', '15.8'),
  backendKeyData(1234, -5678),
  rowDescription(FIELDS),
  dataRow([Buffer.from('1'), null, Buffer.from('4111 1111 1111 1111')]),
  dataRow([]),
  commandComplete('SELECT 1'),
  errorResponse({ severity: 'ERROR', code: '42501', message: 'taskgate denied DROP TABLE', detail: 'd', hint: 'h' }),
  readyForQuery('T'),
];

function frames(stream: Buffer, cuts: number[]): Frame[] {
  const r = new FrameReader(false);
  const out: Frame[] = [];
  let prev = 0;
  for (const c of [...cuts, stream.length]) {
    for (const f of r.feed(stream.subarray(prev, c))) out.push({ type: f.type, payload: Buffer.from(f.payload), raw: Buffer.from(f.raw) });
    prev = c;
  }
  assert.equal(r.buffered, 0);
  return out;
}

function same(a: Frame[], b: Frame[]): void {
  assert.equal(a.length, b.length);
  for (let i = 0; i < a.length; i++) {
    assert.equal(a[i]!.type, b[i]!.type);
    assert.ok(a[i]!.raw.equals(b[i]!.raw), `message ${i} differs`);
  }
}

describe('codec: framing', () => {
  for (const [name, corpus] of [
    ['frontend', FRONTEND],
    ['backend', BACKEND],
  ] as const) {
    it(`${name}: every message cut at every byte boundary yields the same messages`, () => {
      const stream = Buffer.concat(corpus);
      const whole = frames(stream, []);
      assert.equal(whole.length, corpus.length);
      whole.forEach((f, i) => assert.ok(f.raw.equals(corpus[i]!)));
      for (let cut = 1; cut < stream.length; cut++) same(frames(stream, [cut]), whole);
      // two cuts, including inside headers of consecutive messages
      for (let a = 1; a < stream.length; a += 3) for (let b = a + 1; b < Math.min(stream.length, a + 12); b++) same(frames(stream, [a, b]), whole);
      // one byte at a time
      same(
        frames(
          stream,
          Array.from({ length: stream.length - 1 }, (_, i) => i + 1),
        ),
        whole,
      );
    });
  }

  it('startup-phase packets (no type byte) and the switch to regular messages', () => {
    const startup = serialize.startup({ user: 'alice', database: 'db', options: '-c taskgate.task=OPS-1' });
    const pw = serialize.password('tok');
    const stream = Buffer.concat([serialize.requestSsl(), startup, pw]);
    for (let cut = 0; cut <= stream.length; cut++) {
      const r = new FrameReader(true);
      const got: Frame[] = [];
      const pull = (chunk: Buffer) => {
        for (const f of r.feed(chunk, 1)) got.push(f);
        while (got.length < 3 && r.buffered) {
          if (got.length === 2) r.startupMode = false;
          const n = r.feed(Buffer.alloc(0), 1);
          if (!n.length) break;
          got.push(...n);
        }
        if (got.length === 2) r.startupMode = false;
      };
      pull(stream.subarray(0, cut));
      pull(stream.subarray(cut));
      if (got.length === 2) {
        r.startupMode = false;
        got.push(...r.feed(Buffer.alloc(0)));
      }
      assert.equal(got.length, 3, `cut ${cut}`);
      assert.deepEqual(decodeStartup(got[0]!.payload), { kind: 'ssl' });
      const s = decodeStartup(got[1]!.payload);
      assert.equal(s.kind, 'startup');
      assert.equal(s.kind === 'startup' && s.params.database, 'db');
      assert.equal(got[2]!.type, 0x70);
    }
  });

  it('rejects impossible lengths instead of waiting forever', () => {
    assert.throws(() => new FrameReader(false).feed(Buffer.from([0x51, 0, 0, 0, 2])), ProtocolError);
    assert.throws(() => new FrameReader(false).feed(Buffer.from([0x51, 0xff, 0xff, 0xff, 0xff])), ProtocolError);
    assert.throws(() => new FrameReader(true).feed(Buffer.from([0, 0, 0, 3, 0, 0, 0, 0])), ProtocolError);
    assert.throws(() => new FrameReader(true).feed(Buffer.from([0x7f, 0, 0, 0])), ProtocolError);
  });
});

describe('codec: decoders', () => {
  it('decode what pg-protocol serialized', () => {
    assert.equal(decodeQuery(FRONTEND[0]!.subarray(5)), "SELECT 1; SELECT 'zoë 💳'");
    assert.deepEqual(decodeParse(FRONTEND[1]!.subarray(5)), { name: 's1', text: 'SELECT $1::int', paramTypes: [23] });
    assert.deepEqual(decodeBind(FRONTEND[2]!.subarray(5)), { portal: 'p1', statement: 's1', resultFormats: [1] });
    assert.deepEqual(decodeTarget(FRONTEND[3]!.subarray(5), 'Describe'), { kind: 'P', name: 'p1' });
    assert.deepEqual(decodeExecute(FRONTEND[4]!.subarray(5)), { portal: 'p1', maxRows: 10 });
    assert.deepEqual(decodeRowDescription(BACKEND[3]!.subarray(5)), FIELDS);
    const row = decodeDataRow(BACKEND[4]!.subarray(5));
    assert.equal(row[1], null);
    assert.equal(row[2]!.toString(), '4111 1111 1111 1111');
    assert.ok(dataRow(row).equals(BACKEND[4]!), 're-framing an unchanged row is byte-identical');
    const masked = dataRow([row[0]!, null, Buffer.from('****')]);
    assert.deepEqual(decodeDataRow(masked.subarray(5)).map((v) => v?.toString() ?? null), ['1', null, '****']);
    assert.equal(masked.readInt32BE(1), masked.length - 1, 'length re-framed');
    const e = decodeErrorFields(BACKEND[7]!.subarray(5));
    assert.equal(e.code, '42501');
    assert.equal(e.message, 'taskgate denied DROP TABLE');
  });

  it('startup options: -c pairs, escaped spaces, --name=value', () => {
    assert.deepEqual(parseStartupOptions('-c taskgate.task=OPS-1 -cstatement_timeout=5s --search-path=a\\ b'), [
      { name: 'taskgate.task', value: 'OPS-1' },
      { name: 'statement_timeout', value: '5s' },
      { name: 'search_path', value: 'a b' },
    ]);
    assert.throws(() => parseStartupOptions('-x'), ProtocolError);
  });

  it('fuzz: random and truncated payloads only ever raise ProtocolError (bounded time)', () => {
    const decoders: ((b: Buffer) => unknown)[] = [
      decodeQuery,
      decodeParse,
      decodeBind,
      (b) => decodeTarget(b, 'Describe'),
      decodeExecute,
      decodeStartup,
      decodeRowDescription,
      decodeDataRow,
      decodeErrorFields,
    ];
    const t0 = Date.now();
    const corpus = [...FRONTEND, ...BACKEND].map((m) => m.subarray(5));
    for (let i = 0; i < 20_000; i++) {
      let b: Buffer;
      if (i % 2) b = randomBytes(i % 64);
      else {
        const base = corpus[i % corpus.length]!;
        b = Buffer.from(base.subarray(0, (i * 7) % (base.length + 1)));
        if (b.length && i % 4 === 0) b[(i * 13) % b.length] = (i * 31) & 0xff;
      }
      for (const d of decoders) {
        try {
          d(b);
        } catch (e) {
          assert.ok(e instanceof ProtocolError || e instanceof RangeError === false, `unexpected ${String(e)}`);
          assert.ok(e instanceof ProtocolError, `decoder threw ${(e as Error).name}: ${(e as Error).message}`);
        }
      }
      // Random bytes fed to a reader: whole frames or a ProtocolError, never anything else.
      const r = new FrameReader(i % 3 === 0);
      try {
        r.feed(randomBytes(i % 40));
      } catch (e) {
        assert.ok(e instanceof ProtocolError);
      }
    }
    assert.ok(Date.now() - t0 < 20_000);
  });
});
