import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { connect as netConnect, type Socket } from 'node:net';
import type { ServiceDefinition } from '@grpc/grpc-js';
import { H2Connection, type H2ConnectionOptions } from '../../../ext-authz/h2/connection.ts';
import {
  CLIENT_PREFACE,
  ErrorCode,
  Flag,
  frame,
  FrameReader,
  FrameType,
  goawayFrame,
  rstStreamFrame,
  Setting,
  settingsFrame,
  windowUpdateFrame,
} from '../../../ext-authz/h2/frames.ts';
import { GrpcServer, type UnaryCall } from '../../../ext-authz/h2/grpc-server.ts';
import { encodeInteger, HpackDecoder, hpackIndexed, hpackLiteral, hpackLiteralIndexedName } from '../../../ext-authz/h2/hpack.ts';
import { envoyServices } from '../../../ext-authz/protos.ts';
import { xorshift32 } from '../../support/random.ts';

/**
 * H2Connection as a client sees it: hand-built frames in, the server's frames out and decoded. Most tests drive
 * the connection through a fake socket, so that every chunk is its own 'data' event (TCP would coalesce them);
 * the last ones use real TCP sockets against a listening GrpcServer.
 */

// ---- a fake socket --------------------------------------------------------------------------------------

/** The Socket surface H2Connection uses. Client bytes go in with feed(); what the server wrote collects in `out`. */
class FakeSocket extends EventEmitter {
  readonly out: Buffer[] = [];
  writable = true;
  destroyed = false;
  writableLength = 0;
  readonly remoteAddress = '127.0.0.1';
  readonly remotePort = 40_000;
  /** The server ended its side (socket.end()). */
  ended = false;
  writesAfterEnd = 0;
  private paused = false;

  setNoDelay(): this {
    return this;
  }
  pause(): this {
    this.paused = true;
    return this;
  }
  resume(): this {
    this.paused = false;
    return this;
  }
  isPaused(): boolean {
    return this.paused;
  }
  write(chunk: Buffer): boolean {
    if (!this.writable) {
      this.writesAfterEnd++;
      return false;
    }
    this.out.push(Buffer.from(chunk));
    return true;
  }
  end(): this {
    this.ended = true;
    this.writable = false;
    return this;
  }
  destroy(): this {
    if (this.destroyed) return this;
    this.destroyed = true;
    this.writable = false;
    setImmediate(() => this.emit('close', false));
    return this;
  }
  /** One chunk from the client: one 'data' event. */
  feed(chunk: Buffer): void {
    this.emit('data', chunk);
  }
}

// ---- frames out, decoded ---------------------------------------------------------------------------------

interface Frame {
  type: number;
  flags: number;
  id: number;
  payload: Buffer;
}

function parseFrames(bytes: Buffer): Frame[] {
  const frames: Frame[] = [];
  const reader = new FrameReader({ frame: (type, flags, id, payload) => frames.push({ type, flags, id, payload: Buffer.from(payload) }) }, 0xff_ffff, false);
  reader.push(bytes);
  assert.equal(reader.buffered, 0, 'the server output ends inside a frame');
  return frames;
}

interface StreamView {
  headers: Record<string, string> | undefined;
  trailers: Record<string, string> | undefined;
  body: Buffer;
  dataFrames: number[];
  ended: boolean;
  rst: number | undefined;
  /** Frame types on the stream, in order (HEADERS, DATA, …). */
  order: number[];
}

function toRecord(list: string[]): Record<string, string> {
  const r: Record<string, string> = {};
  for (let i = 0; i < list.length; i += 2) r[list[i]!] = list[i + 1]!;
  return r;
}

/** What the client learns about one stream. The server never indexes, so each block decodes on its own. */
function streamView(frames: Frame[], id: number): StreamView {
  const v: StreamView = { headers: undefined, trailers: undefined, body: Buffer.alloc(0), dataFrames: [], ended: false, rst: undefined, order: [] };
  const data: Buffer[] = [];
  let block: Buffer[] = [];
  let blockEnds = false;
  for (const f of frames) {
    if (f.id !== id) continue;
    v.order.push(f.type);
    if (f.type === FrameType.HEADERS || f.type === FrameType.CONTINUATION) {
      if (f.type === FrameType.HEADERS) {
        block = [];
        blockEnds = (f.flags & Flag.END_STREAM) !== 0;
      }
      block.push(f.payload);
      if (f.flags & Flag.END_HEADERS) {
        const list = new HpackDecoder(4096).decode(Buffer.concat(block), Infinity)!;
        if (v.headers === undefined) v.headers = toRecord(list);
        else v.trailers = toRecord(list);
        if (blockEnds) v.ended = true;
      }
    } else if (f.type === FrameType.DATA) {
      data.push(f.payload);
      v.dataFrames.push(f.payload.length);
      if (f.flags & Flag.END_STREAM) v.ended = true;
    } else if (f.type === FrameType.RST_STREAM) v.rst = f.payload.readUInt32BE(0);
  }
  v.body = Buffer.concat(data);
  return v;
}

function goawayOf(frames: Frame[]): { last: number; code: number; debug: string } | undefined {
  const f = frames.find((x) => x.type === FrameType.GOAWAY);
  return f && { last: f.payload.readUInt32BE(0) & 0x7fff_ffff, code: f.payload.readUInt32BE(4), debug: f.payload.subarray(8).toString() };
}

/** Lets the connection flush (process.nextTick or setImmediate) and the server arm its timers. */
async function settle(): Promise<void> {
  for (let i = 0; i < 3; i++) await new Promise((r) => setImmediate(r));
}

// ---- requests ----------------------------------------------------------------------------------------------

const CHECK = '/envoy.service.auth.v3.Authorization/Check';
const ECHO = '/taskgate.test.Raw/Echo';
const SIZED = '/taskgate.test.Raw/Sized';
const HOLD = '/taskgate.test.Raw/Hold';

