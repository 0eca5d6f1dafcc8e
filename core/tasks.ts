import { EventEmitter } from 'node:events';
import type { TaskInput, TaskState } from './policy-contract.ts';

/** A task as the registry knows it. The client only names the id; everything else comes from here. */
export interface TaskRecord {
  id: string;
  type: string;
  assignee: string;
  reviewers: string[];
  state: TaskState;
  /** RFC 3339 */
  expires_at: string;
  ticket?: string;
  title?: string;
}

export interface TaskEndedEvent {
  task_id: string;
  state: 'closed' | 'expired';
}

/**
 * Where the data path learns about tasks. The control plane (control-plane/)
 * implements it over HTTP with push notifications; StaticTaskRegistry serves
 * tests and single-process setups.
 */
export interface TaskRegistry {
  get(id: string): Promise<TaskRecord | undefined>;
  /** Called when a task is closed or expires: its access ends at once (held commands, open sessions). */
  onEnded(listener: (ev: TaskEndedEvent) => void): () => void;
}

/** The policy input `task` block for a task id and what the registry knows of it. */
export function taskInput(id: string, rec: TaskRecord | undefined, now = Date.now()): TaskInput {
  if (!rec) return { id };
  const expired = rec.state === 'open' && Date.parse(rec.expires_at) <= now;
  return {
    id: rec.id,
    type: rec.type,
    assignee: rec.assignee,
    reviewer: rec.reviewers[0] ?? '',
    reviewers: rec.reviewers,
    state: expired ? 'expired' : rec.state,
    expires_at: rec.expires_at,
    ...(rec.ticket ? { ticket: rec.ticket } : {}),
  };
}

/** An in-memory registry: tests, the demo, and a fixed list loaded from config. */
export class StaticTaskRegistry implements TaskRegistry {
  private readonly tasks = new Map<string, TaskRecord>();
  private readonly events = new EventEmitter();

  constructor(tasks: TaskRecord[] = []) {
    for (const t of tasks) this.tasks.set(t.id, { ...t });
  }

  async get(id: string): Promise<TaskRecord | undefined> {
    const t = this.tasks.get(id);
    return t ? { ...t } : undefined;
  }

  put(task: TaskRecord): void {
    this.tasks.set(task.id, { ...task });
  }

  end(id: string, state: 'closed' | 'expired' = 'closed'): void {
    const t = this.tasks.get(id);
    if (!t) return;
    t.state = state;
    this.events.emit('ended', { task_id: id, state } satisfies TaskEndedEvent);
  }

  onEnded(listener: (ev: TaskEndedEvent) => void): () => void {
    this.events.on('ended', listener);
    return () => this.events.off('ended', listener);
  }
}
