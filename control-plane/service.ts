/**
 * The control plane's rules over its storage: tasks (create, close, expire)
 * and review requests (request, approve, deny, cancel, expire, grants).
 * Every change runs in one transaction that also writes its change
 * notification and its webhook outbox rows; audit events are emitted after
 * the commit. Races between approvers are settled by row locks.
 */
import { uuidv7 } from 'uuidv7';
import type { AuditEventInput, AuditSink } from '../core/audit/event.ts';
import { TaskgateError } from '../core/errors.ts';
import { silentLogger, type Logger } from '../core/log.ts';
import { isEligibleApprover, type ReviewRequestSpec } from '../core/reviews.ts';
import { EVENTS_CHANNEL, type ChangeEvent, type ReviewChange } from './events.ts';
import type { Database, Sql } from './storage/db.ts';
import type { ApprovalRecord, GrantRecord, ReviewRecord, StoredTask } from './storage/records.ts';
import * as repo from './storage/repo.ts';

/** Who is calling, as the API authenticated them. */
export interface Caller {
  subject: string;
  groups: string[];
  type: 'user' | 'service';
  acting_for?: string;
}

export type WebhookEvent = 'review_requested' | 'review_approved' | 'review_denied' | 'review_expired' | 'task_created' | 'task_closed';
export const WEBHOOK_EVENTS: readonly WebhookEvent[] = [
  'review_requested',
  'review_approved',
  'review_denied',
  'review_expired',
  'task_created',
  'task_closed',
];

export interface ServiceOptions {
  audit: AuditSink;
  log?: Logger;
  now?: () => number;
  /** Webhook targets (name + the events it wants); deliveries are queued in the outbox. */
  webhooks?: { name: string; events?: readonly WebhookEvent[] }[];
  /** Subjects or `group:<name>` allowed to create/close any task and see every review. */
  admins?: string[];
  /** Longest time-boxed grant an approver may give (seconds); default 8 h. */
  maxGrantS?: number;
  /** Default task lifetime when a tracker payload or API call names none (seconds); default 7 days. */
  defaultTaskTtlS?: number;
  /** Base URL of the web inbox, put in webhook payloads. */
  inboxUrl?: string;
}

export interface TaskInputBody {
  id: string;
  type: string;
  assignee: string;
  reviewers: string[];
  expires_at?: string;
  ttl_s?: number;
  ticket?: string;
  title?: string;
}

export interface ApproveBody {
  reason?: string;
  /** Seconds of a time-boxed grant for the task on this resource; omitted = this exact command once. */
  grant_s?: number;
}

interface Effects {
  audit: AuditEventInput[];
}

