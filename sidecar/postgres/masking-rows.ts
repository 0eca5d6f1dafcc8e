/**
 * Result masking for the PostgreSQL proxy: RowDescription + the decision's
 * mask rules -> a row masker (core/mask) that rewrites DataRow values.
 *
 * Which source column an output column shows:
 * - a plain column reference: RowDescription carries the table OID and
 *   attribute number, resolved to `schema.table.column` through the catalog
 *   (a separate service connection, cached per OID);
 * - an expression (`upper(email)`, `card || ''`, CTE/subquery columns): the
 *   SQL lineage of the statement, followed conservatively; where lineage is
 *   unknown the column is masked with the strictest column rule whenever the
 *   statement touches a table, and the content detectors always run.
 *
 * Binary-format results: text-like types (text, varchar, bpchar, name, char,
 * json) are masked as text; any other type a column rule selects becomes NULL.
 */
import pg from 'pg';
import { errorMessage, TaskgateError } from '../../core/errors.ts';
import type { Logger } from '../../core/log.ts';
import { compileMaskPlan, type ColumnMeta, type RowMasker } from '../../core/mask/plan.ts';
import { dataRow, decodeDataRow, type FieldDesc } from './codec/backend.ts';
import { alignLineage } from './lineage.ts';
import type { ResultMasker, ResultMasking, ResultShape } from './masking-port.ts';
import type { UpstreamConfig } from './upstream.ts';

/** Types whose binary wire form is their UTF-8 text. */
const BINARY_TEXT_OIDS = new Set([18, 19, 25, 114, 1042, 1043]);

interface Rel {
  table: string;
  columns: Map<number, string>;
  at: number;
}

/** OID -> schema.table and attnum -> column name, over a service connection of the sidecar's own. */
export class CatalogResolver {
  private client: pg.Client | undefined;
  private connecting: Promise<pg.Client> | undefined;
  private readonly rels = new Map<number, Rel>();

  constructor(
    private readonly upstream: UpstreamConfig,
    private readonly ttlMs = 300_000,
  ) {}

  private connect(): Promise<pg.Client> {
    if (this.client) return Promise.resolve(this.client);
    this.connecting ??= (async () => {
      const u = this.upstream;
      const cfg: pg.ClientConfig = { host: u.host, port: u.port, user: u.user, password: u.password, database: u.database, application_name: 'taskgate-catalog' };
      if (u.tls) {
        const mode = u.tls.mode ?? 'verify-full';
        cfg.ssl = { rejectUnauthorized: mode === 'verify-full', servername: u.tls.servername ?? u.host, ...(u.tls.ca ? { ca: u.tls.ca } : {}) };
        if (mode === 'require') (cfg.ssl as { checkServerIdentity?: () => undefined }).checkServerIdentity = () => undefined;
      }
      const c = new pg.Client(cfg);
      c.on('error', () => {
        this.client = undefined;
      });
      try {
        await c.connect();
      } finally {
        this.connecting = undefined;
      }
      this.client = c;
      return c;
    })();
    return this.connecting;
  }

  /** True when every OID is cached and fresh. */
  known(oids: Iterable<number>, now = Date.now()): boolean {
    for (const o of oids) {
      const r = this.rels.get(o);
      if (!r || now - r.at > this.ttlMs) return false;
    }
    return true;
  }

  private readonly inflight = new Map<string, Promise<void>>();

  /** Loads the relations of `oids` (concurrent callers asking for the same set share one query). */
  load(oids: number[]): Promise<void> {
    const want = [...new Set(oids)].filter((o) => !this.known([o])).sort((a, b) => a - b);
    if (!want.length) return Promise.resolve();
    const key = want.join(',');
    let p = this.inflight.get(key);
    if (!p) {
      p = this.fetch(want).finally(() => this.inflight.delete(key));
      this.inflight.set(key, p);
    }
    return p;
  }

  private async fetch(want: number[]): Promise<void> {
    let client: pg.Client;
    try {
      client = await this.connect();
    } catch (e) {
      throw new TaskgateError('unavailable', `catalog connection for masking failed: ${errorMessage(e)}`);
    }
    const r = await client.query<{ oid: number; nspname: string; relname: string; attnum: number; attname: string }>(
      `SELECT c.oid::int8::float8 AS oid, n.nspname, c.relname, a.attnum, a.attname
         FROM pg_catalog.pg_class c
         JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
         JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
        WHERE c.oid = ANY($1::oid[])`,
      [want],
    );
    const now = Date.now();
    for (const o of want) this.rels.set(o, { table: '', columns: new Map(), at: now });
    for (const row of r.rows) {
      const rel = this.rels.get(Number(row.oid))!;
      rel.table = `${row.nspname}.${row.relname}`;
      rel.columns.set(row.attnum, row.attname);
    }
  }

