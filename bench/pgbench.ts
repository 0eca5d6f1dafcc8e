/**
 * pgbench through three paths in one run, same clients and duration:
 *   direct PostgreSQL  vs  pgbouncer (transaction pooling)  vs  taskgate
 * for the select-only script (-S) and the default TPC-B-like script.
 *
 * taskgate runs with a policy evaluated on every statement (decision cache on,
 * as in production), real OIDC token verification at connect, and mask rules
 * active on every result (a column rule + the card detector over every value).
 *
 * Latency: pgbench --log writes one line per transaction with its latency in
 * µs; p50/p99 are computed over all transactions of a run. "Added" latency is
 * the path's percentile minus direct's percentile in the same run.
 *
 *   node --import tsx bench/pgbench.ts [--seconds 10] [--clients 8]
 */
import { execFile, spawn } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, writeFile, chmod } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { serialize } from 'pg-protocol';
import type { AuditEventInput, AuditSink } from '../core/audit/event.ts';
import { PolicyEngine } from '../core/engine/engine.ts';
import { Gatekeeper } from '../core/gate.ts';
import { OidcAuthenticator } from '../core/identity/oidc.ts';
import { InProcessReviews } from '../core/reviews.ts';
import { StaticTaskRegistry } from '../core/tasks.ts';
import { freePort, waitFor } from '../devenv/net.ts';
import { startOidcIssuer } from '../devenv/oidc-issuer.ts';
import { startPostgres } from '../devenv/postgres.ts';
import { startPostgresProxy } from '../sidecar/postgres/proxy.ts';
import { compileRego } from '../test/support/bundles.ts';
import { rawSession } from '../test/integration/postgres/raw-client.ts';

const run = promisify(execFile);
const arg = (name: string, def: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : def;
};
const SECONDS = arg('seconds', 10);
const CLIENTS = arg('clients', 8);
/** --only taskgate|direct|pgbouncer and --script select-only|tpcb-like: profiling runs. */
const ONLY = (() => {
  const i = process.argv.indexOf('--only');
  return i >= 0 ? process.argv[i + 1] : undefined;
})();
const SCRIPT = (() => {
  const i = process.argv.indexOf('--script');
  return i >= 0 ? process.argv[i + 1] : undefined;
})();

const POLICY = `package taskgate
import rego.v1
decision := {"result": "allow", "reasons": ["bench"], "obligations": {},
  "mask": [{"column": "public.pgbench_accounts.filler", "strategy": "redact"}, {"detector": "card", "strategy": "partial"}]} if {
  input.identity.subject == input.task.assignee
  every s in input.request.statements { not startswith(s.command, "DROP") }
}
default decision := {"result": "deny", "reasons": ["not allowed"], "mask": [], "obligations": {}}
`;

/** Counts events (the bench measures the data path, not a spool's disk). */
class CountingSink implements AuditSink {
  n = 0;
  emit(_ev: AuditEventInput): void {
    this.n++;
  }
  writable(): boolean {
    return true;
  }
  async flush(): Promise<void> {}
}

interface Result {
  tps: number;
  p50: number;
  p99: number;
  n: number;
}