function requestBlock(path: string, extra: Buffer[] = []): Buffer {
  return Buffer.concat([
    hpackIndexed(3), // :method POST
    hpackIndexed(6), // :scheme http
    hpackLiteralIndexedName(4, path),
    hpackLiteralIndexedName(1, 'localhost'),
    hpackLiteralIndexedName(31, 'application/grpc'),
    hpackLiteral('te', 'trailers'),
    ...extra,
  ]);
}

function grpcMessage(payload: Buffer): Buffer {
  const out = Buffer.alloc(5 + payload.length);
  out.writeUInt32BE(payload.length, 1);
  payload.copy(out, 5);
  return out;
}

const headers = (id: number, block: Buffer, end = false) => frame(FrameType.HEADERS, Flag.END_HEADERS | (end ? Flag.END_STREAM : 0), id, block);
const data = (id: number, payload: Buffer, end = true) => frame(FrameType.DATA, end ? Flag.END_STREAM : 0, id, payload);
const ping = (payload: Buffer) => frame(FrameType.PING, 0, 0, payload);
const preface = (settings: [number, number][] = []) => Buffer.concat([CLIENT_PREFACE, settingsFrame(settings)]);
/** A whole unary call on one stream: HEADERS, then DATA with the message and END_STREAM. */
const call = (id: number, path: string, payload: Buffer, extra: Buffer[] = []) => Buffer.concat([headers(id, requestBlock(path, extra)), data(id, grpcMessage(payload))]);

// ---- the server under test ----------------------------------------------------------------------------------

const auth = envoyServices().authorization;
const CHECK_REQUEST = auth['Check']!.requestSerialize({ attributes: { request: { http: { method: 'GET', path: '/x', headers: { 'x-test': 'y' } } } } }) as Buffer;
const CHECK_RESPONSE = { status: { code: 0 } };

const raw = (b: Buffer) => b;
function rawMethod(path: string) {
  return { path, requestStream: false, responseStream: false, requestSerialize: raw, requestDeserialize: raw, responseSerialize: raw, responseDeserialize: raw };
}
/** Methods on raw bytes: Echo answers its request; Sized answers that many 'a's; Hold answers when the test says. */
const RAW_SERVICE = { Echo: rawMethod(ECHO), Sized: rawMethod(SIZED), Hold: rawMethod(HOLD) } as unknown as ServiceDefinition;

interface Held {
  call: UnaryCall;
  cb: (e: null, v: Buffer) => void;
  cancelled: boolean;
}

function makeServer(): { server: GrpcServer; held: Held[] } {
  const held: Held[] = [];
  const server = new GrpcServer();
  server.addService(auth, { Check: (_c: unknown, cb: (e: null, v: unknown) => void) => cb(null, CHECK_RESPONSE) });
  server.addService(RAW_SERVICE, {
    Echo: (c: UnaryCall, cb: (e: null, v: Buffer) => void) => cb(null, c.request as Buffer),
    Sized: (c: UnaryCall, cb: (e: null, v: Buffer) => void) => cb(null, Buffer.alloc(Number((c.request as Buffer).toString()), 0x61)),
    Hold: (c: UnaryCall, cb: (e: null, v: Buffer) => void) => {
      const h: Held = { call: c, cb, cancelled: false };
      c.on('cancelled', () => (h.cancelled = true));
      held.push(h);
    },
  });
  return { server, held };
}

/** A client on a fake socket, talking to a GrpcServer's handler through a fresh H2Connection. */
class Peer {
  readonly sock = new FakeSocket();
  readonly conn: H2Connection;
  readonly errors: string[] = [];

  constructor(server: GrpcServer, opts: H2ConnectionOptions = {}) {
    this.conn = new H2Connection(this.sock as unknown as Socket, server, { ...opts, onError: (m) => this.errors.push(m) });
  }

  send(...chunks: Buffer[]): void {
    this.sock.feed(Buffer.concat(chunks));
  }

  get frames(): Frame[] {
    return parseFrames(Buffer.concat(this.sock.out));
  }

  stream(id: number): StreamView {
    return streamView(this.frames, id);
  }

  get goaway() {
    return goawayOf(this.frames);
  }
}

/** Asserts a stream carries a whole OK gRPC answer with this message. */
function assertAnswered(v: StreamView, message: Buffer, what = 'stream'): void {
  assert.equal(v.rst, undefined, `${what}: reset`);
  assert.equal(v.headers?.[':status'], '200', `${what}: response headers`);
  assert.equal(v.headers?.['content-type'], 'application/grpc');
  assert.deepEqual(v.body, grpcMessage(message), `${what}: response message`);
  assert.deepEqual(v.trailers, { 'grpc-status': '0' }, `${what}: trailers`);
  assert.ok(v.ended, `${what}: END_STREAM`);
  assert.equal(v.order.at(-1), FrameType.HEADERS, `${what}: trailers come last`);
}

const CHECK_ANSWER = auth['Check']!.responseSerialize(CHECK_RESPONSE) as Buffer;

// ---- tests ------------------------------------------------------------------------------------------------------

describe('H2Connection: a gRPC exchange cut anywhere', () => {
  const { server } = makeServer();
  const bytes = Buffer.concat([preface([[Setting.ENABLE_PUSH, 0]]), call(1, CHECK, CHECK_REQUEST)]);
  const canonical = (p: Peer) => p.frames.map((f) => `${f.type}/${f.flags}/${f.id}/${f.payload.toString('hex')}`);

  async function reference(): Promise<string[]> {
    const p = new Peer(server);
    p.send(bytes);
    await settle();
    const v = p.stream(1);
    assertAnswered(v, CHECK_ANSWER, 'in one write');
    assert.deepEqual(auth['Check']!.responseDeserialize(v.body.subarray(5)), CHECK_RESPONSE);
    // SETTINGS, WINDOW_UPDATE, SETTINGS ACK, HEADERS, DATA, HEADERS.
    assert.deepEqual(
      p.frames.map((f) => f.type),
      [FrameType.SETTINGS, FrameType.WINDOW_UPDATE, FrameType.SETTINGS, FrameType.HEADERS, FrameType.DATA, FrameType.HEADERS],
    );
    assert.equal(p.conn.activeStreams, 0);
    return canonical(p);
  }

  it(`gives the same answer for every cut into two writes (${bytes.length + 1} cuts)`, async () => {
    const want = await reference();
    for (let cut = 0; cut <= bytes.length; cut++) {
      const p = new Peer(server);
      p.send(bytes.subarray(0, cut));
      await settle();
      p.send(bytes.subarray(cut));
      await settle();
      assert.deepEqual(canonical(p), want, `cut at byte ${cut}`);
      assert.equal(p.conn.activeStreams, 0, `cut at byte ${cut}: stream closed`);
    }
  });

  it('gives the same answer with one write per byte', async () => {
    const want = await reference();
    const p = new Peer(server);
    for (let i = 0; i < bytes.length; i++) {
      p.send(bytes.subarray(i, i + 1));
      if (i % 16 === 0) await settle();
    }
    await settle();
    assert.deepEqual(canonical(p), want);
  });
});

