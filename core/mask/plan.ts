/**
 * A compiled mask plan: the `mask` rules of one decision, ready for the hot path.
 *
 * compileMaskPlan(rules, { hashKey }) validates the rules once (a rule that can
 * never fire is refused) and precompiles column globs, field paths and the
 * detector set. The PostgreSQL proxy asks it for a RowMasker per result set,
 * the SSH proxy wraps it in a stream masker, the HTTP paths call maskJson.
 */
import { createHash } from 'node:crypto';
import { TaskgateError } from '../errors.ts';
import { validateMaskRule } from '../engine/decision-schema.ts';
import type { DetectorName, MaskRule, MaskStrategy } from '../policy-contract.ts';
import { detectorByName, findMatches, type Detector, type Match } from './detectors.ts';
import { compileFieldPath, type FieldMatcher } from './field-path.ts';
import { createTokenizer, parseHashKey, replacement, type StrategyContext } from './strategies.ts';

export interface MaskPlanOptions {
  /** Key for the hash strategy (see parseHashKey); required when a rule uses hash. */
  hashKey?: string | Uint8Array;
  /** Require known card-network IIN prefixes for the card detector (default true). */
  cardIin?: boolean;
}

/** Counts of masked values by column / field path / `detector:<name>`; never values. */
export type MaskCounts = Record<string, number>;

export interface ColumnRule {
  readonly pattern: string;
  readonly strategy: MaskStrategy;
  readonly keep: number | undefined;
  readonly re: RegExp;
}

export interface FieldRule {
  readonly path: string;
  readonly strategy: MaskStrategy;
  readonly keep: number | undefined;
  readonly matcher: FieldMatcher;
}

export interface DetectorRule {
  readonly detector: Detector;
  readonly strategy: MaskStrategy;
  readonly keep: number | undefined;
}

/** Output column of a result set, as the PostgreSQL proxy knows it. */
export interface ColumnMeta {
  /** Output name (RowDescription field name). */
  name: string;
  /** `schema.table` when the column is a plain reference to a table column. */
  table?: string;
  /** Source columns `schema.table.column` the output derives from (SQL lineage). */
  sources?: string[];
  /** Lineage could not be established for this column. */
  sourcesUnknown?: boolean;
  /** PostgreSQL type OID; non-text types masked by any strategy become NULL. */
  typeOid?: number;
}

export interface ForColumnsOptions {
  /**
   * The statement references a column some column rule masks (the caller knows
   * from the parsed statement; see MaskPlan.referencesMaskedColumn). Columns with
   * `sourcesUnknown` are then masked with the strictest column rule.
   */
  referencesMaskedColumn?: boolean;
}

export interface MaskedValue {
  value: string | null;
  masked: boolean;
}

export interface RowMasker {
  /** false: no column needs any work, the caller may skip masking entirely. */
  readonly active: boolean;
  /** Whether column `col` needs any work (a rule or detectors). */
  isActive(col: number): boolean;
  /** Whole-column strategy applied to `col`, if a column rule selected it. */
  columnStrategy(col: number): MaskStrategy | undefined;
  /**
   * Masks one value (text format). The returned object is reused by the next
   * call: read it before masking the next value.
   */
  mask(col: number, text: string | null): MaskedValue;
  /** Masked values per output column name. */
  masked_counts(): MaskCounts;
  /** Masked findings per `detector:<name>`. */
  detector_counts(): MaskCounts;
}

export interface TextMaskResult {
  /** The masked text; null when a null-strategy detector matched (the value becomes NULL). */
  text: string | null;
  /** Number of findings replaced. */
  findings: number;
}

const STRICTNESS: Record<MaskStrategy, number> = { partial: 1, hash: 2, redact: 3, null: 4 };

export function stricter<T extends { strategy: MaskStrategy }>(a: T | undefined, b: T): T {
  return a === undefined || STRICTNESS[b.strategy] > STRICTNESS[a.strategy] ? b : a;
}

/** PostgreSQL types whose text form is free text that detectors and markers can live in. */
const TEXT_OIDS = new Set([18, 19, 25, 142, 705, 1042, 1043]);
export const JSON_OIDS = new Set([114, 3802]);

