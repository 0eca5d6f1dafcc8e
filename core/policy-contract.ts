/**
 * The policy contract: the input every entry point builds and the decision the
 * compiled policy (entrypoint `taskgate/decision`) returns. snake_case, stable,
 * versioned; documented field by field in docs/policy-input.md.
 *
 * One shape for every protocol; only `request` is protocol-specific.
 */

export const POLICY_INPUT_VERSION = 1;
export const DECISION_ENTRYPOINT = 'taskgate/decision';

export type Protocol = 'postgres' | 'ssh' | 'http';

export interface IdentityInput {
  /** OIDC `sub` (or the configured subject claim, e.g. email). */
  subject: string;
  groups: string[];
  issuer: string;
  /** `service` for client-credentials tokens (CI jobs, AI agents). */
  type: 'user' | 'service';
  /** For a service identity acting for a named human: that human's subject. */
  acting_for?: string;
  email?: string;
}

export type TaskState = 'open' | 'closed' | 'expired';

export interface TaskInput {
  id: string;
  /** Absent when the task id is unknown to the registry: the policy denies. */
  type?: string;
  assignee?: string;
  /** First reviewer, kept for the DESIGN.md contract. */
  reviewer?: string;
  reviewers?: string[];
  state?: TaskState;
  expires_at?: string;
  ticket?: string;
}

export interface ResourceInput {
  protocol: Protocol;
  name: string;
  labels: Record<string, string>;
}

// ---- PostgreSQL -----------------------------------------------------------

export type TableAccess = 'read' | 'write';

export interface PgTableRef {
  schema: string;
  name: string;
  access: TableAccess;
}

export interface PgStatement {
  /**
   * Command class, upper case, as PostgreSQL names it: SELECT, INSERT, UPDATE,
   * DELETE, MERGE, COPY, CREATE TABLE, ALTER TABLE, DROP, TRUNCATE, GRANT, SET,
   * SET ROLE, ALTER SYSTEM, DO, CREATE FUNCTION, EXPLAIN, PREPARE, EXECUTE,
   * BEGIN, COMMIT, ROLLBACK, ... and UNPARSEABLE when the parser rejects it.
   */
  command: string;
  /** Coarse class used by catalogs: read | write | ddl | dcl | tcl | session | admin | utility | unparseable */
  class: string;
  tables: PgTableRef[];
  functions: string[];
  /** Normalised, literal-free fingerprint (stable across literal values). */
  fingerprint: string;
  /** Statement text with literals replaced by `$n`/`?` (never raw values). */
  text: string;
  /** true when every UPDATE/DELETE in the statement has a WHERE clause. */
  has_where?: boolean;
  /** Statement-level flags the policy can test, e.g. "copy_program", "data_modifying_cte", "for_update". */
  flags: string[];
}

export interface PostgresRequest {
  /** Which protocol message carried it. */
  message: 'query' | 'parse' | 'function_call' | 'replication' | 'copy';
  statements: PgStatement[];
}

// ---- SSH ------------------------------------------------------------------

export type SshKind =
  | 'exec'
  | 'shell'
  | 'shell_line'
  | 'subsystem'
  | 'sftp'
  | 'scp'
  | 'port_forward'
  | 'remote_forward'
  | 'agent_forward'
  | 'x11';

export interface SshProgram {
  /** Program name as written (`/usr/bin/cat` -> path kept in `path`, name `cat`). */
  name: string;
  path?: string;
  argv: string[];
  /** How the program is reached: top | pipe | subshell | substitution | sudo | env | bash_c | xargs | ... */
  via: string[];
  /** The program name is built from an expansion (`$X`, `$(echo rm)`): `name` is its source text. */
  dynamic?: boolean;
}

export interface SshRequest {
  kind: SshKind;
  command: string;
  argv: string[];
  programs: SshProgram[];
  redirects?: { op: string; target: string }[];
  /** For port forwards. */
  forward?: { host: string; port: number };
  subsystem?: string;
  /** The shell parser failed: the policy denies unless it says otherwise. */
  unparseable?: boolean;
  parse_error?: string;
}

// ---- HTTP / Kubernetes ----------------------------------------------------

