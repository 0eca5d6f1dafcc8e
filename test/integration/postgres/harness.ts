/**
 * Test setup for the PostgreSQL sidecar: a real PostgreSQL server, a real
 * OIDC issuer (tokens verified by OidcAuthenticator through its JWKS), a
 * fixture policy compiled to WASM, the Gatekeeper with in-process reviews, and
 * the proxy on a free port. Clients are the real psql binary and the pg driver.
 */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { MemoryAuditSink } from '../../../core/audit/event.ts';
import { PolicyEngine } from '../../../core/engine/engine.ts';
import { Gatekeeper } from '../../../core/gate.ts';
import { OidcAuthenticator } from '../../../core/identity/oidc.ts';
import { InProcessReviews } from '../../../core/reviews.ts';
import { StaticTaskRegistry, type TaskRecord } from '../../../core/tasks.ts';
import { startOidcIssuer, type OidcIssuer } from '../../../devenv/oidc-issuer.ts';
import { startPostgres, type PgServer } from '../../../devenv/postgres.ts';
import type { SqlClassifier } from '../../../sidecar/postgres/classifier-port.ts';
import type { ResultMasking } from '../../../sidecar/postgres/masking-port.ts';
import { startPostgresProxy, type PostgresProxy, type PostgresProxyOptions } from '../../../sidecar/postgres/proxy.ts';
import { compileRego } from '../../support/bundles.ts';
import { psqlThroughSidecar } from '../../support/psql.ts';

const run = promisify(execFile);

/**
 * Fixture policy: the task must be open and assigned to the caller; DROP and
 * unparseable statements are denied; DELETE is held for review by the task's
 * reviewers; `support` tasks mask customers.card (partial) and
 * customers.email (redact); `limited` tasks get max_rows 5.
 */
export const FIXTURE_POLICY = `package taskgate
import rego.v1

masks := [{"column": "public.customers.card", "strategy": "partial", "keep": 4}, {"column": "customers.email", "strategy": "redact"}] if input.task.type == "support"
masks := [] if input.task.type != "support"
obligations := {"max_rows": 5} if input.task.type == "limited"
obligations := {} if input.task.type != "limited"
base := {"mask": masks, "obligations": obligations}

ok if {
  input.task.state == "open"
  input.identity.subject == input.task.assignee
}
denied contains s.command if { some s in input.request.statements; startswith(s.command, "DROP") }
denied contains "UNPARSEABLE" if { some s in input.request.statements; s.command == "UNPARSEABLE" }
denied contains "FUNCTION CALL" if input.request.message == "function_call"
denied contains "REPLICATION" if input.request.message == "replication"
held if { some s in input.request.statements; s.command == "DELETE" }

default decision := {"result": "deny", "reasons": ["task is unknown, not open, or not assigned to you"], "mask": [], "obligations": {}}
decision := object.union(base, {"result": "deny", "reasons": [sprintf("%s is not allowed for %s tasks", [concat(", ", denied), input.task.type])]}) if {
  ok
  count(denied) > 0
}
decision := object.union(base, {"result": "review", "reasons": ["DELETE needs review"],
  "review": {"approvers": input.task.reviewers, "min_approvals": 1, "timeout_s": 20}}) if {
  ok
  count(denied) == 0
  held
  input.review.status == "none"
}
decision := object.union(base, {"result": "allow", "reasons": ["approved DELETE"]}) if {
  ok
  count(denied) == 0
  held
  input.review.status == "approved"
}
decision := object.union(base, {"result": "allow", "reasons": ["allowed"]}) if {
  ok
  count(denied) == 0
  not held
}
`;

export const ALLOW_ALL_POLICY = `package taskgate
import rego.v1
decision := {"result": "allow", "reasons": ["allow all"], "mask": [], "obligations": {}}
`;

export function task(id: string, type: string, over: Partial<TaskRecord> = {}): TaskRecord {
  return {
    id,
    type,
    assignee: 'alice@example.com',
    reviewers: ['bob@example.com'],
    state: 'open',
    expires_at: new Date(Date.now() + 3600_000).toISOString(),
    ...over,
  };
}

