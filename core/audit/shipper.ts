/**
 * The shipper: reads spool segments from a persisted cursor and delivers the
 * intact lines, unparsed, to ClickHouse (or chDB) as JSONEachRow batches.
 *
 * Delivery: at-least-once, made exactly-once-visible twice over —
 *   1. after any failure or restart (when an insert may or may not have
 *      landed) the shipper asks the store which sequence numbers of this
 *      source are already there and sends only the missing ones;
 *   2. tables are ReplacingMergeTree keyed by event id and summaries are
 *      uniqExact states, so a duplicate that slips through (two shippers on
 *      one spool) is still counted once by FINAL / the summaries.
 * Retries use exponential backoff with jitter, forever (the spool holds the
 * events; its size bound turns the gate fail-closed if ClickHouse stays away).
 * Damaged records (checksum mismatch, torn tail) are skipped and reported
 * with their byte range; the intact records around them are shipped.
 */
import { closeSync, openSync, read, readdirSync, statSync } from 'node:fs';
import { readFile, rename, rm, writeFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import { join } from 'node:path';
import { errorMessage } from '../errors.ts';
import { silentLogger, type Logger } from '../log.ts';
import { migrate, repairSummaries, schemaVersion, SHIP_REQUIRES, SUMMARIES_SINCE } from './migrations.ts';
import { isSegmentName, scanBuffer, type DamagedRange } from './spool/segment.ts';
import { ShipperThread, type ShipperProgress } from './ship-thread.ts';
import { ClickHouseStore, type AuditStore } from './store.ts';

export interface ShipperOptions {
  dir: string;
  store: AuditStore;
  /** `events` (default) or `recordings`. */
  table?: 'events' | 'recordings';
  /**
   * Max bytes per insert. Default 32 MiB: fewer, larger parts halve ClickHouse's CPU per event
   * against 8 MiB (bench/audit.ts). Up to two batches are held while an insert is pipelined;
   * a batch under half of this is not pipelined behind another insert (it waits and grows).
   */
  batchBytes?: number;
  /** Wait this long for more data when a batch is small. Default 200 ms. */
  lingerMs?: number;
  backoffInitialMs?: number;
  backoffMaxMs?: number;
  /** Delete segments once fully shipped. Default true. */
  deleteShipped?: boolean;
  /** Run `migrate` before the first batch. Default false (the table must be at the required version). */
  migrate?: boolean;
  log?: Logger;
  onDamage?: (d: DamageReport) => void;
  /**
   * Run the shipping loop in a worker thread with its own event loop and
   * ClickHouse client, so delivery does not wait for turns of a busy data-path
   * loop (and uses a second core). Default: true for a ClickHouseStore; chDB
   * is in-process and always ships in the calling thread.
   */
  thread?: boolean;
  /** Called after every step and failure (used by the shipper thread to report progress). */
  onProgress?: (p: ShipperProgress) => void;
}

export interface DamageReport {
  segment: string;
  start: number;
  end: number;
  bytes: number;
  reason: DamagedRange['reason'];
  /** Sequence number of the last intact record before the range (0 = none in this read). */
  after_seq: number;
  /** Of the first intact record after it (0 = none in this read). */
  before_seq: number;
}

interface Cursor {
  segment: string | undefined;
  offset: number;
  seq: number;
}

export interface ShipperStats {
  shipped: number;
  batches: number;
  failures: number;
  skippedDuplicates: number;
  damaged: DamageReport[];
  lastError: string | undefined;
}

const readAt = promisify(read);

/**
 * The shipper usually shares its event loop with the data path and the spool
 * writer, where every await waits for a loop turn (milliseconds under load).
 * So the directory listing and the stat are synchronous (microseconds); the
 * cursor's write + rename and unlinks stay asynchronous (ext4 may flush data
 * on a rename over an existing file: milliseconds under write load).
 */
function segmentsNow(dir: string): string[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  return names.filter(isSegmentName).sort();
}

const sleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve) => {
    if (signal.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });

