/**
 * Starts a real PostgreSQL server (Debian's packages) on a free loopback port
 * in a private data directory: used by the integration tests, the benchmarks
 * and `taskgate demo`. Nothing here is a mock: it is the server binary.
 *
 * As root, the server runs as the `postgres` system user (initdb refuses root).
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { chmod, cp, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { TaskgateError } from '../core/errors.ts';
import { freePort, waitFor } from './net.ts';

const run = promisify(execFile);

export interface PgUser {
  name: string;
  password: string;
  /** pg_hba method for this user over TCP. */
  method: 'scram-sha-256' | 'md5' | 'password' | 'trust';
  superuser?: boolean;
}

export interface PgServer {
  host: string;
  port: number;
  dataDir: string;
  bin: string;
  /** The superuser `postgres`, password `postgres`, scram-sha-256. */
  superuser: PgUser;
  users: PgUser[];
  url(user?: string, password?: string, db?: string): string;
  /** Runs SQL as the superuser through psql; returns stdout. */
  psql(sql: string, db?: string): Promise<string>;
  stop(): Promise<void>;
}

/** Directory with initdb, pg_ctl, postgres, psql, pgbench: newest /usr/lib/postgresql/N/bin, else PATH. */
export function postgresBinDir(): string {
  const base = '/usr/lib/postgresql';
  if (existsSync(base)) {
    const versions = readdirSync(base)
      .filter((v) => existsSync(join(base, v, 'bin', 'initdb')))
      .sort((a, b) => Number(b) - Number(a));
    if (versions[0]) return join(base, versions[0], 'bin');
  }
  for (const d of (process.env.PATH ?? '').split(':')) if (d && existsSync(join(d, 'initdb'))) return d;
  throw new TaskgateError('tool_missing', 'PostgreSQL server binaries (initdb, pg_ctl) not found', {
    hint: 'run `bash scripts/setup.sh` as root, or apt-get install postgresql',
  });
}

const isRoot = () => typeof process.getuid === 'function' && process.getuid() === 0;

async function asPgUser(cmd: string, args: string[], env: Record<string, string> = {}): Promise<{ stdout: string; stderr: string }> {
  if (isRoot()) {
    const envArgs = Object.entries(env).map(([k, v]) => `${k}=${v}`);
    return run('runuser', ['-u', 'postgres', '--', 'env', ...envArgs, cmd, ...args], { maxBuffer: 64 << 20 });
  }
  return run(cmd, args, { env: { ...process.env, ...env }, maxBuffer: 64 << 20 });
}

async function ownByPg(path: string): Promise<void> {
  if (!isRoot()) return;
  await run('chown', ['-R', 'postgres:postgres', path]);
}

async function postgresIds(): Promise<{ uid: number; gid: number }> {
  const [u, g] = await Promise.all([run('id', ['-u', 'postgres']), run('id', ['-g', 'postgres'])]);
  return { uid: Number(u.stdout.trim()), gid: Number(g.stdout.trim()) };
}

let templatePromise: Promise<string> | undefined;

/** One initdb per process (and per machine, cached under /tmp), copied for each server: initdb is the slow part. */
async function template(bin: string): Promise<string> {
  templatePromise ??= (async () => {
    const dir = join(tmpdir(), `taskgate-pg-template-${bin.replace(/\W+/g, '_')}`);
    if (existsSync(join(dir, 'PG_VERSION')) && existsSync(join(dir, '.complete'))) return dir;
    const staging = await mkdtemp(join(tmpdir(), 'taskgate-pg-init-'));
    await ownByPg(staging);
    const pw = join(staging, 'pw');
    await writeFile(pw, 'postgres\n');
    await ownByPg(pw);
    const data = join(staging, 'data');
    await asPgUser(join(bin, 'initdb'), ['-D', data, '-U', 'postgres', '--pwfile', pw, '-A', 'scram-sha-256', '--no-sync', '-E', 'UTF8', '--locale=C']);
    await writeFile(join(data, '.complete'), '');
    await rm(dir, { recursive: true, force: true });
    await cp(data, dir, { recursive: true });
    await ownByPg(dir);
    await rm(staging, { recursive: true, force: true });
    return dir;
  })();
  return templatePromise;
}

export interface StartPostgresOptions {
  users?: PgUser[];
  /** Extra postgresql.conf lines. */
  conf?: Record<string, string | number>;
  /** Keep the server's log on stderr (debugging). */
  verbose?: boolean;
}

