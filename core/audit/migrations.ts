/**
 * Versioned ClickHouse schema for audit. One DDL text for every server: the
 * statements use only what both ClickHouse 18.16 (Debian's clickhouse-server)
 * and current ClickHouse (chDB 26.x) accept — DateTime('UTC') + a µs UInt64
 * instead of DateTime64, String instead of LowCardinality/JSON/Map,
 * ReplacingMergeTree keyed by the event id (queries use FINAL), and
 * AggregatingMergeTree summaries built from uniqExact states so a duplicate
 * delivery cannot inflate a count.
 *
 * Applied migrations are recorded in `audit_schema_migrations`; `migrate()`
 * applies the missing ones in order and never drops data.
 */
import type { AuditStore } from './store.ts';

export interface Migration {
  version: number;
  name: string;
  statements: string[];
}

export const EVENTS_COLUMNS = `
  seq UInt64,
  schema_version UInt16,
  id UUID,
  ts DateTime('UTC'),
  ts_us UInt64,
  source String,
  type String,
  session_id String,
  task_id String,
  task_type String,
  subject String,
  groups Array(String),
  identity_type String,
  acting_for String,
  resource String,
  protocol String,
  command String,
  fingerprint String,
  decision String,
  reasons Array(String),
  policy_revision String,
  review_id String,
  approvers Array(String),
  rows UInt64,
  bytes UInt64,
  masked_fields Array(String),
  masked_counts Array(UInt64),
  duration_us UInt64,
  client_addr String,
  details String,
  prev_hash String,
  hash String`;

const taskSummarySelect = (extraWhere = '') => `SELECT
    task_id,
    maxState(task_type) AS task_type,
    uniqExactState(id) AS events,
    uniqExactIfState(id, type = 'decision') AS decisions,
    uniqExactIfState(id, type = 'decision' AND decision = 'deny') AS denied,
    uniqExactIfState(id, type = 'review_approved') AS approvals,
    uniqExactState(session_id) AS sessions,
    groupUniqArrayState(subject) AS subjects,
    minState(ts) AS first_ts,
    maxState(ts) AS last_ts
  FROM events
  WHERE task_id != ''${extraWhere}
  GROUP BY task_id`;

const deniedSelect = (extraWhere = '') => `SELECT
    toDate(ts) AS day,
    subject,
    task_id,
    resource,
    protocol,
    uniqExactState(id) AS attempts,
    maxState(ts) AS last_ts
  FROM events
  WHERE type = 'decision' AND decision = 'deny'${extraWhere}
  GROUP BY day, subject, task_id, resource, protocol`;

const TASK_SUMMARY_SELECT = taskSummarySelect();
const DENIED_SELECT = deniedSelect();

/** Schema version from which the summary views exist. */
export const SUMMARIES_SINCE = 4;

/**
 * Re-applies the summary views to events already stored (one source, a
 * sequence range). ClickHouse fills a materialized view in a separate step of
 * the same INSERT: a server killed between the two keeps the events but not
 * their summary rows. The shipper calls this for events its re-check found
 * already stored; every summary column is an idempotent aggregate state
 * (uniqExact, min, max, groupUniqArray), so repeating rows never counts twice.
 */
