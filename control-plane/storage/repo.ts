/**
 * SQL for the control plane's tables and nothing else: no rules, no events.
 * Every function takes the Sql to run on (the database or an open
 * transaction), so callers decide the transaction boundaries.
 */
import type { Sql } from './db.ts';
import type { ApprovalRecord, DeliveryRecord, GrantRecord, ReviewRecord, ReviewState, StoredTask } from './records.ts';

type Row = Record<string, unknown>;

const iso = (v: unknown): string => (v instanceof Date ? v.toISOString() : new Date(String(v)).toISOString());
const isoOpt = (v: unknown): string | undefined => (v === null || v === undefined ? undefined : iso(v));
const strOpt = (v: unknown): string | undefined => (v === null || v === undefined ? undefined : String(v));
const json = (v: unknown): string => JSON.stringify(v ?? null);

function withOptional<T extends object>(base: T, extra: Record<string, unknown>): T {
  for (const [k, v] of Object.entries(extra)) if (v !== undefined) (base as Row)[k] = v;
  return base;
}

// ---- tasks ------------------------------------------------------------------

function taskFrom(r: Row): StoredTask {
  return withOptional(
    {
      id: String(r.id),
      type: String(r.type),
      assignee: String(r.assignee),
      reviewers: r.reviewers as string[],
      state: r.state as StoredTask['state'],
      expires_at: iso(r.expires_at),
      source: String(r.source),
      created_at: iso(r.created_at),
      updated_at: iso(r.updated_at),
    },
    { ticket: strOpt(r.ticket), title: strOpt(r.title), ended_at: isoOpt(r.ended_at) },
  );
}

export interface TaskWrite {
  id: string;
  type: string;
  assignee: string;
  reviewers: string[];
  expires_at: string;
  ticket?: string;
  title?: string;
  source: string;
}

export async function insertTask(sql: Sql, t: TaskWrite, now: string): Promise<StoredTask | undefined> {
  const r = await sql.query(
    `INSERT INTO tasks (id, type, assignee, reviewers, state, expires_at, ticket, title, source, created_at, updated_at)
     VALUES ($1, $2, $3, $4::jsonb, 'open', $5, $6, $7, $8, $9, $9)
     ON CONFLICT (id) DO NOTHING RETURNING *`,
    [t.id, t.type, t.assignee, json(t.reviewers), t.expires_at, t.ticket ?? null, t.title ?? null, t.source, now],
  );
  return r.rows[0] ? taskFrom(r.rows[0]) : undefined;
}

/** Updates the mapped fields of an open task (tracker webhooks re-send the whole issue). */
export async function updateOpenTask(sql: Sql, t: TaskWrite, now: string): Promise<StoredTask | undefined> {
  const r = await sql.query(
    `UPDATE tasks SET type = $2, assignee = $3, reviewers = $4::jsonb, expires_at = $5, ticket = $6, title = $7, updated_at = $8
     WHERE id = $1 AND state = 'open' RETURNING *`,
    [t.id, t.type, t.assignee, json(t.reviewers), t.expires_at, t.ticket ?? null, t.title ?? null, now],
  );
  return r.rows[0] ? taskFrom(r.rows[0]) : undefined;
}

export async function getTask(sql: Sql, id: string, forUpdate = false): Promise<StoredTask | undefined> {
  const r = await sql.query(`SELECT * FROM tasks WHERE id = $1${forUpdate ? ' FOR UPDATE' : ''}`, [id]);
  return r.rows[0] ? taskFrom(r.rows[0]) : undefined;
}

export async function listTasks(sql: Sql, f: { state?: string; assignee?: string; limit?: number } = {}): Promise<StoredTask[]> {
  const r = await sql.query(
    `SELECT * FROM tasks WHERE ($1::text IS NULL OR state = $1) AND ($2::text IS NULL OR assignee = $2)
     ORDER BY created_at DESC, id LIMIT $3`,
    [f.state ?? null, f.assignee ?? null, f.limit ?? 200],
  );
  return r.rows.map(taskFrom);
}

