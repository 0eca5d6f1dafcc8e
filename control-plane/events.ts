/**
 * Change events: written with pg_notify inside the transaction that made the
 * change (so they are delivered on commit, never for a rolled-back change) and
 * fanned out by every replica's EventHub to its own SSE subscribers. With
 * PostgreSQL this is how a decision made on replica A reaches a sidecar
 * connected to replica B; PGlite delivers in-process.
 */
import { EventEmitter } from 'node:events';
import { errorMessage } from '../core/errors.ts';
import { silentLogger, type Logger } from '../core/log.ts';
import type { TaskState } from '../core/policy-contract.ts';
import type { Database } from './storage/db.ts';
import type { ReviewState } from './storage/records.ts';

export const EVENTS_CHANNEL = 'taskgate_events';

export interface ReviewChange {
  k: 'review';
  id: string;
  task_id: string;
  state: ReviewState;
  by: string[];
  approvals: number;
  reason?: string;
  grant_until?: string;
}

export interface TaskChange {
  k: 'task';
  id: string;
  state: TaskState;
}

/** `outbox`: webhook deliveries are waiting; `resync`: notifications may have been lost, reload. */
export type ChangeEvent = ReviewChange | TaskChange | { k: 'outbox' } | { k: 'resync' };

export class EventHub {
  private readonly emitter = new EventEmitter();
  private unlisten: (() => Promise<void>) | undefined;

  private constructor(private readonly log: Logger) {
    this.emitter.setMaxListeners(0);
  }

  static async start(db: Database, log: Logger = silentLogger): Promise<EventHub> {
    const hub = new EventHub(log);
    hub.unlisten = await db.listen(
      EVENTS_CHANNEL,
      (payload) => hub.dispatch(payload),
      () => hub.emitter.emit('change', { k: 'resync' } satisfies ChangeEvent),
    );
    return hub;
  }

  private dispatch(payload: string): void {
    let ev: ChangeEvent;
    try {
      ev = JSON.parse(payload) as ChangeEvent;
    } catch (e) {
      this.log.warn('ignoring malformed change notification', { error: errorMessage(e) });
      return;
    }
    this.emitter.emit('change', ev);
  }

  subscribe(fn: (ev: ChangeEvent) => void): () => void {
    this.emitter.on('change', fn);
    return () => this.emitter.off('change', fn);
  }

  async close(): Promise<void> {
    await this.unlisten?.();
    this.emitter.removeAllListeners();
  }
}
