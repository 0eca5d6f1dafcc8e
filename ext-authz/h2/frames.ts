/**
 * HTTP/2 frames (RFC 9113 §4, §6): a reader that is fed socket chunks and
 * hands out whole frames, and writers that lay frames out in a buffer. A codec
 * only: no sockets, no stream state, no policy.
 */

export const FrameType = {
  DATA: 0x0,
  HEADERS: 0x1,
  PRIORITY: 0x2,
  RST_STREAM: 0x3,
  SETTINGS: 0x4,
  PUSH_PROMISE: 0x5,
  PING: 0x6,
  GOAWAY: 0x7,
  WINDOW_UPDATE: 0x8,
  CONTINUATION: 0x9,
} as const;

export const Flag = {
  END_STREAM: 0x1,
  ACK: 0x1,
  END_HEADERS: 0x4,
  PADDED: 0x8,
  PRIORITY: 0x20,
} as const;

/** Error codes (RFC 9113 §7). */
export const ErrorCode = {
  NO_ERROR: 0x0,
  PROTOCOL_ERROR: 0x1,
  INTERNAL_ERROR: 0x2,
  FLOW_CONTROL_ERROR: 0x3,
  SETTINGS_TIMEOUT: 0x4,
  STREAM_CLOSED: 0x5,
  FRAME_SIZE_ERROR: 0x6,
  REFUSED_STREAM: 0x7,
  CANCEL: 0x8,
  COMPRESSION_ERROR: 0x9,
  CONNECT_ERROR: 0xa,
  ENHANCE_YOUR_CALM: 0xb,
  INADEQUATE_SECURITY: 0xc,
  HTTP_1_1_REQUIRED: 0xd,
} as const;

export const Setting = {
  HEADER_TABLE_SIZE: 0x1,
  ENABLE_PUSH: 0x2,
  MAX_CONCURRENT_STREAMS: 0x3,
  INITIAL_WINDOW_SIZE: 0x4,
  MAX_FRAME_SIZE: 0x5,
  MAX_HEADER_LIST_SIZE: 0x6,
} as const;

export const FRAME_HEADER_LENGTH = 9;
export const DEFAULT_MAX_FRAME_SIZE = 16_384;
export const MAX_WINDOW = 0x7fff_ffff;
/** The client connection preface (RFC 9113 §3.4). */
export const CLIENT_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

/** A violation of the protocol: a connection error (GOAWAY) unless `streamId` names a stream (RST_STREAM). */
export class H2Error extends Error {
  constructor(
    readonly code: number,
    message: string,
    readonly streamId = 0,
  ) {
    super(message);
    this.name = 'H2Error';
  }
}

export interface FrameSink {
  /** One whole frame; `payload` is a view into the read buffer (valid after the call: it is never reused). */
  frame(type: number, flags: number, streamId: number, payload: Buffer): void;
}

/**
 * Cuts a byte stream into frames. A frame cut across reads is kept until its
 * remaining bytes arrive; a frame longer than `maxFrameSize` is a
 * FRAME_SIZE_ERROR before any of its payload is buffered.
 */
export class FrameReader {
  private rest: Buffer | undefined;
  private prefaceSeen: boolean;

  constructor(
    private readonly sink: FrameSink,
    private readonly maxFrameSize = DEFAULT_MAX_FRAME_SIZE,
    expectPreface = true,
  ) {
    this.prefaceSeen = !expectPreface;
  }

  /** Bytes held back, waiting for the rest of a frame. */
  get buffered(): number {
    return this.rest?.length ?? 0;
  }

  /** Feeds one chunk; throws H2Error on a bad preface or an oversized frame. */
  push(chunk: Buffer): void {
    let buf = chunk;
    if (this.rest) {
      buf = Buffer.concat([this.rest, chunk]);
      this.rest = undefined;
    }
    let off = 0;
    if (!this.prefaceSeen) {
      const n = Math.min(buf.length, CLIENT_PREFACE.length);
      if (buf.compare(CLIENT_PREFACE, 0, n, 0, n) !== 0) {
        throw new H2Error(ErrorCode.PROTOCOL_ERROR, 'not an HTTP/2 connection: the client preface is missing (is the client speaking HTTP/1.1 or TLS to a plaintext port?)');
      }
      if (buf.length < CLIENT_PREFACE.length) {
        this.rest = buf;
        return;
      }
      off = CLIENT_PREFACE.length;
      this.prefaceSeen = true;
    }
    const end = buf.length;
    while (end - off >= FRAME_HEADER_LENGTH) {
      const len = (buf[off]! << 16) | (buf[off + 1]! << 8) | buf[off + 2]!;
      if (len > this.maxFrameSize) {
        throw new H2Error(ErrorCode.FRAME_SIZE_ERROR, `frame of ${len} bytes exceeds SETTINGS_MAX_FRAME_SIZE ${this.maxFrameSize}`);
      }
      const total = FRAME_HEADER_LENGTH + len;
      if (end - off < total) break;
      const type = buf[off + 3]!;
      const flags = buf[off + 4]!;
      const id = buf.readUInt32BE(off + 5) & MAX_WINDOW;
      const start = off + FRAME_HEADER_LENGTH;
      off += total;
      this.sink.frame(type, flags, id, buf.subarray(start, start + len));
    }
    if (off < end) this.rest = buf.subarray(off);
  }
}

