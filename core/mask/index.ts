/**
 * Masking: one implementation for every data path.
 *
 * - PostgreSQL results: compileMaskPlan(rules, { hashKey }).forColumns(columns) => RowMasker
 * - SSH output:         createStreamMasker(plan) => push(chunk) / flush()
 * - HTTP JSON bodies:   maskJsonText(body, plan, { maxBytes }) / maskJson(value, plan)
 *
 * See docs/masking.md.
 */
export {
  compileMaskPlan,
  MaskPlan,
  shapeOf,
  type ColumnMeta,
  type ForColumnsOptions,
  type MaskCounts,
  type MaskedValue,
  type MaskPlanOptions,
  type RowMasker,
  type TextMaskResult,
} from './plan.ts';
export { createStreamMasker, maskBytes, type StreamMasker, type StreamMaskerOptions } from './stream.ts';
export { maskJson, maskJsonText, type JsonMaskResult, type JsonTextOptions } from './json.ts';
export { compileFieldPath, pathKey, type PathStep } from './field-path.ts';
export {
  cardIinValid,
  createDetectors,
  findMatches,
  ibanMod97Valid,
  luhnValid,
  type Detector,
  type Match,
} from './detectors.ts';
export {
  cardPartial,
  createTokenizer,
  emailPartial,
  parseHashKey,
  redactMarker,
  REDACTED,
  TOKEN_PREFIX,
} from './strategies.ts';
