import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { Frame, FrameReader } from './codec/framing.ts';

export type Duplex = Socket | TLSSocket;

/**
 * Awaitable message reads over a socket, for the low-volume startup
 * exchanges (client handshake, upstream login). The data path proper uses
 * FrameReader directly on 'data' events.
 */
export class MessagePump {
  private queue: Frame[] = [];
  private waiters: ((f: Frame | Error) => void)[] = [];
  private failed: Error | undefined;
  private readonly onData = (d: Buffer) => this.push(d);
  private readonly onClose = () => this.fail(new Error(`${this.what} closed the connection during startup`));
  private readonly onError = (e: Error) => this.fail(e);

  constructor(
    private readonly sock: Duplex,
    readonly reader: FrameReader,
    private readonly what = 'peer',
  ) {
    sock.on('data', this.onData);
    sock.on('close', this.onClose);
    sock.on('error', this.onError);
  }

  /** Feeds bytes received before the pump existed, or re-checks held bytes after a mode switch. */
  push(d: Buffer): void {
    try {
      // One packet at a time: the caller may switch the reader's mode between packets.
      for (const f of this.reader.feed(d, 1)) this.deliver(f);
    } catch (e) {
      this.fail(e instanceof Error ? e : new Error(String(e)));
    }
  }

  private deliver(f: Frame): void {
    const w = this.waiters.shift();
    if (w) w(f);
    else this.queue.push(f);
  }

  private fail(e: Error): void {
    this.failed ??= e;
    for (const w of this.waiters.splice(0)) w(e);
  }

  next(): Promise<Frame> {
    const f = this.queue.shift();
    if (f) return Promise.resolve(f);
    if (this.failed) return Promise.reject(this.failed);
    if (this.reader.buffered > 0) {
      this.push(Buffer.alloc(0));
      const g = this.queue.shift();
      if (g) return Promise.resolve(g);
    }
    return new Promise((resolve, reject) => this.waiters.push((x) => (x instanceof Error ? reject(x) : resolve(x))));
  }

  detach(): void {
    this.sock.off('data', this.onData);
    this.sock.off('close', this.onClose);
    this.sock.off('error', this.onError);
  }
}