describe('H2Connection: flow control of responses', () => {
  const { server } = makeServer();

  it('sends no more than a 10-byte stream window allows, the rest after WINDOW_UPDATE, trailers only after the data', async () => {
    const p = new Peer(server);
    p.send(preface([[Setting.INITIAL_WINDOW_SIZE, 10]]), call(1, SIZED, Buffer.from('95'))); // 100 bytes of DATA
    await settle();
    let v = p.stream(1);
    assert.equal(v.headers?.[':status'], '200');
    assert.equal(v.body.length, 10, 'first 10 bytes');
    assert.equal(v.trailers, undefined, 'no trailers while data waits');
    // The connection window is not what holds it back.
    p.send(windowUpdateFrame(0, 1000));
    await settle();
    assert.equal(p.stream(1).body.length, 10);
    p.send(windowUpdateFrame(1, 30));
    await settle();
    v = p.stream(1);
    assert.equal(v.body.length, 40);
    assert.equal(v.trailers, undefined);
    p.send(windowUpdateFrame(1, 60));
    await settle();
    v = p.stream(1);
    assertAnswered(v, Buffer.alloc(95, 0x61));
    assert.deepEqual(v.dataFrames, [10, 30, 60]);
    assert.equal(p.conn.activeStreams, 0, 'the stream is closed once its trailers are out');
    // A second HEADERS on the finished stream is a HEADERS on a closed stream: connection error STREAM_CLOSED.
    p.send(headers(1, requestBlock(ECHO), true));
    await settle();
    assert.equal(p.goaway?.code, ErrorCode.STREAM_CLOSED);
  });

  it('holds data beyond the connection window (65,535) until a connection WINDOW_UPDATE, in frames of at most 16,384 bytes', async () => {
    const p = new Peer(server);
    p.send(preface([[Setting.INITIAL_WINDOW_SIZE, 1 << 30]]), call(1, SIZED, Buffer.from('99995'))); // 100,000 bytes
    await settle();
    let v = p.stream(1);
    assert.equal(v.body.length, 65_535);
    assert.ok(v.dataFrames.every((n) => n <= 16_384), `frame sizes ${v.dataFrames}`);
    assert.equal(v.trailers, undefined);
    // Another stream's answer waits for the same window.
    p.send(call(3, ECHO, Buffer.from('second')));
    await settle();
    assert.equal(p.stream(3).body.length, 0);
    p.send(windowUpdateFrame(0, 100_000 - 65_535));
    await settle();
    v = p.stream(1);
    assertAnswered(v, Buffer.alloc(99_995, 0x61));
    assert.equal(p.stream(3).body.length, 0, 'the window is used up by stream 1');
    p.send(windowUpdateFrame(0, 1000));
    await settle();
    assertAnswered(p.stream(3), Buffer.from('second'), 'stream 3');
    assert.equal(p.conn.activeStreams, 0);
  });

  it('a window made negative by SETTINGS_INITIAL_WINDOW_SIZE holds the data until it is positive again', async () => {
    const p = new Peer(server);
    p.send(preface([[Setting.INITIAL_WINDOW_SIZE, 10]]), call(1, SIZED, Buffer.from('15'))); // 20 bytes
    await settle();
    assert.equal(p.stream(1).body.length, 10);
    p.send(settingsFrame([[Setting.INITIAL_WINDOW_SIZE, 0]])); // window 0 - 10 = -10
    p.send(windowUpdateFrame(1, 5)); // -5
    await settle();
    assert.equal(p.stream(1).body.length, 10);
    p.send(settingsFrame([[Setting.INITIAL_WINDOW_SIZE, 20]])); // +20: 15
    await settle();
    assertAnswered(p.stream(1), Buffer.alloc(15, 0x61));
  });

  it('starts the first header block after a lowered SETTINGS_HEADER_TABLE_SIZE with a table size update (RFC 7541 §4.2), once', async () => {
    const p = new Peer(server);
    p.send(preface([[Setting.HEADER_TABLE_SIZE, 0]]), call(1, ECHO, Buffer.from('a')), call(3, ECHO, Buffer.from('b')));
    await settle();
    const blocks = p.frames.filter((f) => f.type === FrameType.HEADERS).map((f) => f.payload);
    assert.equal(blocks.length, 4);
    assert.equal(blocks[0]![0], 0x20, 'size update to 0 first');
    assert.ok(blocks.slice(1).every((b) => (b[0]! & 0xe0) !== 0x20), 'only in the first block');
    assertAnswered(p.stream(1), Buffer.from('a'));
    assertAnswered(p.stream(3), Buffer.from('b'));
  });
});

