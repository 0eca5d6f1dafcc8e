import type { Command } from 'commander';
import { TaskgateError } from '../../core/errors.ts';
import { migrate } from '../../core/audit/migrations.ts';
import { DEFAULT_SPOOL, openQueryStore, spoolDirs, tailSql, taskTimelineSql, type AuditLocation } from '../../core/audit/query.ts';
import { rowToEvent, type AuditRow } from '../../core/audit/row.ts';
import { Shipper } from '../../core/audit/shipper.ts';
import { ClickHouseStore, type OutputFormat } from '../../core/audit/store.ts';
import { verifySpool, verifyStore, type VerifyReport } from '../../core/audit/verify.ts';
import { createLogger } from '../../core/log.ts';

interface LocOpts {
  clickhouse?: string;
  user?: string;
  password?: string;
  spool: string;
}

const FORMATS: Record<string, OutputFormat> = { table: 'PrettyCompactNoEscapes', json: 'JSONEachRow', csv: 'CSVWithNames', tsv: 'TabSeparatedWithNames' };

function location(o: LocOpts): AuditLocation {
  const loc: AuditLocation = { spool: o.spool };
  const url = o.clickhouse ?? process.env.TASKGATE_CLICKHOUSE_URL;
  if (url) loc.clickhouse = url;
  if (o.user) loc.username = o.user;
  const pw = o.password ?? process.env.TASKGATE_CLICKHOUSE_PASSWORD;
  if (pw) loc.password = pw;
  return loc;
}

function withLocation(cmd: Command): Command {
  return cmd
    .option('--clickhouse <url>', 'ClickHouse HTTP URL (env TASKGATE_CLICKHOUSE_URL); without it: chDB over the local spool')
    .option('--user <name>', 'ClickHouse user')
    .option('--password <pw>', 'ClickHouse password (env TASKGATE_CLICKHOUSE_PASSWORD)')
    .option('--spool <dir>', 'audit spool root', process.env.TASKGATE_AUDIT_SPOOL ?? DEFAULT_SPOOL);
}

function format(name: string): OutputFormat {
  const f = FORMATS[name];
  if (!f) throw new TaskgateError('input_invalid', `unknown output format ${name}: use table, json, csv or tsv`);
  return f;
}

