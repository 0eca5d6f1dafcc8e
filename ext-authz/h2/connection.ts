import type { Socket } from 'node:net';
import {
  DEFAULT_MAX_FRAME_SIZE,
  ErrorCode,
  Flag,
  FRAME_HEADER_LENGTH,
  FrameReader,
  FrameType,
  goawayFrame,
  H2Error,
  headerFrames,
  MAX_WINDOW,
  rstStreamFrame,
  Setting,
  SETTINGS_ACK,
  settingsFrame,
  unpad,
  windowUpdateFrame,
  writeFrameHeader,
  frame as makeFrame,
  type FrameSink,
} from './frames.ts';
import { encodeInteger, HpackDecoder, HpackError, hpackLiteralIndexedName } from './hpack.ts';
import { validateRequestHeaders, validateTrailers } from './request-headers.ts';

/**
 * One server-side HTTP/2 connection (RFC 9113): stream states, flow control
 * in both directions, SETTINGS, PING, GOAWAY, RST_STREAM, header blocks across
 * CONTINUATION frames, request header validation. What a request means is the
 * handler's business (ext-authz/h2/grpc-server.ts); this module moves frames.
 *
 * Frames the handler writes in one event-loop turn leave in one socket write.
 * Connection errors end the connection with GOAWAY; stream errors reset the
 * stream and leave the others alone.
 */
export interface H2ConnectionOptions {
  /** SETTINGS_MAX_CONCURRENT_STREAMS: streams above it are refused (REFUSED_STREAM). Default 1024. */
  maxConcurrentStreams?: number;
  /** SETTINGS_INITIAL_WINDOW_SIZE: what a client may send on a stream before we open it further. Default 1 MiB. */
  streamWindow?: number;
  /** The connection's receive window. Default 16 MiB. */
  connectionWindow?: number;
  /** SETTINGS_MAX_HEADER_LIST_SIZE: a larger request header list gets 431. Default 16 KiB. */
  maxHeaderListSize?: number;
  /** More streams than this reset by the client within one second ends the connection (rapid reset, CVE-2023-44487). Default 1000. */
  maxResetsPerSecond?: number;
  /**
   * Request bytes the application may hold in unfinished messages over all of a connection's streams (see
   * `hold`); more ends the connection (ENHANCE_YOUR_CALM). Flow control alone does not bound this: windows
   * are reopened as data is taken. Default 64 MiB.
   */
  maxHeldBytes?: number;
  /** Called once with the reason when the connection ends with an error of ours or the peer's. */
  onError?: (message: string) => void;
}

/** What the connection tells the owner of a stream. */
export interface StreamListener {
  /** Request data (padding removed); `end` on the last of it (END_STREAM on DATA or trailers). */
  onData(chunk: Buffer, end: boolean): void;
  /** The stream ended before the response did: reset by the client, a stream error, or the connection went away. */
  onReset(code: number): void;
}

export interface RequestHandler {
  /** A new request: its header list (flat name, value pairs, validated), `end` if no body follows. */
  onRequest(stream: H2Stream, headers: string[], end: boolean): void;
}

/** Frames waiting for flow-control window, in order. */
interface Pending {
  /** A header block (framed when it leaves), or DATA to be cut into frames. */
  headers?: Buffer;
  data?: Buffer;
  offset: number;
  end: boolean;
}

const EMPTY = Buffer.alloc(0);
const NOOP_LISTENER: StreamListener = { onData() {}, onReset() {} };
/** Outbound bytes queued in the socket beyond which the connection stops reading (the peer is not reading its answers). */
const WRITE_HIGH_WATER = 4 * 1024 * 1024;
/** Ids of streams this side reset, remembered so frames the client sent before seeing the reset are ignored. */
const RECENTLY_RESET = 1024;
const HEADERS_431 = hpackLiteralIndexedName(8, '431');

export class H2Stream {
  listener: StreamListener = NOOP_LISTENER;
  /** Peer's END_STREAM seen. */
  recvEnded = false;
  /** Our END_STREAM queued: nothing more may be written. */
  endQueued = false;
  sendWindow: number;
  recvWindow: number;
  recvUnacked = 0;
  received = 0;
  contentLength = -1;
  pending: Pending[] | undefined;
  closed = false;

