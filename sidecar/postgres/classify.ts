/**
 * The SQL classifier: text -> the policy input `request` for PostgreSQL, with
 * the real PostgreSQL parser (libpg-query, WASM). One PgStatement per statement
 * of a multi-statement string; text the parser rejects is one UNPARSEABLE
 * statement (never an exception). Results are cached by exact text in a
 * bounded LRU, so a repeated statement costs a map lookup.
 *
 * What the policy sees for each statement shape: docs/postgres-classification.md.
 */
import { fingerprintSync, loadModule, parseSync } from 'libpg-query';
import type { PgStatement, PostgresRequest } from '../../core/policy-contract.ts';
import { TaskgateError } from '../../core/errors.ts';
import { analyzeStatement, type PreparedLookup } from './sql/analyze.ts';
import { redactRange, redactUnscannable, safeParseError, scanTokens } from './sql/redact.ts';

export type { PreparedLookup } from './sql/analyze.ts';

/** A statement the parser rejected, or EXECUTE of an unknown name: the parse error, safe to show (no literal values). */
export interface PgStatementWithError extends PgStatement {
  parse_error?: string;
}

export interface ClassifiedStatement {
  /** What the policy sees (`request.statements[i]`). */
  statement: PgStatementWithError;
  /** The statement's parse tree (libpg-query `stmt` of the RawStmt); undefined when unparseable. Feed it to lineage.ts. */
  node: unknown;
  /** The statement's own source text (with literals: for the upstream, never for logs or policy). */
  source: string;
  /** For `PREPARE name AS …`: store `statement` under `name` in the session's prepared map (as what it runs). */
  prepare?: { name: string; statement: PgStatement };
  /** For `DEALLOCATE name` (null: DEALLOCATE ALL): remove it from the session's prepared map. */
  deallocate?: string | null;
}

export interface ClassifiedSql {
  /** The policy input `request` block. */
  request: PostgresRequest;
  /** Per statement, in order, with the parse tree for lineage and the session bookkeeping for PREPARE/DEALLOCATE. */
  statements: ClassifiedStatement[];
}

export interface ClassifyOptions {
  /** Which protocol message carried the text (default `query`). */
  message?: PostgresRequest['message'];
  /**
   * The session's prepared statements by name, for `EXECUTE name` (PREPARE and
   * the extended protocol's named Parse share one namespace in PostgreSQL).
   * EXECUTE of a name not in the map is class `unparseable`.
   */
  prepared?: PreparedLookup;
}

export interface SqlClassifierOptions {
  /** Maximum cached texts (default 4096). 0 disables the cache. */
  cacheEntries?: number;
  /** Texts longer than this are classified but not cached (default 8192 characters). */
  cacheMaxTextLength?: number;
}

interface CacheEntry {
  statements: ClassifiedStatement[];
}

let loaded = false;
let loading: Promise<void> | undefined;

/** Loads the parser's WebAssembly module once; classifySqlSync needs it loaded. */
export async function loadSqlParser(): Promise<void> {
  if (loaded) return;
  loading ??= loadModule().then(() => {
    loaded = true;
  });
  await loading;
}

export function sqlParserLoaded(): boolean {
  return loaded;
}

const ASCII = /^[\x00-\x7f]*$/;

/** A classifier with its own bounded cache. Most callers use the module-level classifySql / classifySqlSync. */
export class SqlClassifier {
  private readonly cache = new Map<string, CacheEntry>();
  private readonly maxEntries: number;
  private readonly maxText: number;
  hits = 0;
  misses = 0;

  constructor(opts: SqlClassifierOptions = {}) {
    this.maxEntries = opts.cacheEntries ?? 4096;
    this.maxText = opts.cacheMaxTextLength ?? 8192;
  }

  async classify(text: string, opts: ClassifyOptions = {}): Promise<ClassifiedSql> {
    await loadSqlParser();
    return this.classifySync(text, opts);
  }

  /** Synchronous classification for the hot path; call loadSqlParser() once before. Never throws on any text. */
  classifySync(text: string, opts: ClassifyOptions = {}): ClassifiedSql {
    if (!loaded) {
      throw new TaskgateError('internal', 'the SQL parser is not loaded', { hint: 'await loadSqlParser() at startup' });
    }
    const message = opts.message ?? 'query';
    const hit = this.cache.get(text);
    if (hit) {
      this.hits++;
      this.cache.delete(text); // LRU: move to the newest position
      this.cache.set(text, hit);
      return build(message, hit.statements);
    }
    this.misses++;
    const statements = classifyText(text, opts.prepared);
    const cacheable = this.maxEntries > 0 && text.length <= this.maxText && !statements.some((s) => usesPrepared(s));
    if (cacheable) {
      deepFreeze(statements);
      this.cache.set(text, { statements });
      if (this.cache.size > this.maxEntries) {
        const oldest = this.cache.keys().next().value;
        if (oldest !== undefined) this.cache.delete(oldest);
      }
    }
    return build(message, statements);
  }

