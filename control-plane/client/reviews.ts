/**
 * ControlPlaneReviews: the data path's ReviewService over the control plane.
 * A held command files a review request (HTTP, service identity) and learns
 * the decision by push on the sidecar's event stream. Fails closed: when no
 * decision arrives by the request's expiry (control plane down, stream lost),
 * the outcome is `error` (a deny). After every reconnect, the pending
 * requests are re-read so a decision made while disconnected is not lost.
 */
import { errorMessage } from '../../core/errors.ts';
import { silentLogger, type Logger } from '../../core/log.ts';
import type { Grant, GrantQuery, ReviewOutcome, ReviewRequestSpec, ReviewService, ReviewTicket } from '../../core/reviews.ts';
import type { ReviewChange } from '../events.ts';
import type { GrantRecord, ReviewRecord } from '../storage/records.ts';
import type { ControlPlaneHttp } from './http.ts';
import type { EventStream } from './stream.ts';

interface Waiter {
  resolve: (o: ReviewOutcome) => void;
  timer: NodeJS.Timeout;
}

export interface ControlPlaneReviewsOptions {
  log?: Logger;
  /** Extra wait past a request's expiry for the server's own `expired` push (default 1000 ms). */
  graceMs?: number;
}

const FINAL_TTL_MS = 60_000;

export class ControlPlaneReviews implements ReviewService {
  private readonly waiters = new Map<string, Waiter>();
  /** Final states that arrived before their request() call returned (a very fast reviewer). */
  private readonly early = new Map<string, { change: ReviewChange; at: number }>();
  private readonly log: Logger;

  constructor(
    private readonly http: ControlPlaneHttp,
    private readonly stream: EventStream,
    private readonly opts: ControlPlaneReviewsOptions = {},
  ) {
    this.log = opts.log ?? silentLogger;
    stream.on('review', (c: ReviewChange) => this.onChange(c));
    stream.on('open', () => void this.reconcile());
    stream.on('resync', () => void this.reconcile());
  }

  /** Requests waiting for a decision. */
  get pending(): number {
    return this.waiters.size;
  }

  async request(spec: ReviewRequestSpec, signal?: AbortSignal): Promise<ReviewTicket> {
    const { review } = await this.http.request<{ review: ReviewRecord }>('POST', '/api/v1/reviews', spec);
    let resolve!: (o: ReviewOutcome) => void;
    const outcome = new Promise<ReviewOutcome>((r) => (resolve = r));
    const wait = Math.max(0, Date.parse(review.expires_at) - Date.now()) + (this.opts.graceMs ?? 1000);
    const timer = setTimeout(() => void this.timeout(review.id), wait);
    timer.unref();
    this.waiters.set(review.id, { resolve, timer });
    const early = this.early.get(review.id);
    if (early) this.onChange(early.change);
    signal?.addEventListener(
      'abort',
      () => {
        if (!this.waiters.has(review.id)) return;
        this.settle(review.id, { status: 'cancelled', by: [], reason: 'client went away' });
        this.http.request('POST', `/api/v1/reviews/${encodeURIComponent(review.id)}/cancel`, {}).catch((e) => {
          this.log.warn('could not cancel review on the control plane', { review: review.id, error: errorMessage(e) });
        });
      },
      { once: true },
    );
    return { id: review.id, approvers: review.approvers, expires_at: review.expires_at, outcome };
  }

  async activeGrant(q: GrantQuery): Promise<Grant | undefined> {
    const p = new URLSearchParams({ task_id: q.task_id, subject: q.subject, resource: q.resource });
    const { grant } = await this.http.request<{ grant: GrantRecord | null }>('GET', `/api/v1/grants/active?${p}`);
    return grant ? { review_id: grant.review_id, by: grant.granted_by, until: grant.until } : undefined;
  }

  /** Stops waiting: every pending request is settled as `error` (deny). */
  close(): void {
    for (const id of [...this.waiters.keys()]) this.settle(id, { status: 'error', by: [], reason: 'review client closed' });
  }

  private onChange(c: ReviewChange): void {
    if (c.state === 'pending') return;
    if (!this.waiters.has(c.id)) {
      const now = Date.now();
      this.early.set(c.id, { change: c, at: now });
      for (const [k, v] of this.early) if (now - v.at > FINAL_TTL_MS) this.early.delete(k);
      return;
    }
    const o: ReviewOutcome = { status: c.state, by: c.by };
    if (c.reason) o.reason = c.reason;
    if (c.grant_until) o.grant_until = c.grant_until;
    this.settle(c.id, o);
  }

  private settle(id: string, o: ReviewOutcome): void {
    const w = this.waiters.get(id);
    if (!w) return;
    this.waiters.delete(id);
    this.early.delete(id);
    clearTimeout(w.timer);
    w.resolve(o);
  }

  private async fetchChange(id: string, timeoutMs?: number): Promise<ReviewChange | undefined> {
    const { review: r } = await this.http.request<{ review: ReviewRecord }>('GET', `/api/v1/reviews/${encodeURIComponent(id)}`, undefined, timeoutMs);
    if (r.state === 'pending') return undefined;
    const c: ReviewChange = { k: 'review', id: r.id, task_id: r.task_id, state: r.state, by: r.decided_by, approvals: r.approvals.length };
    if (r.decision_reason) c.reason = r.decision_reason;
    if (r.grant_until) c.grant_until = r.grant_until;
    return c;
  }

  /** After (re)connecting: decisions made while the stream was down are read back. */
  private async reconcile(): Promise<void> {
    await Promise.all(
      [...this.waiters.keys()].map(async (id) => {
        try {
          const c = await this.fetchChange(id);
          if (c) this.onChange(c);
        } catch (e) {
          this.log.warn('could not re-read a pending review after reconnect', { review: id, error: errorMessage(e) });
        }
      }),
    );
  }

  private async timeout(id: string): Promise<void> {
    try {
      const c = await this.fetchChange(id, 1000);
      if (c) return this.onChange(c);
    } catch {
      /* unreachable: fail closed below */
    }
    this.settle(id, { status: 'error', by: [], reason: 'no decision from the control plane by the review deadline (fail closed)' });
  }
}
