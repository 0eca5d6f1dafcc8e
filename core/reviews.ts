import { randomUUID } from 'node:crypto';
import { TaskgateError } from './errors.ts';
import type { IdentityInput, Protocol, ResourceInput, ReviewRequirement } from './policy-contract.ts';

/** What a held command asks the reviewers to decide. */
export interface ReviewRequestSpec {
  task_id: string;
  session_id: string;
  identity: IdentityInput;
  resource: ResourceInput;
  protocol: Protocol;
  /** The exact command: SQL text (literals masked), SSH command line, or `METHOD path`. */
  command: string;
  /** Parsed summary the reviewer sees (statements, programs, kubernetes verb ...). */
  summary: unknown;
  /** Cache/grant key of the command (fingerprint). */
  fingerprint: string;
  reasons: string[];
  requirement: ReviewRequirement;
}

export type ReviewStatusFinal = 'approved' | 'denied' | 'expired' | 'cancelled' | 'error';

export interface ReviewOutcome {
  status: ReviewStatusFinal;
  by: string[];
  reason?: string;
  /** Set when the approval is a time-boxed grant for the task on the resource. */
  grant_until?: string;
}

export interface ReviewTicket {
  id: string;
  approvers: string[];
  expires_at: string;
  /** Settles once: approved / denied / expired / cancelled / error. Never rejects. */
  outcome: Promise<ReviewOutcome>;
}

export interface GrantQuery {
  task_id: string;
  subject: string;
  resource: string;
}

export interface Grant {
  review_id: string;
  by: string[];
  until: string;
}

/**
 * The review hold as the data path sees it. The control plane implements it
 * over HTTP with push delivery; InProcessReviews keeps everything in memory.
 * Implementations must fail closed: when the reviewer service is unreachable
 * the outcome is `error` (a deny) at the request's timeout at the latest.
 */
export interface ReviewService {
  request(spec: ReviewRequestSpec, signal?: AbortSignal): Promise<ReviewTicket>;
  activeGrant(q: GrantQuery): Promise<Grant | undefined>;
}

export interface ApproveOptions {
  /** Seconds of a time-boxed grant for the task on this resource; omitted = this exact command once. */
  grant_s?: number;
  reason?: string;
}

interface Pending {
  spec: ReviewRequestSpec;
  ticket: ReviewTicket;
  approvals: Set<string>;
  resolve: (o: ReviewOutcome) => void;
  timer: NodeJS.Timeout;
  settled: boolean;
}

/**
 * In-memory review service with the rules users expect: no self-approval,
 * N-of-M approvals, a deny by any approver ends the request, expiry denies,
 * approvals may be one-shot or time-boxed grants. `groupsOf` resolves whether
 * an approver is in a `group:<name>` approver entry.
 */
export class InProcessReviews implements ReviewService {
  private readonly pending = new Map<string, Pending>();
  private readonly grants: { q: GrantQuery; grant: Grant }[] = [];
  private readonly listeners = new Set<(id: string, spec: ReviewRequestSpec) => void>();

  constructor(private readonly opts: { now?: () => number } = {}) {}

  private now(): number {
    return this.opts.now?.() ?? Date.now();
  }

