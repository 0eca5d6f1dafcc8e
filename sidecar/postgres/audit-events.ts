/**
 * Audit events of the PostgreSQL sidecar (core/audit/event.ts): one
 * `command` event per statement run, and the session's start and end.
 * Text is the classifier's literal-free text; masked counts, never values.
 */
import type { AuditEventInput } from '../../core/audit/event.ts';
import type { GateOutcome, SessionContext } from '../../core/gate.ts';
import type { PostgresRequest } from '../../core/policy-contract.ts';

export interface StatementTotals {
  started: number;
  rows: number;
  bytes: number;
  masked: Record<string, number>;
  error?: string;
}

/** Fields every event of a session carries. */
export function sessionFields(ctx: SessionContext): AuditEventInput & { type: 'session_start' } {
  const id = ctx.identity;
  return {
    type: 'session_start',
    session_id: ctx.id,
    task_id: ctx.task_id,
    subject: id.subject,
    groups: id.groups,
    identity_type: id.type,
    ...(id.acting_for ? { acting_for: id.acting_for } : {}),
    resource: ctx.resource.name,
    protocol: 'postgres',
    ...(ctx.client_address ? { client_addr: ctx.client_address } : {}),
  };
}

export function commandEvent(
  ctx: SessionContext,
  spec: { request: PostgresRequest; text: string; fingerprint: string },
  o: GateOutcome,
  run: StatementTotals,
): AuditEventInput {
  const ev: AuditEventInput = {
    ...sessionFields(ctx),
    type: 'command',
    task_type: o.task?.type ?? '',
    command: spec.text,
    fingerprint: spec.fingerprint,
    decision: o.decision.result,
    reasons: o.decision.reasons,
    policy_revision: o.decision.policy_revision,
    rows: run.rows,
    bytes: run.bytes,
    masked: run.masked,
    duration_us: Math.round((performance.now() - run.started) * 1000),
    details: {
      decision_id: o.decision_id,
      message: spec.request.message,
      commands: spec.request.statements.map((x) => x.command),
      ...(run.error ? { error: run.error } : {}),
      ...(o.held_ms ? { held_ms: o.held_ms } : {}),
    },
  };
  if (o.review) {
    ev.review_id = o.review.id;
    ev.approvers = o.review.by;
  }
  return ev;
}
