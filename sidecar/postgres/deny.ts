/**
 * How a refusal looks to the client: ErrorResponse SQLSTATE 42501 naming what
 * was denied, why (the policy's reasons) and for which task.
 */
import type { GateOutcome, SessionContext } from '../../core/gate.ts';
import type { PgStatement } from '../../core/policy-contract.ts';
import { errorResponse } from './codec/backend.ts';

/**
 * Sent to the server in place of a denied statement. It fails with 42501 and
 * does nothing else, so the server's transaction state after a denial is
 * exactly what PostgreSQL leaves after a failed statement: outside a
 * transaction nothing changes; inside BEGIN the transaction is aborted
 * (ReadyForQuery 'E') until ROLLBACK; in an aborted transaction the server
 * answers 25P02 as it would for the denied statement itself.
 */
export const DENY_SQL = "DO $taskgate$BEGIN RAISE EXCEPTION USING ERRCODE = '42501', MESSAGE = 'denied by taskgate'; END$taskgate$";

function what(statements: PgStatement[]): string {
  const cmds = [...new Set(statements.map((s) => s.command))];
  const tables = [...new Set(statements.flatMap((s) => s.tables.map((t) => `${t.schema}.${t.name}`)))];
  return `${cmds.join(', ') || 'statement'}${tables.length ? ` on ${tables.join(', ')}` : ''}`;
}

export function denyError(ctx: SessionContext, statements: PgStatement[], o: GateOutcome): Buffer {
  const reasons = o.decision.reasons.length ? o.decision.reasons.join('; ') : 'no reason given by policy';
  const multi = statements.length > 1 ? ` (${statements.length} statements; none was run)` : '';
  const review = o.review ? ` review ${o.review.id} ${o.review.status}${o.review.by.length ? ` by ${o.review.by.join(', ')}` : ''}.` : '';
  return errorResponse({
    severity: 'ERROR',
    code: '42501',
    message: `taskgate denied ${what(statements)} for task ${ctx.task_id}: ${reasons}${multi}`,
    detail: `policy revision ${o.decision.policy_revision}, decision ${o.decision_id}.${review}`,
    hint: o.task ? `task ${ctx.task_id} is a ${o.task.type} task` : `task ${ctx.task_id} is not known to taskgate`,
  });
}

/** Ends a result early: a policy limit (54000) or masking that could not be applied (XX000). */
export function limitError(ctx: SessionContext, what: string, code = '54000'): Buffer {
  if (code !== '54000') {
    return errorResponse({ severity: 'ERROR', code, message: `taskgate ended the result for task ${ctx.task_id}: ${what}` });
  }
  return errorResponse({
    severity: 'ERROR',
    code,
    message: `taskgate ended the result: policy limit ${what} for task ${ctx.task_id} reached`,
    hint: 'narrow the query (WHERE / LIMIT) or ask for a task whose policy allows larger results',
  });
}