  /** `schema.table.column` of a RowDescription field, when it is a plain column reference. */
  column(f: FieldDesc): { table: string; column: string } | undefined {
    if (!f.tableOid || f.attnum <= 0) return undefined;
    const rel = this.rels.get(f.tableOid);
    const col = rel?.columns.get(f.attnum);
    return rel && col ? { table: rel.table, column: `${rel.table}.${col}` } : undefined;
  }

  async close(): Promise<void> {
    const c = this.client;
    this.client = undefined;
    await c?.end().catch(() => undefined);
  }
}

export interface ResultMaskingOptions {
  upstream: UpstreamConfig;
  /** Key for the hash strategy (see core/mask strategies). */
  hashKey?: string;
  log?: Logger;
}

export function createResultMasking(opts: ResultMaskingOptions): ResultMasking {
  const catalog = new CatalogResolver(opts.upstream);
  const build = (shape: ResultShape): ResultMasker | undefined => {
    const plan = compileMaskPlan(shape.rules, opts.hashKey === undefined ? {} : { hashKey: opts.hashKey });
    const n = shape.fields.length;
    const lineage = shape.lineage ? alignLineage(shape.lineage, n) : undefined;
    const referenced: string[] = [];
    let unsure = false;
    const cols: ColumnMeta[] = shape.fields.map((f, i) => {
      const meta: ColumnMeta = { name: f.name, typeOid: f.typeOid };
      const exact = catalog.column(f);
      if (exact) {
        meta.table = exact.table;
        meta.sources = [exact.column];
        referenced.push(exact.column);
        return meta;
      }
      const l = lineage?.[i];
      if (!l) {
        meta.sourcesUnknown = true;
        unsure = true;
        return meta;
      }
      meta.sources = l.sources;
      referenced.push(...l.sources);
      if (l.unknown || l.stars.length) {
        meta.sourcesUnknown = true;
        unsure = true;
      }
      return meta;
    });
    // Unknown lineage over a statement that reads tables: assume it may show a masked column.
    const references = plan.referencesMaskedColumn(referenced) || (unsure && shape.tables.length > 0 && plan.columnRules.length > 0);
    const rm = plan.forColumns(cols, { referencesMaskedColumn: references });
    if (!rm.active) return undefined;
    return new RowRewriter(rm, shape.fields);
  };
  return {
    forResult(shape) {
      const oids = shape.fields.filter((f) => f.tableOid && f.attnum > 0).map((f) => f.tableOid);
      if (catalog.known(oids)) return build(shape);
      return catalog.load(oids).then(() => build(shape));
    },
    close: () => catalog.close(),
  };
}

/** Applies a RowMasker to DataRows, re-framing a row only when a value changed. */
class RowRewriter implements ResultMasker {
  private readonly active: number[] = [];
  private readonly mode: ('text' | 'null' | 'skip')[];
  private readonly names: string[];
  private readonly nulled: Record<string, number> = {};

  constructor(
    private readonly rm: RowMasker,
    fields: FieldDesc[],
  ) {
    this.names = fields.map((f) => f.name);
    this.mode = fields.map((f, i) => {
      if (!rm.isActive(i)) return 'skip';
      if (f.format === 0 || BINARY_TEXT_OIDS.has(f.typeOid)) return 'text';
      // Binary non-text: we cannot rewrite its bytes; a column rule hides it entirely.
      return rm.columnStrategy(i) ? 'null' : 'skip';
    });
    this.mode.forEach((m, i) => m !== 'skip' && this.active.push(i));
  }

  maskRow(payload: Buffer): Buffer | undefined {
    if (this.active.length === 0) return undefined;
    const values = decodeDataRow(payload);
    let changed = false;
    for (const i of this.active) {
      const v = values[i];
      if (v === undefined || v === null) continue;
      if (this.mode[i] === 'null') {
        values[i] = null;
        const name = this.names[i]!;
        this.nulled[name] = (this.nulled[name] ?? 0) + 1;
        changed = true;
        continue;
      }
      const r = this.rm.mask(i, v.toString('utf8'));
      if (!r.masked) continue;
      values[i] = r.value === null ? null : Buffer.from(r.value, 'utf8');
      changed = true;
    }
    return changed ? dataRow(values) : undefined;
  }

  counts(): Record<string, number> {
    const out: Record<string, number> = { ...this.rm.masked_counts() };
    for (const [k, v] of Object.entries(this.rm.detector_counts())) out[k] = (out[k] ?? 0) + v;
    for (const [k, v] of Object.entries(this.nulled)) out[k] = (out[k] ?? 0) + v;
    return out;
  }
}
