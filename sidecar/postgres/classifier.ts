/**
 * The production classifier for the proxy: classify.ts (the real PostgreSQL
 * parser via libpg-query, cached by text) plus lineage.ts over the same parse
 * tree, computed only when a result needs masking and memoised per tree.
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

/** Loads the parser's WebAssembly once, then classifies synchronously (no await on the hot path). */
export async function createSqlClassifier(): Promise<SqlClassifier> {
  await loadSqlParser();
  return (text, ctx): AnalyzedSql => {
    const c = classifySqlSync(text, { message: ctx.message, prepared: ctx.prepared });
    const out: AnalyzedSql = { statements: c.request.statements, lineage: (i) => lineageFor(c.statements[i]) };
    for (const s of c.statements) {
      if (s.prepare) (out.prepares ??= []).push(s.prepare);
      if (s.deallocate !== undefined) (out.deallocates ??= []).push(s.deallocate);
    }
    return out;
  };
}