export class MaskPlan {
  readonly rules: readonly MaskRule[];
  readonly columnRules: readonly ColumnRule[];
  readonly fieldRules: readonly FieldRule[];
  readonly detectorRules: readonly DetectorRule[];
  /** Detectors in use, each once. */
  readonly detectors: readonly Detector[];
  readonly strategyContext: StrategyContext;
  private readonly byDetector: Partial<Record<DetectorName, DetectorRule>>;
  /** Shortest text any active detector can match. */
  private readonly minLength: number;

  constructor(rules: readonly MaskRule[], opts: MaskPlanOptions = {}) {
    const columnRules: ColumnRule[] = [];
    const fieldRules: FieldRule[] = [];
    const byDetector: Partial<Record<DetectorName, DetectorRule>> = {};
    let needsKey = false;
    for (const [i, raw] of rules.entries()) {
      const checked = validateMaskRule(raw);
      if (typeof checked === 'string') throw new TaskgateError('decision_invalid', `mask[${i}]: ${checked}`);
      const keep = checked.keep;
      if (keep !== undefined && !Number.isInteger(keep)) {
        throw new TaskgateError('decision_invalid', `mask[${i}]: keep must be an integer`);
      }
      if (keep !== undefined && checked.strategy !== 'partial') {
        throw new TaskgateError('decision_invalid', `mask[${i}]: keep only applies to strategy partial`);
      }
      if (checked.strategy === 'hash') needsKey = true;
      if (checked.column !== undefined) {
        columnRules.push({ pattern: checked.column, strategy: checked.strategy, keep, re: columnGlob(checked.column, i) });
      } else if (checked.field !== undefined) {
        fieldRules.push({ path: checked.field, strategy: checked.strategy, keep, matcher: compileFieldPath(checked.field, i) });
      } else if (checked.detector !== undefined) {
        const d = detectorByName(checked.detector, opts.cardIin === undefined ? undefined : { cardIin: opts.cardIin });
        byDetector[checked.detector] = stricter(byDetector[checked.detector], { detector: d, strategy: checked.strategy, keep });
      }
    }
    if (needsKey && opts.hashKey === undefined) {
      throw new TaskgateError('config_invalid', 'a mask rule uses strategy hash but no hash key is configured', {
        hint: 'set the sidecar mask hash key (e.g. hex:$(openssl rand -hex 32))',
      });
    }
    this.rules = rules;
    this.columnRules = columnRules;
    this.fieldRules = fieldRules;
    this.byDetector = byDetector;
    this.detectorRules = Object.values(byDetector);
    this.detectors = this.detectorRules.map((r) => r.detector);
    this.strategyContext = { tokenize: opts.hashKey === undefined ? undefined : createTokenizer(parseHashKey(opts.hashKey)) };
    this.minLength = this.detectors.length === 0 ? Infinity : 6;
  }

  get empty(): boolean {
    return this.rules.length === 0;
  }

  get hasDetectors(): boolean {
    return this.detectors.length > 0;
  }

  detectorRule(name: DetectorName): DetectorRule | undefined {
    return this.byDetector[name];
  }

  /**
   * The strictest column rule matching a column name, qualified as far as known
   * (`schema.table.column`, `table.column` or `column`). A rule `email` matches
   * any column named email; `users.email` needs the table; globs with `*`.
   * Matching ignores case (a quoted "Email" is masked like email).
   */
  columnRule(qualifiedName: string): ColumnRule | undefined {
    let best: ColumnRule | undefined;
    for (const r of this.columnRules) if (r.re.test(qualifiedName)) best = stricter(best, r);
    return best;
  }

  /** Whether any of the referenced columns (qualified names) is masked by a column rule. */
  referencesMaskedColumn(qualifiedNames: Iterable<string>): boolean {
    if (this.columnRules.length === 0) return false;
    for (const n of qualifiedNames) if (this.columnRule(n)) return true;
    return false;
  }

  /**
   * Detector masking of free text. Unchanged text is returned as the same string.
   * Counts findings into `counts` under `detector:<name>` when given.
   */
  maskText(text: string, counts?: MaskCounts): TextMaskResult {
    const r = this.detect(text, counts);
    return r === undefined ? { text, findings: 0 } : r;
  }