export class Shipper {
  readonly dir: string;
  readonly table: 'events' | 'recordings';
  private readonly store: AuditStore;
  private readonly seqColumn: string;
  private readonly batchBytes: number;
  private readonly lingerMs: number;
  private readonly backoffInitialMs: number;
  private readonly backoffMaxMs: number;
  private readonly deleteShipped: boolean;
  private readonly autoMigrate: boolean;
  private readonly log: Logger;
  private readonly onDamage: ((d: DamageReport) => void) | undefined;
  private cursor: Cursor | undefined;
  private source: string | undefined;
  /** An insert may have landed without us knowing: check before sending. */
  private uncertain = true;
  /** After a failure with a pipelined insert outstanding: sequence numbers up to here may be stored already. */
  private maybeLandedThrough = 0;
  /** The insert in flight while the next batch is read (pipelining), and where that next read starts. */
  private inflight: { settled: Promise<unknown>; cursor: Cursor; shipped: number; last: number } | undefined;
  private ahead: Cursor | undefined;
  private schemaOk = false;
  private schemaVersion = 0;
  private abort = new AbortController();
  private loop: Promise<void> | undefined;
  private lock: Promise<void> = Promise.resolve();
  private readonly onProgress: ((p: ShipperProgress) => void) | undefined;
  private readonly remote: ShipperThread | undefined;
  readonly stats: ShipperStats = { shipped: 0, batches: 0, failures: 0, skippedDuplicates: 0, damaged: [], lastError: undefined };

  constructor(opts: ShipperOptions) {
    this.dir = opts.dir;
    this.store = opts.store;
    this.table = opts.table ?? 'events';
    this.seqColumn = this.table === 'events' ? 'seq' : 'spool_seq';
    this.batchBytes = opts.batchBytes ?? 32 << 20;
    this.lingerMs = opts.lingerMs ?? 200;
    this.backoffInitialMs = opts.backoffInitialMs ?? 100;
    this.backoffMaxMs = opts.backoffMaxMs ?? 10_000;
    this.deleteShipped = opts.deleteShipped ?? true;
    this.autoMigrate = opts.migrate ?? false;
    this.log = opts.log ?? silentLogger;
    this.onDamage = opts.onDamage;
    this.onProgress = opts.onProgress;
    if ((opts.thread ?? true) && opts.store instanceof ClickHouseStore) {
      this.remote = new ShipperThread(
        opts.store.connection,
        {
          dir: this.dir,
          table: this.table,
          batchBytes: this.batchBytes,
          lingerMs: this.lingerMs,
          backoffInitialMs: this.backoffInitialMs,
          backoffMaxMs: this.backoffMaxMs,
          deleteShipped: this.deleteShipped,
          migrate: this.autoMigrate,
        },
        this.log,
        this.stats,
        (d) => this.onDamage?.(d),
      );
    }
  }

  /** Ships in the background until stop(). */
  start(): void {
    if (this.remote) return this.remote.start();
    if (this.loop) return;
    this.abort = new AbortController();
    this.loop = this.run().finally(() => (this.loop = undefined));
  }

  async stop(): Promise<void> {
    if (this.remote) return this.remote.stop();
    this.abort.abort();
    await this.loop;
    // Commit the insert still in flight (if it failed, the next start checks the store).
    await this.settle().catch(() => undefined);
  }

  /** Highest sequence number delivered (persisted cursor). */
  get shippedSeq(): number {
    if (this.remote) return this.remote.shippedSeq;
    return this.cursor?.seq ?? 0;
  }