  constructor(
    readonly connection: H2Connection,
    readonly id: number,
    sendWindow: number,
    recvWindow: number,
  ) {
    this.sendWindow = sendWindow;
    this.recvWindow = recvWindow;
  }

  /** Sends a header block (HPACK-encoded); `end` closes our side. False if the stream is done. */
  headers(block: Buffer, end: boolean): boolean {
    return this.connection.sendHeaders(this, block, end);
  }

  /** Sends data, cut into frames as flow control allows; `end` closes our side. */
  data(payload: Buffer, end: boolean): boolean {
    return this.connection.sendData(this, payload, end);
  }

  /**
   * Response headers, one DATA payload and trailers, ending the stream: one
   * buffer when the windows allow (the unary gRPC answer), else the general path.
   */
  respond(headerBlock: Buffer, payload: Buffer, trailerBlock: Buffer): boolean {
    return this.connection.sendResponse(this, headerBlock, payload, trailerBlock);
  }

  get peer(): string {
    return this.connection.peer;
  }
}

export class H2Connection implements FrameSink {
  readonly peer: string;
  private readonly reader: FrameReader;
  private readonly decoder: HpackDecoder;
  private readonly streams = new Map<number, H2Stream>();
  private readonly resetByUs = new Set<number>();
  /** The highest client stream id accepted for processing (the last stream id of our GOAWAY). */
  private lastStreamId = 0;
  /** The highest client stream id seen in HEADERS, accepted or not: streams above it are idle (RFC 9113 §5.1.1). */
  private highestStreamId = 0;
  private gotSettings = false;
  /** Header block being assembled from HEADERS + CONTINUATION. */
  private cont: { id: number; flags: number; chunks: Buffer[]; size: number } | undefined;

  private peerMaxFrameSize = DEFAULT_MAX_FRAME_SIZE;
  /** The dynamic table size our HPACK encoder works with, as far as the peer knows (RFC 7541 §4.2). */
  private encoderTableSize = 4096;
  /** A dynamic table size update owed at the start of the next header block we send; -1 when none is. */
  private tableSizeUpdate = -1;
  private peerInitialWindow = 65_535;
  private connSendWindow = 65_535;
  private connRecvWindow: number;
  private connRecvUnacked = 0;
  private readonly blocked = new Set<H2Stream>();

  private out: Buffer[] = [];
  private outBytes = 0;
  private flushScheduled = false;
  private readonly flushBound = () => this.flush();

  /** GOAWAY sent: no new streams; the connection ends when the last stream does. */
  private goingAway = false;
  private dead = false;
  private resetWindowStart = 0;
  private resetsInWindow = 0;

  private readonly maxConcurrent: number;
  private readonly streamWindow: number;
  private readonly connectionWindow: number;
  private readonly maxHeaderListSize: number;
  private readonly maxResets: number;
  private readonly maxHeld: number;
  private held = 0;

  constructor(
    private readonly socket: Socket,
    private readonly handler: RequestHandler,
    private readonly opts: H2ConnectionOptions = {},
  ) {
    this.maxConcurrent = opts.maxConcurrentStreams ?? 1024;
    this.streamWindow = opts.streamWindow ?? 1024 * 1024;
    this.connectionWindow = opts.connectionWindow ?? 16 * 1024 * 1024;
    this.maxHeaderListSize = opts.maxHeaderListSize ?? 16 * 1024;
    this.maxResets = opts.maxResetsPerSecond ?? 1000;
    this.maxHeld = opts.maxHeldBytes ?? 64 * 1024 * 1024;
    this.connRecvWindow = this.connectionWindow;
    this.peer = `${socket.remoteAddress ?? 'unknown'}:${socket.remotePort ?? 0}`;
    this.reader = new FrameReader(this, DEFAULT_MAX_FRAME_SIZE, true);
    this.decoder = new HpackDecoder(4096);

    socket.setNoDelay(true);
    this.queue(
      settingsFrame([
        [Setting.MAX_CONCURRENT_STREAMS, this.maxConcurrent],
        [Setting.INITIAL_WINDOW_SIZE, this.streamWindow],
        [Setting.MAX_HEADER_LIST_SIZE, this.maxHeaderListSize],
      ]),
    );
    if (this.connectionWindow > 65_535) this.queue(windowUpdateFrame(0, this.connectionWindow - 65_535));
    socket.on('data', (chunk: Buffer) => this.onBytes(chunk));
    socket.on('drain', () => socket.isPaused() && !this.dead && socket.resume());
    socket.on('error', () => this.lost());
    socket.on('close', () => this.lost());
    socket.on('end', () => {
      // The client half-closed: it sends nothing more. Finish what is answerable, then close.
      this.goingAway = true;
      this.closeIfIdle();
    });
  }

