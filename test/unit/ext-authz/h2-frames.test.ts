import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  CLIENT_PREFACE,
  ErrorCode,
  Flag,
  frame,
  FrameReader,
  FrameType,
  H2Error,
  headerFrames,
  unpad,
} from '../../../ext-authz/h2/frames.ts';

type Seen = [type: number, flags: number, id: number, payload: string];

function collect(): { seen: Seen[]; reader: FrameReader } {
  const seen: Seen[] = [];
  const reader = new FrameReader({ frame: (t, f, id, p) => seen.push([t, f, id, p.toString('hex')]) });
  return { seen, reader };
}

/** A connection's first bytes: preface, SETTINGS, HEADERS, DATA of several sizes, an empty frame, a full-size frame. */
function stream(): { bytes: Buffer; frames: Seen[] } {
  const frames: [number, number, number, Buffer][] = [
    [FrameType.SETTINGS, 0, 0, Buffer.from('000300000064', 'hex')],
    [FrameType.HEADERS, Flag.END_HEADERS, 1, Buffer.from('8286', 'hex')],
    [FrameType.DATA, 0, 1, Buffer.alloc(0)],
    [FrameType.DATA, Flag.END_STREAM, 1, Buffer.from('000000000568656c6c6f', 'hex')],
    [FrameType.PING, 0, 0, Buffer.from('0102030405060708', 'hex')],
    [FrameType.DATA, 0, 3, Buffer.alloc(16_384, 7)],
    [0xfa, 0xff, 0x7fff_ffff, Buffer.from('unknown type')],
  ];
  return {
    bytes: Buffer.concat([CLIENT_PREFACE, ...frames.map(([t, f, id, p]) => frame(t, f, id, p))]),
    frames: frames.map(([t, f, id, p]) => [t, f, id, p.toString('hex')]),
  };
}

describe('HTTP/2 frame reader (split reads)', () => {
  it('reads the same frames however the bytes are cut in two, at every byte boundary', () => {
    const { bytes, frames } = stream();
    for (let cut = 0; cut <= bytes.length; cut++) {
      const { seen, reader } = collect();
      reader.push(bytes.subarray(0, cut));
      reader.push(bytes.subarray(cut));
      assert.deepEqual(seen, frames, `cut at ${cut}`);
      assert.equal(reader.buffered, 0);
    }
  });

  it('reads the same frames fed one byte at a time and in random chunk sizes', () => {
    const { bytes, frames } = stream();
    const one = collect();
    for (let i = 0; i < bytes.length; i++) one.reader.push(bytes.subarray(i, i + 1));
    assert.deepEqual(one.seen, frames);
    let seed = 7;
    for (let round = 0; round < 200; round++) {
      const r = collect();
      for (let at = 0; at < bytes.length; ) {
        seed = (seed * 1103515245 + 12345) >>> 0;
        const n = 1 + (seed % 40);
        r.reader.push(bytes.subarray(at, at + n));
        at += n;
      }
      assert.deepEqual(r.seen, frames, `round ${round}`);
    }
  });

  it('ignores the reserved bit of the stream id', () => {
    const { seen, reader } = collect();
    const f = frame(FrameType.DATA, 0, 5, Buffer.from('x'));
    f[5]! |= 0x80;
    reader.push(Buffer.concat([CLIENT_PREFACE, f]));
    assert.equal(seen[0]![2], 5);
  });

  it('refuses a connection that does not start with the preface, as soon as a byte differs', () => {
    for (const bad of ['GET / HTTP/1.1\r\nHost: x\r\n\r\n', 'PRI * HTTP/1.1\r\n', '\x16\x03\x01\x02\x00']) {
      const { reader } = collect();
      assert.throws(
        () => reader.push(Buffer.from(bad, 'latin1')),
        (e: unknown) => e instanceof H2Error && e.code === ErrorCode.PROTOCOL_ERROR && /preface/.test(e.message),
      );
    }
    // A correct prefix is kept until the rest arrives.
    const { reader, seen } = collect();
    reader.push(CLIENT_PREFACE.subarray(0, 10));
    assert.equal(seen.length, 0);
    assert.equal(reader.buffered, 10);
  });

  it('refuses a frame above the maximum frame size from its header alone', () => {
    const { reader } = collect();
    const head = Buffer.from([0x00, 0x40, 0x01, FrameType.DATA, 0, 0, 0, 0, 1]); // 16,385 bytes announced
    assert.throws(
      () => reader.push(Buffer.concat([CLIENT_PREFACE, head])),
      (e: unknown) => e instanceof H2Error && e.code === ErrorCode.FRAME_SIZE_ERROR,
    );
  });
});

describe('HTTP/2 frame writers', () => {
  it('cuts a large header block into HEADERS and CONTINUATION frames', () => {
    const block = Buffer.alloc(40_000, 0x41);
    const out = headerFrames(3, block, true, 16_384);
    const { seen, reader } = collect();
    reader.push(Buffer.concat([CLIENT_PREFACE, out]));
    assert.deepEqual(
      seen.map(([t, f, id, p]) => [t, f, id, p.length / 2]),
      [
        [FrameType.HEADERS, Flag.END_STREAM, 3, 16_384],
        [FrameType.CONTINUATION, 0, 3, 16_384],
        [FrameType.CONTINUATION, Flag.END_HEADERS, 3, 40_000 - 2 * 16_384],
      ],
    );
    const small = headerFrames(1, Buffer.from('88', 'hex'), false, 16_384);
    assert.equal(small.toString('hex'), '000001010400000001' + '88');
  });

  it('removes padding, and refuses padding as long as the frame', () => {
    assert.equal(unpad(Flag.PADDED, Buffer.from('026162630000', 'hex')).toString(), 'abc');
    assert.equal(unpad(0, Buffer.from('abc')).toString(), 'abc');
    assert.throws(() => unpad(Flag.PADDED, Buffer.from('0361', 'hex')), (e: unknown) => e instanceof H2Error && e.code === ErrorCode.PROTOCOL_ERROR);
    assert.throws(() => unpad(Flag.PADDED, Buffer.alloc(0)), (e: unknown) => e instanceof H2Error);
  });
});