  /** Ships until the spool holds nothing more than `upToSeq` (default: what is on disk now). Throws on timeout. */
  async drain(timeoutMs = 60_000, upToSeq?: number): Promise<void> {
    if (this.remote) return this.remote.call('drain', timeoutMs, upToSeq);
    const deadline = Date.now() + timeoutMs;
    const signal = this.abort.signal;
    let delay = this.backoffInitialMs;
    for (;;) {
      try {
        const r = await this.shipOnce();
        delay = this.backoffInitialMs;
        if (r.idle && (upToSeq === undefined || this.shippedSeq >= upToSeq)) return;
        if (r.idle) await sleep(20, signal);
      } catch (e) {
        this.noteFailure(e);
        await sleep(delay, signal);
        delay = Math.min(this.backoffMaxMs, delay * 2);
      }
      if (Date.now() > deadline) throw new Error(`audit shipper: not drained after ${timeoutMs} ms (${this.stats.lastError ?? 'still behind'})`);
      if (signal.aborted) return;
    }
  }

  private async run(): Promise<void> {
    const signal = this.abort.signal;
    let delay = this.backoffInitialMs;
    while (!signal.aborted) {
      try {
        const r = await this.shipOnce();
        delay = this.backoffInitialMs;
        if (r.idle || r.bytes < this.batchBytes / 4) await sleep(this.lingerMs, signal);
      } catch (e) {
        this.noteFailure(e);
        // Exponential backoff with jitter.
        await sleep(delay * (0.5 + Math.random() / 2), signal);
        delay = Math.min(this.backoffMaxMs, delay * 2);
      }
    }
  }

  private noteFailure(e: unknown): void {
    this.uncertain = true;
    this.stats.failures++;
    const msg = errorMessage(e);
    if (msg !== this.stats.lastError) this.log.warn('audit shipper: delivery failed; retrying with backoff', { table: this.table, error: msg });
    this.stats.lastError = msg;
    this.progress();
  }

  private progress(): void {
    if (!this.onProgress) return;
    const { damaged: _d, ...st } = this.stats;
    void _d;
    this.onProgress({ shippedSeq: this.shippedSeq, stats: st });
  }

  private async loadCursor(): Promise<Cursor> {
    if (this.cursor) return this.cursor;
    const raw = await readFile(join(this.dir, 'cursor.json'), 'utf8').catch(() => undefined);
    this.cursor = raw ? (JSON.parse(raw) as Cursor) : { segment: undefined, offset: 0, seq: 0 };
    return this.cursor;
  }

  private async saveCursor(c: Cursor): Promise<void> {
    const tmp = join(this.dir, 'cursor.json.tmp');
    await writeFile(tmp, JSON.stringify(c));
    await rename(tmp, join(this.dir, 'cursor.json'));
    this.cursor = c;
  }

  private async ensureSchema(): Promise<void> {
    if (this.schemaOk) return;
    if (this.autoMigrate) await migrate(this.store);
    const v = await schemaVersion(this.store);
    this.schemaVersion = v;
    const need = SHIP_REQUIRES[this.table] ?? 1;
    if (v < need) throw new Error(`audit schema version ${v} < ${need} needed for ${this.table}: run \`taskgate audit migrate\``);
    this.schemaOk = true;
  }

  /** One step: ships one batch, or moves past a finished segment. Serialised: drain() and the background loop never overlap. */
  shipOnce(): Promise<{ idle: boolean; shipped: number; bytes: number }> {
    if (this.remote) return this.remote.call('shipOnce');
    const next = this.lock.then(() => this.step());
    this.lock = next.then(
      () => undefined,
      () => undefined,
    );
    return next;
  }

  private async step(): Promise<{ idle: boolean; shipped: number; bytes: number }> {
    try {
      return await this.stepOnce();
    } finally {
      this.progress();
    }
  }

  /**
   * Waits for the insert in flight and commits it (stats, cursor). On failure
   * the read position falls back to the persisted cursor and the error is thrown.
   */
  private async settle(): Promise<void> {
    const f = this.inflight;
    if (!f) return;
    const err = await f.settled;
    this.inflight = undefined;
    if (err !== null) {
      this.ahead = undefined;
      this.maybeLandedThrough = Math.max(this.maybeLandedThrough, f.last);
      throw err;
    }
    this.stats.shipped += f.shipped;
    this.stats.batches++;
    this.stats.lastError = undefined;
    await this.saveCursor(f.cursor);
    if (this.ahead === f.cursor) this.ahead = undefined;
    if (this.deleteShipped) await this.removeShippedBefore(f.cursor.segment);
  }

