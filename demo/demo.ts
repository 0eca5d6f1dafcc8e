/**
 * `taskgate demo`: the main job end to end on embedded defaults, with real
 * parts only: PostgreSQL (Debian's server), an OIDC issuer (oidc-provider),
 * the control plane on PGlite, the sidecar with the reference policies
 * compiled to WebAssembly, the audit spool queried with chDB.
 *
 * It plays a short story (an allowed query with masked card numbers, a denied
 * DROP, an UPDATE held until the reviewer approves, the task's audit
 * timeline) and then leaves everything running for the user to try by hand.
 */
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import pg from 'pg';
import { buildBundle } from '../compiler/build.ts';
import { SpoolAuditSink } from '../core/audit/spool-sink.ts';
import { ChdbStore } from '../core/audit/store.ts';
import { migrate } from '../core/audit/migrations.ts';
import { loadSpool, taskTimelineSql } from '../core/audit/query.ts';
import { TaskgateConfig } from '../core/config/schema.ts';
import { OidcAuthenticator } from '../core/identity/oidc.ts';
import { createLogger, silentLogger } from '../core/log.ts';
import { startControlPlane, type ControlPlane } from '../control-plane/server.ts';
import { connectControlPlane } from '../control-plane/client/connect.ts';
import { startPostgres, type PgServer } from '../devenv/postgres.ts';
import { startOidcIssuer, type OidcIssuer } from '../devenv/oidc-issuer.ts';
import { freePort } from '../devenv/net.ts';
import { startSidecar, type Sidecar } from '../sidecar/runtime.ts';
import { packageRoot } from '../core/package-root.ts';

export interface DemoOptions {
  /** Working directory for bundle, spool and PGlite (default .taskgate/demo). */
  dir?: string;
  /** Stop after the story instead of waiting for Ctrl-C. */
  exit?: boolean;
  /** Preferred sidecar port (default 15432; a free one if busy). */
  port?: number;
  out?: (s: string) => void;
  verbose?: boolean;
}

const REPO = packageRoot();
const bold = (s: string) => (process.stdout.isTTY ? `\x1b[1m${s}\x1b[0m` : s);
const dim = (s: string) => (process.stdout.isTTY ? `\x1b[2m${s}\x1b[0m` : s);

async function portOr(preferred: number): Promise<number> {
  const { createServer } = await import('node:net');
  return new Promise((res) => {
    const s = createServer();
    s.once('error', () => void freePort().then(res));
    s.listen(preferred, '127.0.0.1', () => s.close(() => res(preferred)));
  });
}

const SEED = `
CREATE TABLE public.customers (id int PRIMARY KEY, name text NOT NULL, email text NOT NULL);
CREATE TABLE public.orders (
  id int PRIMARY KEY, customer_id int REFERENCES public.customers(id),
  card_number text NOT NULL, amount numeric(10,2) NOT NULL, status text NOT NULL);
INSERT INTO public.customers VALUES
  (1, 'Jane Roe', 'jane.roe@example.com'), (2, 'John Doe', 'john.doe@example.org'), (3, 'Ana Lima', 'ana@example.net');
INSERT INTO public.orders VALUES
  (41, 1, '4111 1111 1111 1111', 129.90, 'paid'),
  (42, 2, '5500 0055 5555 5559', 18.50, 'paid'),
  (43, 3, '4012 8888 8888 1881', 42.00, 'shipped');
`;