const TASK_ID = /^[A-Za-z0-9][A-Za-z0-9._:#/@-]{0,127}$/;

export class ControlPlaneService {
  private readonly log: Logger;
  private readonly clock: () => number;

  constructor(
    readonly db: Database,
    private readonly opts: ServiceOptions,
  ) {
    this.log = opts.log ?? silentLogger;
    this.clock = opts.now ?? Date.now;
  }

  now(): string {
    return new Date(this.clock()).toISOString();
  }

  isAdmin(c: Caller): boolean {
    return isEligibleApprover(this.opts.admins ?? [], c);
  }

  // ---- tasks ---------------------------------------------------------------

  validateTask(b: TaskInputBody): repo.TaskWrite & { ttl_s?: number } {
    if (typeof b.id !== 'string' || !TASK_ID.test(b.id)) {
      throw new TaskgateError('input_invalid', 'task id must be 1-128 characters of letters, digits and . _ : # / @ -');
    }
    for (const k of ['type', 'assignee'] as const) {
      if (typeof b[k] !== 'string' || b[k].trim() === '') throw new TaskgateError('input_invalid', `task ${k} is required`);
    }
    if (!Array.isArray(b.reviewers) || b.reviewers.length === 0 || !b.reviewers.every((r) => typeof r === 'string' && r.trim() !== '')) {
      throw new TaskgateError('input_invalid', 'task reviewers must be a non-empty list of subjects or group:<name>');
    }
    if (b.reviewers.includes(b.assignee)) {
      throw new TaskgateError('input_invalid', `the assignee ${b.assignee} cannot review their own task`);
    }
    let expires: number;
    if (b.expires_at !== undefined) {
      expires = Date.parse(b.expires_at);
      if (!Number.isFinite(expires)) throw new TaskgateError('input_invalid', 'task expires_at must be an RFC 3339 time');
    } else {
      const ttl = b.ttl_s ?? this.opts.defaultTaskTtlS ?? 7 * 86400;
      if (typeof ttl !== 'number' || !(ttl > 0)) throw new TaskgateError('input_invalid', 'task ttl_s must be a positive number of seconds');
      expires = this.clock() + ttl * 1000;
    }
    if (expires <= this.clock()) throw new TaskgateError('input_invalid', 'task expires_at is in the past');
    const w: repo.TaskWrite = {
      id: b.id,
      type: b.type.trim(),
      assignee: b.assignee.trim(),
      reviewers: [...new Set(b.reviewers.map((r) => r.trim()))],
      expires_at: new Date(expires).toISOString(),
      source: 'api',
    };
    if (b.ticket) w.ticket = String(b.ticket);
    if (b.title) w.title = String(b.title);
    return w;
  }

  async createTask(body: TaskInputBody, by: Caller, source = 'api'): Promise<StoredTask> {
    const w = { ...this.validateTask(body), source };
    const fx: Effects = { audit: [] };
    const task = await this.db.tx(async (sql) => {
      const t = await repo.insertTask(sql, w, this.now());
      if (!t) throw new TaskgateError('conflict', `task ${w.id} already exists`);
      await this.taskCreated(sql, t, by, fx);
      return t;
    });
    this.flush(fx);
    return task;
  }

  /** A tracker webhook: create the task, or update an open one with the issue's current mapping. */
  async upsertTask(body: TaskInputBody, source: string): Promise<{ task: StoredTask; created: boolean }> {
    const w = { ...this.validateTask(body), source };
    const fx: Effects = { audit: [] };
    const by: Caller = { subject: source, groups: [], type: 'service' };
    const out = await this.db.tx(async (sql) => {
      const existing = await repo.getTask(sql, w.id, true);
      if (!existing) {
        const t = (await repo.insertTask(sql, w, this.now()))!;
        await this.taskCreated(sql, t, by, fx);
        return { task: t, created: true };
      }
      if (existing.state !== 'open') throw new TaskgateError('conflict', `task ${w.id} is ${existing.state}; a new task needs a new id`);
      const t = (await repo.updateOpenTask(sql, w, this.now()))!;
      await repo.notify(sql, EVENTS_CHANNEL, { k: 'task', id: t.id, state: t.state } satisfies ChangeEvent);
      return { task: t, created: false };
    });
    this.flush(fx);
    return out;
  }

  private async taskCreated(sql: Sql, t: StoredTask, by: Caller, fx: Effects): Promise<void> {
    await repo.notify(sql, EVENTS_CHANNEL, { k: 'task', id: t.id, state: t.state } satisfies ChangeEvent);
    await this.enqueue(sql, 'task_created', { task: t });
    fx.audit.push({
      type: 'task_created',
      task_id: t.id,
      task_type: t.type,
      subject: by.subject,
      details: { assignee: t.assignee, reviewers: t.reviewers, expires_at: t.expires_at, source: t.source, ...(t.ticket ? { ticket: t.ticket } : {}) },
    });
  }

  async getTask(id: string): Promise<StoredTask | undefined> {
    return repo.getTask(this.db, id);
  }

  async listTasks(f: { state?: string; assignee?: string; limit?: number } = {}): Promise<StoredTask[]> {
    return repo.listTasks(this.db, f);
  }

  /**
   * Ends a task: its pending reviews are denied, its grants revoked, and every
   * connected sidecar is told (so held commands fail and sessions end).
   * Closing an already-ended task returns it unchanged.
   */
  async endTask(id: string, state: 'closed' | 'expired', by: Caller | undefined, reason?: string): Promise<StoredTask> {
    const fx: Effects = { audit: [] };
    const t = await this.db.tx(async (sql) => {
      const cur = await repo.getTask(sql, id, true);
      if (!cur) throw new TaskgateError('not_found', `task ${id} does not exist`);
      if (by && by.type === 'user' && !this.isAdmin(by) && by.subject !== cur.assignee && !isEligibleApprover(cur.reviewers, by)) {
        throw new TaskgateError('forbidden', `${by.subject} may not close task ${id} (only its assignee, its reviewers or an admin)`);
      }
      if (cur.state !== 'open') return cur;
      await this.endTaskIn(sql, cur, state, by, reason, fx);
      return (await repo.getTask(sql, id))!;
    });
    this.flush(fx);
    return t;
  }

  private async endTaskIn(sql: Sql, cur: StoredTask, state: 'closed' | 'expired', by: Caller | undefined, reason: string | undefined, fx: Effects) {
    const now = this.now();
    const ended = await repo.endTask(sql, cur.id, state, now);
    if (!ended) return;
    const why = reason ?? (state === 'expired' ? `task ${cur.id} expired` : `task ${cur.id} was closed`);
    for (const rid of await repo.pendingReviewIds(sql, { task_id: cur.id })) {
      await this.finish(sql, rid, { state: 'denied', by: [], reason: why }, fx, by?.subject ?? 'system');
    }
    const revoked = await repo.revokeGrantsOfTask(sql, cur.id, now);
    await repo.notify(sql, EVENTS_CHANNEL, { k: 'task', id: cur.id, state } satisfies ChangeEvent);
    await this.enqueue(sql, 'task_closed', { task: ended, reason: why });
    fx.audit.push({
      type: 'task_closed',
      task_id: cur.id,
      task_type: cur.type,
      subject: by?.subject ?? 'system',
      reasons: [why],
      details: { state, grants_revoked: revoked },
    });
  }

  // ---- reviews -------------------------------------------------------------

  async requestReview(spec: ReviewRequestSpec, by: Caller): Promise<ReviewRecord> {
    const req = spec.requirement;
    if (!spec || typeof spec.task_id !== 'string' || !spec.identity || typeof spec.identity.subject !== 'string' || !spec.resource) {
      throw new TaskgateError('input_invalid', 'review request needs task_id, identity.subject, resource, command, requirement');
    }
    if (!req || !Array.isArray(req.approvers) || req.approvers.length === 0) {
      throw new TaskgateError('input_invalid', 'review requirement needs at least one approver');
    }
    if (!Number.isInteger(req.min_approvals) || req.min_approvals < 1) throw new TaskgateError('input_invalid', 'min_approvals must be an integer >= 1');
    if (!(req.timeout_s > 0)) throw new TaskgateError('input_invalid', 'timeout_s must be positive');
    const candidates = req.approvers.filter((a) => a !== spec.identity.subject && a !== spec.identity.acting_for);
    if (!candidates.some((a) => a.startsWith('group:')) && candidates.length < req.min_approvals) {
      throw new TaskgateError(
        'input_invalid',
        `review can never be approved: min_approvals ${req.min_approvals} but only ${candidates.length} eligible approver(s) besides the requester`,
      );
    }
    const fx: Effects = { audit: [] };
    const rec = await this.db.tx(async (sql) => {
      const task = await repo.getTask(sql, spec.task_id);
      if (!task) throw new TaskgateError('not_found', `task ${spec.task_id} does not exist`);
      if (task.state !== 'open' || Date.parse(task.expires_at) <= this.clock()) {
        throw new TaskgateError('conflict', `task ${spec.task_id} is ${task.state === 'open' ? 'expired' : task.state}`);
      }
      const now = this.clock();
      const r = await repo.insertReview(sql, {
        id: `rv_${uuidv7()}`,
        task_id: spec.task_id,
        session_id: String(spec.session_id ?? ''),
        identity: spec.identity,
        resource: spec.resource,
        protocol: spec.protocol,
        command: String(spec.command ?? ''),
        summary: spec.summary ?? null,
        fingerprint: String(spec.fingerprint ?? ''),
        reasons: Array.isArray(spec.reasons) ? spec.reasons.map(String) : [],
        approvers: [...new Set(req.approvers.map(String))],
        min_approvals: req.min_approvals,
        requested_by: by.subject,
        created_at: new Date(now).toISOString(),
        expires_at: new Date(now + req.timeout_s * 1000).toISOString(),
      });
      await repo.notify(sql, EVENTS_CHANNEL, reviewChange(r));
      await this.enqueue(sql, 'review_requested', { review: r, task });
      fx.audit.push({ ...reviewAudit('review_requested', r, task), details: { requested_by: by.subject, expires_at: r.expires_at, min_approvals: r.min_approvals } });
      return r;
    });
    this.flush(fx);
    return rec;
  }

  async getReview(id: string): Promise<ReviewRecord | undefined> {
    return repo.getReview(this.db, id);
  }

  /** Reviews a caller may see: all for services and admins; for a reviewer, those they may decide (never their own). */
  async listReviews(caller: Caller, f: { state?: string; task_id?: string; limit?: number } = {}): Promise<ReviewRecord[]> {
    const all = await repo.listReviews(this.db, f);
    if (caller.type === 'service' || this.isAdmin(caller)) return all;
    return all.filter((r) => this.canSee(caller, r));
  }

  canSee(caller: Caller, r: ReviewRecord): boolean {
    if (caller.type === 'service' || this.isAdmin(caller)) return true;
    return isEligibleApprover(r.approvers, caller) || r.identity.subject === caller.subject || r.identity.acting_for === caller.subject;
  }

  async approve(id: string, caller: Caller, body: ApproveBody = {}): Promise<{ review: ReviewRecord; changed: boolean }> {
    return this.vote(id, caller, 'approve', body);
  }

  async deny(id: string, caller: Caller, reason?: string): Promise<{ review: ReviewRecord; changed: boolean }> {
    return this.vote(id, caller, 'deny', reason ? { reason } : {});
  }

  private async vote(id: string, caller: Caller, decision: 'approve' | 'deny', body: ApproveBody): Promise<{ review: ReviewRecord; changed: boolean }> {
    const grantS = body.grant_s;
    if (grantS !== undefined && (typeof grantS !== 'number' || !Number.isInteger(grantS) || grantS <= 0)) {
      throw new TaskgateError('input_invalid', 'grant_s must be a positive whole number of seconds');
    }
    const maxGrant = this.opts.maxGrantS ?? 8 * 3600;
    if (grantS !== undefined && grantS > maxGrant) throw new TaskgateError('input_invalid', `grant_s may not exceed ${maxGrant} s`);
    const reason = body.reason === undefined ? undefined : String(body.reason).slice(0, 2000);
    const fx: Effects = { audit: [] };
    const out = await this.db.tx(async (sql) => {
      const r = await repo.getReview(sql, id, true);
      if (!r) throw new TaskgateError('not_found', `review ${id} does not exist`);
      checkEligible(r, caller);
      const now = this.clock();
      if (r.state !== 'pending') {
        const mine = r.approvals.find((a) => a.approver === caller.subject);
        if (mine && mine.decision === decision) return { review: r, changed: false };
        throw new TaskgateError('conflict', `review ${id} is already ${r.state}${r.decided_by.length ? ` (by ${r.decided_by.join(', ')})` : ''}`);
      }
      if (Date.parse(r.expires_at) <= now) {
        await this.finish(sql, id, { state: 'expired', by: [], reason: 'review timed out' }, fx, caller.subject);
        return { review: (await repo.getReview(sql, id))!, changed: false, expired: true };
      }
      const vote: ApprovalRecord = { approver: caller.subject, decision, kind: grantS ? 'grant' : 'once', created_at: new Date(now).toISOString() };
      if (grantS) vote.grant_s = grantS;
      if (reason) vote.reason = reason;
      const inserted = await repo.insertApproval(sql, id, vote);
      if (!inserted) {
        const prev = r.approvals.find((a) => a.approver === caller.subject)!;
        if (prev.decision === decision) return { review: r, changed: false };
        throw new TaskgateError('conflict', `${caller.subject} already voted ${prev.decision} on review ${id}`);
      }
      if (decision === 'deny') {
        await this.finish(sql, id, { state: 'denied', by: [caller.subject], reason: reason ?? 'denied by reviewer' }, fx, caller.subject);
        return { review: (await repo.getReview(sql, id))!, changed: true };
      }
      const approvals = [...r.approvals, vote].filter((a) => a.decision === 'approve');
      if (approvals.length < r.min_approvals) {
        await repo.notify(sql, EVENTS_CHANNEL, { ...reviewChange(r), approvals: approvals.length } satisfies ChangeEvent);
        fx.audit.push({ ...reviewAudit('review_approved', r), details: { actor: caller.subject, final: false, approvals: approvals.length, of: r.min_approvals } });
        return { review: (await repo.getReview(sql, id))!, changed: true };
      }
      // Threshold reached. A grant only when every approver chose one; its length is the shortest asked, capped by the task's expiry.
      const by = approvals.map((a) => a.approver).sort();
      let grantUntil: string | undefined;
      if (approvals.every((a) => a.kind === 'grant')) {
        const task = await repo.getTask(sql, r.task_id);
        const s = Math.min(...approvals.map((a) => a.grant_s ?? 0));
        const until = Math.min(now + s * 1000, task ? Date.parse(task.expires_at) : now);
        if (until > now) grantUntil = new Date(until).toISOString();
      }
      const fin: FinishSpec = { state: 'approved', by };
      if (reason) fin.reason = reason;
      if (grantUntil) fin.grant_until = grantUntil;
      await this.finish(sql, id, fin, fx, caller.subject);
      if (grantUntil) {
        await repo.insertGrant(sql, {
          id: `gr_${uuidv7()}`,
          review_id: id,
          task_id: r.task_id,
          subject: r.identity.subject,
          resource: r.resource.name,
          granted_by: by,
          created_at: new Date(now).toISOString(),
          until: grantUntil,
        });
      }
      return { review: (await repo.getReview(sql, id))!, changed: true };
    });
    this.flush(fx);
    if ('expired' in out) throw new TaskgateError('conflict', `review ${id} has expired`);
    return out;
  }

  /** The sidecar's client went away before a decision: the request is cancelled. */
  async cancel(id: string, caller: Caller, reason = 'client went away'): Promise<ReviewRecord> {
    const fx: Effects = { audit: [] };
    const r = await this.db.tx(async (sql) => {
      const cur = await repo.getReview(sql, id, true);
      if (!cur) throw new TaskgateError('not_found', `review ${id} does not exist`);
      if (cur.state === 'pending') await this.finish(sql, id, { state: 'cancelled', by: [], reason }, fx, caller.subject);
      return (await repo.getReview(sql, id))!;
    });
    this.flush(fx);
    return r;
  }

  async activeGrant(q: { task_id: string; subject: string; resource: string }): Promise<GrantRecord | undefined> {
    return repo.activeGrant(this.db, q, this.now());
  }

  /** Expires due tasks and reviews. Safe on several replicas at once (SKIP LOCKED). */
  async sweep(): Promise<{ tasks: number; reviews: number }> {
    const fx: Effects = { audit: [] };
    const counts = await this.db.tx(async (sql) => {
      const now = this.now();
      let tasks = 0;
      for (const id of await repo.dueTasks(sql, now)) {
        const cur = await repo.getTask(sql, id);
        if (cur) await this.endTaskIn(sql, cur, 'expired', undefined, undefined, fx);
        tasks++;
      }
      const due = await repo.pendingReviewIds(sql, { due_before: now, limit: 500 });
      for (const id of due) await this.finish(sql, id, { state: 'expired', by: [], reason: 'review timed out' }, fx, 'system');
      return { tasks, reviews: due.length };
    });
    this.flush(fx);
    return counts;
  }

  private async finish(sql: Sql, id: string, f: FinishSpec, fx: Effects, actor: string): Promise<void> {
    const ok = await repo.finishReview(sql, id, { ...f, now: this.now() });
    if (!ok) return;
    const r = (await repo.getReview(sql, id))!;
    await repo.notify(sql, EVENTS_CHANNEL, reviewChange(r));
    const type = f.state === 'approved' ? 'review_approved' : f.state === 'expired' ? 'review_expired' : 'review_denied';
    await this.enqueue(sql, type, { review: r });
    fx.audit.push({
      ...reviewAudit(type, r),
      approvers: r.decided_by,
      ...(f.reason ? { reasons: [f.reason] } : {}),
      details: { actor, state: r.state, final: true, ...(r.grant_until ? { grant_until: r.grant_until } : {}) },
    });
  }

  private async enqueue(sql: Sql, event: WebhookEvent, body: Record<string, unknown>): Promise<void> {
    const targets = (this.opts.webhooks ?? []).filter((w) => !w.events || w.events.includes(event));
    if (targets.length === 0) return;
    const now = this.now();
    const payload = { event, ts: now, ...(this.opts.inboxUrl ? { inbox_url: this.opts.inboxUrl } : {}), ...body };
    for (const t of targets) await repo.enqueueDelivery(sql, { id: `wh_${uuidv7()}`, target: t.name, event, payload, now });
    await repo.notify(sql, EVENTS_CHANNEL, { k: 'outbox' } satisfies ChangeEvent);
  }

  private flush(fx: Effects): void {
    for (const ev of fx.audit) this.opts.audit.emit(ev);
  }
}

interface FinishSpec {
  state: 'approved' | 'denied' | 'expired' | 'cancelled';
  by: string[];
  reason?: string;
  grant_until?: string;
}

/** The approval rules: no service approvers, no self-approval (incl. acting_for), only listed users or group members. */
export function checkEligible(r: ReviewRecord, who: Caller): void {
  if (who.type === 'service') throw new TaskgateError('forbidden', 'a service identity cannot approve or deny reviews');
  if (who.subject === r.identity.subject || (r.identity.acting_for !== undefined && who.subject === r.identity.acting_for)) {
    throw new TaskgateError('forbidden', 'self-approval is not allowed: the requester (or the human an agent acts for) cannot decide their own review');
  }
  if (who.acting_for !== undefined) throw new TaskgateError('forbidden', 'a delegated (acting_for) identity cannot approve reviews');
  if (!isEligibleApprover(r.approvers, who)) {
    throw new TaskgateError('forbidden', `${who.subject} is not an approver for review ${r.id} (approvers: ${r.approvers.join(', ')})`);
  }
}

export function reviewChange(r: ReviewRecord): ReviewChange {
  const ev: ReviewChange = {
    k: 'review',
    id: r.id,
    task_id: r.task_id,
    state: r.state,
    by: r.decided_by,
    approvals: r.approvals.filter((a) => a.decision === 'approve').length,
  };
  if (r.decision_reason) ev.reason = r.decision_reason.slice(0, 500);
  if (r.grant_until) ev.grant_until = r.grant_until;
  return ev;
}

function reviewAudit(type: AuditEventInput['type'], r: ReviewRecord, task?: StoredTask): AuditEventInput {
  const ev: AuditEventInput = {
    type,
    session_id: r.session_id,
    task_id: r.task_id,
    subject: r.identity.subject,
    groups: r.identity.groups,
    identity_type: r.identity.type,
    resource: r.resource.name,
    protocol: r.protocol,
    command: r.command,
    fingerprint: r.fingerprint,
    reasons: r.reasons,
    review_id: r.id,
    approvers: r.approvers,
  };
  if (task) ev.task_type = task.type;
  if (r.identity.acting_for) ev.acting_for = r.identity.acting_for;
  return ev;
}
