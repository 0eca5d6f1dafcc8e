/**
 * The audit event: one schema across PostgreSQL, SSH and HTTP/Kubernetes.
 * Versioned; documented in docs/audit.md. Emitters fill what they know; the
 * sink adds id (UUIDv7), ts (µs), sequence and the hash chain.
 *
 * Masked data never reaches an event: `command` is literal-masked text and
 * `masked` holds counts per field, never values.
 */
export const AUDIT_SCHEMA_VERSION = 1;

export type AuditEventType =
  | 'session_start'
  | 'session_end'
  | 'command'
  | 'decision'
  | 'review_requested'
  | 'review_approved'
  | 'review_denied'
  | 'review_expired'
  | 'masking_applied'
  | 'policy_loaded'
  | 'task_created'
  | 'task_closed'
  | 'error';

export interface AuditEventInput {
  type: AuditEventType;
  session_id?: string;
  task_id?: string;
  task_type?: string;
  subject?: string;
  groups?: string[];
  identity_type?: string;
  acting_for?: string;
  resource?: string;
  protocol?: string;
  /** Command text with literals masked. */
  command?: string;
  fingerprint?: string;
  decision?: 'allow' | 'deny' | 'review' | '';
  reasons?: string[];
  policy_revision?: string;
  review_id?: string;
  approvers?: string[];
  rows?: number;
  bytes?: number;
  /** Count of masked values per field (column / JSON path / detector); never the values. */
  masked?: Record<string, number>;
  duration_us?: number;
  client_addr?: string;
  /** Free-form, non-sensitive details (JSON-serialisable). */
  details?: Record<string, unknown>;
}

export interface AuditEvent extends AuditEventInput {
  schema_version: number;
  id: string;
  /** RFC 3339 with microseconds. */
  ts: string;
  /** Emitting process (sidecar instance) id: the hash chain is per source. */
  source: string;
  seq: number;
  prev_hash: string;
  hash: string;
}

/**
 * Where events go. emit() never blocks the data path and never throws; the
 * durable implementation (core/audit/spool) writes to a local spool that a
 * shipper delivers to ClickHouse. `writable()` is false when the spool is full
 * and the fail-closed policy is in force: the gate then denies new commands.
 */
export interface AuditSink {
  emit(ev: AuditEventInput): void;
  writable(): boolean;
  flush(): Promise<void>;
}

/** Keeps events in memory (tests, `taskgate eval`). */
export class MemoryAuditSink implements AuditSink {
  readonly events: AuditEventInput[] = [];
  emit(ev: AuditEventInput): void {
    this.events.push(structuredClone(ev));
  }
  writable(): boolean {
    return true;
  }
  async flush(): Promise<void> {}
  ofType(t: AuditEventType): AuditEventInput[] {
    return this.events.filter((e) => e.type === t);
  }
}
