/**
 * What the proxy needs from the SQL classifier (classify.ts, libpg-query)
 * and the column lineage (lineage.ts): the policy `request` statements for a
 * text, per statement the lineage of its output columns (computed lazily:
 * only results under mask rules need it), and the session bookkeeping for
 * PREPARE / DEALLOCATE. classifier.ts adapts the real classifier to this.
 */
import type { PgStatement, PostgresRequest } from '../../core/policy-contract.ts';
import type { ColumnLineage } from './lineage.ts';

export type { ColumnLineage };

export interface AnalyzedSql {
  statements: PgStatement[];
  /** Lineage of statement i's output columns by position; undefined when unknown / not row-returning. */
  lineage(i: number): readonly ColumnLineage[] | undefined;
  /** PREPARE name AS ...: the name and what it runs, per statement. */
  prepares?: { name: string; statement: PgStatement }[];
  /** DEALLOCATE name (null = ALL). */
  deallocates?: (string | null)[];
}

export interface ClassifyContext {
  message: PostgresRequest['message'];
  /** Prepared statements of this session by name (for EXECUTE name). */
  prepared: ReadonlyMap<string, PgStatement>;
}

export type SqlClassifier = (text: string, ctx: ClassifyContext) => AnalyzedSql | Promise<AnalyzedSql>;

export const noLineage = (): undefined => undefined;