  /** undefined when nothing matched (no allocation on that path). */
  detect(text: string, counts?: MaskCounts): TextMaskResult | undefined {
    if (text.length < this.minLength) return undefined;
    const matches = findMatches(text, this.detectors);
    if (matches.length === 0) return undefined;
    return this.applyMatches(text, matches, counts);
  }

  private applyMatches(text: string, matches: readonly Match[], counts?: MaskCounts): TextMaskResult {
    let out = '';
    let last = 0;
    for (const m of matches) {
      const rule = this.byDetector[m.detector]!;
      const rep = replacement(rule.strategy, text.slice(m.start, m.end), rule.keep, m.detector, this.strategyContext);
      if (counts) counts['detector:' + m.detector] = (counts['detector:' + m.detector] ?? 0) + 1;
      if (rep === null) {
        for (const n of matches) {
          if (n !== m && counts) counts['detector:' + n.detector] = (counts['detector:' + n.detector] ?? 0) + 1;
        }
        return { text: null, findings: matches.length };
      }
      out += text.slice(last, m.start) + rep;
      last = m.end;
    }
    return { text: out + text.slice(last), findings: matches.length };
  }

  /** Applies a whole-value strategy (column or field rule); the shape of the value picks the partial/hash format. */
  wholeValue(strategy: MaskStrategy, keep: number | undefined, text: string): string | null {
    if (strategy === 'redact' || strategy === 'null') return replacement(strategy, text, keep, undefined, this.strategyContext);
    return replacement(strategy, text, keep, shapeOf(text), this.strategyContext);
  }

  forColumns(columns: readonly ColumnMeta[], opts: ForColumnsOptions = {}): RowMasker {
    return new ColumnMasker(this, columns, opts);
  }
}

const SHAPE_DETECTORS: readonly Detector[] = [
  detectorByName('card'),
  detectorByName('email'),
  detectorByName('iban'),
  detectorByName('ssn'),
  detectorByName('phone'),
];

/** The detector whose match covers the whole (trimmed) value, if any. */
export function shapeOf(text: string): DetectorName | undefined {
  const t = text.trim();
  if (t.length < 6 || t.length > 64) return undefined;
  const ms = findMatches(t, SHAPE_DETECTORS);
  const m = ms[0];
  return ms.length === 1 && m !== undefined && m.start === 0 && m.end === t.length ? m.detector : undefined;
}

function columnGlob(pattern: string, i: number): RegExp {
  if (!/^[^.\s]+(\.[^.\s]+){0,2}$/.test(pattern)) {
    throw new TaskgateError('decision_invalid', `mask[${i}]: column ${JSON.stringify(pattern)} must be column, table.column or schema.table.column`);
  }
  const body = pattern
    .split('.')
    .map((p) => p.split('*').map(escapeRe).join('[^.]*'))
    .join('\\.');
  return new RegExp(`(?:^|\\.)${body}$`, 'i');
}

function escapeRe(s: string): string {
  return s.replace(/[\\^$.*+?()[\]{}|/]/g, '\\$&');
}

// ---- row masking -------------------------------------------------------------

interface ColumnAction {
  rule: { strategy: MaskStrategy; keep: number | undefined } | undefined;
  detectors: boolean;
  text: boolean;
  json: boolean;
}

class ColumnMasker implements RowMasker {
  readonly active: boolean;
  private readonly actions: ColumnAction[];
  private readonly names: string[];
  private readonly counts: number[];
  private readonly detectorCounts: MaskCounts = {};
  private readonly result: MaskedValue = { value: null, masked: false };

