import { DETECTORS, MASK_STRATEGIES, type Decision, type MaskRule } from '../policy-contract.ts';

/**
 * Checks a value returned by the policy against the decision schema. Returns the
 * normalised decision or a one-line description of what is wrong (the engine
 * turns that into a deny).
 */
export function validateDecision(v: unknown): Decision | string {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return 'decision is not an object';
  const o = v as Record<string, unknown>;
  const result = o.result;
  if (result !== 'allow' && result !== 'deny' && result !== 'review') {
    return `decision.result must be allow|deny|review, got ${JSON.stringify(result)}`;
  }
  const reasons = o.reasons ?? [];
  if (!isStringArray(reasons)) return 'decision.reasons must be an array of strings';
  const decision: Decision = { result, reasons: [...reasons].sort(), mask: [], obligations: {} };
  if (result === 'review') {
    const r = o.review as Record<string, unknown> | undefined;
    if (!r || typeof r !== 'object') return 'decision.review is required when result is review';
    if (!isStringArray(r.approvers) || r.approvers.length === 0) return 'decision.review.approvers must be a non-empty array of strings';
    const min = r.min_approvals ?? 1;
    if (typeof min !== 'number' || !Number.isInteger(min) || min < 1) return 'decision.review.min_approvals must be an integer >= 1';
    const timeout = r.timeout_s ?? 900;
    if (typeof timeout !== 'number' || !(timeout > 0)) return 'decision.review.timeout_s must be a positive number';
    decision.review = { approvers: [...r.approvers].sort(), min_approvals: min, timeout_s: timeout };
  }
  const mask = o.mask ?? [];
  if (!Array.isArray(mask)) return 'decision.mask must be an array';
  for (const [i, m] of mask.entries()) {
    const checked = validateMaskRule(m);
    if (typeof checked === 'string') return `decision.mask[${i}]: ${checked}`;
    decision.mask.push(checked);
  }
  const ob = o.obligations ?? {};
  if (ob === null || typeof ob !== 'object' || Array.isArray(ob)) return 'decision.obligations must be an object';
  for (const k of ['max_rows', 'max_bytes', 'session_ttl_s'] as const) {
    const n = (ob as Record<string, unknown>)[k];
    if (n !== undefined && (typeof n !== 'number' || n < 0)) return `decision.obligations.${k} must be a non-negative number`;
  }
  decision.obligations = ob as Decision['obligations'];
  return decision;
}

export function validateMaskRule(m: unknown): MaskRule | string {
  if (m === null || typeof m !== 'object' || Array.isArray(m)) return 'mask rule is not an object';
  const r = m as Record<string, unknown>;
  const selectors = ['column', 'field', 'detector'].filter((k) => r[k] !== undefined);
  if (selectors.length !== 1) return 'mask rule needs exactly one of column, field, detector';
  if (!MASK_STRATEGIES.includes(r.strategy as never)) return `mask strategy must be one of ${MASK_STRATEGIES.join('|')}`;
  if (r.detector !== undefined && !DETECTORS.includes(r.detector as never)) return `unknown detector ${JSON.stringify(r.detector)}`;
  for (const k of ['column', 'field'] as const) {
    if (r[k] !== undefined && (typeof r[k] !== 'string' || r[k] === '')) return `mask ${k} must be a non-empty string`;
  }
  if (r.keep !== undefined && (typeof r.keep !== 'number' || r.keep < 0)) return 'mask keep must be a non-negative number';
  const rule: MaskRule = { strategy: r.strategy as MaskRule['strategy'] };
  if (r.column !== undefined) rule.column = r.column as string;
  if (r.field !== undefined) rule.field = r.field as string;
  if (r.detector !== undefined) rule.detector = r.detector as MaskRule['detector'];
  if (r.keep !== undefined) rule.keep = r.keep as number;
  return rule;
}

function isStringArray(v: unknown): v is string[] {
  return Array.isArray(v) && v.every((x) => typeof x === 'string');
}