describe('H2Connection: resets and errors', () => {
  const { server, held } = makeServer();

  it('RST_STREAM from the client cancels the call; the other streams keep working', async () => {
    held.length = 0;
    const p = new Peer(server);
    p.send(preface(), call(1, HOLD, Buffer.from('one')), call(3, HOLD, Buffer.from('three')));
    await settle();
    assert.equal(held.length, 2);
    p.send(rstStreamFrame(1, ErrorCode.CANCEL));
    await settle();
    assert.equal(held[0]!.cancelled, true, "stream 1's call emitted 'cancelled'");
    assert.equal(held[1]!.cancelled, false);
    held[0]!.cb(null, Buffer.from('too late'));
    held[1]!.cb(null, Buffer.from('three'));
    p.send(call(5, ECHO, Buffer.from('five')));
    await settle();
    assert.deepEqual(p.stream(1).order, [], 'nothing is sent on the reset stream');
    assertAnswered(p.stream(3), Buffer.from('three'), 'stream 3');
    assertAnswered(p.stream(5), Buffer.from('five'), 'stream 5');
    assert.equal(p.goaway, undefined);
    assert.equal(p.conn.activeStreams, 0);
  });

  // Each: what the client sends on stream 3 (stream 1 is open and held), and the reset it gets.
  const streamErrors: [string, (p: Peer) => void, number][] = [
    ['a malformed header name (upper case)', (p) => p.send(headers(3, requestBlock(ECHO, [hpackLiteral('X-Upper', 'v')]), true)), ErrorCode.PROTOCOL_ERROR],
    ['a connection-specific header', (p) => p.send(headers(3, requestBlock(ECHO, [hpackLiteral('connection', 'keep-alive')]), true)), ErrorCode.PROTOCOL_ERROR],
    ['no :path', (p) => p.send(headers(3, Buffer.concat([hpackIndexed(3), hpackIndexed(6)]), true)), ErrorCode.PROTOCOL_ERROR],
    ['DATA beyond the stream window (100 bytes here)', (p) => p.send(headers(3, requestBlock(ECHO)), data(3, Buffer.alloc(101), false)), ErrorCode.FLOW_CONTROL_ERROR],
    ['DATA shorter than content-length', (p) => p.send(headers(3, requestBlock(ECHO, [hpackLiteralIndexedName(28, '10')])), data(3, grpcMessage(Buffer.from('ab')))), ErrorCode.PROTOCOL_ERROR],
    ['trailers without END_STREAM', (p) => p.send(headers(3, requestBlock(ECHO)), headers(3, hpackLiteral('x-t', 'v'), false)), ErrorCode.PROTOCOL_ERROR],
    ['a pseudo-header in trailers', (p) => p.send(headers(3, requestBlock(ECHO)), headers(3, hpackIndexed(4), true)), ErrorCode.PROTOCOL_ERROR],
    ['a connection-specific field in trailers', (p) => p.send(headers(3, requestBlock(ECHO)), headers(3, hpackLiteral('transfer-encoding', 'chunked'), true)), ErrorCode.PROTOCOL_ERROR],
    ['DATA after END_STREAM', (p) => p.send(headers(3, requestBlock(HOLD)), data(3, grpcMessage(Buffer.from('x'))), data(3, Buffer.from('more'))), ErrorCode.STREAM_CLOSED],
    ['WINDOW_UPDATE of 0', (p) => p.send(headers(3, requestBlock(HOLD)), windowUpdateFrame(3, 0)), ErrorCode.PROTOCOL_ERROR],
    ['a stream depending on itself', (p) => p.send(frame(FrameType.PRIORITY, 0, 3, Buffer.from([0, 0, 0, 3, 16]))), ErrorCode.PROTOCOL_ERROR],
  ];
  for (const [what, send, code] of streamErrors) {
    it(`a stream error resets only its stream: ${what}`, async () => {
      held.length = 0;
      const p = new Peer(server, { streamWindow: 100 });
      p.send(preface(), call(1, HOLD, Buffer.from('held')));
      send(p);
      await settle();
      assert.equal(p.stream(3).rst, code, `RST_STREAM on stream 3 (${JSON.stringify(p.errors)})`);
      assert.equal(p.stream(3).headers, undefined);
      p.send(call(5, ECHO, Buffer.from('five')));
      held[0]!.cb(null, Buffer.from('held'));
      await settle();
      assertAnswered(p.stream(1), Buffer.from('held'), 'the stream opened before');
      assertAnswered(p.stream(5), Buffer.from('five'), 'the stream opened after');
      assert.equal(p.goaway, undefined);
      assert.equal(p.sock.ended, false);
    });
  }

  it('a WINDOW_UPDATE of 0 on a stream that has ended normally is a stream error too; other window updates there are ignored', async () => {
    const p = new Peer(server);
    p.send(preface(), call(1, ECHO, Buffer.from('x')));
    await settle();
    assertAnswered(p.stream(1), Buffer.from('x'));
    p.send(windowUpdateFrame(1, 5));
    await settle();
    assert.equal(p.stream(1).rst, undefined);
    p.send(windowUpdateFrame(1, 0));
    await settle();
    assert.equal(p.stream(1).rst, ErrorCode.PROTOCOL_ERROR);
    assert.equal(p.goaway, undefined);
  });

  // Each: bytes after the preface and SETTINGS (with stream 1 open and held), the GOAWAY code expected.
  const bigHeader = Buffer.alloc(9);
  bigHeader.writeUIntBE(16_385, 0, 3);
  bigHeader[3] = FrameType.DATA;
  bigHeader.writeUInt32BE(1, 5);
  const connectionErrors: [string, Buffer, number][] = [
    ['PING of 7 bytes', ping(Buffer.alloc(7)), ErrorCode.FRAME_SIZE_ERROR],
    ['PING on a stream', frame(FrameType.PING, 0, 1, Buffer.alloc(8)), ErrorCode.PROTOCOL_ERROR],
    ['DATA on stream 0', frame(FrameType.DATA, 0, 0, Buffer.from('x')), ErrorCode.PROTOCOL_ERROR],
    ['DATA on an idle stream', data(7, Buffer.from('x')), ErrorCode.PROTOCOL_ERROR],
    ['DATA on a server-initiated (even) stream', data(2, Buffer.from('x')), ErrorCode.PROTOCOL_ERROR],
    ['DATA whose pad length is the whole payload', frame(FrameType.DATA, Flag.PADDED, 1, Buffer.from([3, 0, 0])), ErrorCode.PROTOCOL_ERROR],
    ['HEADERS with PRIORITY whose padding eats the field block', frame(FrameType.HEADERS, Flag.PADDED | Flag.PRIORITY | Flag.END_HEADERS, 3, Buffer.from([2, 0, 0, 0, 0, 16, 0x82])), ErrorCode.PROTOCOL_ERROR],
    ['HEADERS on an even stream', headers(2, requestBlock(ECHO), true), ErrorCode.PROTOCOL_ERROR],
    ['HEADERS on a closed stream id (lower than the last)', Buffer.concat([call(5, ECHO, Buffer.from('x')), headers(3, requestBlock(ECHO), true)]), ErrorCode.STREAM_CLOSED],
    ['a header block HPACK cannot decode (index 0)', headers(3, Buffer.from([0x80]), true), ErrorCode.COMPRESSION_ERROR],
    ['a dynamic table index out of range', headers(3, Buffer.from([0xbe]), true), ErrorCode.COMPRESSION_ERROR],
    ['CONTINUATION without HEADERS', frame(FrameType.CONTINUATION, Flag.END_HEADERS, 3, requestBlock(ECHO)), ErrorCode.PROTOCOL_ERROR],
    ['another frame inside a header block', Buffer.concat([frame(FrameType.HEADERS, 0, 3, requestBlock(ECHO)), ping(Buffer.alloc(8))]), ErrorCode.PROTOCOL_ERROR],
    ['a frame above SETTINGS_MAX_FRAME_SIZE', bigHeader, ErrorCode.FRAME_SIZE_ERROR],
    ['SETTINGS of 5 bytes', frame(FrameType.SETTINGS, 0, 0, Buffer.alloc(5)), ErrorCode.FRAME_SIZE_ERROR],
    ['SETTINGS_INITIAL_WINDOW_SIZE above 2^31-1', settingsFrame([[Setting.INITIAL_WINDOW_SIZE, 0x8000_0000]]), ErrorCode.FLOW_CONTROL_ERROR],
    ['SETTINGS_MAX_FRAME_SIZE below 16,384', settingsFrame([[Setting.MAX_FRAME_SIZE, 100]]), ErrorCode.PROTOCOL_ERROR],
    ['SETTINGS_ENABLE_PUSH of 2', settingsFrame([[Setting.ENABLE_PUSH, 2]]), ErrorCode.PROTOCOL_ERROR],
    ['the connection window above 2^31-1', windowUpdateFrame(0, 0x7fff_ffff), ErrorCode.FLOW_CONTROL_ERROR],
    ['WINDOW_UPDATE of 0 on the connection', windowUpdateFrame(0, 0), ErrorCode.PROTOCOL_ERROR],
    ['RST_STREAM on an idle stream', rstStreamFrame(9, ErrorCode.CANCEL), ErrorCode.PROTOCOL_ERROR],
    ['RST_STREAM of 3 bytes', frame(FrameType.RST_STREAM, 0, 1, Buffer.alloc(3)), ErrorCode.FRAME_SIZE_ERROR],
    ['PUSH_PROMISE from a client', frame(FrameType.PUSH_PROMISE, Flag.END_HEADERS, 1, Buffer.alloc(4)), ErrorCode.PROTOCOL_ERROR],
  ];
  for (const [what, bytes, code] of connectionErrors) {
    it(`a connection error sends GOAWAY and closes: ${what}`, async () => {
      held.length = 0;
      const p = new Peer(server);
      p.send(preface(), call(1, HOLD, Buffer.from('held')));
      await settle();
      p.send(bytes);
      await settle();
      const g = p.goaway;
      assert.ok(g, `GOAWAY expected (${what})`);
      assert.equal(g.code, code, `GOAWAY code (${g.debug})`);
      assert.ok(g.last >= 1, 'the last stream id covers the open stream');
      assert.ok(p.sock.ended || p.sock.destroyed, 'the socket is closed');
      assert.equal(held[0]!.cancelled, true, "the open call emitted 'cancelled'");
      assert.equal(p.conn.activeStreams, 0);
      assert.equal(p.errors.length, 1);
      // Nothing more is read or written.
      const n = p.sock.out.length;
      p.send(call(11, ECHO, Buffer.from('x')));
      await settle();
      assert.equal(p.sock.out.length, n);
      assert.equal(p.sock.writesAfterEnd, 0);
    });
  }

  it('the preface must be followed by SETTINGS', async () => {
    const p = new Peer(server);
    p.send(CLIENT_PREFACE, ping(Buffer.alloc(8)));
    await settle();
    assert.equal(p.goaway?.code, ErrorCode.PROTOCOL_ERROR);
  });

  it('after its GOAWAY (shutdown) the server finishes the open streams, ignores new ones and their frames, then closes', async () => {
    held.length = 0;
    const p = new Peer(server);
    p.send(preface(), call(1, HOLD, Buffer.from('held')));
    await settle();
    p.conn.shutdown();
    await settle();
    assert.deepEqual(p.goaway && [p.goaway.last, p.goaway.code], [1, ErrorCode.NO_ERROR]);
    // The client had not seen the GOAWAY yet: stream 3 with DATA, a window update and a reset on it.
    p.send(call(3, ECHO, Buffer.from('late')), windowUpdateFrame(3, 10), rstStreamFrame(3, ErrorCode.CANCEL), ping(Buffer.from('pingpong')));
    await settle();
    assert.deepEqual(p.stream(3).order, [], 'stream 3 is ignored');
    assert.equal(p.frames.filter((f) => f.type === FrameType.GOAWAY).length, 1, 'no second GOAWAY: no connection error');
    assert.ok(p.frames.some((f) => f.type === FrameType.PING && f.flags & Flag.ACK), 'PING still answered');
    assert.equal(p.sock.ended, false, 'open while stream 1 is');
    held[0]!.cb(null, Buffer.from('held'));
    await settle();
    assertAnswered(p.stream(1), Buffer.from('held'));
    assert.equal(p.sock.ended, true, 'closed after the last stream');
  });
});

