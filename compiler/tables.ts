import { isDeepStrictEqual } from 'node:util';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { parseDocument } from 'yaml';
import { PolicyEngine } from '../core/engine/engine.ts';
import { validateDecision } from '../core/engine/decision-schema.ts';
import { TaskgateError } from '../core/errors.ts';
import type { Decision, DecisionResult, MaskRule } from '../core/policy-contract.ts';
import { IGNORED } from './build.ts';
import type { Catalog } from './catalog.ts';
import { runOpa } from './opa.ts';

/**
 * Decision tables: YAML files of cases under `<dir>/tests/*.yaml`, each an
 * input and the decision expected for it. Every case is evaluated twice — by
 * the compiled WASM bundle through PolicyEngine (the artifact that ships) and
 * by `opa eval` on the Rego source — and both must agree with each other and
 * with the expectation. Format: docs/writing-policies.md#decision-tables.
 */

/** The clock of a case that does not set `now` (both evaluators use it). */
export const DEFAULT_NOW = '2026-06-01T00:00:00Z';

export interface Expectation {
  result: DecisionResult;
  /** Each must be a substring of some reason. */
  reasons: string[];
  /** Keys given must equal the decision's review requirement. */
  review?: Record<string, unknown>;
  /** The exact mask rules (order-insensitive). */
  mask?: MaskRule[];
  /** Mask rules that must be present among others. */
  mask_includes?: MaskRule[];
  /** Keys given must equal the decision's obligations. */
  obligations?: Record<string, unknown>;
}

export interface TableCase {
  id: string;
  file: string;
  name: string;
  now: string;
  input: Record<string, unknown>;
  expect: Expectation;
}

export interface CaseOutcome {
  case: TableCase;
  wasm: Decision;
  opa: Decision | string;
  problems: string[];
}

const FILE_KEYS = ['defaults', 'cases'];
const DEFAULT_KEYS = ['now', 'input'];
const CASE_KEYS = ['name', 'now', 'input', 'expect', 'unknown_task_type'];
const EXPECT_KEYS = ['result', 'reasons', 'review', 'mask', 'mask_includes', 'obligations'];

/** Loads every table under `<dir>/tests`. Structural problems and unknown task types are errors, one line each. */
export async function loadTables(dir: string, catalog?: Catalog): Promise<TableCase[]> {
  const tdir = join(dir, 'tests');
  const entries = await readdir(tdir).catch(() => [] as string[]);
  const files = entries.filter((f) => /\.ya?ml$/.test(f)).sort();
  const cases: TableCase[] = [];
  const problems: string[] = [];
  for (const f of files) {
    const file = join(tdir, f);
    const shown = relative(process.cwd(), file) || file;
    const doc = parseDocument(await readFile(file, 'utf8'));
    if (doc.errors.length > 0) {
      problems.push(`${shown}:${doc.errors[0]?.linePos?.[0]?.line ?? 1}: ${doc.errors[0]?.message.split('\n')[0]}`);
      continue;
    }
    cases.push(...parseTable(doc.toJS(), shown, catalog, problems));
  }
  const seen = new Set<string>();
  for (const c of cases) {
    if (seen.has(c.id)) problems.push(`${c.file}: case ${JSON.stringify(c.name)} is defined twice`);
    seen.add(c.id);
  }
  if (problems.length > 0) {
    throw new TaskgateError('input_invalid', `decision tables have ${problems.length} problem(s):\n  ${problems.join('\n  ')}`);
  }
  return cases;
}

export function parseTable(raw: unknown, file: string, catalog: Catalog | undefined, problems: string[]): TableCase[] {
  const out: TableCase[] = [];
  const bad = (where: string, msg: string): void => {
    problems.push(`${file}: ${where}: ${msg}`);
  };
  if (!isObject(raw)) {
    bad('top level', 'must be a mapping with cases (and optional defaults)');
    return out;
  }
  unknownKeys(raw, FILE_KEYS, 'top level', bad);
  const defaults = raw.defaults === undefined ? {} : raw.defaults;
  if (!isObject(defaults)) {
    bad('defaults', 'must be a mapping');
    return out;
  }
  unknownKeys(defaults, DEFAULT_KEYS, 'defaults', bad);
  if (!Array.isArray(raw.cases) || raw.cases.length === 0) {
    bad('cases', 'must be a non-empty list');
    return out;
  }
  raw.cases.forEach((c: unknown, i: number) => {
    if (!isObject(c)) return bad(`cases[${i}]`, 'must be a mapping');
    const name = typeof c.name === 'string' && c.name !== '' ? c.name : undefined;
    const where = name ? `case ${JSON.stringify(name)}` : `cases[${i}]`;
    if (!name) bad(where, 'needs a name');
    unknownKeys(c, CASE_KEYS, where, bad);
    const input = deepMerge(defaults.input ?? {}, c.input ?? {});
    if (!isObject(input)) return bad(where, 'input must be a mapping');
    const now = c.now ?? defaults.now ?? DEFAULT_NOW;
    if (typeof now !== 'string' || Number.isNaN(Date.parse(now))) return bad(where, `now must be an RFC 3339 time, got ${JSON.stringify(now)}`);
    const expect = parseExpect(c.expect, where, bad);
    if (!expect) return;
    const type = isObject(input.task) ? input.task.type : undefined;
    if (catalog && typeof type === 'string' && !(type in catalog) && c.unknown_task_type !== true) {
      bad(where, `unknown task type ${JSON.stringify(type)} (catalog has: ${Object.keys(catalog).join(', ')}; mark deliberate cases with unknown_task_type: true)`);
    }
    out.push({ id: `${file}#${name ?? i}`, file, name: name ?? `cases[${i}]`, now, input, expect });
  });
  return out;
}