  /**
   * The application holds `delta` more (or, negative, fewer) bytes of request data it has taken but not
   * finished with (parts of messages). Past maxHeldBytes the connection ends: throws the connection error,
   * which unwinds to the frame reader.
   */
  hold(delta: number): void {
    this.held += delta;
    if (delta > 0 && this.held > this.maxHeld) {
      throw new H2Error(ErrorCode.ENHANCE_YOUR_CALM, `more than ${this.maxHeld} bytes of unfinished request messages on one connection`);
    }
  }

  get activeStreams(): number {
    return this.streams.size;
  }

  /** Graceful: GOAWAY with the last stream id; ends when the open streams have. */
  shutdown(): void {
    if (this.dead || this.goingAway) return;
    this.goingAway = true;
    this.queue(goawayFrame(this.lastStreamId, ErrorCode.NO_ERROR, 'server shutting down'));
    this.closeIfIdle();
  }

  /** At once: every open stream is reset. */
  destroy(): void {
    if (this.dead) return;
    this.flush();
    this.lost();
    this.socket.destroy();
  }

  // ---- reading ------------------------------------------------------------------

  private onBytes(chunk: Buffer): void {
    if (this.dead) return;
    try {
      this.reader.push(chunk);
    } catch (e) {
      if (e instanceof H2Error) this.connectionError(e.code, e.message);
      else if (e instanceof HpackError) this.connectionError(ErrorCode.COMPRESSION_ERROR, e.message);
      else this.connectionError(ErrorCode.INTERNAL_ERROR, `internal error: ${(e as Error)?.message ?? String(e)}`);
    }
  }

  frame(type: number, flags: number, id: number, payload: Buffer): void {
    if (this.dead) return;
    if (this.cont && type !== FrameType.CONTINUATION) {
      throw new H2Error(ErrorCode.PROTOCOL_ERROR, `frame type ${type} inside a header block (CONTINUATION expected on stream ${this.cont.id})`);
    }
    if (!this.gotSettings) {
      if (type !== FrameType.SETTINGS || flags & Flag.ACK) throw new H2Error(ErrorCode.PROTOCOL_ERROR, 'the client preface must be followed by SETTINGS');
      this.gotSettings = true;
    }
    switch (type) {
      case FrameType.DATA:
        return this.onData(flags, id, payload);
      case FrameType.HEADERS:
        return this.onHeaders(flags, id, payload);
      case FrameType.CONTINUATION:
        return this.onContinuation(flags, id, payload);
      case FrameType.PRIORITY:
        return this.onPriority(id, payload);
      case FrameType.RST_STREAM:
        return this.onRstStream(id, payload);
      case FrameType.SETTINGS:
        return this.onSettings(flags, id, payload);
      case FrameType.PUSH_PROMISE:
        throw new H2Error(ErrorCode.PROTOCOL_ERROR, 'a client must not send PUSH_PROMISE');
      case FrameType.PING:
        return this.onPing(flags, id, payload);
      case FrameType.GOAWAY:
        return this.onGoaway(id, payload);
      case FrameType.WINDOW_UPDATE:
        return this.onWindowUpdate(id, payload);
      default:
      // Unknown frame types are ignored (RFC 9113 §4.1).
    }
  }