describe('H2Connection: limits', () => {
  const { server, held } = makeServer();

  it('refuses streams above SETTINGS_MAX_CONCURRENT_STREAMS with REFUSED_STREAM; a freed slot is used again', async () => {
    held.length = 0;
    const p = new Peer(server, { maxConcurrentStreams: 2 });
    p.send(preface(), call(1, HOLD, Buffer.from('1')), call(3, HOLD, Buffer.from('3')), call(5, HOLD, Buffer.from('5')));
    await settle();
    const settings = p.frames[0]!;
    assert.equal(settings.type, FrameType.SETTINGS);
    assert.equal(settings.payload.readUInt16BE(0), Setting.MAX_CONCURRENT_STREAMS);
    assert.equal(settings.payload.readUInt32BE(2), 2);
    assert.equal(p.stream(5).rst, ErrorCode.REFUSED_STREAM);
    assert.equal(held.length, 2);
    held[0]!.cb(null, Buffer.from('1'));
    await settle();
    p.send(call(7, ECHO, Buffer.from('7')));
    await settle();
    assertAnswered(p.stream(1), Buffer.from('1'));
    assertAnswered(p.stream(7), Buffer.from('7'));
    assert.equal(p.goaway, undefined);
  });

  it('answers a header list above SETTINGS_MAX_HEADER_LIST_SIZE with 431, and keeps its HPACK table in step', async () => {
    const p = new Peer(server);
    // 20,000 bytes of header, added to the dynamic table (literal with incremental indexing), across HEADERS + CONTINUATION.
    const name = 'x-big';
    const value = 'v'.repeat(3_000);
    const indexed: number[] = [0x40];
    encodeInteger(name.length, 7, 0, indexed);
    const big = Buffer.concat([Buffer.from(indexed), Buffer.from(name), Buffer.from(encodeLength(value.length)), Buffer.from(value), hpackLiteral('x-pad', 'p'.repeat(17_000))]);
    const block = requestBlock(ECHO, [big]);
    p.send(
      preface(),
      frame(FrameType.HEADERS, 0, 1, block.subarray(0, 16_384)),
      frame(FrameType.CONTINUATION, Flag.END_HEADERS, 1, block.subarray(16_384)),
      data(1, grpcMessage(Buffer.from('x'))),
    );
    await settle();
    const v = p.stream(1);
    assert.deepEqual(v.headers, { ':status': '431' });
    assert.ok(v.ended);
    // The next request refers to the entry the refused block added (index 62): the table followed the client's.
    p.send(call(3, ECHO, Buffer.from('after'), [Buffer.from([0xbe])]));
    await settle();
    assertAnswered(p.stream(3), Buffer.from('after'));
    assert.equal(p.goaway, undefined);
  });

  it('ends a connection that resets more than maxResetsPerSecond streams with GOAWAY ENHANCE_YOUR_CALM', async () => {
    const p = new Peer(server, { maxResetsPerSecond: 10 });
    p.send(preface());
    for (let i = 0; i < 10; i++) p.send(headers(1 + 2 * i, requestBlock(HOLD)), rstStreamFrame(1 + 2 * i, ErrorCode.CANCEL));
    await settle();
    assert.equal(p.goaway, undefined, 'ten resets are allowed');
    p.send(headers(21, requestBlock(HOLD)), rstStreamFrame(21, ErrorCode.CANCEL));
    await settle();
    assert.equal(goawayOf(p.frames)?.code, ErrorCode.ENHANCE_YOUR_CALM);
    assert.ok(p.sock.ended);
  });

  it('bounds the request bytes held in unfinished messages over all streams (maxHeldBytes); finished messages free theirs', async () => {
    const p = new Peer(server, { maxHeldBytes: 100_000 });
    p.send(preface());
    // A 1 MB message announced, 40 KB of it sent, on each stream: two fit, a third does not.
    const partial = (id: number) => {
      const part = grpcMessage(Buffer.alloc(1_000_000)).subarray(0, 40_000);
      const frames = [0, 10_000, 20_000, 30_000].map((at) => data(id, part.subarray(at, at + 10_000), false));
      return Buffer.concat([headers(id, requestBlock(ECHO)), ...frames]);
    };
    p.send(partial(1), partial(3));
    await settle();
    assert.equal(p.goaway, undefined, '80 KB held is within the bound');
    // A small complete call still goes through, and a stream that ends frees what it held.
    p.send(call(5, ECHO, Buffer.from('ok')));
    p.send(rstStreamFrame(1, ErrorCode.CANCEL));
    await settle();
    assertAnswered(p.stream(5), Buffer.from('ok'));
    p.send(partial(7));
    await settle();
    assert.equal(p.goaway, undefined, 'stream 1 gave back its 40 KB');
    p.send(partial(9));
    await settle();
    const g = goawayOf(p.frames);
    assert.equal(g?.code, ErrorCode.ENHANCE_YOUR_CALM);
    assert.match(g!.debug, /unfinished request messages/);
    assert.ok(p.sock.ended);
  });
});

