/**
 * ControlPlaneTasks: the data path's TaskRegistry over the control plane.
 * Lookups are cached only while the push stream is up (every change to a
 * task invalidates it at once); `onEnded` fires on the stream's task_ended
 * events, and after a reconnect every task seen before is re-read so an end
 * that happened while disconnected still reaches the listeners.
 */
import { EventEmitter } from 'node:events';
import { errorMessage, isTaskgateError } from '../../core/errors.ts';
import { silentLogger, type Logger } from '../../core/log.ts';
import type { TaskEndedEvent, TaskRecord, TaskRegistry } from '../../core/tasks.ts';
import type { StoredTask } from '../storage/records.ts';
import type { ControlPlaneHttp } from './http.ts';
import type { EventStream } from './stream.ts';

export interface ControlPlaneTasksOptions {
  log?: Logger;
  /** Longest a cached record is served (default 5000 ms). */
  cacheMs?: number;
}

export class ControlPlaneTasks implements TaskRegistry {
  private readonly cache = new Map<string, { rec: TaskRecord | undefined; until: number }>();
  /** Tasks seen open, so an end that happened during a disconnect can still be announced. */
  private readonly seenOpen = new Set<string>();
  private readonly events = new EventEmitter();
  private readonly log: Logger;

  constructor(
    private readonly http: ControlPlaneHttp,
    private readonly stream: EventStream,
    private readonly opts: ControlPlaneTasksOptions = {},
  ) {
    this.log = opts.log ?? silentLogger;
    this.events.setMaxListeners(0);
    stream.on('task_ended', (ev: TaskEndedEvent) => this.ended(ev));
    stream.on('task_changed', (ev: { task_id: string }) => this.cache.delete(ev.task_id));
    stream.on('open', () => void this.reconcile());
    stream.on('resync', () => void this.reconcile());
    stream.on('down', () => this.cache.clear());
  }

  async get(id: string): Promise<TaskRecord | undefined> {
    const hit = this.cache.get(id);
    if (hit && hit.until > Date.now() && this.stream.connected) return hit.rec;
    const rec = await this.fetch(id);
    if (this.stream.connected) this.cache.set(id, { rec, until: Date.now() + (this.opts.cacheMs ?? 5000) });
    if (rec?.state === 'open') this.seenOpen.add(id);
    return rec;
  }

  onEnded(listener: (ev: TaskEndedEvent) => void): () => void {
    this.events.on('ended', listener);
    return () => this.events.off('ended', listener);
  }

  private async fetch(id: string): Promise<TaskRecord | undefined> {
    try {
      const { task } = await this.http.request<{ task: StoredTask }>('GET', `/api/v1/tasks/${encodeURIComponent(id)}`);
      const rec: TaskRecord = { id: task.id, type: task.type, assignee: task.assignee, reviewers: task.reviewers, state: task.state, expires_at: task.expires_at };
      if (task.ticket) rec.ticket = task.ticket;
      if (task.title) rec.title = task.title;
      return rec;
    } catch (e) {
      if (isTaskgateError(e) && e.code === 'not_found') return undefined;
      throw e;
    }
  }

  private ended(ev: TaskEndedEvent): void {
    this.cache.delete(ev.task_id);
    this.seenOpen.delete(ev.task_id);
    this.events.emit('ended', { task_id: ev.task_id, state: ev.state } satisfies TaskEndedEvent);
  }

  private async reconcile(): Promise<void> {
    this.cache.clear();
    await Promise.all(
      [...this.seenOpen].map(async (id) => {
        try {
          const rec = await this.fetch(id);
          if (!rec || rec.state !== 'open') this.ended({ task_id: id, state: rec?.state === 'expired' ? 'expired' : 'closed' });
        } catch (e) {
          this.log.warn('could not re-read a task after reconnect', { task: id, error: errorMessage(e) });
        }
      }),
    );
  }
}