  private onData(flags: number, id: number, payload: Buffer): void {
    if (id === 0) throw new H2Error(ErrorCode.PROTOCOL_ERROR, 'DATA on stream 0');
    if (this.isIdle(id)) throw new H2Error(ErrorCode.PROTOCOL_ERROR, `DATA on idle stream ${id}`);
    // Bad padding is a connection error whatever the stream's state (RFC 9113 §6.1), so before the state is looked at.
    const data = unpad(flags, payload);
    const len = payload.length;
    // The whole payload, padding included, counts against both windows.
    this.connRecvWindow -= len;
    if (this.connRecvWindow < 0) throw new H2Error(ErrorCode.FLOW_CONTROL_ERROR, 'DATA beyond the connection window');
    this.connRecvUnacked += len;
    if (this.connRecvUnacked >= this.connectionWindow >>> 1) {
      this.queue(windowUpdateFrame(0, this.connRecvUnacked));
      this.connRecvWindow += this.connRecvUnacked;
      this.connRecvUnacked = 0;
    }
    const s = this.streams.get(id);
    if (!s) {
      // Reset by us, or not taken after our GOAWAY: ignored (RFC 9113 §5.1, §6.8).
      if (this.resetByUs.has(id) || id > this.lastStreamId) return;
      return this.streamError(id, ErrorCode.STREAM_CLOSED, `DATA on closed stream ${id}`);
    }
    if (s.recvEnded) return this.streamError(id, ErrorCode.STREAM_CLOSED, `DATA after END_STREAM on stream ${id}`);
    s.recvWindow -= len;
    if (s.recvWindow < 0) return this.streamError(id, ErrorCode.FLOW_CONTROL_ERROR, `DATA beyond the window of stream ${id}`);
    const end = (flags & Flag.END_STREAM) !== 0;
    s.received += data.length;
    if (s.contentLength >= 0 && (end ? s.received !== s.contentLength : s.received > s.contentLength)) {
      return this.streamError(id, ErrorCode.PROTOCOL_ERROR, `content-length ${s.contentLength} does not match the ${s.received} bytes of DATA`);
    }
    if (end) s.recvEnded = true;
    else {
      s.recvUnacked += len;
      if (s.recvUnacked >= this.streamWindow >>> 1) {
        this.queue(windowUpdateFrame(id, s.recvUnacked));
        s.recvWindow += s.recvUnacked;
        s.recvUnacked = 0;
      }
    }
    s.listener.onData(data, end);
    if (end) this.closeIfDone(s);
  }

  private onHeaders(flags: number, id: number, payload: Buffer): void {
    if (id === 0) throw new H2Error(ErrorCode.PROTOCOL_ERROR, 'HEADERS on stream 0');
    // Pad Length?, Exclusive + Stream Dependency + Weight (with PRIORITY), field block, Padding (RFC 9113 §6.2).
    let block = unpad(flags, payload, flags & Flag.PRIORITY ? 5 : 0);
    let selfDependent = false;
    if (flags & Flag.PRIORITY) {
      selfDependent = (block.readUInt32BE(0) & MAX_WINDOW) === id;
      block = block.subarray(5);
    }
    if (flags & Flag.END_HEADERS) return this.onHeaderBlock(id, flags, block, selfDependent);
    this.cont = { id, flags: selfDependent ? flags | 0x100 : flags, chunks: [block], size: block.length };
  }

  private onContinuation(flags: number, id: number, payload: Buffer): void {
    const c = this.cont;
    if (!c || c.id !== id) throw new H2Error(ErrorCode.PROTOCOL_ERROR, `CONTINUATION on stream ${id} without a header block in progress`);
    c.chunks.push(payload);
    c.size += payload.length;
    if (c.size > Math.max(65_536, 4 * this.maxHeaderListSize)) {
      throw new H2Error(ErrorCode.ENHANCE_YOUR_CALM, `header block on stream ${id} exceeds ${Math.max(65_536, 4 * this.maxHeaderListSize)} bytes`);
    }
    if (!(flags & Flag.END_HEADERS)) return;
    this.cont = undefined;
    this.onHeaderBlock(id, c.flags & 0xff, Buffer.concat(c.chunks, c.size), (c.flags & 0x100) !== 0);
  }

