/**
 * PostgreSQL v3 message framing: a byte stream in, whole messages out.
 * A codec and nothing else: no sockets, no policy. Feed it chunks in any
 * split; it returns each complete message exactly once, as zero-copy views
 * into the input where the message did not straddle a chunk boundary.
 *
 * Regular messages: 1 type byte + int32 length (including itself) + payload.
 * Startup-phase packets (StartupMessage, SSLRequest, CancelRequest,
 * GSSENCRequest) have no type byte: int32 length + payload; `type` is 0.
 */
export interface Frame {
  /** Message type byte ('Q'.charCodeAt(0) ...), or 0 for a startup-phase packet. */
  type: number;
  /** The payload after the header. */
  payload: Buffer;
  /** The whole message, header included, exactly as received. */
  raw: Buffer;
}

export class ProtocolError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ProtocolError';
  }
}

/** PostgreSQL's own limit for one message is 1 GB of data plus headers. */
export const DEFAULT_MAX_MESSAGE = 0x40000000 + 1024;

export class FrameReader {
  private pending: Buffer[] = [];
  private pendingLen = 0;
  /** Total length of the message being assembled (header + payload), once known. */
  private need = 0;
  private headerLen: number;

  /**
   * @param startup true while the next packet is a startup-phase packet (no type byte).
   * @param maxMessage largest message accepted; a longer declared length is a protocol error.
   */
  constructor(startup = false, private readonly maxMessage = DEFAULT_MAX_MESSAGE) {
    this.headerLen = startup ? 4 : 5;
  }

  /** Switch between startup-phase packets and regular messages (after the current one). */
  set startupMode(on: boolean) {
    this.headerLen = on ? 4 : 5;
  }

  get startupMode(): boolean {
    return this.headerLen === 4;
  }

  /** Bytes held back waiting for the rest of a message. */
  get buffered(): number {
    return this.pendingLen;
  }

  /**
   * Feeds one chunk; returns the complete messages it finishes. `limit` stops
   * after that many messages (the rest is kept for the next call with an
   * empty chunk), so a caller can switch modes between packets.
   */
  feed(chunk: Buffer, limit = Infinity): Frame[] {
    const out: Frame[] = [];
    let buf: Buffer;
    if (this.pendingLen === 0) {
      buf = chunk;
    } else {
      if (chunk.length) {
        this.pending.push(chunk);
        this.pendingLen += chunk.length;
      }
      if (this.need === 0 && this.pendingLen >= this.headerLen) this.need = this.declared(Buffer.concat(this.pending));
      if (this.need === 0 || this.pendingLen < this.need) return out;
      buf = this.pending.length === 1 ? this.pending[0]! : Buffer.concat(this.pending, this.pendingLen);
      this.pending = [];
      this.pendingLen = 0;
    }
    this.need = 0;
    let off = 0;
    while (out.length < limit) {
      const left = buf.length - off;
      if (left < this.headerLen) break;
      const total = this.declared(buf, off);
      if (left < total) {
        this.need = total;
        break;
      }
      const raw = buf.subarray(off, off + total);
      out.push({ type: this.headerLen === 5 ? raw[0]! : 0, payload: raw.subarray(this.headerLen), raw });
      off += total;
    }
    if (off < buf.length) {
      // Copy the tail when it is small so the caller's large chunk can be freed.
      const tail = buf.subarray(off);
      this.pending = [tail.length < 4096 ? Buffer.from(tail) : tail];
      this.pendingLen = tail.length;
    }
    return out;
  }

  /** Total message length (header + payload) declared at `off`; validates it. */
  private declared(buf: Buffer, off = 0): number {
    if (this.headerLen === 5) {
      const len = buf.readInt32BE(off + 1);
      if (len < 4 || len > this.maxMessage) {
        throw new ProtocolError(`invalid message length ${len} for message type 0x${buf[off]!.toString(16)}`);
      }
      return len + 1;
    }
    const len = buf.readInt32BE(off);
    if (len < 8 || len > 10_000) throw new ProtocolError(`invalid startup packet length ${len}`);
    return len;
  }
}
