/**
 * Typed errors with a reason code. Every error a user can meet carries a code and
 * a one-line message; the CLI prints `error[<code>]: <message>` and a hint.
 */
export type ErrorCode =
  | 'bundle_invalid'
  | 'bundle_missing'
  | 'bundle_fetch'
  | 'policy_compile'
  | 'policy_unsupported_builtin'
  | 'policy_eval'
  | 'decision_invalid'
  | 'input_invalid'
  | 'catalog_invalid'
  | 'config_invalid'
  | 'tool_missing'
  | 'auth_failed'
  | 'not_found'
  | 'conflict'
  | 'forbidden'
  | 'unavailable'
  | 'protocol'
  | 'internal';

export class TaskgateError extends Error {
  readonly code: ErrorCode;
  readonly hint: string | undefined;
  constructor(code: ErrorCode, message: string, opts: { hint?: string; cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'TaskgateError';
    this.code = code;
    this.hint = opts.hint;
  }
}

export function isTaskgateError(e: unknown): e is TaskgateError {
  return e instanceof TaskgateError;
}

/**
 * The message for any thrown value, never a stack trace: a TaskgateError's
 * message in full (it may list several compile errors), the first line of
 * anything else.
 */
export function errorMessage(e: unknown): string {
  if (e instanceof TaskgateError) return e.message;
  if (e instanceof Error) return e.message.split('\n')[0] || e.name;
  return String(e);
}
