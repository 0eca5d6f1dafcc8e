/**
 * The main-thread side of a shipper running in a worker thread
 * (core/audit/ship-worker.ts). The worker owns its own event loop and
 * ClickHouse client and runs the ordinary Shipper; this side forwards
 * start / stop / drain / shipOnce, mirrors its progress (shippedSeq, stats)
 * and relays its log lines and damage reports.
 *
 * Why: in a sidecar the shipper otherwise shares one event loop with the data
 * path and the spool writer, and each of its awaits (read, insert, cursor
 * write) waits for a turn of that loop — milliseconds each when it is busy.
 * Delivery then runs far below what ClickHouse accepts. The guarantees do not
 * change: the worker runs the same code on the same spool and cursor files.
 */
import { Worker } from 'node:worker_threads';
import type { Logger } from '../log.ts';
import type { DamageReport, ShipperStats } from './shipper.ts';
import type { ClickHouseStoreOptions } from './store.ts';

export interface ShipperProgress {
  shippedSeq: number;
  stats: Omit<ShipperStats, 'damaged'>;
}

/** The serialisable part of ShipperOptions. */
export interface ThreadShipperOptions {
  dir: string;
  table: 'events' | 'recordings';
  batchBytes: number;
  lingerMs: number;
  backoffInitialMs: number;
  backoffMaxMs: number;
  deleteShipped: boolean;
  migrate: boolean;
}

export interface ShipWorkerData {
  connection: ClickHouseStoreOptions;
  options: ThreadShipperOptions;
}

export type ToWorker = { op: 'start' } | { op: 'stop'; id: number } | { op: 'drain'; id: number; args: [number, number | undefined] } | { op: 'shipOnce'; id: number };

export type FromWorker =
  | { type: 'progress'; progress: ShipperProgress }
  | { type: 'log'; level: 'debug' | 'info' | 'warn' | 'error'; msg: string; fields: Record<string, unknown> | undefined }
  | { type: 'damage'; report: DamageReport }
  | { type: 'reply'; id: number; ok: true; value: unknown }
  | { type: 'reply'; id: number; ok: false; error: string };

interface Pending {
  resolve: (v: never) => void;
  reject: (e: Error) => void;
}

/**
 * The worker's entry. From TypeScript sources (tsx, however it was
 * registered: --import or bin/taskgate.js's register()), a small .mjs
 * registers tsx in the worker first; from a build, the .js sibling.
 */
function workerEntry(): URL {
  const self = import.meta.url;
  return new URL(self.endsWith('.ts') ? './ship-worker-boot.mjs' : './ship-worker.js', self);
}

export class ShipperThread {
  private worker: Worker | undefined;
  private started = false;
  private seq = 0;
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private readonly data: ShipWorkerData;

  constructor(
    connection: ClickHouseStoreOptions,
    options: ThreadShipperOptions,
    private readonly log: Logger,
    private readonly stats: ShipperStats,
    private readonly onDamage: (d: DamageReport) => void,
  ) {
    this.data = { connection, options };
  }

  get shippedSeq(): number {
    return this.seq;
  }

  start(): void {
    if (this.started) return;
    this.started = true;
    this.post({ op: 'start' });
  }

  async stop(): Promise<void> {
    this.started = false;
    const w = this.worker;
    if (!w) return;
    await this.call('stop').catch(() => undefined);
    this.worker = undefined;
    await w.terminate();
  }

  call<R>(op: 'drain' | 'shipOnce' | 'stop', ...args: unknown[]): Promise<R> {
    const id = this.nextId++;
    const p = new Promise<R>((resolve, reject) => this.pending.set(id, { resolve: resolve as (v: never) => void, reject }));
    this.post(op === 'drain' ? { op, id, args: [args[0] as number, args[1] as number | undefined] } : { op, id });
    return p;
  }

  private post(m: ToWorker): void {
    const w = this.ensure();
    w.postMessage(m);
    this.updateRef();
  }

  /** The worker keeps the process alive only while it ships in the background or a call waits for it. */
  private updateRef(): void {
    if (!this.worker) return;
    if (this.started || this.pending.size > 0) this.worker.ref();
    else this.worker.unref();
  }

  private ensure(): Worker {
    if (this.worker) return this.worker;
    const w = new Worker(workerEntry(), { workerData: this.data, execArgv: [] });
    this.worker = w;
    w.on('message', (m: FromWorker) => this.onMessage(m));
    w.on('error', (e) => this.log.error('audit shipper thread failed', { table: this.data.options.table, error: e.message }));
    w.on('exit', (code) => {
      if (this.worker !== w) return;
      this.worker = undefined;
      for (const p of this.pending.values()) p.reject(new Error(`audit shipper thread exited (code ${code})`));
      this.pending.clear();
      if (this.started) {
        // Restart: the new thread resumes from the persisted cursor (after checking what the store already has).
        this.log.error('audit shipper thread exited; restarting it', { table: this.data.options.table, code });
        setTimeout(() => {
          if (this.started && !this.worker) this.post({ op: 'start' });
        }, 1000).unref();
      }
    });
    return w;
  }

  private onMessage(m: FromWorker): void {
    switch (m.type) {
      case 'progress':
        this.seq = m.progress.shippedSeq;
        Object.assign(this.stats, m.progress.stats);
        break;
      case 'log':
        this.log[m.level](m.msg, m.fields);
        break;
      case 'damage':
        this.stats.damaged.push(m.report);
        this.onDamage(m.report);
        break;
      case 'reply': {
        const p = this.pending.get(m.id);
        if (!p) break;
        this.pending.delete(m.id);
        if (m.ok) p.resolve(m.value as never);
        else p.reject(new Error(m.error));
        this.updateRef();
        break;
      }
    }
  }
}