  /** Deletes the segments before the committed cursor's: every one of them is fully shipped. */
  private async removeShippedBefore(segment: string | undefined): Promise<void> {
    if (segment === undefined) return;
    for (const s of segmentsNow(this.dir)) {
      if (s >= segment) break;
      await rm(join(this.dir, s), { force: true });
    }
  }

  /** Anything but a plain pipelined batch starts from a settled state: commit the insert in flight, then step again. */
  private async settleFirst(): Promise<{ idle: boolean; shipped: number; bytes: number } | undefined> {
    if (!this.inflight) return undefined;
    await this.settle();
    return { idle: false, shipped: 0, bytes: 0 };
  }

  private async stepOnce(): Promise<{ idle: boolean; shipped: number; bytes: number }> {
    const cur = this.ahead ?? (await this.loadCursor());
    const segs = segmentsNow(this.dir);
    let seg = cur.segment && segs.includes(cur.segment) ? cur.segment : segs.find((s) => cur.segment === undefined || s > cur.segment);
    if (!seg) return (await this.settleFirst()) ?? { idle: true, shipped: 0, bytes: 0 };
    let offset = seg === cur.segment ? cur.offset : 0;
    const isLast = seg === segs[segs.length - 1];
    const path = join(this.dir, seg);
    const size = statSync(path).size;
    if (offset >= size) {
      if (isLast) return (await this.settleFirst()) ?? { idle: true, shipped: 0, bytes: 0 };
      const next = segs[segs.indexOf(seg) + 1];
      if (this.inflight) {
        // Keep the pipeline full across the segment boundary: read on in the next segment now;
        // the cursor moves there (and this segment goes) when the insert in flight is committed.
        this.ahead = { segment: next, offset: 0, seq: cur.seq };
        return { idle: false, shipped: 0, bytes: 0 };
      }
      await this.saveCursor({ segment: next, offset: 0, seq: cur.seq });
      if (this.deleteShipped) await this.removeShippedBefore(next);
      return { idle: false, shipped: 0, bytes: 0 };
    }
    // Read whole lines (grow the read if one line is longer than a batch).
    let want = Math.min(size - offset, this.batchBytes);
    let buf: Buffer;
    let scan;
    for (;;) {
      buf = Buffer.allocUnsafe(want);
      const fd = openSync(path, 'r');
      try {
        const { bytesRead } = await readAt(fd, buf, 0, want, offset);
        buf = buf.subarray(0, bytesRead);
      } finally {
        closeSync(fd);
      }
      const atEnd = offset + buf.length >= size;
      scan = scanBuffer(buf, atEnd && !isLast);
      if (scan.consumed > 0 || atEnd) break;
      want = Math.min(size - offset, want * 2);
    }
    if (scan.consumed === 0) return (await this.settleFirst()) ?? { idle: true, shipped: 0, bytes: 0 };
    const first = scan.records[0]?.seq ?? 0;
    const last = scan.records[scan.records.length - 1]?.seq ?? 0;
    const check = this.uncertain || first <= this.maybeLandedThrough;
    if (scan.damaged.length > 0 || scan.records.length === 0 || check || !this.schemaOk) {
      // Serial path (damage reports, store checks, schema check): nothing in flight meanwhile.
      const settled = await this.settleFirst();
      if (settled) return settled;
    } else if (this.inflight && isLast && scan.consumed < this.batchBytes / 2) {
      // A short read of the segment being written while an insert is in flight: let the
      // batch grow for the length of that insert rather than send a small part (every part
      // costs ClickHouse a merge). Then read again at once (`bytes` = a full batch: no linger).
      await this.settle();
      return { idle: false, shipped: 0, bytes: this.batchBytes };
    } else {
      // Pipelined: send this batch, then commit the previous one while it is being inserted.
      const next: Cursor = { segment: seg, offset: offset + scan.consumed, seq: Math.max(cur.seq, last) };
      const settled = this.store.insertRows(this.table, buf.subarray(0, scan.consumed)).then(
        () => null,
        (e: unknown) => e,
      );
      const prev = this.inflight;
      this.inflight = { settled, cursor: next, shipped: scan.records.length, last };
      this.ahead = next;
      if (prev) {
        this.inflight = prev;
        try {
          await this.settle();
        } catch (e) {
          // The new insert may land too: wait for it, and check its range after the retry.
          await settled;
          this.maybeLandedThrough = Math.max(this.maybeLandedThrough, last);
          this.ahead = undefined;
          throw e;
        }
        this.inflight = { settled, cursor: next, shipped: scan.records.length, last };
        this.ahead = next;
      }
      return { idle: false, shipped: scan.records.length, bytes: scan.consumed };
    }
    for (const d of scan.damaged) this.reportDamage(seg, offset, d, scan.records);
    const records = scan.records;
    let body: Buffer;
    if (scan.damaged.length === 0) body = buf.subarray(0, scan.consumed);
    else body = Buffer.concat(records.map((r) => buf.subarray(r.start, r.end)));
    let shipped = records.length;
    if (records.length > 0) {
      await this.ensureSchema();
      if (check) {
        const present = await this.presentSeqs(first, last);
        if (present.size > 0) {
          // Events that landed while the server died may lack their summary rows: re-apply the views to them.
          if (this.table === 'events' && this.schemaVersion >= SUMMARIES_SINCE) {
            let lo = Infinity;
            let hi = -Infinity;
            for (const q of present) {
              if (q < lo) lo = q;
              if (q > hi) hi = q;
            }
            await repairSummaries(this.store, this.source!, lo, hi);
          }
          const keep = records.filter((r) => !present.has(r.seq));
          this.stats.skippedDuplicates += records.length - keep.length;
          shipped = keep.length;
          body = Buffer.concat(keep.map((r) => buf.subarray(r.start, r.end)));
        }
      }
      if (body.length > 0) await this.store.insertRows(this.table, body);
      this.uncertain = false;
      this.stats.shipped += shipped;
      this.stats.batches++;
      this.stats.lastError = undefined;
      await this.saveCursor({ segment: seg, offset: offset + scan.consumed, seq: Math.max(cur.seq, last) });
    } else {
      await this.saveCursor({ segment: seg, offset: offset + scan.consumed, seq: cur.seq });
    }
    offset += scan.consumed;
    return { idle: false, shipped, bytes: scan.consumed };
  }

  private async presentSeqs(first: number, last: number): Promise<Set<number>> {
    this.source ??= (await readFile(join(this.dir, 'source'), 'utf8')).trim();
    const src = this.source.replace(/\\/g, '\\\\').replace(/'/g, "\\'");
    const rows = await this.store.rows<{ s: string | number }>(
      `SELECT ${this.seqColumn} AS s FROM ${this.table} WHERE source = '${src}' AND ${this.seqColumn} BETWEEN ${first} AND ${last}`,
    );
    return new Set(rows.map((r) => Number(r.s)));
  }

  private reportDamage(segment: string, base: number, d: DamagedRange, records: { start: number; seq: number }[]): void {
    let after = 0;
    let before = 0;
    for (const r of records) {
      if (r.start < d.start) after = r.seq;
      else if (!before) before = r.seq;
    }
    const rep: DamageReport = { segment, start: base + d.start, end: base + d.end, bytes: d.end - d.start, reason: d.reason, after_seq: after, before_seq: before };
    this.stats.damaged.push(rep);
    this.log.error('audit spool: damaged records skipped', { dir: this.dir, ...rep });
    this.onDamage?.(rep);
  }
}
