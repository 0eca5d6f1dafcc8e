/**
 * What the proxy needs from the SQL classifier (sidecar/postgres/classify.ts,
 * built on libpg-query) and the column lineage (lineage.ts): the policy
 * `request` statements for a text, and for each statement the source columns
 * of each output column. classifier.ts adapts the real classifier to this.
 */
import type { PgStatement, PostgresRequest } from '../../core/policy-contract.ts';

/** Sources of one output column: `schema.table.column` names, or unknown. */
export interface OutputLineage {
  sources: string[];
  /** Lineage could not be established (`*` over unknown columns, functions over records ...). */
  unknown: boolean;
}

export interface AnalyzedSql {
  statements: PgStatement[];
  /**
   * Per statement: the lineage of each output column by position, or
   * undefined when the statement has no analyzable target list.
   */
  lineage: (OutputLineage[] | undefined)[];
}

export interface ClassifyContext {
  message: PostgresRequest['message'];
  /** Prepared statements of this session by name (for EXECUTE name). */
  prepared: ReadonlyMap<string, PgStatement>;
}

export type SqlClassifier = (text: string, ctx: ClassifyContext) => AnalyzedSql | Promise<AnalyzedSql>;
