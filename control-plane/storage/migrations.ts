/**
 * The control plane's schema: one ordered list of migrations that runs
 * unchanged on PGlite and on PostgreSQL. Applied at start inside one
 * transaction holding an advisory lock, so replicas starting together do not
 * race. Never edit a released migration: append a new one.
 */
import type { Database } from './db.ts';

export interface Migration {
  version: number;
  name: string;
  sql: string;
}

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'tasks, review requests, approvals, grants, webhook outbox',
    sql: `
CREATE TABLE tasks (
  id          text PRIMARY KEY,
  type        text NOT NULL,
  assignee    text NOT NULL,
  reviewers   jsonb NOT NULL DEFAULT '[]',
  state       text NOT NULL CHECK (state IN ('open', 'closed', 'expired')),
  expires_at  timestamptz NOT NULL,
  ticket      text,
  title       text,
  source      text NOT NULL DEFAULT 'api',
  created_at  timestamptz NOT NULL,
  updated_at  timestamptz NOT NULL,
  ended_at    timestamptz
);
CREATE INDEX tasks_open_by_expiry ON tasks (expires_at) WHERE state = 'open';

CREATE TABLE review_requests (
  id              text PRIMARY KEY,
  task_id         text NOT NULL REFERENCES tasks (id),
  session_id      text NOT NULL,
  identity        jsonb NOT NULL,
  subject         text NOT NULL,
  acting_for      text,
  resource        jsonb NOT NULL,
  resource_name   text NOT NULL,
  protocol        text NOT NULL,
  command         text NOT NULL,
  summary         jsonb,
  fingerprint     text NOT NULL,
  reasons         jsonb NOT NULL,
  approvers       jsonb NOT NULL,
  min_approvals   integer NOT NULL CHECK (min_approvals >= 1),
  state           text NOT NULL CHECK (state IN ('pending', 'approved', 'denied', 'expired', 'cancelled')),
  requested_by    text NOT NULL,
  created_at      timestamptz NOT NULL,
  expires_at      timestamptz NOT NULL,
  decided_at      timestamptz,
  decided_by      jsonb NOT NULL DEFAULT '[]',
  decision_reason text,
  grant_until     timestamptz
);
CREATE INDEX review_requests_pending_by_expiry ON review_requests (expires_at) WHERE state = 'pending';
CREATE INDEX review_requests_by_task ON review_requests (task_id);

CREATE TABLE approvals (
  review_id   text NOT NULL REFERENCES review_requests (id),
  approver    text NOT NULL,
  decision    text NOT NULL CHECK (decision IN ('approve', 'deny')),
  kind        text NOT NULL CHECK (kind IN ('once', 'grant')),
  grant_s     integer,
  reason      text,
  created_at  timestamptz NOT NULL,
  PRIMARY KEY (review_id, approver)
);

CREATE TABLE grants (
  id          text PRIMARY KEY,
  review_id   text NOT NULL REFERENCES review_requests (id),
  task_id     text NOT NULL REFERENCES tasks (id),
  subject     text NOT NULL,
  resource    text NOT NULL,
  granted_by  jsonb NOT NULL,
  created_at  timestamptz NOT NULL,
  until       timestamptz NOT NULL,
  revoked_at  timestamptz
);
CREATE INDEX grants_live ON grants (task_id, subject, resource) WHERE revoked_at IS NULL;

CREATE TABLE webhook_deliveries (
  id               text PRIMARY KEY,
  target           text NOT NULL,
  event            text NOT NULL,
  payload          jsonb NOT NULL,
  state            text NOT NULL CHECK (state IN ('pending', 'delivered', 'failed')),
  attempts         integer NOT NULL DEFAULT 0,
  next_attempt_at  timestamptz NOT NULL,
  last_status      integer,
  last_error       text,
  created_at       timestamptz NOT NULL,
  delivered_at     timestamptz
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE state = 'pending';
`,
  },
];

/** Brings the schema up to date. Returns the versions it applied. */
export async function migrate(db: Database): Promise<number[]> {
  return db.tx(async (sql) => {
    await sql.query('SELECT pg_advisory_xact_lock(7306021)');
    await sql.query(
      'CREATE TABLE IF NOT EXISTS taskgate_migrations (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())',
    );
    const done = new Set((await sql.query<{ version: number }>('SELECT version FROM taskgate_migrations')).rows.map((r) => r.version));
    const applied: number[] = [];
    for (const m of MIGRATIONS) {
      if (done.has(m.version)) continue;
      for (const stmt of splitStatements(m.sql)) await sql.query(stmt);
      await sql.query('INSERT INTO taskgate_migrations (version, name) VALUES ($1, $2)', [m.version, m.name]);
      applied.push(m.version);
    }
    return applied;
  });
}

/** Our migrations hold plain DDL (no functions or quoted semicolons): statements end at `;`. */
function splitStatements(sql: string): string[] {
  return sql
    .split(/;\s*\n/)
    .map((s) => s.trim().replace(/;$/, ''))
    .filter(Boolean);
}