/** Writes a 9-byte frame header at `off`; returns the offset after it. */
export function writeFrameHeader(out: Buffer, off: number, length: number, type: number, flags: number, streamId: number): number {
  out[off] = length >>> 16;
  out[off + 1] = (length >>> 8) & 0xff;
  out[off + 2] = length & 0xff;
  out[off + 3] = type;
  out[off + 4] = flags;
  out.writeUInt32BE(streamId >>> 0, off + 5);
  return off + FRAME_HEADER_LENGTH;
}

/** One frame with the given payload. */
export function frame(type: number, flags: number, streamId: number, payload: Uint8Array = EMPTY): Buffer {
  const out = Buffer.allocUnsafe(FRAME_HEADER_LENGTH + payload.length);
  writeFrameHeader(out, 0, payload.length, type, flags, streamId);
  out.set(payload, FRAME_HEADER_LENGTH);
  return out;
}

const EMPTY = Buffer.alloc(0);

export function settingsFrame(settings: [id: number, value: number][]): Buffer {
  const p = Buffer.allocUnsafe(settings.length * 6);
  settings.forEach(([id, value], i) => {
    p.writeUInt16BE(id, i * 6);
    p.writeUInt32BE(value >>> 0, i * 6 + 2);
  });
  return frame(FrameType.SETTINGS, 0, 0, p);
}

export const SETTINGS_ACK = frame(FrameType.SETTINGS, Flag.ACK, 0);

export function windowUpdateFrame(streamId: number, increment: number): Buffer {
  const out = Buffer.allocUnsafe(FRAME_HEADER_LENGTH + 4);
  writeFrameHeader(out, 0, 4, FrameType.WINDOW_UPDATE, 0, streamId);
  out.writeUInt32BE(increment, FRAME_HEADER_LENGTH);
  return out;
}

export function rstStreamFrame(streamId: number, code: number): Buffer {
  const out = Buffer.allocUnsafe(FRAME_HEADER_LENGTH + 4);
  writeFrameHeader(out, 0, 4, FrameType.RST_STREAM, 0, streamId);
  out.writeUInt32BE(code, FRAME_HEADER_LENGTH);
  return out;
}

export function goawayFrame(lastStreamId: number, code: number, debug = ''): Buffer {
  const d = Buffer.from(debug, 'utf8');
  const p = Buffer.allocUnsafe(8 + d.length);
  p.writeUInt32BE(lastStreamId, 0);
  p.writeUInt32BE(code, 4);
  d.copy(p, 8);
  return frame(FrameType.GOAWAY, 0, 0, p);
}

/**
 * A header block as HEADERS plus as many CONTINUATION frames as `maxFrameSize`
 * needs, END_STREAM on the HEADERS frame when asked.
 */
export function headerFrames(streamId: number, block: Buffer, endStream: boolean, maxFrameSize: number): Buffer {
  const first = endStream ? Flag.END_STREAM : 0;
  if (block.length <= maxFrameSize) {
    const out = Buffer.allocUnsafe(FRAME_HEADER_LENGTH + block.length);
    writeFrameHeader(out, 0, block.length, FrameType.HEADERS, first | Flag.END_HEADERS, streamId);
    block.copy(out, FRAME_HEADER_LENGTH);
    return out;
  }
  const frames = Math.ceil(block.length / maxFrameSize);
  const out = Buffer.allocUnsafe(frames * FRAME_HEADER_LENGTH + block.length);
  let o = 0;
  for (let i = 0, at = 0; i < frames; i++, at += maxFrameSize) {
    const n = Math.min(maxFrameSize, block.length - at);
    const last = i === frames - 1 ? Flag.END_HEADERS : 0;
    o = writeFrameHeader(out, o, n, i === 0 ? FrameType.HEADERS : FrameType.CONTINUATION, (i === 0 ? first : 0) | last, streamId);
    o += block.copy(out, o, at, at + n);
  }
  return out;
}

/**
 * The payload of a DATA or HEADERS frame without its padding (RFC 9113 §6.1, §6.2). `fixed` bytes of
 * fields that follow the pad length (HEADERS with PRIORITY: 5) stay at the front; padding that reaches
 * into them is a PROTOCOL_ERROR, a frame too short for them a FRAME_SIZE_ERROR.
 */
export function unpad(flags: number, payload: Buffer, fixed = 0): Buffer {
  if (!(flags & Flag.PADDED)) {
    if (payload.length < fixed) throw new H2Error(ErrorCode.FRAME_SIZE_ERROR, `frame of ${payload.length} bytes is shorter than its ${fixed} bytes of fields`);
    return payload;
  }
  if (payload.length < 1 + fixed) throw new H2Error(ErrorCode.FRAME_SIZE_ERROR, `padded frame of ${payload.length} bytes is too short for its pad length and ${fixed} bytes of fields`);
  const pad = payload[0]!;
  if (pad > payload.length - 1 - fixed) throw new H2Error(ErrorCode.PROTOCOL_ERROR, `pad length ${pad} exceeds the ${payload.length - 1 - fixed} bytes left in the frame`);
  return payload.subarray(1, payload.length - pad);
}
