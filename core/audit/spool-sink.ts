/**
 * SpoolAuditSink: the durable AuditSink. emit() stamps the event (µs
 * timestamp) and queues it — nothing else on the hot path. The spool writer
 * loop then assigns the UUIDv7 id, builds the canonical row, chains it
 * (prev_hash -> hash, per source, in sequence order), seals the line with a
 * CRC and appends it to the current segment.
 */
import { randomFillSync } from 'node:crypto';
import { UUID } from 'uuidv7';
import { silentLogger, type Logger } from '../log.ts';
import type { AuditEventInput, AuditSink } from './event.ts';
import { sealEventInto, ZERO_HASH } from './row.ts';
import { readSpoolState, SpoolWriter, type SpoolOptions } from './spool/writer.ts';

interface Queued {
  ev: AuditEventInput;
  ts_us: number;
}

/** Wall-clock microseconds, never going backwards within a process. */
export class MicroClock {
  private last = 0;
  now(): number {
    let t = Math.floor((performance.timeOrigin + performance.now()) * 1000);
    if (t <= this.last) t = this.last + 1;
    this.last = t;
    return t;
  }
}

const pool = new Uint32Array(3 * 1024);
let poolPos = pool.length;
/** A UUIDv7 whose 48-bit time field is `ms` (the event's own timestamp). */
export function uuidv7At(ms: number): string {
  if (poolPos + 3 > pool.length) {
    randomFillSync(pool);
    poolPos = 0;
  }
  const a = pool[poolPos++]! & 0xfff;
  const bHi = pool[poolPos++]! & 0x3fffffff;
  const bLo = pool[poolPos++]!;
  return UUID.fromFieldsV7(ms, a, bHi, bLo).toString();
}

/** The sealing buffer: a batch of ~2,048 1 KB events fits; an outsized batch grows it, a later small one shrinks it back. */
const SCRATCH_INITIAL = 4 << 20;
const SCRATCH_KEEP = 16 << 20;

export class SpoolAuditSink implements AuditSink {
  private readonly writer: SpoolWriter<Queued>;
  private readonly clock = new MicroClock();
  private readonly log: Logger;
  private prevHash: string;
  private reportedDrops = 0;
  private scratch = Buffer.allocUnsafe(SCRATCH_INITIAL);

  private constructor(writer: SpoolWriter<Queued>, prevHash: string, log: Logger) {
    this.writer = writer;
    this.prevHash = prevHash;
    this.log = log;
  }

  /** Opens (or recovers) the spool in opts.dir; the chain resumes after the last intact event on disk. */
  static async open(opts: SpoolOptions): Promise<SpoolAuditSink> {
    const state = await readSpoolState(opts.dir, opts.source);
    let prev = ZERO_HASH;
    if (state.lastLine) prev = (JSON.parse(state.lastLine) as { hash: string }).hash;
    let sink: SpoolAuditSink | undefined;
    const writer = await SpoolWriter.open<Queued>(opts, { encodeBatch: (items, first) => sink!.seal(items, first) }, state);
    sink = new SpoolAuditSink(writer, prev, opts.log ?? silentLogger);
    return sink;
  }

  get source(): string {
    return this.writer.source;
  }
  get dir(): string {
    return this.writer.dir;
  }
  /** Highest sequence number that is durable per the fsync policy. */
  get acknowledgedSeq(): number {
    return this.writer.acknowledgedSeq;
  }
  get lastSeq(): number {
    return this.writer.lastSeq;
  }
  get dropped(): number {
    return this.writer.dropped;
  }
  usedBytes(): number {
    return this.writer.usedBytes();
  }

  emit(ev: AuditEventInput): void {
    if (this.writer.dropped !== this.reportedDrops && this.writer.hasRoom()) this.reportDrops();
    if (this.writer.push({ ev, ts_us: this.clock.now() }) === 0 && this.writer.dropped === 1) {
      this.log.error('audit spool full: events are being dropped (onFull=drop) or the fail-closed reserve is exhausted', {
        dir: this.writer.dir,
      });
    }
  }

  writable(): boolean {
    return this.writer.writable();
  }

  flush(): Promise<void> {
    return this.writer.flush();
  }

  close(): Promise<void> {
    return this.writer.close();
  }

  private reportDrops(): void {
    const n = this.writer.dropped - this.reportedDrops;
    const seq = this.writer.push({
      ev: { type: 'error', reasons: [`audit spool full: ${n} event(s) were not recorded`], details: { audit_dropped: n } },
      ts_us: this.clock.now(),
    });
    if (seq !== 0) {
      this.reportedDrops += n;
      this.log.warn('audit spool has room again; a gap marker records the dropped events', { dropped: n });
    }
  }

  /**
   * Runs in the writer loop, strictly in sequence order: seals a batch into
   * one reusable buffer (the writer has written the previous one).
   */
  private seal(items: Queued[], firstSeq: number): Buffer {
    let buf = this.scratch;
    let off = 0;
    let seq = firstSeq;
    for (const q of items) {
      const st = { seq, id: uuidv7At(Math.floor(q.ts_us / 1000)), ts_us: q.ts_us, source: this.writer.source, prev_hash: this.prevHash };
      let r = sealEventInto(buf, off, q.ev, st);
      while (!r) {
        const grown = Buffer.allocUnsafe(buf.length * 2);
        buf.copy(grown, 0, 0, off);
        buf = this.scratch = grown;
        r = sealEventInto(buf, off, q.ev, st);
      }
      this.prevHash = r.hash;
      off = r.end;
      seq++;
    }
    if (buf.length > SCRATCH_KEEP && off < SCRATCH_KEEP / 4) this.scratch = Buffer.allocUnsafe(SCRATCH_INITIAL);
    return buf.subarray(0, off);
  }
}