/** A plain string length prefix (7-bit prefix, no Huffman). */
function encodeLength(n: number): number[] {
  const out: number[] = [];
  encodeInteger(n, 7, 0, out);
  return out;
}

// ---- fuzz -------------------------------------------------------------------------------------------------------

/**
 * One random client sequence (after the preface and SETTINGS): well-formed calls mixed with frames of random
 * type (unknown ones too), flags, stream ids and payloads (of wrong lengths too), header blocks of random HPACK
 * bytes. Frames are well-delimited unless `cut`: then the last frame is cut short, or a byte somewhere is
 * flipped (a length, say), and the client goes away after sending.
 */
function fuzzFrames(r: () => number): { bytes: Buffer; clientGoaway: boolean; cut: boolean } {
  const int = (n: number) => Math.floor(r() * n);
  const pick = <T>(a: readonly T[]): T => a[int(a.length)]!;
  const bytes = (n: number) => {
    const b = Buffer.alloc(n);
    for (let i = 0; i < n; i++) b[i] = int(256);
    return b;
  };
  const pad = (flags: number, payload: Buffer) =>
    flags & Flag.PADDED && r() < 0.8 ? Buffer.concat([Buffer.from([r() < 0.7 ? int(4) : int(payload.length + 8)]), payload, Buffer.alloc(int(4))]) : payload;
  const types = [0, 0, 1, 1, 1, 2, 3, 3, 4, 4, 5, 6, 6, 7, 8, 8, 9, 9, 0x0a, 0x10, 0xff];
  const paths = [CHECK, CHECK, ECHO, SIZED, '/unknown/Method', '/'];
  const out: Buffer[] = [];
  const opened: number[] = [];
  let next = 1;
  let clientGoaway = false;
  const count = 1 + int(10);
  for (let i = 0; i < count; i++) {
    if (r() < 0.3) {
      // A well-formed call (or its start) on a new stream.
      const id = next;
      next += 2;
      opened.push(id);
      const path = pick(paths);
      const withBody = r() < 0.8;
      out.push(headers(id, requestBlock(path), !withBody));
      if (withBody) out.push(data(id, grpcMessage(path === SIZED ? Buffer.from(String(int(70_000))) : CHECK_REQUEST), r() < 0.85));
      continue;
    }
    const type = pick(types);
    let flags = r() < 0.6 ? pick([0, 1, 4, 5, 8, 9, 0x20, 0x24, 0x25, 0x2c, 0x2d]) : int(256);
    if ((type === FrameType.HEADERS || type === FrameType.CONTINUATION) && r() < 0.6) flags |= Flag.END_HEADERS;
    const id = r() < 0.5 && opened.length ? pick(opened) : r() < 0.3 ? next : pick([0, 1, 2, 3, 5, 0x7fff_ffff, 1 + 2 * int(60)]);
    if (type === FrameType.HEADERS && id >= next && id & 1) next = id + 2;
    let payload: Buffer;
    switch (type) {
      case FrameType.HEADERS:
      case FrameType.CONTINUATION: {
        const x = r();
        if (x < 0.35) payload = requestBlock(pick(paths), r() < 0.3 ? [hpackLiteral('content-length', String(int(20)))] : []);
        else if (x < 0.45) payload = Buffer.concat([requestBlock(pick(paths)), bytes(int(12))]);
        else if (x < 0.55) payload = Buffer.concat([hpackIndexed(2), hpackIndexed(4), hpackIndexed(6)]); // GET /
        else if (x < 0.65) payload = hpackLiteral('grpc-trailer', 'x'); // trailers
        else payload = bytes(int(40));
        if (type === FrameType.HEADERS && flags & Flag.PRIORITY && r() < 0.8) payload = Buffer.concat([bytes(5), payload]);
        if (type === FrameType.HEADERS) payload = pad(flags, payload);
        break;
      }
      case FrameType.DATA:
        payload = pad(flags, r() < 0.5 ? grpcMessage(r() < 0.5 ? CHECK_REQUEST : bytes(int(20))) : bytes(int(40)));
        break;
      case FrameType.SETTINGS: {
        const n = r() < 0.8 ? 6 * int(4) : int(20);
        payload = bytes(n);
        for (let o = 0; o + 6 <= n; o += 6) {
          if (r() < 0.8) payload.writeUInt16BE(1 + int(8), o);
          if (r() < 0.5) payload.writeUInt32BE(pick([0, 1, 10, 4096, 16_384, 65_535, 1 << 20, 0x7fff_ffff]), o + 2);
        }
        break;
      }
      case FrameType.PING:
        payload = bytes(r() < 0.8 ? 8 : int(16));
        break;
      case FrameType.WINDOW_UPDATE:
        payload = r() < 0.85 ? Buffer.alloc(4) : bytes(int(8));
        if (payload.length === 4) payload.writeUInt32BE(pick([0, 1, 100, 65_535, 0x7fff_ffff, int(0x1_0000_0000)]));
        break;
      case FrameType.RST_STREAM:
        payload = r() < 0.85 ? Buffer.alloc(4) : bytes(int(8));
        if (payload.length === 4) payload.writeUInt32BE(int(16));
        break;
      case FrameType.PRIORITY:
        payload = bytes(r() < 0.85 ? 5 : int(10));
        break;
      case FrameType.GOAWAY:
        payload = bytes(r() < 0.8 ? 8 + int(8) : int(8));
        clientGoaway = true;
        break;
      default:
        payload = bytes(int(40));
    }
    // Rarely, a frame header announcing 16 MiB: FRAME_SIZE_ERROR before any payload.
    out.push(r() < 0.005 ? frame(type, flags, id).fill(0xff, 0, 3) : frame(type, flags, id, payload));
  }
  let all = Buffer.concat(out);
  const cut = r() < 0.15 && all.length > 1;
  if (cut) {
    if (r() < 0.5) all = all.subarray(0, all.length - 1 - int(Math.min(8, all.length - 1)));
    else {
      const at = int(all.length);
      all[at] = all[at]! ^ (1 << int(8));
    }
  }
  return { bytes: all, clientGoaway, cut };
}

