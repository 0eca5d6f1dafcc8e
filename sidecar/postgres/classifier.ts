/**
 * The production classifier for the proxy: classify.ts (the real PostgreSQL
 * parser via libpg-query, cached by exact text) plus lineage.ts over the same
 * parse tree, computed only when a result needs masking and memoised per tree.
 *
 * Shape cache: statements that differ only in numeric literals classify
 * identically (command, class, tables, functions, flags, fingerprint and the
 * literal-free text are all literal-independent), yet an exact-text cache
 * misses on every one of them (pgbench, ORMs that inline ids). In front of
 * the classifier sits a second cache keyed by the text with numeric literals
 * replaced. It applies only to texts whose lexical structure is trivial: no
 * quotes of any kind, no dollar signs (dollar quotes, parameters), no
 * comments, no backslashes, ASCII only, no EXECUTE (which depends on session
 * state). In such text a number token cannot hide or change code, so two
 * texts with the same key parse to the same statement shapes. Unparseable
 * results are never shape-cached (their error positions differ).
 */
import { classifySqlSync, loadSqlParser, type ClassifiedStatement } from './classify.ts';
import type { AnalyzedSql, SqlClassifier } from './classifier-port.ts';
import { lineageOf, type ColumnLineage } from './lineage.ts';

const memo = new WeakMap<object, readonly ColumnLineage[] | null>();

function lineageFor(s: ClassifiedStatement | undefined): readonly ColumnLineage[] | undefined {
  const node = s?.node;
  if (!node || typeof node !== 'object') return undefined;
  let l = memo.get(node);
  if (l === undefined) {
    l = lineageOf(node) ?? null;
    memo.set(node, l);
  }
  return l ?? undefined;
}

/** Texts the shape cache must not touch: anything beyond plain tokens (see the module comment). */
const NOT_PLAIN = /['"$\\`]|--|\/\*|[^\x20-\x7e\t\n\r]|\bexecute\b/i;
/** A numeric literal not glued to an identifier. */
const NUMBER = /(?<![A-Za-z0-9_$.])(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?/g;
/** Placeholder outside the accepted alphabet, so a key can never equal another plain text. */
const HOLE = '\u00a7';

/** The shape-cache key of a text, or undefined when the text is not eligible. */
export function shapeKey(text: string): string | undefined {
  if (text.length > 8192 || NOT_PLAIN.test(text)) return undefined;
  return text.replace(NUMBER, HOLE);
}

export interface ClassifierOptions {
  /** Entries of the numeric-literal shape cache (default 4096; 0 disables it). */
  shapeCacheEntries?: number;
}

/** Loads the parser's WebAssembly once, then classifies synchronously (no await on the hot path). */
export async function createSqlClassifier(opts: ClassifierOptions = {}): Promise<SqlClassifier> {
  await loadSqlParser();
  const max = opts.shapeCacheEntries ?? 4096;
  const shapes = new Map<string, AnalyzedSql>();
  return (text, ctx): AnalyzedSql => {
    const key = max > 0 ? shapeKey(text) : undefined;
    if (key !== undefined) {
      const hit = shapes.get(key);
      if (hit) {
        shapes.delete(key);
        shapes.set(key, hit);
        return hit;
      }
    }
    const c = classifySqlSync(text, { message: ctx.message, prepared: ctx.prepared });
    const out: AnalyzedSql = { statements: c.request.statements, lineage: (i) => lineageFor(c.statements[i]) };
    for (const s of c.statements) {
      if (s.prepare) (out.prepares ??= []).push(s.prepare);
      if (s.deallocate !== undefined) (out.deallocates ??= []).push(s.deallocate);
    }
    if (key !== undefined && !out.statements.some((s) => s.class === 'unparseable' || s.command === 'EXECUTE')) {
      shapes.set(key, out);
      if (shapes.size > max) shapes.delete(shapes.keys().next().value!);
    }
    return out;
  };
}
