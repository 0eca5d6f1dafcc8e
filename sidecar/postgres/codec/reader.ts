import { ProtocolError } from './framing.ts';

/** Bounds-checked reads over one message payload; every overrun is a ProtocolError. */
export class PayloadReader {
  off = 0;
  constructor(readonly buf: Buffer) {}

  private need(n: number, what: string): void {
    if (n < 0 || this.off + n > this.buf.length) throw new ProtocolError(`message truncated reading ${what}`);
  }

  int16(what = 'int16'): number {
    this.need(2, what);
    const v = this.buf.readInt16BE(this.off);
    this.off += 2;
    return v;
  }

  int32(what = 'int32'): number {
    this.need(4, what);
    const v = this.buf.readInt32BE(this.off);
    this.off += 4;
    return v;
  }

  uint32(what = 'uint32'): number {
    this.need(4, what);
    const v = this.buf.readUInt32BE(this.off);
    this.off += 4;
    return v;
  }

  byte(what = 'byte'): number {
    this.need(1, what);
    return this.buf[this.off++]!;
  }

  /** A NUL-terminated UTF-8 string. */
  cstring(what = 'string'): string {
    const end = this.buf.indexOf(0, this.off);
    if (end < 0) throw new ProtocolError(`unterminated ${what}`);
    const s = this.buf.toString('utf8', this.off, end);
    this.off = end + 1;
    return s;
  }

  bytes(n: number, what = 'bytes'): Buffer {
    this.need(n, what);
    const b = this.buf.subarray(this.off, this.off + n);
    this.off += n;
    return b;
  }

  get remaining(): number {
    return this.buf.length - this.off;
  }

  end(what: string): void {
    if (this.off !== this.buf.length) throw new ProtocolError(`${what}: ${this.buf.length - this.off} unexpected trailing bytes`);
  }
}

/** Builds one message: type byte (or none for startup-phase packets), length, payload. */
export class MessageWriter {
  private parts: Buffer[] = [];
  private len = 0;

  int16(v: number): this {
    const b = Buffer.allocUnsafe(2);
    b.writeInt16BE(v);
    return this.push(b);
  }

  int32(v: number): this {
    const b = Buffer.allocUnsafe(4);
    b.writeInt32BE(v | 0);
    return this.push(b);
  }

  byte(v: number): this {
    return this.push(Buffer.from([v]));
  }

  cstring(s: string): this {
    this.push(Buffer.from(s, 'utf8'));
    return this.push(Buffer.from([0]));
  }

  push(b: Buffer): this {
    this.parts.push(b);
    this.len += b.length;
    return this;
  }

  /** `type` is a message type character, or '' for a startup-phase packet. */
  build(type: string): Buffer {
    const head = type ? 5 : 4;
    const out = Buffer.allocUnsafe(head + this.len);
    if (type) out[0] = type.charCodeAt(0);
    out.writeInt32BE(this.len + 4, head - 4);
    let off = head;
    for (const p of this.parts) {
      p.copy(out, off);
      off += p.length;
    }
    return out;
  }
}