export interface Harness {
  pg: PgServer;
  issuer: OidcIssuer;
  proxy: PostgresProxy;
  audit: MemoryAuditSink;
  reviews: InProcessReviews;
  tasks: StaticTaskRegistry;
  gate: Gatekeeper;
  alice: string;
  /** Connection settings for the pg driver through the proxy. */
  client(taskId: string, over?: Partial<pg.ClientConfig>): pg.Client;
  /** Runs psql through the proxy; returns stdout, stderr and exit code. */
  psql(taskId: string, args: string[], opts?: { input?: string; token?: string; env?: Record<string, string> }): Promise<{ stdout: string; stderr: string; code: number }>;
  stop(): Promise<void>;
}

export interface HarnessOptions {
  policy?: string;
  /** A compiled bundle (e.g. the reference policies) instead of `policy`. */
  policyBundle?: Buffer;
  classify?: SqlClassifier;
  masking?: (pg: PgServer) => ResultMasking;
  proxy?: Partial<PostgresProxyOptions>;
  pgUsers?: Parameters<typeof startPostgres>[0];
}

export async function startHarness(opts: HarnessOptions = {}): Promise<Harness> {
  const server = await startPostgres({
    users: [
      { name: 'taskgate_svc', password: 'svc-secret', method: 'scram-sha-256', superuser: true },
      // For raw direct sessions in tests (cleartext password method).
      { name: 'direct_pw', password: 'direct-secret', method: 'password', superuser: true },
      { name: 'md5_user', password: 'md5-secret', method: 'md5', superuser: true },
    ],
    ...opts.pgUsers,
  });
  const issuer = await startOidcIssuer();
  try {
    const engine = new PolicyEngine();
    await engine.load(opts.policyBundle ?? (await compileRego(opts.policy ?? FIXTURE_POLICY)));
    const tasks = new StaticTaskRegistry([task('OPS-1', 'data-fix'), task('SUP-1', 'support'), task('LIM-1', 'limited'), task('BOB-1', 'data-fix', { assignee: 'bob@example.com' })]);
    const reviews = new InProcessReviews();
    const audit = new MemoryAuditSink();
    const gate = new Gatekeeper({ engine, tasks, reviews, audit });
    const authenticator = await OidcAuthenticator.discover({ issuer: issuer.issuer, audience: issuer.audience, allowInsecureLoopback: true });
    const proxy = await startPostgresProxy({
      gate,
      authenticator,
      upstream: { host: server.host, port: server.port, user: 'taskgate_svc', password: 'svc-secret', database: 'postgres' },
      resource: { name: 'orders-db', labels: { env: 'test' } },
      ...(opts.classify ? { classify: opts.classify } : {}),
      ...(opts.masking ? { masking: opts.masking(server) } : {}),
      ...opts.proxy,
    });
    const alice = await issuer.token('alice@example.com');
    const psqlBin = join(server.bin, 'psql');
    return {
      pg: server,
      issuer,
      proxy,
      audit,
      reviews,
      tasks,
      gate,
      alice,
      client: (taskId, over = {}) =>
        new pg.Client({
          host: '127.0.0.1',
          port: proxy.address.port,
          user: 'alice',
          password: alice,
          database: 'postgres',
          options: `-c taskgate.task=${taskId}`,
          ...over,
        }),
      psql: (taskId, args, o = {}) =>
        psqlThroughSidecar({
          bin: psqlBin,
          port: proxy.address.port,
          token: o.token ?? alice,
          task: taskId,
          args: ['-X', '-q', ...args],
          ...(o.input !== undefined ? { input: o.input } : {}),
          env: { PGSSLMODE: 'disable', ...o.env },
        }),
      stop: async () => {
        await proxy.close();
        await issuer.stop();
        await server.stop();
      },
    };
  } catch (e) {
    await issuer.stop().catch(() => undefined);
    await server.stop().catch(() => undefined);
    throw e;
  }
}

export { run };