function parseExpect(v: unknown, where: string, bad: (w: string, m: string) => void): Expectation | undefined {
  if (!isObject(v)) {
    bad(where, 'needs expect: {result: allow|deny|review, ...}');
    return undefined;
  }
  unknownKeys(v, EXPECT_KEYS, `${where}: expect`, bad);
  if (v.result !== 'allow' && v.result !== 'deny' && v.result !== 'review') {
    bad(where, `expect.result must be allow, deny or review, got ${JSON.stringify(v.result)}`);
    return undefined;
  }
  const reasons = v.reasons === undefined ? [] : typeof v.reasons === 'string' ? [v.reasons] : v.reasons;
  if (!Array.isArray(reasons) || !reasons.every((r) => typeof r === 'string')) {
    bad(where, 'expect.reasons must be a string or a list of strings');
    return undefined;
  }
  const e: Expectation = { result: v.result, reasons };
  for (const k of ['review', 'obligations'] as const) {
    if (v[k] !== undefined) {
      if (!isObject(v[k])) bad(where, `expect.${k} must be a mapping`);
      else e[k] = v[k];
    }
  }
  for (const k of ['mask', 'mask_includes'] as const) {
    if (v[k] !== undefined) {
      if (!Array.isArray(v[k])) bad(where, `expect.${k} must be a list of mask rules`);
      else e[k] = v[k] as MaskRule[];
    }
  }
  return e;
}

/** Evaluates every case through the compiled bundle, with the case's clock injected into time.now_ns. */
export async function evalWasm(bundle: Buffer, cases: TableCase[]): Promise<Map<string, Decision>> {
  let now = 0;
  const engine = new PolicyEngine({ now: () => now, evalBudgetMs: 5_000 });
  await engine.load(bundle, 'taskgate test');
  const out = new Map<string, Decision>();
  for (const c of cases) {
    now = Date.parse(c.now);
    const { policy_revision: _r, eval_ns: _n, synthetic: _s, ...d } = engine.evaluate(c.input);
    out.set(c.id, d);
  }
  return out;
}

// One `opa eval` for all cases: a helper module evaluates the decision for
// each case with its input and its clock (`with time.now_ns as <ns>`).
const HELPER = `package taskgate_decision_tables

results[id] := d if {
\tsome id, c in input.cases
\td := data.taskgate.decision with input as c.input with time.now_ns as c.now_ns
}
`;

