/**
 * The database the control plane runs on, behind one narrow interface with two
 * engines: embedded PGlite (PostgreSQL compiled to WASM, in-process; a data
 * directory or memory) and PostgreSQL (node-postgres pool + one dedicated
 * LISTEN connection). Both run the same SQL and the same migrations.
 *
 * There is no global handle: whoever needs the database is given a Database.
 */
import { PGlite } from '@electric-sql/pglite';
import pg from 'pg';
import { errorMessage, TaskgateError } from '../../core/errors.ts';
import { silentLogger, type Logger } from '../../core/log.ts';

export interface SqlResult<R> {
  rows: R[];
  rowCount: number;
}

/** Something that runs SQL: the database itself or an open transaction. */
export interface Sql {
  query<R = Record<string, unknown>>(text: string, params?: unknown[]): Promise<SqlResult<R>>;
}

export interface Database extends Sql {
  readonly engine: 'pglite' | 'postgres';
  /** Runs fn in one transaction (BEGIN/COMMIT, ROLLBACK on throw). NOTIFYs issued inside are delivered on commit. */
  tx<T>(fn: (sql: Sql) => Promise<T>): Promise<T>;
  /**
   * Subscribes to NOTIFY on a channel. `onResync` fires when the notification
   * stream was interrupted (PostgreSQL connection lost and re-established):
   * notifications may have been missed, so listeners reload their state.
   */
  listen(channel: string, fn: (payload: string) => void, onResync?: () => void): Promise<() => Promise<void>>;
  close(): Promise<void>;
}

export type StorageConfig = { kind: 'pglite'; dataDir?: string } | { kind: 'postgres'; url: string; poolSize?: number };

export async function openDatabase(cfg: StorageConfig, log: Logger = silentLogger): Promise<Database> {
  return cfg.kind === 'pglite' ? openPglite(cfg.dataDir) : openPostgres(cfg.url, { poolSize: cfg.poolSize ?? 10, log });
}

/** Embedded PGlite: one process owns the data directory (memory when dataDir is omitted). */
export async function openPglite(dataDir?: string): Promise<Database> {
  let db: PGlite;
  try {
    db = await PGlite.create(dataDir ? { dataDir } : {});
  } catch (e) {
    throw new TaskgateError('unavailable', `PGlite could not open ${dataDir ?? 'memory'}: ${errorMessage(e)}`, {
      hint: 'a PGlite data directory can be opened by one process at a time',
    });
  }
  const wrap = (q: { query: PGlite['query'] }): Sql => ({
    async query<R>(text: string, params: unknown[] = []) {
      const r = await q.query<R>(text, params as never[]);
      return { rows: r.rows, rowCount: r.affectedRows ?? r.rows.length };
    },
  });
  const self = wrap(db);
  return {
    engine: 'pglite',
    query: self.query,
    tx: (fn) => db.transaction((t) => fn(wrap(t))),
    async listen(channel, fn) {
      const un = await db.listen(channel, fn);
      return async () => un();
    },
    close: () => db.close(),
  };
}

/** PostgreSQL through node-postgres: a pool for queries and transactions, one client for LISTEN (re-established on loss). */
export async function openPostgres(url: string, opts: { poolSize: number; log: Logger }): Promise<Database> {
  const pool = new pg.Pool({ connectionString: url, max: opts.poolSize, connectionTimeoutMillis: 5000 });
  pool.on('error', (e) => opts.log.warn('postgres pool client error', { error: errorMessage(e) }));
  try {
    await pool.query('SELECT 1');
  } catch (e) {
    await pool.end().catch(() => undefined);
    throw new TaskgateError('unavailable', `PostgreSQL at ${redactUrl(url)} is unreachable: ${errorMessage(e)}`);
  }
  const listeners = new Map<string, Set<{ fn: (p: string) => void; resync: (() => void) | undefined }>>();
  let listenClient: pg.Client | undefined;
  let connecting: Promise<pg.Client> | undefined;
  let closed = false;

  const connectListener = async (): Promise<pg.Client> => {
    let delay = 100;
    for (;;) {
      const c = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5000 });
      try {
        await c.connect();
        for (const ch of listeners.keys()) await c.query(`LISTEN ${quoteIdent(ch)}`);
        c.on('notification', (n) => {
          for (const l of listeners.get(n.channel) ?? []) l.fn(n.payload ?? '');
        });
        c.on('error', (e) => {
          opts.log.warn('postgres LISTEN connection lost; reconnecting', { error: errorMessage(e) });
          if (listenClient === c) listenClient = undefined;
          c.end().catch(() => undefined);
          if (!closed) void ensureListener(true);
        });
        return c;
      } catch (e) {
        await c.end().catch(() => undefined);
        if (closed) throw new TaskgateError('unavailable', 'database closed');
        opts.log.warn('postgres LISTEN connect failed; retrying', { error: errorMessage(e), retry_ms: delay });
        await new Promise((r) => setTimeout(r, delay));
        delay = Math.min(delay * 2, 5000);
      }
    }
  };
  const ensureListener = async (resync = false): Promise<pg.Client> => {
    if (listenClient) return listenClient;
    connecting ??= connectListener().then((c) => {
      listenClient = c;
      connecting = undefined;
      if (resync) for (const set of listeners.values()) for (const l of set) l.resync?.();
      return c;
    });
    return connecting;
  };

  return {
    engine: 'postgres',
    async query<R>(text: string, params: unknown[] = []) {
      const r = await pool.query(text, params);
      return { rows: r.rows as R[], rowCount: r.rowCount ?? r.rows.length };
    },
    async tx(fn) {
      const c = await pool.connect();
      try {
        await c.query('BEGIN');
        const out = await fn({
          async query<R>(text: string, params: unknown[] = []) {
            const r = await c.query(text, params);
            return { rows: r.rows as R[], rowCount: r.rowCount ?? r.rows.length };
          },
        });
        await c.query('COMMIT');
        return out;
      } catch (e) {
        await c.query('ROLLBACK').catch(() => undefined);
        throw e;
      } finally {
        c.release();
      }
    },
    async listen(channel, fn, onResync) {
      const entry = { fn, resync: onResync };
      let set = listeners.get(channel);
      const fresh = !set;
      if (!set) listeners.set(channel, (set = new Set()));
      set.add(entry);
      const c = await ensureListener();
      if (fresh) await c.query(`LISTEN ${quoteIdent(channel)}`);
      return async () => {
        set.delete(entry);
        if (set.size === 0) {
          listeners.delete(channel);
          await listenClient?.query(`UNLISTEN ${quoteIdent(channel)}`).catch(() => undefined);
        }
      };
    },
    async close() {
      closed = true;
      const c = listenClient;
      listenClient = undefined;
      await c?.end().catch(() => undefined);
      await pool.end();
    },
  };
}

function quoteIdent(s: string): string {
  return '"' + s.replace(/"/g, '""') + '"';
}

function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return 'the configured URL';
  }
}