export async function repairSummaries(store: AuditStore, source: string, firstSeq: number, lastSeq: number): Promise<void> {
  const src = source.replace(/\\/g, '\\\\').replace(/'/g, "\\'");
  const where = ` AND source = '${src}' AND seq BETWEEN ${Math.floor(firstSeq)} AND ${Math.floor(lastSeq)}`;
  await store.exec(`INSERT INTO task_summary ${taskSummarySelect(where)}`);
  await store.exec(`INSERT INTO denied_attempts ${deniedSelect(where)}`);
}

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'events',
    statements: [
      `CREATE TABLE IF NOT EXISTS events (${EVENTS_COLUMNS}
) ENGINE = ReplacingMergeTree() PARTITION BY toYYYYMM(ts) ORDER BY id`,
    ],
  },
  {
    version: 2,
    name: 'recordings',
    statements: [
      `CREATE TABLE IF NOT EXISTS recordings (
  spool_seq UInt64,
  id UUID,
  ts DateTime('UTC'),
  ts_us UInt64,
  source String,
  session_id String,
  kind String,
  seq UInt64,
  data String
) ENGINE = ReplacingMergeTree() PARTITION BY toYYYYMM(ts) ORDER BY (session_id, kind, seq, id)`,
    ],
  },
  {
    version: 3,
    name: 'task_summary',
    statements: [
      `CREATE TABLE IF NOT EXISTS task_summary (
  task_id String,
  task_type AggregateFunction(max, String),
  events AggregateFunction(uniqExact, UUID),
  decisions AggregateFunction(uniqExactIf, UUID, UInt8),
  denied AggregateFunction(uniqExactIf, UUID, UInt8),
  approvals AggregateFunction(uniqExactIf, UUID, UInt8),
  sessions AggregateFunction(uniqExact, String),
  subjects AggregateFunction(groupUniqArray, String),
  first_ts AggregateFunction(min, DateTime('UTC')),
  last_ts AggregateFunction(max, DateTime('UTC'))
) ENGINE = AggregatingMergeTree() ORDER BY task_id`,
      `CREATE MATERIALIZED VIEW IF NOT EXISTS task_summary_mv TO task_summary AS ${TASK_SUMMARY_SELECT}`,
      // Backfill what was stored before the view existed; uniqExact states make overlap harmless.
      `INSERT INTO task_summary ${TASK_SUMMARY_SELECT}`,
    ],
  },
  {
    version: 4,
    name: 'denied_attempts',
    statements: [
      `CREATE TABLE IF NOT EXISTS denied_attempts (
  day Date,
  subject String,
  task_id String,
  resource String,
  protocol String,
  attempts AggregateFunction(uniqExact, UUID),
  last_ts AggregateFunction(max, DateTime('UTC'))
) ENGINE = AggregatingMergeTree() PARTITION BY toYYYYMM(day) ORDER BY (day, subject, task_id, resource, protocol)`,
      `CREATE MATERIALIZED VIEW IF NOT EXISTS denied_attempts_mv TO denied_attempts AS ${DENIED_SELECT}`,
      `INSERT INTO denied_attempts ${DENIED_SELECT}`,
    ],
  },
];

export const LATEST_SCHEMA_VERSION = MIGRATIONS[MIGRATIONS.length - 1]!.version;
/** Schema version a table needs before the shipper may write to it (older = fields would be dropped). */
export const SHIP_REQUIRES: Record<string, number> = { events: 1, recordings: 2 };

const MIGRATIONS_TABLE = `CREATE TABLE IF NOT EXISTS audit_schema_migrations (
  version UInt32,
  name String,
  applied_at DateTime('UTC')
) ENGINE = MergeTree() ORDER BY version`;

export async function schemaVersion(store: AuditStore): Promise<number> {
  await store.exec(MIGRATIONS_TABLE);
  const r = await store.rows<{ v: string | number }>('SELECT max(version) AS v FROM audit_schema_migrations');
  return Number(r[0]?.v ?? 0);
}

export interface MigrateResult {
  from: number;
  to: number;
  applied: string[];
}

/** Applies every migration newer than the store's version, up to `target` (default: latest). */
export async function migrate(store: AuditStore, target = LATEST_SCHEMA_VERSION): Promise<MigrateResult> {
  const from = await schemaVersion(store);
  const applied: string[] = [];
  for (const m of MIGRATIONS) {
    if (m.version <= from || m.version > target) continue;
    for (const sql of m.statements) await store.exec(sql);
    await store.exec(`INSERT INTO audit_schema_migrations SELECT ${m.version}, '${m.name}', now()`);
    applied.push(`${m.version} ${m.name}`);
  }
  return { from, to: Math.max(from, Math.min(target, LATEST_SCHEMA_VERSION)), applied };
}