/** Ends an open task; undefined when it was not open (already ended: idempotent for the caller). */
export async function endTask(sql: Sql, id: string, state: 'closed' | 'expired', now: string): Promise<StoredTask | undefined> {
  const r = await sql.query(
    `UPDATE tasks SET state = $2, ended_at = $3, updated_at = $3 WHERE id = $1 AND state = 'open' RETURNING *`,
    [id, state, now],
  );
  return r.rows[0] ? taskFrom(r.rows[0]) : undefined;
}

/** Open tasks past their expiry, locked; SKIP LOCKED lets replicas sweep side by side. */
export async function dueTasks(sql: Sql, now: string, limit = 100): Promise<string[]> {
  const r = await sql.query<{ id: string }>(
    `SELECT id FROM tasks WHERE state = 'open' AND expires_at <= $1 ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED`,
    [now, limit],
  );
  return r.rows.map((x) => x.id);
}

// ---- review requests -----------------------------------------------------------

function approvalFrom(r: Row): ApprovalRecord {
  return withOptional(
    { approver: String(r.approver), decision: r.decision as ApprovalRecord['decision'], kind: r.kind as ApprovalRecord['kind'], created_at: iso(r.created_at) },
    { grant_s: r.grant_s === null ? undefined : Number(r.grant_s), reason: strOpt(r.reason) },
  );
}

function reviewFrom(r: Row, approvals: ApprovalRecord[]): ReviewRecord {
  return withOptional(
    {
      id: String(r.id),
      task_id: String(r.task_id),
      session_id: String(r.session_id),
      identity: r.identity as ReviewRecord['identity'],
      resource: r.resource as ReviewRecord['resource'],
      protocol: r.protocol as ReviewRecord['protocol'],
      command: String(r.command),
      summary: r.summary,
      fingerprint: String(r.fingerprint),
      reasons: r.reasons as string[],
      approvers: r.approvers as string[],
      min_approvals: Number(r.min_approvals),
      state: r.state as ReviewState,
      requested_by: String(r.requested_by),
      created_at: iso(r.created_at),
      expires_at: iso(r.expires_at),
      decided_by: r.decided_by as string[],
      approvals,
    },
    { decided_at: isoOpt(r.decided_at), decision_reason: strOpt(r.decision_reason), grant_until: isoOpt(r.grant_until) },
  );
}

export type ReviewWrite = Omit<ReviewRecord, 'state' | 'decided_at' | 'decided_by' | 'decision_reason' | 'grant_until' | 'approvals'>;

export async function insertReview(sql: Sql, v: ReviewWrite): Promise<ReviewRecord> {
  const r = await sql.query(
    `INSERT INTO review_requests (id, task_id, session_id, identity, subject, acting_for, resource, resource_name, protocol, command,
       summary, fingerprint, reasons, approvers, min_approvals, state, requested_by, created_at, expires_at)
     VALUES ($1, $2, $3, $4::jsonb, $5, $6, $7::jsonb, $8, $9, $10, $11::jsonb, $12, $13::jsonb, $14::jsonb, $15, 'pending', $16, $17, $18)
     RETURNING *`,
    [
      v.id, v.task_id, v.session_id, json(v.identity), v.identity.subject, v.identity.acting_for ?? null, json(v.resource), v.resource.name,
      v.protocol, v.command, json(v.summary), v.fingerprint, json(v.reasons), json(v.approvers), v.min_approvals, v.requested_by,
      v.created_at, v.expires_at,
    ],
  );
  return reviewFrom(r.rows[0]!, []);
}

export async function getReview(sql: Sql, id: string, forUpdate = false): Promise<ReviewRecord | undefined> {
  const r = await sql.query(`SELECT * FROM review_requests WHERE id = $1${forUpdate ? ' FOR UPDATE' : ''}`, [id]);
  if (!r.rows[0]) return undefined;
  return reviewFrom(r.rows[0], await approvalsOf(sql, id));
}