/** `taskgate audit …`: migrate, query, task, tail, verify, ship. */
export function registerAuditCommands(program: Command): void {
  const audit = program.command('audit').description('audit events in ClickHouse (or chDB over the local spool)');

  withLocation(audit.command('migrate').description('create or upgrade the audit tables and views (versioned)')).action(async (o: LocOpts) => {
    const loc = location(o);
    if (!loc.clickhouse) throw new TaskgateError('config_invalid', 'audit migrate needs a ClickHouse server', { hint: 'pass --clickhouse http://host:8123 or set TASKGATE_CLICKHOUSE_URL (the embedded chDB store migrates itself)' });
    const store = await openQueryStore(loc);
    try {
      const r = await migrate(store);
      process.stdout.write(
        r.applied.length ? `schema ${r.from} -> ${r.to}: applied ${r.applied.join(', ')}\n` : `schema is at version ${r.to}: nothing to do\n`,
      );
    } finally {
      await store.close();
    }
  });

  withLocation(audit.command('query').description('run SQL over the audit tables').argument('<sql>', 'ClickHouse SQL'))
    .option('-f, --format <fmt>', 'table | json | csv | tsv', 'table')
    .action(async (sql: string, o: LocOpts & { format: string }) => {
      const fmt = format(o.format);
      const store = await openQueryStore(location(o));
      try {
        process.stdout.write(await store.text(sql.trim().replace(/;\s*$/, ''), fmt));
      } finally {
        await store.close();
      }
    });

  withLocation(audit.command('task').description("a task's timeline: who, what, decisions, approvals, sessions").argument('<task-id>'))
    .option('-f, --format <fmt>', 'table | json | csv | tsv', 'table')
    .action(async (taskId: string, o: LocOpts & { format: string }) => {
      const fmt = format(o.format);
      const store = await openQueryStore(location(o));
      try {
        const out = await store.text(taskTimelineSql(taskId), fmt);
        if (!out.trim()) throw new TaskgateError('not_found', `no audit events for task ${taskId}`);
        process.stdout.write(out);
      } finally {
        await store.close();
      }
    });

  withLocation(audit.command('tail').description('print the newest events, then follow new ones'))
    .option('-n, --lines <n>', 'events to show first', '20')
    .option('--no-follow', 'print and exit')
    .option('--json', 'one JSON event per line')
    .option('--interval <ms>', 'poll interval', '1000')
    .action(async (o: LocOpts & { lines: string; follow: boolean; json?: boolean; interval: string }) => {
      await tail(location(o), Number(o.lines), o.follow, o.json === true, Number(o.interval));
    });

  withLocation(audit.command('verify').description('verify the hash chain (detects removed or altered events)'))
    .option('--source <id>', 'only this sidecar source')
    .option('--spool-only', 'verify the local spool segments instead of the store')
    .action(async (o: LocOpts & { source?: string; spoolOnly?: boolean }) => {
      const loc = location(o);
      let rep: VerifyReport;
      if (o.spoolOnly) rep = await verifySpool(spoolDirs(loc.spool).events);
      else {
        const store = await openQueryStore(loc);
        try {
          rep = await verifyStore(store, o.source ? { source: o.source } : {});
        } finally {
          await store.close();
        }
      }
      for (const s of rep.sources) process.stdout.write(`source ${s.source}: ${s.events} events, seq ${s.first_seq}..${s.last_seq}\n`);
      for (const p of rep.problems) process.stdout.write(`${p.kind.toUpperCase()} source ${p.source} seq ${p.seq} ${p.id}: ${p.detail}\n`);
      const dmg = (rep as { damaged_bytes?: number }).damaged_bytes;
      if (dmg) process.stdout.write(`DAMAGED ${dmg} bytes of spool records failed their checksum\n`);
      if (!rep.ok) {
        process.exitCode = 2;
        process.stderr.write(`chain verification FAILED: ${rep.problems.length} problem(s)\n`);
      } else process.stdout.write('chain OK\n');
    });

  withLocation(audit.command('ship').description('deliver the spool to ClickHouse (runs until stopped; --once drains and exits)'))
    .option('--once', 'ship what is in the spool now, then exit')
    .option('--migrate', 'apply migrations first')
    .action(async (o: LocOpts & { once?: boolean; migrate?: boolean }) => {
      const loc = location(o);
      if (!loc.clickhouse) throw new TaskgateError('config_invalid', 'audit ship needs --clickhouse <url> (or TASKGATE_CLICKHOUSE_URL)');
      const store = new ClickHouseStore({ url: loc.clickhouse, ...(loc.username ? { username: loc.username } : {}), ...(loc.password ? { password: loc.password } : {}) });
      const log = createLogger({ base: { component: 'audit-shipper' } });
      const dirs = spoolDirs(loc.spool);
      const shippers = [
        new Shipper({ dir: dirs.events, store, table: 'events', migrate: o.migrate === true, log }),
        new Shipper({ dir: dirs.recordings, store, table: 'recordings', migrate: o.migrate === true, log }),
      ];
      try {
        if (o.once) {
          for (const s of shippers) await s.drain(10 * 60_000);
          for (const s of shippers) process.stdout.write(`${s.table}: shipped ${s.stats.shipped}, damaged ranges ${s.stats.damaged.length}\n`);
        } else {
          for (const s of shippers) s.start();
          await new Promise<void>((r) => {
            process.once('SIGINT', r);
            process.once('SIGTERM', r);
          });
          for (const s of shippers) await s.stop();
        }
      } finally {
        await store.close();
      }
    });
}

async function tail(loc: AuditLocation, lines: number, follow: boolean, json: boolean, intervalMs: number): Promise<void> {
  const print = (r: AuditRow) => {
    const ev = rowToEvent(r);
    if (json) process.stdout.write(JSON.stringify(ev) + '\n');
    else
      process.stdout.write(
        [ev.ts, ev.type, ev.task_id ?? '-', ev.subject ?? '-', ev.protocol ?? '-', ev.resource ?? '-', ev.decision ?? '', ev.command ?? ''].join('  ') + '\n',
      );
  };
  let last = 0;
  const seen = new Set<string>();
  {
    const store = await openQueryStore(loc);
    try {
      const rows = await store.rows<AuditRow>(`SELECT * FROM (SELECT * FROM events FINAL ORDER BY ts_us DESC, seq DESC LIMIT ${Math.max(0, lines)}) ORDER BY ts_us, seq`);
      for (const r of rows) {
        print(r);
        last = Math.max(last, Number(r.ts_us));
        seen.add(r.id);
      }
      if (!follow) return;
      let stop = false;
      process.once('SIGINT', () => (stop = true));
      // Events can arrive late (shipper batches): re-read a window behind the newest seen.
      const windowUs = 30_000_000;
      for (;;) {
        await new Promise((r) => setTimeout(r, intervalMs));
        if (stop) return;
        const cur = loc.clickhouse ? store : await openQueryStore(loc);
        try {
          const fresh = await cur.rows<AuditRow>(tailSql(last - windowUs, 10_000));
          for (const r of fresh) {
            if (seen.has(r.id)) continue;
            seen.add(r.id);
            print(r);
            last = Math.max(last, Number(r.ts_us));
          }
          if (seen.size > 200_000) seen.clear();
        } finally {
          if (cur !== store) await cur.close();
        }
      }
    } finally {
      await store.close();
    }
  }
}