  private onHeaderBlock(id: number, flags: number, block: Buffer, selfDependent: boolean): void {
    // Decoded even when the stream is refused: the HPACK table must follow the peer's.
    const headers = this.decoder.decode(block, this.maxHeaderListSize);
    const end = (flags & Flag.END_STREAM) !== 0;
    const s = this.streams.get(id);
    if (s) {
      // Trailers.
      if (s.recvEnded) return this.streamError(id, ErrorCode.STREAM_CLOSED, `HEADERS after END_STREAM on stream ${id}`);
      if (!end) return this.streamError(id, ErrorCode.PROTOCOL_ERROR, `trailers without END_STREAM on stream ${id}`);
      if (selfDependent) return this.streamError(id, ErrorCode.PROTOCOL_ERROR, `stream ${id} depends on itself`);
      const bad = headers === null ? 'trailers too large' : validateTrailers(headers);
      if (bad) return this.streamError(id, ErrorCode.PROTOCOL_ERROR, bad);
      if (s.contentLength >= 0 && s.received !== s.contentLength) {
        return this.streamError(id, ErrorCode.PROTOCOL_ERROR, `content-length ${s.contentLength} does not match the ${s.received} bytes of DATA`);
      }
      s.recvEnded = true;
      s.listener.onData(EMPTY, true);
      return this.closeIfDone(s);
    }
    if ((id & 1) === 0) throw new H2Error(ErrorCode.PROTOCOL_ERROR, `client stream id ${id} is even`);
    if (id <= this.highestStreamId) {
      if (this.resetByUs.has(id) || id > this.lastStreamId) return;
      throw new H2Error(ErrorCode.STREAM_CLOSED, `HEADERS on closed stream ${id}`);
    }
    this.highestStreamId = id;
    if (this.goingAway) {
      // After GOAWAY, streams above the last id announced are ignored, and so are their frames (the client retries elsewhere).
      return;
    }
    this.lastStreamId = id;
    if (selfDependent) return this.streamError(id, ErrorCode.PROTOCOL_ERROR, `stream ${id} depends on itself`);
    if (this.streams.size >= this.maxConcurrent) return this.streamError(id, ErrorCode.REFUSED_STREAM, `more than ${this.maxConcurrent} concurrent streams`);
    const stream = new H2Stream(this, id, this.peerInitialWindow, this.streamWindow);
    if (headers === null) {
      // Too large: answer 431 (RFC 6585) and end the stream.
      this.streams.set(id, stream);
      stream.recvEnded = end;
      this.sendHeaders(stream, HEADERS_431, true);
      return;
    }
    const v = validateRequestHeaders(headers);
    if (typeof v === 'string') return this.streamError(id, ErrorCode.PROTOCOL_ERROR, v);
    stream.contentLength = v;
    if (end && v > 0) return this.streamError(id, ErrorCode.PROTOCOL_ERROR, `content-length ${v} on a request without a body`);
    stream.recvEnded = end;
    this.streams.set(id, stream);
    this.handler.onRequest(stream, headers, end);
  }

  private onPriority(id: number, payload: Buffer): void {
    if (id === 0) throw new H2Error(ErrorCode.PROTOCOL_ERROR, 'PRIORITY on stream 0');
    if (payload.length !== 5) return this.streamError(id, ErrorCode.FRAME_SIZE_ERROR, `PRIORITY of ${payload.length} bytes`);
    if ((payload.readUInt32BE(0) & MAX_WINDOW) === id) return this.streamError(id, ErrorCode.PROTOCOL_ERROR, `stream ${id} depends on itself`);
    // Prioritization is advisory: ignored.
  }

  private onRstStream(id: number, payload: Buffer): void {
    if (id === 0) throw new H2Error(ErrorCode.PROTOCOL_ERROR, 'RST_STREAM on stream 0');
    if (payload.length !== 4) throw new H2Error(ErrorCode.FRAME_SIZE_ERROR, `RST_STREAM of ${payload.length} bytes`);
    if (this.isIdle(id)) throw new H2Error(ErrorCode.PROTOCOL_ERROR, `RST_STREAM on idle stream ${id}`);
    const s = this.streams.get(id);
    if (!s) return;
    const now = Date.now();
    if (now - this.resetWindowStart >= 1000) {
      this.resetWindowStart = now;
      this.resetsInWindow = 0;
    }
    this.forget(s);
    s.listener.onReset(payload.readUInt32BE(0));
    if (++this.resetsInWindow > this.maxResets) {
      throw new H2Error(ErrorCode.ENHANCE_YOUR_CALM, `more than ${this.maxResets} streams reset by the client within a second`);
    }
  }