  get cacheSize(): number {
    return this.cache.size;
  }

  clearCache(): void {
    this.cache.clear();
  }
}

const usesPreparedMark = new WeakSet<ClassifiedStatement>();
function usesPrepared(s: ClassifiedStatement): boolean {
  return usesPreparedMark.has(s);
}

function build(message: PostgresRequest['message'], statements: ClassifiedStatement[]): ClassifiedSql {
  return { request: { message, statements: statements.map((s) => s.statement) }, statements };
}

function deepFreeze(v: unknown): void {
  if (v === null || typeof v !== 'object' || Object.isFrozen(v)) return;
  Object.freeze(v);
  for (const k of Object.keys(v)) deepFreeze((v as Record<string, unknown>)[k]);
}

function unparseable(source: string, error: string, redacted: string): ClassifiedStatement {
  return {
    statement: {
      command: 'UNPARSEABLE',
      class: 'unparseable',
      tables: [],
      functions: [],
      fingerprint: '',
      text: redacted,
      has_where: false,
      flags: [],
      parse_error: error,
    },
    node: undefined,
    source,
  };
}

function parseErrorOf(e: unknown): string {
  const err = e as { message?: unknown; sqlDetails?: { cursorPosition?: number } };
  const msg = typeof err?.message === 'string' ? err.message : 'the parser rejected the statement';
  const pos = err?.sqlDetails?.cursorPosition;
  return safeParseError(msg) + (typeof pos === 'number' ? ` (at character ${pos + 1})` : '');
}

/** Parses and classifies `text` into one ClassifiedStatement per statement. */
function classifyText(text: string, prepared: PreparedLookup | undefined): ClassifiedStatement[] {
  let tree: { stmts?: { stmt?: unknown; stmt_location?: number; stmt_len?: number }[] };
  try {
    tree = parseSync(text);
  } catch (e) {
    const tokens = scanTokens(text);
    const bytes = Buffer.from(text, 'utf8');
    const redacted = tokens ? redactRange(bytes, tokens, 0, bytes.length) : redactUnscannable(text);
    return [unparseable(text, parseErrorOf(e), redacted)];
  }
  const raws = tree.stmts ?? [];
  if (raws.length === 0) return [];
  const ascii = ASCII.test(text);
  const bytes = Buffer.from(text, 'utf8');
  const tokens = scanTokens(text);
  const multiple = raws.length > 1;
  const out: ClassifiedStatement[] = [];
  for (const raw of raws) {
    const start = raw.stmt_location ?? 0;
    const end = raw.stmt_len ? start + raw.stmt_len : bytes.length;
    const source = (ascii ? text.slice(start, end) : bytes.toString('utf8', start, end)).trim();
    out.push(classifyOne(raw.stmt, source, bytes, tokens, start, end, multiple, prepared));
  }
  return out;
}

function classifyOne(
  node: unknown,
  source: string,
  bytes: Buffer,
  tokens: ReturnType<typeof scanTokens>,
  start: number,
  end: number,
  multiple: boolean,
  prepared: PreparedLookup | undefined,
): ClassifiedStatement {
  let fingerprint = '';
  try {
    fingerprint = fingerprintSync(source);
  } catch {
    fingerprint = '';
  }
  const text = tokens ? redactRange(bytes, tokens, start, end) : redactUnscannable(source);
  const a = analyzeStatement(node, prepared);
  const flags = multiple ? [...a.flags, 'multiple_statements'] : a.flags;
  const statement: PgStatementWithError = {
    command: a.command,
    class: a.class,
    tables: a.tables,
    functions: a.functions,
    fingerprint,
    text,
    has_where: a.has_where,
    flags,
  };
  if (a.unknown_prepared !== undefined) {
    statement.parse_error = `prepared statement "${a.unknown_prepared}" is not known to the sidecar`;
  }
  const cs: ClassifiedStatement = { statement, node, source };
  if (a.prepare) {
    cs.prepare = {
      name: a.prepare.name,
      statement: { ...statement, command: a.prepare.command, class: a.prepare.class, flags: a.flags },
    };
  }
  if (a.deallocate !== undefined) cs.deallocate = a.deallocate;
  if (a.uses_prepared) usesPreparedMark.add(cs);
  return cs;
}

const shared = new SqlClassifier();

/** Classifies `text` (loads the parser on first use). Never rejects for any text. */
export function classifySql(text: string, opts?: ClassifyOptions): Promise<ClassifiedSql> {
  return shared.classify(text, opts);
}

/** Synchronous classifySql for the hot path, once loadSqlParser() has resolved. */
export function classifySqlSync(text: string, opts?: ClassifyOptions): ClassifiedSql {
  return shared.classifySync(text, opts);
}

/** The shared classifier (cache statistics, clearing). */
export function sharedSqlClassifier(): SqlClassifier {
  return shared;
}