describe('H2Connection: fuzz', () => {
  it('survives 2,000 random frame sequences: no exception escapes, every connection answers a PING or has closed (with GOAWAY when the server chose to), and a fresh connection still gets a correct answer', async (t) => {
    const { server } = makeServer();
    const uncaught: unknown[] = [];
    const onUncaught = (e: unknown) => uncaught.push(e);
    process.on('uncaughtException', onUncaught);
    const started = Date.now();
    const outcomes = { answered: 0, goaway: 0, closedAfterClientGoaway: 0, cut: 0, withResponses: 0, withStreamResets: 0 };
    try {
      for (let seed = 1; seed <= 2000; seed++) {
        const r = xorshift32(seed, 0x9e37_79b9);
        const p = new Peer(server);
        const { bytes, clientGoaway, cut } = fuzzFrames(r);
        const all = Buffer.concat([preface([[Setting.INITIAL_WINDOW_SIZE, 65_535]]), bytes]);
        const probe = Buffer.alloc(8);
        probe.writeUInt32BE(seed, 4);
        try {
          // In random chunks, each its own 'data' event.
          for (let at = 0; at < all.length; ) {
            const n = 1 + Math.floor(r() * 64);
            p.sock.feed(all.subarray(at, at + n));
            at += n;
          }
          await settle();
          if (cut) {
            p.sock.emit('end');
            p.sock.destroy();
            await settle();
            assert.equal(p.conn.activeStreams, 0, `seed ${seed}: streams left after the socket closed`);
            outcomes.cut++;
            continue;
          }
          if (!p.sock.ended && !p.sock.destroyed) p.sock.feed(ping(probe));
          await settle();
        } catch (e) {
          assert.fail(`seed ${seed}: the socket handler threw: ${(e as Error)?.stack ?? e}\nbytes ${bytes.toString('hex')}`);
        }
        const frames = p.frames;
        const answered = frames.some((f) => f.type === FrameType.PING && f.flags & Flag.ACK && f.payload.equals(probe));
        const g = goawayOf(frames);
        if (frames.some((f) => f.type === FrameType.HEADERS)) outcomes.withResponses++;
        if (frames.some((f) => f.type === FrameType.RST_STREAM)) outcomes.withStreamResets++;
        if (answered) outcomes.answered++;
        else if (g) {
          assert.ok(p.sock.ended || p.sock.destroyed, `seed ${seed}: GOAWAY but the socket is open`);
          assert.equal(p.conn.activeStreams, 0);
          outcomes.goaway++;
        } else if (clientGoaway && p.sock.ended) outcomes.closedAfterClientGoaway++;
        else assert.fail(`seed ${seed}: neither a PING answer nor GOAWAY; bytes ${bytes.toString('hex')}\nframes ${frames.map((f) => `${f.type}/${f.flags}/${f.id}`).join(' ')}`);
        assert.equal(p.sock.writesAfterEnd, 0, `seed ${seed}: wrote after end`);
      }
    } finally {
      process.off('uncaughtException', onUncaught);
    }
    assert.deepEqual(uncaught, []);
    // Both outcomes occur: the sequences are not all fatal, nor all harmless.
    assert.ok(outcomes.answered > 100 && outcomes.goaway > 100, JSON.stringify(outcomes));
    t.diagnostic(`outcomes: ${JSON.stringify(outcomes)} in ${Date.now() - started} ms`);
    const p = new Peer(server);
    p.send(preface(), call(1, CHECK, CHECK_REQUEST));
    await settle();
    assertAnswered(p.stream(1), CHECK_ANSWER, 'a fresh connection');
    assert.ok(Date.now() - started < 10_000, `took ${Date.now() - started} ms`);
  });
});