  private onSettings(flags: number, id: number, payload: Buffer): void {
    if (id !== 0) throw new H2Error(ErrorCode.PROTOCOL_ERROR, `SETTINGS on stream ${id}`);
    if (flags & Flag.ACK) {
      if (payload.length !== 0) throw new H2Error(ErrorCode.FRAME_SIZE_ERROR, 'SETTINGS ACK with a payload');
      return;
    }
    if (payload.length % 6 !== 0) throw new H2Error(ErrorCode.FRAME_SIZE_ERROR, `SETTINGS of ${payload.length} bytes (not a multiple of 6)`);
    let windowGrew = false;
    for (let o = 0; o < payload.length; o += 6) {
      const key = payload.readUInt16BE(o);
      const value = payload.readUInt32BE(o + 2);
      switch (key) {
        case Setting.ENABLE_PUSH:
          if (value > 1) throw new H2Error(ErrorCode.PROTOCOL_ERROR, `SETTINGS_ENABLE_PUSH ${value}`);
          break;
        case Setting.INITIAL_WINDOW_SIZE: {
          if (value > MAX_WINDOW) throw new H2Error(ErrorCode.FLOW_CONTROL_ERROR, `SETTINGS_INITIAL_WINDOW_SIZE ${value} above 2^31-1`);
          const delta = value - this.peerInitialWindow;
          this.peerInitialWindow = value;
          for (const s of this.streams.values()) {
            s.sendWindow += delta;
            if (s.sendWindow > MAX_WINDOW) throw new H2Error(ErrorCode.FLOW_CONTROL_ERROR, `stream ${s.id} window above 2^31-1`);
          }
          if (delta > 0) windowGrew = true;
          break;
        }
        case Setting.MAX_FRAME_SIZE:
          if (value < DEFAULT_MAX_FRAME_SIZE || value > 0xff_ffff) throw new H2Error(ErrorCode.PROTOCOL_ERROR, `SETTINGS_MAX_FRAME_SIZE ${value} out of range`);
          this.peerMaxFrameSize = value;
          break;
        case Setting.HEADER_TABLE_SIZE:
          // Our encoder never indexes, but a decoder whose table shrinks below the size our encoder had (4096 at
          // first) may insist on a dynamic table size update at the start of the next block (RFC 7541 §4.2;
          // nghttp2 does): the smallest size set before then is owed.
          if (value < this.encoderTableSize) {
            this.encoderTableSize = value;
            this.tableSizeUpdate = value;
          }
          break;
        default:
        // Others: nothing to do; unknown: ignored (RFC 9113 §6.5.2).
      }
    }
    this.queue(SETTINGS_ACK);
    if (windowGrew) this.drainBlocked();
  }

  private onPing(flags: number, id: number, payload: Buffer): void {
    if (id !== 0) throw new H2Error(ErrorCode.PROTOCOL_ERROR, `PING on stream ${id}`);
    if (payload.length !== 8) throw new H2Error(ErrorCode.FRAME_SIZE_ERROR, `PING of ${payload.length} bytes`);
    if (!(flags & Flag.ACK)) this.queue(makeFrame(FrameType.PING, Flag.ACK, 0, payload));
  }

  private onGoaway(id: number, payload: Buffer): void {
    if (id !== 0) throw new H2Error(ErrorCode.PROTOCOL_ERROR, `GOAWAY on stream ${id}`);
    if (payload.length < 8) throw new H2Error(ErrorCode.FRAME_SIZE_ERROR, `GOAWAY of ${payload.length} bytes`);
    // The client opens no more streams; those open are finished.
    this.goingAway = true;
    this.closeIfIdle();
  }

  private onWindowUpdate(id: number, payload: Buffer): void {
    if (payload.length !== 4) throw new H2Error(ErrorCode.FRAME_SIZE_ERROR, `WINDOW_UPDATE of ${payload.length} bytes`);
    const inc = payload.readUInt32BE(0) & MAX_WINDOW;
    if (id === 0) {
      if (inc === 0) throw new H2Error(ErrorCode.PROTOCOL_ERROR, 'WINDOW_UPDATE of 0 on the connection');
      this.connSendWindow += inc;
      if (this.connSendWindow > MAX_WINDOW) throw new H2Error(ErrorCode.FLOW_CONTROL_ERROR, 'connection window above 2^31-1');
      return this.drainBlocked();
    }
    if (this.isIdle(id)) throw new H2Error(ErrorCode.PROTOCOL_ERROR, `WINDOW_UPDATE on idle stream ${id}`);
    const s = this.streams.get(id);
    if (!s) {
      // A closed stream may still get window updates (RFC 9113 §5.1), but not one of 0 (§6.9), unless we reset it
      // (then everything is ignored) or never took it (after our GOAWAY).
      if (inc === 0 && !this.resetByUs.has(id) && id <= this.lastStreamId) this.streamError(id, ErrorCode.PROTOCOL_ERROR, `WINDOW_UPDATE of 0 on stream ${id}`);
      return;
    }
    if (inc === 0) return this.streamError(id, ErrorCode.PROTOCOL_ERROR, `WINDOW_UPDATE of 0 on stream ${id}`);
    s.sendWindow += inc;
    if (s.sendWindow > MAX_WINDOW) return this.streamError(id, ErrorCode.FLOW_CONTROL_ERROR, `stream ${id} window above 2^31-1`);
    if (s.pending) this.drain(s);
  }

