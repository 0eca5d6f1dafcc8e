import type { MaskRule } from '../../core/policy-contract.ts';
import type { ColumnLineage } from './classifier-port.ts';
import type { FieldDesc } from './codec/backend.ts';

/** Rewrites the DataRows of one result set. */
export interface ResultMasker {
  /** The re-framed DataRow (whole message) when a value changed, else undefined (forward the original bytes). */
  maskRow(payload: Buffer): Buffer | undefined;
  /** Masked values per output column name (counts only, never values). */
  counts(): Record<string, number>;
}

export interface ResultShape {
  fields: FieldDesc[];
  rules: MaskRule[];
  /** Lineage of the statement that produced the result, when known. */
  lineage: readonly ColumnLineage[] | undefined;
  /** Source tables the statement reads (schema.table), for conservative masking when lineage is unknown. */
  tables: string[];
}

/** Builds result maskers: resolves table OIDs / attribute numbers to column names and compiles the mask plan. */
export interface ResultMasking {
  forResult(shape: ResultShape): ResultMasker | undefined | Promise<ResultMasker | undefined>;
  close(): Promise<void>;
}
