import type { EvaluatedDecision } from './policy-contract.ts';

/**
 * Decisions keyed by (task, identity, resource, command fingerprint, policy
 * revision). Only first-pass decisions (no review outcome in the input) are
 * cached. Entries expire (30 s, or the task's expiry if sooner) and are
 * dropped when their task ends. Bounded LRU.
 */
export class DecisionCache {
  private readonly map = new Map<string, { d: EvaluatedDecision; until: number; task: string }>();

  constructor(private readonly max = 10_000) {}

  static key(
    s: { task_id: string; identity: { subject: string; groups: string[] }; resource: { name: string } },
    fingerprint: string,
    revision: string,
  ): string {
    return `${s.task_id}\u0000${s.identity.subject}\u0000${s.identity.groups.join(',')}\u0000${s.resource.name}\u0000${revision}\u0000${fingerprint}`;
  }

  get(key: string, now: number): EvaluatedDecision | undefined {
    const e = this.map.get(key);
    if (!e) return undefined;
    if (e.until <= now) {
      this.map.delete(key);
      return undefined;
    }
    this.map.delete(key);
    this.map.set(key, e);
    return { ...e.d, eval_ns: 0 };
  }

  set(key: string, d: EvaluatedDecision, until: number): void {
    if (this.map.size >= this.max) {
      const oldest = this.map.keys().next().value;
      if (oldest !== undefined) this.map.delete(oldest);
    }
    this.map.set(key, { d, until, task: key.slice(0, key.indexOf('\u0000')) });
  }

  dropTask(taskId: string): void {
    for (const [k, e] of this.map) if (e.task === taskId) this.map.delete(k);
  }

  get size(): number {
    return this.map.size;
  }
}