  // ---- writing ------------------------------------------------------------------

  sendHeaders(s: H2Stream, block: Buffer, end: boolean): boolean {
    if (s.endQueued || s.closed || this.dead) return false;
    if (end) s.endQueued = true;
    if (s.pending) {
      s.pending.push({ headers: block, offset: 0, end });
      return true;
    }
    this.queue(headerFrames(s.id, this.owedTableSizeUpdate(block), end, this.peerMaxFrameSize));
    if (end) this.sentEnd(s);
    return true;
  }

  /**
   * The block as it leaves (header blocks are queued in wire order): with the dynamic table size update owed
   * since the peer lowered SETTINGS_HEADER_TABLE_SIZE in front, once.
   */
  private owedTableSizeUpdate(block: Buffer): Buffer {
    if (this.tableSizeUpdate < 0) return block;
    const prefix: number[] = [];
    encodeInteger(this.tableSizeUpdate, 5, 0x20, prefix);
    this.tableSizeUpdate = -1;
    return Buffer.concat([Buffer.from(prefix), block]);
  }

  sendData(s: H2Stream, payload: Buffer, end: boolean): boolean {
    if (s.endQueued || s.closed || this.dead) return false;
    if (end) s.endQueued = true;
    (s.pending ??= []).push({ data: payload, offset: 0, end });
    this.drain(s);
    return true;
  }

  sendResponse(s: H2Stream, headerBlock: Buffer, payload: Buffer, trailerBlock: Buffer): boolean {
    if (s.endQueued || s.closed || this.dead) return false;
    const n = payload.length;
    const max = this.peerMaxFrameSize;
    if (s.pending || n > this.connSendWindow || n > s.sendWindow || n > max || headerBlock.length + (this.tableSizeUpdate < 0 ? 0 : 6) > max || trailerBlock.length > max) {
      this.sendHeaders(s, headerBlock, false);
      this.sendData(s, payload, false);
      return this.sendHeaders(s, trailerBlock, true);
    }
    const head = this.owedTableSizeUpdate(headerBlock);
    const out = Buffer.allocUnsafe(3 * FRAME_HEADER_LENGTH + head.length + n + trailerBlock.length);
    let o = writeFrameHeader(out, 0, head.length, FrameType.HEADERS, Flag.END_HEADERS, s.id);
    o += head.copy(out, o);
    o = writeFrameHeader(out, o, n, FrameType.DATA, 0, s.id);
    o += payload.copy(out, o);
    o = writeFrameHeader(out, o, trailerBlock.length, FrameType.HEADERS, Flag.END_HEADERS | Flag.END_STREAM, s.id);
    trailerBlock.copy(out, o);
    this.connSendWindow -= n;
    s.sendWindow -= n;
    s.endQueued = true;
    this.queue(out);
    this.sentEnd(s);
    return true;
  }