export async function listReviews(sql: Sql, f: { state?: string; task_id?: string; limit?: number } = {}): Promise<ReviewRecord[]> {
  const r = await sql.query(
    `SELECT * FROM review_requests WHERE ($1::text IS NULL OR state = $1) AND ($2::text IS NULL OR task_id = $2)
     ORDER BY created_at DESC, id LIMIT $3`,
    [f.state ?? null, f.task_id ?? null, f.limit ?? 200],
  );
  if (r.rows.length === 0) return [];
  const ids = r.rows.map((x) => String(x.id));
  const a = await sql.query(`SELECT * FROM approvals WHERE review_id = ANY($1::text[]) ORDER BY created_at, approver`, [ids]);
  const by = new Map<string, ApprovalRecord[]>();
  for (const row of a.rows) {
    const k = String(row.review_id);
    by.set(k, [...(by.get(k) ?? []), approvalFrom(row)]);
  }
  return r.rows.map((row) => reviewFrom(row, by.get(String(row.id)) ?? []));
}

export async function approvalsOf(sql: Sql, reviewId: string): Promise<ApprovalRecord[]> {
  const r = await sql.query(`SELECT * FROM approvals WHERE review_id = $1 ORDER BY created_at, approver`, [reviewId]);
  return r.rows.map(approvalFrom);
}

/** Records one approver's vote; false when that approver had already voted (idempotent). */
export async function insertApproval(sql: Sql, reviewId: string, a: ApprovalRecord): Promise<boolean> {
  const r = await sql.query(
    `INSERT INTO approvals (review_id, approver, decision, kind, grant_s, reason, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)
     ON CONFLICT (review_id, approver) DO NOTHING`,
    [reviewId, a.approver, a.decision, a.kind, a.grant_s ?? null, a.reason ?? null, a.created_at],
  );
  return r.rowCount > 0;
}

export async function finishReview(
  sql: Sql,
  id: string,
  f: { state: Exclude<ReviewState, 'pending'>; by: string[]; reason?: string; grant_until?: string; now: string },
): Promise<boolean> {
  const r = await sql.query(
    `UPDATE review_requests SET state = $2, decided_by = $3::jsonb, decision_reason = $4, grant_until = $5, decided_at = $6
     WHERE id = $1 AND state = 'pending'`,
    [id, f.state, json(f.by), f.reason ?? null, f.grant_until ?? null, f.now],
  );
  return r.rowCount > 0;
}

export async function pendingReviewIds(sql: Sql, f: { task_id?: string; due_before?: string; limit?: number }): Promise<string[]> {
  const r = await sql.query<{ id: string }>(
    `SELECT id FROM review_requests WHERE state = 'pending' AND ($1::text IS NULL OR task_id = $1)
       AND ($2::timestamptz IS NULL OR expires_at <= $2)
     ORDER BY expires_at LIMIT $3 FOR UPDATE SKIP LOCKED`,
    [f.task_id ?? null, f.due_before ?? null, f.limit ?? 1000],
  );
  return r.rows.map((x) => x.id);
}

// ---- grants -----------------------------------------------------------------

function grantFrom(r: Row): GrantRecord {
  return withOptional(
    {
      id: String(r.id),
      review_id: String(r.review_id),
      task_id: String(r.task_id),
      subject: String(r.subject),
      resource: String(r.resource),
      granted_by: r.granted_by as string[],
      created_at: iso(r.created_at),
      until: iso(r.until),
    },
    { revoked_at: isoOpt(r.revoked_at) },
  );
}

export async function insertGrant(sql: Sql, g: Omit<GrantRecord, 'revoked_at'>): Promise<void> {
  await sql.query(
    `INSERT INTO grants (id, review_id, task_id, subject, resource, granted_by, created_at, until) VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, $8)`,
    [g.id, g.review_id, g.task_id, g.subject, g.resource, json(g.granted_by), g.created_at, g.until],
  );
}