  onRequest(listener: (id: string, spec: ReviewRequestSpec) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  async request(spec: ReviewRequestSpec, signal?: AbortSignal): Promise<ReviewTicket> {
    const id = `rv_${randomUUID()}`;
    let resolve!: (o: ReviewOutcome) => void;
    const outcome = new Promise<ReviewOutcome>((r) => (resolve = r));
    const timeoutMs = spec.requirement.timeout_s * 1000;
    const ticket: ReviewTicket = {
      id,
      approvers: spec.requirement.approvers,
      expires_at: new Date(this.now() + timeoutMs).toISOString(),
      outcome,
    };
    const p: Pending = {
      spec,
      ticket,
      approvals: new Set(),
      resolve,
      settled: false,
      timer: setTimeout(() => this.settle(id, { status: 'expired', by: [], reason: 'review timed out' }), timeoutMs),
    };
    this.pending.set(id, p);
    signal?.addEventListener('abort', () => this.settle(id, { status: 'cancelled', by: [], reason: 'client went away' }), {
      once: true,
    });
    for (const l of this.listeners) l(id, spec);
    return ticket;
  }

  list(): { id: string; spec: ReviewRequestSpec; approvals: string[] }[] {
    return [...this.pending.entries()].map(([id, p]) => ({ id, spec: p.spec, approvals: [...p.approvals] }));
  }

  /** Records an approval; resolves the request once min_approvals distinct eligible approvers agreed. Idempotent per approver. */
  approve(id: string, approver: { subject: string; groups: string[] }, opts: ApproveOptions = {}): ReviewOutcome | 'pending' {
    const p = this.open(id);
    this.checkEligible(p, approver);
    p.approvals.add(approver.subject);
    if (p.approvals.size < p.spec.requirement.min_approvals) return 'pending';
    const by = [...p.approvals].sort();
    const outcome: ReviewOutcome = { status: 'approved', by };
    if (opts.reason) outcome.reason = opts.reason;
    if (opts.grant_s && opts.grant_s > 0) {
      const until = new Date(this.now() + opts.grant_s * 1000).toISOString();
      outcome.grant_until = until;
      this.grants.push({
        q: { task_id: p.spec.task_id, subject: p.spec.identity.subject, resource: p.spec.resource.name },
        grant: { review_id: id, by, until },
      });
    }
    this.settle(id, outcome);
    return outcome;
  }

  deny(id: string, approver: { subject: string; groups: string[] }, reason = 'denied by reviewer'): ReviewOutcome {
    const p = this.open(id);
    this.checkEligible(p, approver);
    const outcome: ReviewOutcome = { status: 'denied', by: [approver.subject], reason };
    this.settle(id, outcome);
    return outcome;
  }

  /** Ends every pending request (shutdown): each waiting command is denied. */
  close(reason = 'review service shutting down'): void {
    for (const id of [...this.pending.keys()]) this.settle(id, { status: 'cancelled', by: [], reason });
  }

  /** Ends every pending request of a task (task closed or expired). */
  cancelTask(taskId: string, reason: string): void {
    for (const [id, p] of this.pending) if (p.spec.task_id === taskId) this.settle(id, { status: 'denied', by: [], reason });
  }

  async activeGrant(q: GrantQuery): Promise<Grant | undefined> {
    const now = this.now();
    for (const { q: g, grant } of this.grants) {
      if (g.task_id === q.task_id && g.subject === q.subject && g.resource === q.resource && Date.parse(grant.until) > now) {
        return grant;
      }
    }
    return undefined;
  }

  private open(id: string): Pending {
    const p = this.pending.get(id);
    if (!p || p.settled) throw new TaskgateError('not_found', `review ${id} is not pending`);
    return p;
  }

  private checkEligible(p: Pending, who: { subject: string; groups: string[] }): void {
    if (who.subject === p.spec.identity.subject || who.subject === p.spec.identity.acting_for) {
      throw new TaskgateError('forbidden', 'self-approval is not allowed');
    }
    if (!isEligibleApprover(p.spec.requirement.approvers, who)) {
      throw new TaskgateError('forbidden', `${who.subject} is not an approver for review (approvers: ${p.spec.requirement.approvers.join(', ')})`);
    }
  }

  private settle(id: string, outcome: ReviewOutcome): void {
    const p = this.pending.get(id);
    if (!p || p.settled) return;
    p.settled = true;
    clearTimeout(p.timer);
    this.pending.delete(id);
    p.resolve(outcome);
  }
}

/** Approver entries are subjects/emails or `group:<name>`. */
export function isEligibleApprover(approvers: string[], who: { subject: string; groups: string[] }): boolean {
  return approvers.some((a) => (a.startsWith('group:') ? who.groups.includes(a.slice(6)) : a === who.subject));
}