/** Evaluates every case with `opa eval` on the Rego source. A string value is why that case produced no valid decision. */
export async function evalOpa(dir: string, cases: TableCase[]): Promise<Map<string, Decision | string>> {
  const tmp = await mkdtemp(join(tmpdir(), 'taskgate-tables-'));
  try {
    await writeFile(join(tmp, 'helper.rego'), HELPER);
    const payload: Record<string, { input: unknown; now_ns: bigint }> = {};
    for (const c of cases) payload[c.id] = { input: c.input, now_ns: BigInt(Date.parse(c.now)) * 1_000_000n };
    const stdin = JSON.stringify({ cases: payload }, (_k, v: unknown) => (typeof v === 'bigint' ? `@@${v}@@` : v)).replace(/"@@(\d+)@@"/g, '$1');
    const args = ['eval', '-d', resolve(dir), '-d', join(tmp, 'helper.rego'), '-I', '--format', 'json'];
    for (const ig of IGNORED) args.push('--ignore', ig);
    args.push('data.taskgate_decision_tables.results');
    const r = await runOpa(args, { input: stdin });
    if (r.code !== 0) throw new TaskgateError('policy_eval', `opa eval failed: ${(r.stderr || r.stdout).trim()}`);
    const parsed = JSON.parse(r.stdout) as { result?: { expressions: { value: Record<string, unknown> }[] }[] };
    const values = parsed.result?.[0]?.expressions[0]?.value ?? {};
    const out = new Map<string, Decision | string>();
    for (const c of cases) {
      const v = values[c.id];
      if (v === undefined) {
        out.set(c.id, 'opa eval: decision undefined (an evaluation error or no rule produced a value)');
        continue;
      }
      const checked = validateDecision(v);
      out.set(c.id, typeof checked === 'string' ? `opa eval: invalid decision: ${checked}` : checked);
    }
    return out;
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}

/** Compares one case's two decisions with each other and with the expectation; returns the problems (empty = pass). */
export function checkCase(c: TableCase, wasm: Decision, opa: Decision | string): string[] {
  const problems: string[] = [];
  if (typeof opa === 'string') problems.push(`${opa}; WASM said ${wasm.result}`);
  else if (!isDeepStrictEqual(canonical(wasm), canonical(opa))) {
    problems.push('WASM bundle and opa eval disagree:');
    for (const line of diffLines(canonical(opa), canonical(wasm))) problems.push(`  ${line}`);
  }
  const e = c.expect;
  if (wasm.result !== e.result) problems.push(`result: expected ${e.result}, got ${wasm.result}`);
  for (const want of e.reasons) {
    if (!wasm.reasons.some((r) => r.includes(want))) problems.push(`reasons: none contains ${JSON.stringify(want)}`);
  }
  if (e.review) {
    if (!wasm.review) problems.push('review: expected a review requirement, got none');
    else {
      for (const [k, v] of Object.entries(e.review)) {
        const got = (wasm.review as unknown as Record<string, unknown>)[k];
        const norm = (x: unknown): unknown => (Array.isArray(x) ? [...x].sort() : x);
        if (!isDeepStrictEqual(norm(got), norm(v))) problems.push(`review.${k}: expected ${JSON.stringify(v)}, got ${JSON.stringify(got)}`);
      }
    }
  }
  if (e.mask) {
    const want = e.mask.map(ruleKey).sort();
    const got = wasm.mask.map(ruleKey).sort();
    if (!isDeepStrictEqual(want, got)) problems.push(`mask: expected ${want.join(' ') || '[]'}, got ${got.join(' ') || '[]'}`);
  }
  for (const m of e.mask_includes ?? []) {
    if (!wasm.mask.some((g) => ruleKey(g) === ruleKey(m))) problems.push(`mask: missing ${ruleKey(m)}`);
  }
  for (const [k, v] of Object.entries(e.obligations ?? {})) {
    if (!isDeepStrictEqual(wasm.obligations[k], v)) problems.push(`obligations.${k}: expected ${JSON.stringify(v)}, got ${JSON.stringify(wasm.obligations[k])}`);
  }
  return problems;
}

export interface TablesReport {
  outcomes: CaseOutcome[];
  failed: CaseOutcome[];
  disagreements: number;
}

/** Runs all cases through both evaluators and checks them. */
export async function runTables(dir: string, bundle: Buffer, cases: TableCase[]): Promise<TablesReport> {
  const [wasm, opa] = await Promise.all([evalWasm(bundle, cases), evalOpa(dir, cases)]);
  const outcomes: CaseOutcome[] = cases.map((c) => {
    const w = wasm.get(c.id) as Decision;
    const o = opa.get(c.id) ?? 'opa eval: no result';
    return { case: c, wasm: w, opa: o, problems: checkCase(c, w, o) };
  });
  const disagreements = outcomes.filter((o) => typeof o.opa === 'string' || !isDeepStrictEqual(canonical(o.wasm), canonical(o.opa))).length;
  return { outcomes, failed: outcomes.filter((o) => o.problems.length > 0), disagreements };
}

/** A failed case for humans: the case, what went wrong, and the decision. */
export function formatFailure(o: CaseOutcome): string {
  const lines = [`FAIL ${o.case.file}: ${o.case.name}`];
  for (const p of o.problems) lines.push(`    ${p}`);
  lines.push(`    decision (WASM): ${o.wasm.result} — ${o.wasm.reasons.join(' | ') || '(no reasons)'}`);
  return lines.join('\n');
}

function canonical(d: Decision): Decision {
  const c: Decision = { result: d.result, reasons: [...d.reasons].sort(), mask: d.mask, obligations: d.obligations };
  if (d.review) c.review = { ...d.review, approvers: [...d.review.approvers].sort() };
  return c;
}

/** Field-level differences between two decisions (opa eval first, WASM second). */
function diffLines(a: Decision, b: Decision): string[] {
  const out: string[] = [];
  for (const k of ['result', 'reasons', 'review', 'mask', 'obligations'] as const) {
    if (!isDeepStrictEqual(a[k], b[k])) out.push(`${k}: opa eval ${JSON.stringify(a[k])} vs WASM ${JSON.stringify(b[k])}`);
  }
  return out;
}

function ruleKey(m: MaskRule): string {
  const sel = m.column !== undefined ? `column=${m.column}` : m.field !== undefined ? `field=${m.field}` : `detector=${m.detector}`;
  return `{${sel} ${m.strategy}${m.keep !== undefined ? ` keep=${m.keep}` : ''}}`;
}

function unknownKeys(o: Record<string, unknown>, allowed: string[], where: string, bad: (w: string, m: string) => void): void {
  for (const k of Object.keys(o)) if (!allowed.includes(k)) bad(where, `unknown key ${k} (expected: ${allowed.join(', ')})`);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/** Objects merge recursively; arrays and scalars replace; null deletes the key. */
export function deepMerge(base: unknown, over: unknown): unknown {
  if (!isObject(base) || !isObject(over)) return over === undefined ? base : over;
  const out: Record<string, unknown> = { ...base };
  for (const [k, v] of Object.entries(over)) {
    if (v === null) delete out[k];
    else out[k] = deepMerge(base[k], v);
  }
  return out;
}