function pct(sorted: number[], p: number): number {
  if (!sorted.length) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

async function pgbench(bin: string, port: number, user: string, env: Record<string, string>, script: string[]): Promise<Result> {
  const dir = await mkdtemp(join(tmpdir(), 'tg-pgbench-log-'));
  try {
    const r = await run(
      join(bin, 'pgbench'),
      [...script, '-n', '-c', String(CLIENTS), '-j', '2', '-T', String(SECONDS), '--log', `--log-prefix=${join(dir, 'tx')}`, '-h', '127.0.0.1', '-p', String(port), '-U', user, 'postgres'],
      { env: { ...process.env, ...env }, maxBuffer: 16 << 20, timeout: (SECONDS + 60) * 1000 },
    );
    const tps = Number(/tps = ([\d.]+)/.exec(r.stdout)?.[1] ?? NaN);
    const lat: number[] = [];
    for (const f of await readdir(dir)) {
      for (const line of (await readFile(join(dir, f), 'utf8')).split('\n')) {
        const us = Number(line.split(' ')[2]);
        if (Number.isFinite(us) && line) lat.push(us);
      }
    }
    lat.sort((a, b) => a - b);
    return { tps, p50: pct(lat, 50) / 1000, p99: pct(lat, 99) / 1000, n: lat.length };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

async function startPgbouncer(pgPort: number): Promise<{ port: number; stop(): Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'tg-pgbouncer-'));
  await chmod(dir, 0o777);
  const port = await freePort();
  await writeFile(join(dir, 'users.txt'), '"bench" "bench-secret"\n');
  await writeFile(
    join(dir, 'pgbouncer.ini'),
    `[databases]
postgres = host=127.0.0.1 port=${pgPort} dbname=postgres
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = ${port}
unix_socket_dir =
auth_type = plain
auth_file = ${join(dir, 'users.txt')}
pool_mode = transaction
max_client_conn = 200
default_pool_size = ${CLIENTS}
logfile = ${join(dir, 'pgbouncer.log')}
pidfile = ${join(dir, 'pgbouncer.pid')}
`,
  );
  await run('chmod', ['-R', 'a+rwX', dir]);
  const asRoot = process.getuid?.() === 0;
  const child = asRoot
    ? spawn('runuser', ['-u', 'postgres', '--', 'pgbouncer', join(dir, 'pgbouncer.ini')], { stdio: 'ignore' })
    : spawn('pgbouncer', [join(dir, 'pgbouncer.ini')], { stdio: 'ignore' });
  await waitFor(async () => {
    try {
      await run('pg_isready', ['-h', '127.0.0.1', '-p', String(port), '-q']);
      return true;
    } catch {
      return false;
    }
  }, 15_000);
  return {
    port,
    stop: async () => {
      child.kill('SIGINT');
      await new Promise((r) => setTimeout(r, 300));
      await rm(dir, { recursive: true, force: true });
    },
  };
}

async function main(): Promise<void> {
  const pg = await startPostgres({
    users: [{ name: 'bench', password: 'bench-secret', method: 'scram-sha-256', superuser: true }],
  });
  const issuer = await startOidcIssuer();
  const bouncer = await startPgbouncer(pg.port);
  const engine = new PolicyEngine();
  await engine.load(await compileRego(POLICY));
  const tasks = new StaticTaskRegistry([
    { id: 'BENCH-1', type: 'bench', assignee: 'alice@example.com', reviewers: [], state: 'open', expires_at: new Date(Date.now() + 3600_000).toISOString() },
  ]);
  const audit = new CountingSink();
  const gate = new Gatekeeper({ engine, tasks, reviews: new InProcessReviews(), audit });
  const proxy = await startPostgresProxy({
    gate,
    authenticator: await OidcAuthenticator.discover({ issuer: issuer.issuer, audience: issuer.audience, allowInsecureLoopback: true }),
    upstream: { host: '127.0.0.1', port: pg.port, user: 'bench', password: 'bench-secret', database: 'postgres' },
    resource: { name: 'bench-db' },
  });
  const token = await issuer.token('alice@example.com');
  try {
    await run(join(pg.bin, 'pgbench'), ['-i', '-s', '10', '-q', '-h', '127.0.0.1', '-p', String(pg.port), '-U', 'bench', 'postgres'], {
      env: { ...process.env, PGPASSWORD: 'bench-secret' },
    });
    const targets = {
      direct: { port: pg.port, user: 'bench', env: { PGPASSWORD: 'bench-secret' } },
      pgbouncer: { port: bouncer.port, user: 'bench', env: { PGPASSWORD: 'bench-secret' } },
      taskgate: { port: proxy.address.port, user: 'alice', env: { PGPASSWORD: token, PGOPTIONS: '-c taskgate.task=BENCH-1' } },
    } as const;
    const scripts: [string, string[]][] = [
      ['select-only', ['-S']],
      ['tpcb-like', []],
      // Prepared statements: the decision is taken at Parse and remembered (no per-execution parse).
      ['select-only -M prepared', ['-S', '-M', 'prepared']],
    ];
    console.log(`pgbench: ${CLIENTS} clients, ${SECONDS} s per run, scale 10; loopback; shared noisy machine`);
    const rows: string[] = [];
    for (const [sname, sargs] of scripts) {
      if (SCRIPT && SCRIPT !== sname) continue;
      const res: Record<string, Result> = {};
      for (const [tname, t] of Object.entries(targets)) {
        if (ONLY && ONLY !== tname) continue;
        // pgbouncer's transaction pooling does not carry protocol-level prepared statements across transactions.
        if (tname === 'pgbouncer' && sargs.includes('prepared')) continue;
        res[tname] = await pgbench(pg.bin, t.port, t.user, t.env, sargs);
        console.log(`  ${sname.padEnd(24)} ${tname.padEnd(10)} tps ${res[tname]!.tps.toFixed(0).padStart(7)}  p50 ${res[tname]!.p50.toFixed(3)} ms  p99 ${res[tname]!.p99.toFixed(3)} ms  (${res[tname]!.n} tx)`);
      }
      if (ONLY) continue;
      const d = res.direct!;
      const b = res.pgbouncer;
      const g = res.taskgate!;
      const na = 'n/a';
      rows.push(
        `| ${sname} | ${d.tps.toFixed(0)} | ${b ? b.tps.toFixed(0) : na} | ${g.tps.toFixed(0)} | ${(g.tps / d.tps).toFixed(2)} | ${b ? (g.tps / b.tps).toFixed(2) : na} | ${b ? `${(b.p50 - d.p50).toFixed(3)} / ${(b.p99 - d.p99).toFixed(3)}` : na} | ${(g.p50 - d.p50).toFixed(3)} / ${(g.p99 - d.p99).toFixed(3)} |`,
      );
    }
    console.log('\n| script | direct tps | pgbouncer tps | taskgate tps | taskgate/direct | taskgate/pgbouncer | pgbouncer added p50/p99 ms | taskgate added p50/p99 ms |');
    console.log('| --- | --- | --- | --- | --- | --- | --- | --- |');
    for (const r of rows) console.log(r);
    console.log(`\naudit events emitted by taskgate: ${audit.n}`);

    if (process.argv.includes('--no-large')) return;
    // RSS while streaming a large result through the proxy (this process hosts the proxy).
    const s = await rawSession(proxy.address.port, { user: 'alice', database: 'postgres', options: '-c taskgate.task=BENCH-1' }, token, false);
    const base = process.memoryUsage().rss;
    let peak = base;
    const timer = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 25);
    const t0 = performance.now();
    const r = await s.roundtrip(serialize.query("SELECT g, repeat('x', 200) FROM generate_series(1, 2000000) g"), undefined, 300_000);
    clearInterval(timer);
    s.close();
    const secs = (performance.now() - t0) / 1000;
    console.log(
      `large result through taskgate (mask rules active): ${(r.bytes / 1e6).toFixed(0)} MB in ${secs.toFixed(1)} s (${(r.bytes / 1e6 / secs).toFixed(0)} MB/s); RSS ${(base / 1e6).toFixed(0)} MB -> peak ${(peak / 1e6).toFixed(0)} MB`,
    );
  } finally {
    await proxy.close();
    await bouncer.stop();
    await issuer.stop();
    await pg.stop();
  }
}

main().then(() => process.exit(0), (e) => {
  console.error(e);
  process.exit(1);
});