export interface KubernetesRequest {
  verb: string;
  api_group: string;
  version: string;
  resource: string;
  subresource: string;
  namespace: string;
  name: string;
  /** true for non-resource URLs such as /healthz or /version. */
  non_resource?: boolean;
}

export interface HttpRequest {
  method: string;
  path: string;
  query: Record<string, string[]>;
  headers: Record<string, string>;
  host: string;
  kubernetes?: KubernetesRequest;
}

export type RequestInput = PostgresRequest | SshRequest | HttpRequest;

// ---- Review / session -----------------------------------------------------

export type ReviewStatus = 'none' | 'approved' | 'denied' | 'expired';

export interface ReviewInput {
  status: ReviewStatus;
  request_id?: string;
  by: string[];
  /** approved through a time-boxed grant rather than for this exact command */
  grant?: boolean;
}

export interface SessionInput {
  id: string;
  started_at: string;
  client_address?: string;
}

export interface PolicyInput {
  version: number;
  identity: IdentityInput;
  task: TaskInput;
  resource: ResourceInput;
  request: RequestInput;
  review: ReviewInput;
  session: SessionInput;
  /** Evaluation time (RFC 3339). The policy may use time.now_ns instead; both agree. */
  now: string;
}

// ---- Decision -------------------------------------------------------------

export type DecisionResult = 'allow' | 'deny' | 'review';

export interface ReviewRequirement {
  /** Users (subject/email) or groups written as `group:<name>`. */
  approvers: string[];
  min_approvals: number;
  timeout_s: number;
}

export type MaskStrategy = 'redact' | 'partial' | 'hash' | 'null';

export type DetectorName =
  | 'card'
  | 'email'
  | 'phone'
  | 'ssn'
  | 'iban'
  | 'jwt'
  | 'cloud_key'
  | 'private_key';

export const DETECTORS: readonly DetectorName[] = [
  'card',
  'email',
  'phone',
  'ssn',
  'iban',
  'jwt',
  'cloud_key',
  'private_key',
];

export const MASK_STRATEGIES: readonly MaskStrategy[] = ['redact', 'partial', 'hash', 'null'];

/**
 * One mask rule. Exactly one of `column`, `field`, `detector` selects what is masked:
 * - column: `schema.table.column`, `table.column` or `column`, `*` globs allowed
 *   (PostgreSQL results);
 * - field: a JSON path such as `data.*` or `items[*].card` (HTTP bodies);
 * - detector: content detector over every value / output stream.
 */
export interface MaskRule {
  column?: string;
  field?: string;
  detector?: DetectorName;
  strategy: MaskStrategy;
  /** partial: how many trailing characters stay visible (default 4). */
  keep?: number;
}

export interface Obligations {
  max_rows?: number;
  max_bytes?: number;
  session_ttl_s?: number;
  record?: boolean;
  [key: string]: unknown;
}

export interface Decision {
  result: DecisionResult;
  reasons: string[];
  review?: ReviewRequirement;
  mask: MaskRule[];
  obligations: Obligations;
}

/** A decision together with how it was reached (engine metadata). */
export interface EvaluatedDecision extends Decision {
  policy_revision: string;
  /** Nanoseconds spent in evaluation (0 for cached or synthetic decisions). */
  eval_ns: number;
  /** True when the engine produced the decision itself (fail closed), not the policy. */
  synthetic?: boolean;
}

/**
 * `d` as an EvaluatedDecision with the given engine metadata. Written out
 * field by field rather than `{ ...d, policy_revision, eval_ns }`: on the
 * decision path, V8 (Node 20-22) takes a slow runtime path for an object
 * spread followed by more properties (~0.5-4 µs per object, measured).
 */
export function evaluated(d: Decision & { synthetic?: boolean }, policy_revision: string, eval_ns: number): EvaluatedDecision {
  const out: EvaluatedDecision = { result: d.result, reasons: d.reasons, mask: d.mask, obligations: d.obligations, policy_revision, eval_ns };
  if (d.review !== undefined) out.review = d.review;
  if (d.synthetic !== undefined) out.synthetic = d.synthetic;
  return out;
}

export function denyDecision(reason: string, revision = 'none'): EvaluatedDecision {
  return {
    result: 'deny',
    reasons: [reason],
    mask: [],
    obligations: {},
    policy_revision: revision,
    eval_ns: 0,
    synthetic: true,
  };
}
