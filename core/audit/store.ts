/**
 * Where audit rows are stored and queried: a ClickHouse server over HTTP
 * (@clickhouse/client) or chDB in-process (embedded ClickHouse). Both accept
 * the same DDL (core/audit/migrations.ts), the same JSONEachRow rows (spool
 * lines, unparsed) and the same SQL.
 */
import { createClient, type ClickHouseClient } from '@clickhouse/client';
import { Readable } from 'node:stream';
import { TaskgateError, errorMessage } from '../errors.ts';

export type OutputFormat = 'JSONEachRow' | 'CSVWithNames' | 'PrettyCompactNoEscapes' | 'TabSeparatedWithNames' | 'JSON';

export interface AuditStore {
  readonly kind: 'clickhouse' | 'chdb';
  /** Runs a statement (DDL, INSERT … SELECT). */
  exec(sql: string): Promise<void>;
  /** Rows as objects (JSONEachRow; 64-bit integers may come back as strings). */
  rows<T = Record<string, unknown>>(sql: string): Promise<T[]>;
  /** The result in a ClickHouse output format, as text. */
  text(sql: string, format: OutputFormat): Promise<string>;
  /** Inserts JSONEachRow lines (spool bytes); unknown keys such as `_crc` are skipped. */
  insertRows(table: string, ndjson: Buffer): Promise<void>;
  version(): Promise<string>;
  close(): Promise<void>;
}

const INSERT_SETTINGS = { input_format_skip_unknown_fields: 1 } as const;

export interface ClickHouseStoreOptions {
  url: string;
  username?: string;
  password?: string;
  database?: string;
  /** Per-request timeout. Default 30 s. */
  requestTimeoutMs?: number;
}

export class ClickHouseStore implements AuditStore {
  readonly kind = 'clickhouse' as const;
  readonly client: ClickHouseClient;
  readonly url: string;
  /** How to connect again (a shipper thread opens its own client). */
  readonly connection: ClickHouseStoreOptions;

  constructor(opts: ClickHouseStoreOptions) {
    this.url = opts.url;
    this.connection = { ...opts };
    this.client = createClient({
      url: opts.url,
      username: opts.username ?? 'default',
      password: opts.password ?? '',
      database: opts.database ?? 'default',
      request_timeout: opts.requestTimeoutMs ?? 30_000,
      // 18.16 answers gzip fine, but plain responses keep errors readable.
      compression: { request: false, response: false },
      max_open_connections: 4,
    });
  }

  async exec(sql: string): Promise<void> {
    await this.wrap(sql, () => this.client.command({ query: sql }));
  }

  async rows<T>(sql: string): Promise<T[]> {
    return this.wrap(sql, async () => {
      const r = await this.client.query({ query: sql, format: 'JSONEachRow' });
      return (await r.json()) as T[];
    });
  }

  async text(sql: string, format: OutputFormat): Promise<string> {
    return this.wrap(sql, async () => {
      const r = await this.client.exec({ query: `${sql}\nFORMAT ${format}` });
      const chunks: Buffer[] = [];
      for await (const c of r.stream) chunks.push(c as Buffer);
      return Buffer.concat(chunks).toString('utf8');
    });
  }

  async insertRows(table: string, ndjson: Buffer): Promise<void> {
    const query = `INSERT INTO ${table} FORMAT JSONEachRow`;
    await this.wrap(query, async () => {
      const r = await this.client.exec({ query, values: Readable.from([ndjson]), clickhouse_settings: INSERT_SETTINGS });
      // Drain the (empty) response so the socket returns to the pool.
      for await (const _ of r.stream) void _;
    });
  }

  async version(): Promise<string> {
    const r = await this.rows<{ v: string }>('SELECT version() AS v');
    return r[0]?.v ?? '';
  }

  async close(): Promise<void> {
    await this.client.close();
  }

  private async wrap<R>(sql: string, fn: () => Promise<R>): Promise<R> {
    try {
      return await fn();
    } catch (e) {
      throw new TaskgateError('unavailable', `ClickHouse ${this.url}: ${errorMessage(e)} (query: ${sql.replace(/\s+/g, ' ').slice(0, 120)})`, { cause: e });
    }
  }
}

type ChdbSession = import('chdb').Session;

/** chDB (ClickHouse 26.x in-process). `path` keeps data; omitted = a temporary session. */
export class ChdbStore implements AuditStore {
  readonly kind = 'chdb' as const;
  private readonly session: ChdbSession;

  private constructor(session: ChdbSession) {
    this.session = session;
  }

  static async open(path?: string): Promise<ChdbStore> {
    const { Session } = await import('chdb');
    return new ChdbStore(path ? new Session(path) : new Session());
  }

  async exec(sql: string): Promise<void> {
    await this.wrap(sql, () => this.session.queryAsync(sql, { format: 'CSV' }));
  }

  async rows<T>(sql: string): Promise<T[]> {
    const text = await this.text(sql, 'JSONEachRow');
    return text
      .split('\n')
      .filter((l) => l.length > 0)
      .map((l) => JSON.parse(l) as T);
  }

  async text(sql: string, format: OutputFormat): Promise<string> {
    const r = await this.wrap(sql, () => this.session.queryAsync(sql, { format }));
    return r.text();
  }

  async insertRows(table: string, ndjson: Buffer): Promise<void> {
    await this.wrap(`INSERT INTO ${table}`, () =>
      this.session.insert({ table, values: ndjson, format: 'JSONEachRow', settings: INSERT_SETTINGS }),
    );
  }

  async version(): Promise<string> {
    const r = await this.rows<{ v: string }>('SELECT version() AS v');
    return r[0]?.v ?? '';
  }

  async close(): Promise<void> {
    this.session.close();
  }

  private async wrap<R>(sql: string, fn: () => Promise<R>): Promise<R> {
    try {
      return await fn();
    } catch (e) {
      throw new TaskgateError('unavailable', `chDB: ${errorMessage(e)} (query: ${sql.replace(/\s+/g, ' ').slice(0, 120)})`, { cause: e });
    }
  }
}