// ---- real sockets -------------------------------------------------------------------------------------------------

/** A raw TCP client: writes bytes, collects the server's frames. */
class RawClient {
  readonly frames: Frame[] = [];
  closed = false;
  private readonly reader = new FrameReader({ frame: (type, flags, id, payload) => this.frames.push({ type, flags, id, payload: Buffer.from(payload) }) }, 0xff_ffff, false);
  private waiters: (() => void)[] = [];

  private constructor(readonly socket: Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.reader.push(chunk);
      this.wake();
    });
    socket.on('error', () => {});
    socket.on('close', () => {
      this.closed = true;
      this.wake();
    });
  }

  static connect(port: number): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const s = netConnect(port, '127.0.0.1', () => resolve(new RawClient(s)));
      s.once('error', reject);
    });
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const fn of w) fn();
  }

  async until(ok: () => boolean, what: string, ms = 5000): Promise<void> {
    const deadline = Date.now() + ms;
    while (!ok()) {
      if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}; frames ${this.frames.map((f) => `${f.type}/${f.flags}/${f.id}`).join(' ')}`);
      await new Promise<void>((r) => {
        this.waiters.push(r);
        setTimeout(r, 50);
      });
    }
  }

  async check(id: number): Promise<void> {
    this.socket.write(call(id, CHECK, CHECK_REQUEST));
    await this.until(() => streamView(this.frames, id).ended, `the answer on stream ${id}`);
    assertAnswered(streamView(this.frames, id), CHECK_ANSWER, `stream ${id}`);
  }
}

describe('GrpcServer: one connection sending garbage', () => {
  const { server } = makeServer();
  const clients: RawClient[] = [];
  after(() => {
    for (const c of clients) c.socket.destroy();
    server.forceShutdown();
  });

  it('ends that connection (GOAWAY PROTOCOL_ERROR) and keeps serving the others', async () => {
    const port = await server.listen('127.0.0.1', 0);
    const open = async () => {
      const c = await RawClient.connect(port);
      clients.push(c);
      return c;
    };
    const before = await open();
    before.socket.write(preface());
    await before.check(1);

    const http1 = await open();
    http1.socket.write('GET / HTTP/1.1\r\nHost: localhost\r\nConnection: keep-alive\r\n\r\n');
    // A TLS ClientHello's record header and the start of the handshake, on the plaintext port.
    const tls = await open();
    tls.socket.write(Buffer.from('16030100f4010000f00303' + 'ab'.repeat(32) + '00', 'hex'));
    // Random bytes after a good preface.
    const noise = await open();
    noise.socket.write(Buffer.concat([preface(), Buffer.from('this is not a frame at all, just text\r\n'.repeat(4))]));
    for (const [c, what] of [[http1, 'HTTP/1.1'], [tls, 'TLS ClientHello'], [noise, 'noise']] as const) {
      await c.until(() => c.closed, `${what}: the server closes the connection`);
      const g = goawayOf(c.frames);
      assert.ok(g, `${what}: GOAWAY before closing`);
      assert.ok(g.code === ErrorCode.PROTOCOL_ERROR || g.code === ErrorCode.FRAME_SIZE_ERROR, `${what}: GOAWAY code ${g.code} (${g.debug})`);
    }

    await before.check(3);
    const afterwards = await open();
    afterwards.socket.write(preface());
    await afterwards.check(1);
    // And it ends cleanly when the client goes away.
    before.socket.write(goawayFrame(0, ErrorCode.NO_ERROR));
    await before.until(() => before.closed, 'the first connection to close after its GOAWAY');
  });
});