export async function runDemo(opts: DemoOptions = {}): Promise<{ close: () => Promise<void> }> {
  const out = opts.out ?? ((s: string) => process.stdout.write(s));
  const dir = resolve(opts.dir ?? '.taskgate/demo');
  const log = opts.verbose ? createLogger({ format: 'text' }) : silentLogger;
  const closers: (() => Promise<unknown>)[] = [];
  const close = async () => {
    for (const c of closers.reverse()) await c().catch(() => undefined);
  };
  const total = 5;
  let n = 0;
  const step = async <T>(what: string, f: () => Promise<T>, done: (t: T) => string): Promise<T> => {
    n++;
    out(`${dim(`[${n}/${total}]`)} ${what} ... `);
    const t0 = Date.now();
    const v = await f();
    out(`${done(v)} ${dim(`(${((Date.now() - t0) / 1000).toFixed(1)} s)`)}\n`);
    return v;
  };

  try {
    out(`${bold('taskgate demo')}: a database session bound to a task, end to end\n\n`);
    await rm(dir, { recursive: true, force: true });
    await mkdir(dir, { recursive: true });

    const bundle = join(dir, 'bundle.tar.gz');
    const built = await step('compiling the reference policies (policies/) to WebAssembly', () => buildBundle({ dir: join(REPO, 'policies'), out: bundle }), (b) => `ok, revision ${b.revision}`);

    const db: PgServer = await step(
      'starting PostgreSQL (the real server) with demo data',
      async () => {
        const s = await startPostgres({ users: [{ name: 'taskgate_svc', password: 'only-taskgate-knows-this', method: 'scram-sha-256', superuser: true }] });
        closers.push(() => s.stop());
        await s.psql(SEED);
        return s;
      },
      (s) => `ok, 127.0.0.1:${s.port}`,
    );

    const idp: OidcIssuer = await step(
      'starting an OIDC issuer (oidc-provider) with users alice and bob',
      async () => {
        const i = await startOidcIssuer();
        closers.push(() => i.stop());
        return i;
      },
      (i) => `ok, ${i.issuer}`,
    );
    const authenticator = await OidcAuthenticator.discover({ issuer: idp.issuer, audience: idp.audience, allowInsecureLoopback: true });

    const cpAudit = await SpoolAuditSink.open({ dir: join(dir, 'spool-control-plane', 'events'), fsync: 'none' });
    closers.push(() => cpAudit.close());
    const sidecarToken = 'demo-sidecar-token';
    const cp: ControlPlane = await step(
      'starting the control plane (tasks, reviews, web inbox) on PGlite',
      async () => {
        const c = await startControlPlane({
          port: opts.port === 0 ? 0 : await portOr(7878),
          storage: { kind: 'pglite', dataDir: join(dir, 'control-plane') },
          authenticator,
          serviceTokens: [{ name: 'sidecar-demo', token: sidecarToken }],
          admins: ['alice@example.com', 'bob@example.com'],
          audit: cpAudit,
          log,
        });
        closers.push(() => c.close());
        return c;
      },
      (c) => `ok, ${c.url}/inbox`,
    );
    const aliceToken = await idp.token('alice@example.com');
    const bobToken = await idp.token('bob@example.com');
    const api = async (path: string, token: string, body?: unknown) => {
      const res = await fetch(`${cp.url}/api/v1${path}`, {
        method: body === undefined ? 'GET' : 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
      const j = (await res.json()) as Record<string, unknown>;
      if (!res.ok) throw new Error(`control plane ${path}: ${JSON.stringify(j)}`);
      return j;
    };
    await api('/tasks', aliceToken, {
      id: 'OPS-123',
      type: 'data-fix',
      assignee: 'alice@example.com',
      reviewers: ['bob@example.com'],
      title: 'Refund order 42 (double charge)',
      ticket: 'https://tracker.example.com/OPS-123',
      ttl_s: 4 * 3600,
    });
    out(`      task ${bold('OPS-123')} (data-fix): assignee alice@example.com, reviewer bob@example.com\n`);

    const port = opts.port === 0 ? await freePort() : await portOr(opts.port ?? 15432);
    await writeFile(join(dir, 'upstream-password'), 'only-taskgate-knows-this\n', { mode: 0o600 });
    const config = TaskgateConfig.parse({
      policy: { bundle },
      identity: { issuer: idp.issuer, audience: idp.audience, allow_insecure_loopback: true },
      control_plane: { url: cp.url, token_file: join(dir, 'sidecar-token') },
      audit: { spool_dir: join(dir, 'spool-sidecar'), fsync: 'none' },
      metrics: { listen: '127.0.0.1:0' },
      postgres: [
        {
          name: 'orders-db',
          listen: `127.0.0.1:${port}`,
          labels: { env: 'demo' },
          upstream: { host: '127.0.0.1', port: db.port, database: 'postgres', user: 'taskgate_svc', password_file: 'upstream-password' },
        },
      ],
    });
    await writeFile(join(dir, 'sidecar-token'), sidecarToken + '\n', { mode: 0o600 });
    const client = connectControlPlane({ url: cp.url, token: sidecarToken, log });
    closers.push(() => client.close());
    await client.ready(10_000);
    const sc: Sidecar = await step(
      'starting the sidecar (policy on every statement, masking, review hold, audit)',
      async () => {
        const s = await startSidecar(config, dir, { authenticator, tasks: client.tasks, reviews: client.reviews, log });
        closers.push(() => s.close());
        return s;
      },
      (s) => `ok, PostgreSQL listener ${s.listening[0]?.address}`,
    );

    // ---- the story -------------------------------------------------------------------
    out(`\n${bold('The story')}: alice fixes a double charge under task OPS-123, with her usual PostgreSQL client.\n`);
    const alice = new pg.Client({ host: '127.0.0.1', port, user: 'alice', database: 'postgres', password: aliceToken, options: '-c taskgate.task=OPS-123' });
    alice.on('notice', (m) => out(`     ${dim('NOTICE')} ${m.message}\n`));
    // Her connection can end under her while the demo stays up: Ctrl-C in a terminal signals the whole
    // process group, so PostgreSQL shuts down (terminating sessions) while the demo is stopping too.
    let aliceEnded = false;
    alice.on('error', (e) => {
      if (!aliceEnded) out(`     ${dim(`alice's demo session ended: ${e.message}`)}\n`);
      aliceEnded = true;
    });
    await alice.connect();
    closers.push(() => ((aliceEnded = true), alice.end()));
    const say = (sql: string) => out(`\n  ${bold('alice=>')} ${sql}\n`);

    let sql = 'SELECT o.id, c.email, o.card_number, o.amount FROM orders o JOIN customers c ON c.id = o.customer_id ORDER BY o.id';
    say(sql);
    const r1 = await alice.query(sql);
    out(`     ${bold('allowed')}; card numbers and emails are masked by the task type's rules:\n`);
    for (const row of r1.rows as Record<string, unknown>[]) out(`       ${row.id} | ${row.email} | ${row.card_number} | ${row.amount}\n`);

    sql = 'DROP TABLE orders';
    say(sql);
    try {
      await alice.query(sql);
      out('     unexpectedly allowed\n');
    } catch (e) {
      const err = e as { code?: string; message: string };
      out(`     ${bold('denied')} (SQLSTATE ${err.code}): ${err.message}\n`);
    }

    sql = "UPDATE orders SET status = 'refunded' WHERE id = 42";
    say(sql);
    const pending = alice.query(sql);
    let reviewId = '';
    for (let i = 0; i < 200 && !reviewId; i++) {
      const r = (await api('/reviews?task_id=OPS-123', bobToken)) as { reviews: { id: string }[] };
      reviewId = r.reviews[0]?.id ?? '';
      if (!reviewId) await new Promise((res) => setTimeout(res, 50));
    }
    if (!reviewId) throw new Error('the UPDATE was not held for review');
    out(`     ${bold('held')} for review ${reviewId}; bob approves it (as he would in the inbox) ...\n`);
    const t0 = Date.now();
    await api(`/reviews/${reviewId}/approve`, bobToken, { reason: 'matches the ticket: refund order 42' });
    const r3 = await pending;
    out(`     ${bold('done')}: ${r3.command} ${r3.rowCount}, ${Date.now() - t0} ms after the approval\n`);

    // ---- the evidence ------------------------------------------------------------------------
    await sc.audit.flush();
    await cpAudit.flush();
    out(`\n${bold('The evidence')}: OPS-123's audit timeline (${dim('taskgate audit task OPS-123')}), SQL over the audit spool with chDB:\n\n`);
    const store = await ChdbStore.open();
    try {
      await migrate(store);
      await loadSpool(store, join(dir, 'spool-sidecar', 'events'), 'events');
      await loadSpool(store, join(dir, 'spool-control-plane', 'events'), 'events');
      const text = await store.text(
        `SELECT time, type, subject, command, decision, approvers FROM (${taskTimelineSql('OPS-123')}) WHERE type IN ('decision', 'review_requested', 'review_approved', 'task_created')`,
        'PrettyCompactNoEscapes',
      );
      out(text.replace(/^/gm, '  '));
    } finally {
      await store.close();
    }

    await writeFile(join(dir, 'alice.token'), aliceToken + '\n', { mode: 0o600 });
    await writeFile(join(dir, 'bob.token'), bobToken + '\n', { mode: 0o600 });
    if (opts.exit) {
      out(`\n${bold('Done.')} Run ${bold('npm run demo')} without --exit to keep the services up and try psql and the reviewer inbox by hand.\n`);
      return { close };
    }
    out(`
${bold('Everything is still running.')} Try it yourself (another terminal):

  ${bold('psql as alice')}   PGPASSWORD=$(cat ${join(dir, 'alice.token')}) PGOPTIONS='-c taskgate.task=OPS-123' \\
                  psql -h 127.0.0.1 -p ${port} -U alice postgres
  ${bold('reviewer inbox')}  ${cp.url}/inbox   (sign in as bob with the token in ${join(dir, 'bob.token')})
  ${bold('audit')}           node bin/taskgate.js audit task OPS-123 --spool ${join(dir, 'spool-sidecar')}
  ${bold('metrics')}         ${sc.metricsUrl}/metrics
  policy revision ${built.revision}; tokens are valid for one hour.
`);
    return { close };
  } catch (e) {
    await close();
    throw e;
  }
}