  /** Sends what flow control allows of a stream's pending frames. */
  private drain(s: H2Stream): void {
    const q = s.pending;
    if (!q) return;
    // END_STREAM leaves with the last entry; the stream is closed after the queue is gone (closeIfDone needs it gone).
    let ended = false;
    while (q.length > 0) {
      const p = q[0]!;
      if (p.headers) {
        this.queue(headerFrames(s.id, this.owedTableSizeUpdate(p.headers), p.end, this.peerMaxFrameSize));
        q.shift();
        ended = p.end;
        continue;
      }
      const data = p.data!;
      const left = data.length - p.offset;
      const n = Math.min(left, this.connSendWindow, s.sendWindow, this.peerMaxFrameSize);
      if (n <= 0 && left > 0) {
        this.blocked.add(s);
        return;
      }
      const last = n === left;
      const out = Buffer.allocUnsafe(FRAME_HEADER_LENGTH + n);
      writeFrameHeader(out, 0, n, FrameType.DATA, last && p.end ? Flag.END_STREAM : 0, s.id);
      data.copy(out, FRAME_HEADER_LENGTH, p.offset, p.offset + n);
      this.connSendWindow -= n;
      s.sendWindow -= n;
      p.offset += n;
      this.queue(out);
      if (last) {
        q.shift();
        ended = p.end;
      }
    }
    s.pending = undefined;
    this.blocked.delete(s);
    if (ended) this.sentEnd(s);
  }

  private drainBlocked(): void {
    for (const s of this.blocked) {
      if (this.connSendWindow <= 0) return;
      this.drain(s);
    }
  }

  /** Our END_STREAM is on its way. A client still sending is told to stop (RST_STREAM NO_ERROR, RFC 9113 §8.1). */
  private sentEnd(s: H2Stream): void {
    if (!s.recvEnded) {
      this.forget(s);
      this.rst(s.id, ErrorCode.NO_ERROR);
      return;
    }
    this.closeIfDone(s);
  }

  /** A client stream id not opened yet (or a server-initiated one: this server opens none). */
  private isIdle(id: number): boolean {
    return (id & 1) === 0 || id > this.highestStreamId;
  }

  private closeIfDone(s: H2Stream): void {
    if (s.recvEnded && s.endQueued && !s.pending) this.forget(s);
  }

  private forget(s: H2Stream): void {
    if (s.closed) return;
    s.closed = true;
    s.pending = undefined;
    this.blocked.delete(s);
    this.streams.delete(s.id);
    if (this.goingAway) this.closeIfIdle();
  }

  /** Sends RST_STREAM and remembers the id, so frames the client sent before seeing it are ignored. */
  private rst(id: number, code: number): void {
    this.resetByUs.add(id);
    if (this.resetByUs.size > RECENTLY_RESET) this.resetByUs.delete(this.resetByUs.values().next().value!);
    this.queue(rstStreamFrame(id, code));
  }

  private streamError(id: number, code: number, _message: string): void {
    const s = this.streams.get(id);
    this.rst(id, code);
    if (s) {
      this.forget(s);
      s.listener.onReset(code);
    }
  }

  private connectionError(code: number, message: string): void {
    if (this.dead) return;
    this.queue(goawayFrame(this.lastStreamId, code, message));
    this.flush();
    this.opts.onError?.(message);
    this.lost();
    this.endSocket();
  }

  private closeIfIdle(): void {
    if (!this.goingAway || this.dead || this.streams.size > 0) return;
    this.flush();
    this.dead = true;
    this.endSocket();
  }

  /** Ends our side; a peer that does not close its side within a second is cut off. */
  private endSocket(): void {
    this.socket.end();
    setTimeout(() => this.socket.destroy(), 1000).unref();
  }

  /** The socket is gone (or we are done with it): every open stream learns it was cut off. */
  private lost(): void {
    if (this.dead && this.streams.size === 0) return;
    this.dead = true;
    const open = [...this.streams.values()];
    this.streams.clear();
    this.blocked.clear();
    for (const s of open) {
      s.closed = true;
      s.pending = undefined;
      s.listener.onReset(ErrorCode.CANCEL);
    }
  }

  private queue(buf: Buffer): void {
    this.out.push(buf);
    this.outBytes += buf.length;
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      // After the promise callbacks of this turn (every answer they produce goes in the same write),
      // before the check phase where the audit spool writes: the answer is not held behind a disk write.
      process.nextTick(this.flushBound);
    }
  }

  /** Everything queued this turn, in one write. */
  private flush(): void {
    this.flushScheduled = false;
    const n = this.out.length;
    if (n === 0) return;
    const chunk = n === 1 ? this.out[0]! : Buffer.concat(this.out, this.outBytes);
    this.out = [];
    this.outBytes = 0;
    if (this.socket.destroyed || !this.socket.writable) return;
    this.socket.write(chunk);
    if (this.socket.writableLength > WRITE_HIGH_WATER && !this.dead) this.socket.pause();
  }
}

