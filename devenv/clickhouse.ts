/**
 * Starts a real ClickHouse server (Debian's clickhouse-server 18.16) on free
 * loopback ports (HTTP + native) in a private temp directory with a generated
 * config: used by audit tests, the audit benchmark and the demo. It can be
 * killed (SIGKILL) and restarted on the same ports and data directory, which
 * is how the delivery tests simulate an outage.
 *
 * Runs as the current user (root included: 18.16 does not refuse root).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TaskgateError } from '../core/errors.ts';
import { freePort, waitFor } from './net.ts';

export interface ClickHouseServer {
  host: string;
  httpPort: number;
  nativePort: number;
  /** http://127.0.0.1:<httpPort> */
  url: string;
  dir: string;
  /** Runs one query over HTTP (plain fetch); returns the body text. */
  query(sql: string): Promise<string>;
  /** SIGKILL: no shutdown, in-flight inserts are cut. */
  kill(): Promise<void>;
  /** Starts the server again on the same ports and data. */
  restart(): Promise<void>;
  /** Stops the server and removes its directory. */
  stop(): Promise<void>;
  running(): boolean;
}

export function clickhouseServerBinary(): string {
  for (const p of [process.env.TASKGATE_CLICKHOUSE_SERVER, '/usr/bin/clickhouse-server', '/usr/sbin/clickhouse-server']) {
    if (p && existsSync(p)) return p;
  }
  throw new TaskgateError('tool_missing', 'clickhouse-server not found', { hint: 'apt-get install clickhouse-server, or set TASKGATE_CLICKHOUSE_SERVER' });
}

export interface StartClickHouseOptions {
  verbose?: boolean;
}

export async function startClickHouse(opts: StartClickHouseOptions = {}): Promise<ClickHouseServer> {
  const bin = clickhouseServerBinary();
  const dir = await mkdtemp(join(tmpdir(), 'taskgate-ch-'));
  for (const d of ['data', 'tmp', 'user_files', 'format_schemas']) await mkdir(join(dir, d), { recursive: true });
  const httpPort = await freePort();
  const nativePort = await freePort();
  const config = `<?xml version="1.0"?>
<yandex>
  <logger><level>warning</level><console>1</console></logger>
  <http_port>${httpPort}</http_port>
  <tcp_port>${nativePort}</tcp_port>
  <listen_host>127.0.0.1</listen_host>
  <path>${dir}/data/</path>
  <tmp_path>${dir}/tmp/</tmp_path>
  <user_files_path>${dir}/user_files/</user_files_path>
  <format_schema_path>${dir}/format_schemas/</format_schema_path>
  <users_config>${dir}/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <mark_cache_size>268435456</mark_cache_size>
  <uncompressed_cache_size>268435456</uncompressed_cache_size>
  <max_concurrent_queries>100</max_concurrent_queries>
  <timezone>UTC</timezone>
</yandex>
`;
  const users = `<?xml version="1.0"?>
<yandex>
  <profiles><default><max_memory_usage>4000000000</max_memory_usage><max_threads>2</max_threads></default></profiles>
  <users><default><password></password><networks><ip>127.0.0.1</ip><ip>::1</ip></networks><profile>default</profile><quota>default</quota></default></users>
  <quotas><default></default></quotas>
</yandex>
`;
  await writeFile(join(dir, 'config.xml'), config);
  await writeFile(join(dir, 'users.xml'), users);
  const url = `http://127.0.0.1:${httpPort}`;

  let child: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();
  let log = '';

  const query = async (sql: string): Promise<string> => {
    const r = await fetch(url + '/', { method: 'POST', body: sql, signal: AbortSignal.timeout(30_000) });
    const t = await r.text();
    if (!r.ok) throw new TaskgateError('unavailable', `clickhouse: ${t.trim()}`);
    return t;
  };

  const launch = async (): Promise<void> => {
    const c = spawn(bin, [`--config-file=${join(dir, 'config.xml')}`], { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
    child = c;
    exited = new Promise<void>((r) => c.once('exit', () => r()));
    c.stderr?.on('data', (d: Buffer) => {
      log += d.toString();
      if (log.length > 100_000) log = log.slice(-50_000);
      if (opts.verbose) process.stderr.write(d);
    });
    try {
      await waitFor(async () => {
        if (c.exitCode !== null || c.signalCode !== null) throw new TaskgateError('unavailable', `clickhouse-server exited during start:\n${log.slice(-2000)}`);
        try {
          const r = await fetch(url + '/ping', { signal: AbortSignal.timeout(1000) });
          return r.ok;
        } catch {
          return false;
        }
      }, 30_000, 100);
    } catch (e) {
      c.kill('SIGKILL');
      throw e;
    }
  };

  const kill = async (): Promise<void> => {
    if (child && child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await exited;
    }
  };

  await launch();
  return {
    host: '127.0.0.1',
    httpPort,
    nativePort,
    url,
    dir,
    query,
    kill,
    restart: async () => {
      await kill();
      await launch();
    },
    stop: async () => {
      if (child && child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const t = setTimeout(() => child?.kill('SIGKILL'), 5000);
        await exited;
        clearTimeout(t);
      }
      await rm(dir, { recursive: true, force: true });
    },
    running: () => !!child && child.exitCode === null && child.signalCode === null,
  };
}