export async function activeGrant(sql: Sql, q: { task_id: string; subject: string; resource: string }, now: string): Promise<GrantRecord | undefined> {
  const r = await sql.query(
    `SELECT g.* FROM grants g JOIN tasks t ON t.id = g.task_id
     WHERE g.task_id = $1 AND g.subject = $2 AND g.resource = $3 AND g.revoked_at IS NULL AND g.until > $4
       AND t.state = 'open' AND t.expires_at > $4
     ORDER BY g.until DESC LIMIT 1`,
    [q.task_id, q.subject, q.resource, now],
  );
  return r.rows[0] ? grantFrom(r.rows[0]) : undefined;
}

export async function revokeGrantsOfTask(sql: Sql, taskId: string, now: string): Promise<number> {
  const r = await sql.query(`UPDATE grants SET revoked_at = $2 WHERE task_id = $1 AND revoked_at IS NULL AND until > $2`, [taskId, now]);
  return r.rowCount;
}

// ---- webhook outbox -----------------------------------------------------------

function deliveryFrom(r: Row): DeliveryRecord {
  return withOptional(
    {
      id: String(r.id),
      target: String(r.target),
      event: String(r.event),
      payload: r.payload,
      state: r.state as DeliveryRecord['state'],
      attempts: Number(r.attempts),
      next_attempt_at: iso(r.next_attempt_at),
      created_at: iso(r.created_at),
    },
    { last_status: r.last_status === null ? undefined : Number(r.last_status), last_error: strOpt(r.last_error), delivered_at: isoOpt(r.delivered_at) },
  );
}

export async function enqueueDelivery(sql: Sql, d: { id: string; target: string; event: string; payload: unknown; now: string }): Promise<void> {
  await sql.query(
    `INSERT INTO webhook_deliveries (id, target, event, payload, state, next_attempt_at, created_at) VALUES ($1, $2, $3, $4::jsonb, 'pending', $5, $5)`,
    [d.id, d.target, d.event, json(d.payload), d.now],
  );
}

/**
 * Claims due deliveries: locks them (SKIP LOCKED: replicas share the outbox) and
 * pushes their next attempt out by a lease, so a replica that dies mid-send
 * leaves them to be retried by another after the lease.
 */
export async function claimDeliveries(sql: Sql, now: string, leaseUntil: string, limit: number): Promise<DeliveryRecord[]> {
  const r = await sql.query(
    `UPDATE webhook_deliveries SET next_attempt_at = $2, attempts = attempts + 1
     WHERE id IN (SELECT id FROM webhook_deliveries WHERE state = 'pending' AND next_attempt_at <= $1
                  ORDER BY next_attempt_at LIMIT $3 FOR UPDATE SKIP LOCKED)
     RETURNING *`,
    [now, leaseUntil, limit],
  );
  return r.rows.map(deliveryFrom);
}

export async function recordDelivery(
  sql: Sql,
  id: string,
  f: { state: DeliveryRecord['state']; status?: number; error?: string; next_attempt_at?: string; now: string },
): Promise<void> {
  await sql.query(
    `UPDATE webhook_deliveries SET state = $2, last_status = $3, last_error = $4,
       next_attempt_at = COALESCE($5, next_attempt_at), delivered_at = CASE WHEN $2 = 'delivered' THEN $6::timestamptz ELSE delivered_at END
     WHERE id = $1`,
    [id, f.state, f.status ?? null, f.error ?? null, f.next_attempt_at ?? null, f.now],
  );
}

export async function listDeliveries(sql: Sql, f: { state?: string; limit?: number } = {}): Promise<DeliveryRecord[]> {
  const r = await sql.query(`SELECT * FROM webhook_deliveries WHERE ($1::text IS NULL OR state = $1) ORDER BY created_at, id LIMIT $2`, [
    f.state ?? null,
    f.limit ?? 200,
  ]);
  return r.rows.map(deliveryFrom);
}

export async function notify(sql: Sql, channel: string, payload: unknown): Promise<void> {
  await sql.query('SELECT pg_notify($1, $2)', [channel, JSON.stringify(payload)]);
}