  constructor(
    private readonly plan: MaskPlan,
    columns: readonly ColumnMeta[],
    opts: ForColumnsOptions,
  ) {
    let strictestColumnRule: ColumnRule | undefined;
    for (const r of plan.columnRules) strictestColumnRule = stricter(strictestColumnRule, r);
    this.names = columns.map((c) => c.name);
    this.counts = columns.map(() => 0);
    this.actions = columns.map((c) => {
      let rule: ColumnRule | undefined;
      for (const n of columnCandidates(c)) {
        const r = plan.columnRule(n);
        if (r) rule = stricter(rule, r);
      }
      if (c.sourcesUnknown && opts.referencesMaskedColumn && strictestColumnRule) rule = stricter(rule, strictestColumnRule);
      const text = c.typeOid === undefined || TEXT_OIDS.has(c.typeOid) || JSON_OIDS.has(c.typeOid);
      return {
        rule: rule && { strategy: rule.strategy, keep: rule.keep },
        detectors: rule === undefined && plan.hasDetectors,
        text,
        json: c.typeOid !== undefined && JSON_OIDS.has(c.typeOid),
      };
    });
    this.active = this.actions.some((a) => a.rule !== undefined || a.detectors);
  }

  isActive(col: number): boolean {
    const a = this.actions[col];
    return a !== undefined && (a.rule !== undefined || a.detectors);
  }

  columnStrategy(col: number): MaskStrategy | undefined {
    return this.actions[col]?.rule?.strategy;
  }

  mask(col: number, text: string | null): MaskedValue {
    const res = this.result;
    res.value = text;
    res.masked = false;
    const a = this.actions[col];
    if (text === null || a === undefined) return res;
    if (a.rule !== undefined) {
      let v = a.text ? this.plan.wholeValue(a.rule.strategy, a.rule.keep, text) : null;
      if (v !== null && a.json) v = JSON.stringify(v);
      res.value = v;
      res.masked = true;
      this.counts[col]!++;
      return res;
    }
    if (!a.detectors) return res;
    const r = a.json ? maskJsonColumn(this.plan, text, this.detectorCounts) : this.plan.detect(text, this.detectorCounts);
    if (r === undefined) return res;
    res.value = a.text ? r.text : null;
    res.masked = true;
    this.counts[col]!++;
    return res;
  }

  masked_counts(): MaskCounts {
    const out: MaskCounts = {};
    for (let i = 0; i < this.names.length; i++) {
      const n = this.counts[i]!;
      if (n > 0) out[this.names[i]!] = (out[this.names[i]!] ?? 0) + n;
    }
    return out;
  }

  detector_counts(): MaskCounts {
    return { ...this.detectorCounts };
  }
}

/** Names a column is known by, most specific first. */
function columnCandidates(c: ColumnMeta): string[] {
  const out: string[] = [];
  if (c.sources) out.push(...c.sources);
  if (c.table) out.push(`${c.table}.${c.name}`);
  if ((c.sources === undefined && c.table === undefined) || c.sourcesUnknown) out.push(c.name);
  return out;
}

/** Set by json.ts (avoids an import cycle): detector masking inside a json/jsonb value. */
let jsonColumnMasker: ((plan: MaskPlan, text: string, counts: MaskCounts) => TextMaskResult | undefined) | undefined;

export function setJsonColumnMasker(f: typeof jsonColumnMasker): void {
  jsonColumnMasker = f;
}

function maskJsonColumn(plan: MaskPlan, text: string, counts: MaskCounts): TextMaskResult | undefined {
  return jsonColumnMasker ? jsonColumnMasker(plan, text, counts) : plan.detect(text, counts);
}

// ---- compile + cache ------------------------------------------------------------

const cache = new Map<string, MaskPlan>();
const CACHE_MAX = 256;

/**
 * Compiles (and caches by rules + key) a mask plan. Throws TaskgateError
 * `decision_invalid` for a malformed rule and `config_invalid` for a hash rule
 * without a key: the caller fails closed.
 */
export function compileMaskPlan(rules: readonly MaskRule[], opts: MaskPlanOptions = {}): MaskPlan {
  const keyId =
    opts.hashKey === undefined ? '-' : createHash('sha256').update(typeof opts.hashKey === 'string' ? opts.hashKey : Buffer.from(opts.hashKey)).digest('hex');
  const id = `${keyId}|${opts.cardIin === false ? 0 : 1}|${JSON.stringify(rules)}`;
  const hit = cache.get(id);
  if (hit) return hit;
  const plan = new MaskPlan(rules, opts);
  if (cache.size >= CACHE_MAX) cache.delete(cache.keys().next().value!);
  cache.set(id, plan);
  return plan;
}
