import { evaluated, type EvaluatedDecision } from './policy-contract.ts';

/**
 * Decisions keyed by (task, identity, resource, command fingerprint, policy
 * revision). Only first-pass decisions (no review outcome in the input) are
 * cached. Entries expire (30 s, or the task's expiry if sooner) and are
 * dropped when their task ends. Bounded LRU.
 *
 * Admission: a decision is cached the second time its key is evaluated, not
 * the first (a "doorkeeper", as in TinyLFU): a table of 32-bit key hashes
 * remembers keys seen once. Traffic where most commands are one-offs (every
 * request a new path or object name) then no longer fills the cache with
 * entries that are never read, evicting the ones that are, and no longer
 * keeps ~10,000 of them alive long enough for the garbage collector to copy
 * them to the old generation (measured: ~6% more ext_authz Checks per second
 * with a unique path per request, bench/ext-authz.ts). A repeated command
 * costs one more evaluation before it is served from the cache. A hash
 * collision only admits a key early or late.
 */
export class DecisionCache {
  private readonly map = new Map<string, { d: EvaluatedDecision; until: number; task: string }>();
  private readonly seen: Uint32Array;
  private readonly mask: number;

  constructor(private readonly max = 10_000) {
    let slots = 1024;
    while (slots < max * 4) slots *= 2;
    this.seen = new Uint32Array(slots);
    this.mask = slots - 1;
  }

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
    return evaluated(e.d, e.d.policy_revision, 0);
  }

  set(key: string, d: EvaluatedDecision, until: number): void {
    // Two candidate slots per key, so that two keys sharing one slot do not keep displacing each other.
    const h = fnv1a(key) || 1;
    const s1 = h & this.mask;
    const s2 = Math.imul(h ^ (h >>> 16), 0x85ebca6b) & this.mask;
    if (this.seen[s1] !== h && this.seen[s2] !== h) {
      // first sighting: remember (in a free slot if there is one), do not cache
      this.seen[this.seen[s1] === 0 || (this.seen[s2] !== 0 && h & 0x8000) ? s1 : s2] = h;
      return;
    }
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

/** FNV-1a over the UTF-16 code units, as an unsigned 32-bit number. */
function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return h >>> 0;
}