export async function startPostgres(opts: StartPostgresOptions = {}): Promise<PgServer> {
  const bin = postgresBinDir();
  const tpl = await template(bin);
  const root = await mkdtemp(join(tmpdir(), 'taskgate-pg-'));
  await chmod(root, 0o755);
  const dataDir = join(root, 'data');
  await cp(tpl, dataDir, { recursive: true });
  await chmod(dataDir, 0o700);
  const sockDir = join(root, 'sock');
  await mkdir(sockDir);
  const port = await freePort();
  const superuser: PgUser = { name: 'postgres', password: 'postgres', method: 'scram-sha-256', superuser: true };
  const users = opts.users ?? [];
  const hba = ['local all all trust'];
  for (const u of [superuser, ...users]) hba.push(`host all ${u.name} 127.0.0.1/32 ${u.method}`, `host all ${u.name} ::1/128 ${u.method}`);
  hba.push('host replication all 127.0.0.1/32 scram-sha-256');
  await writeFile(join(dataDir, 'pg_hba.conf'), hba.join('\n') + '\n');
  const conf: Record<string, string | number> = {
    listen_addresses: "'127.0.0.1'",
    port,
    unix_socket_directories: `'${sockDir}'`,
    fsync: 'off',
    synchronous_commit: 'off',
    full_page_writes: 'off',
    max_connections: 200,
    shared_buffers: "'128MB'",
    logging_collector: 'off',
    ...opts.conf,
  };
  await writeFile(join(dataDir, 'postgresql.auto.conf'), Object.entries(conf).map(([k, v]) => `${k} = ${v}`).join('\n') + '\n');
  await ownByPg(root);

  const args = ['-D', dataDir];
  // As root, run the postmaster itself as the postgres user (no runuser in between), so that
  // stop() signals reach it directly: SIGINT is PostgreSQL's fast shutdown.
  const pgIds = isRoot() ? await postgresIds() : undefined;
  const child: ChildProcess = spawn(join(bin, 'postgres'), args, {
    stdio: ['ignore', 'ignore', 'pipe'],
    ...(pgIds ? { uid: pgIds.uid, gid: pgIds.gid, env: { ...process.env, HOME: '/var/lib/postgresql' } } : {}),
  });
  let log = '';
  child.stderr?.on('data', (d: Buffer) => {
    log += d.toString();
    if (log.length > 100_000) log = log.slice(-50_000);
    if (opts.verbose) process.stderr.write(d);
  });
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  try {
    await waitFor(async () => {
      if (child.exitCode !== null) throw new TaskgateError('unavailable', `postgres exited during start:\n${log.slice(-2000)}`);
      try {
        await run(join(bin, 'pg_isready'), ['-h', sockDir, '-p', String(port), '-q']);
        return true;
      } catch {
        return false;
      }
    }, 30_000);
  } catch (e) {
    child.kill('SIGKILL');
    throw e;
  }

  const psql = async (sql: string, db = 'postgres'): Promise<string> => {
    const r = await run(join(bin, 'psql'), ['-h', sockDir, '-p', String(port), '-U', 'postgres', '-d', db, '-v', 'ON_ERROR_STOP=1', '-qAt', '-c', sql], {
      maxBuffer: 64 << 20,
    });
    return r.stdout;
  };
  for (const u of users) {
    // password_encryption decides how the stored verifier is hashed: md5 users need an md5 verifier.
    const enc = u.method === 'md5' ? 'md5' : 'scram-sha-256';
    await psql(
      `SET password_encryption = '${enc}'; CREATE ROLE "${u.name}" LOGIN ${u.superuser ? 'SUPERUSER' : ''} PASSWORD '${u.password.replace(/'/g, "''")}'`,
    );
  }

  return {
    host: '127.0.0.1',
    port,
    dataDir,
    bin,
    superuser,
    users,
    url: (user = 'postgres', password = 'postgres', db = 'postgres') =>
      `postgres://${encodeURIComponent(user)}:${encodeURIComponent(password)}@127.0.0.1:${port}/${db}`,
    psql,
    stop: async () => {
      if (child.exitCode === null) {
        child.kill('SIGINT'); // fast shutdown
        const t = setTimeout(() => child.kill('SIGKILL'), 5000);
        await exited;
        clearTimeout(t);
      }
      child.stderr?.destroy();
      await rm(root, { recursive: true, force: true });
    },
  };
}
