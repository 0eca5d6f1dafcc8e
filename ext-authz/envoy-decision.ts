import { validateDecision } from '../core/engine/decision-schema.ts';
import { PolicyEngine, type EngineOptions } from '../core/engine/engine.ts';
import type { Decision } from '../core/policy-contract.ts';

/**
 * opa-envoy-plugin decision shapes, so its policies run unchanged: the
 * entrypoint (default `envoy/authz/allow`) returns a boolean, or an object
 * with `allowed` and optionally `headers`, `response_headers_to_add`,
 * `request_headers_to_remove`, `query_parameters_to_set`,
 * `query_parameters_to_remove`, `body`, `http_status`, `dynamic_metadata`.
 * An object with `result` is a taskgate decision and is validated as one.
 *
 * The Envoy-specific parts travel in `obligations.envoy`; anything malformed is
 * a deny with the reason (fail closed, as in the plugin, where a malformed
 * result is an error and Envoy applies status_on_error).
 */
export const ENVOY_ENTRYPOINT = 'envoy/authz/allow';

export interface EnvoyObligations {
  /** Request headers added/overwritten upstream on allow; response headers on deny. */
  headers: [string, string][];
  response_headers_to_add: [string, string][];
  request_headers_to_remove: string[];
  query_parameters_to_set: [string, string][];
  query_parameters_to_remove: string[];
  body?: string;
  http_status?: number;
  dynamic_metadata?: Record<string, unknown>;
}

export function envoyDecision(raw: unknown): Decision | string {
  if (typeof raw === 'boolean') return compat(raw, emptyObligations());
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) return `decision must be a boolean or an object, got ${kind(raw)}`;
  const o = raw as Record<string, unknown>;
  if ('result' in o) return validateDecision(o);
  if (typeof o.allowed !== 'boolean') return `decision.allowed must be a boolean, got ${kind(o.allowed)}`;
  const ob = emptyObligations();
  for (const k of ['headers', 'response_headers_to_add', 'query_parameters_to_set'] as const) {
    if (o[k] === undefined) continue;
    const pairs = headerPairs(o[k]);
    if (typeof pairs === 'string') return `decision.${k}: ${pairs}`;
    ob[k] = pairs;
  }
  for (const k of ['request_headers_to_remove', 'query_parameters_to_remove'] as const) {
    if (o[k] === undefined) continue;
    const v = o[k];
    if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) return `decision.${k} must be an array of strings`;
    ob[k] = v as string[];
  }
  if (o.body !== undefined) {
    if (typeof o.body !== 'string') return 'decision.body must be a string';
    ob.body = o.body;
  }
  if (o.http_status !== undefined) {
    const s = o.http_status;
    if (typeof s !== 'number' || !Number.isInteger(s) || s < 100 || s > 599) return 'decision.http_status must be an HTTP status code';
    ob.http_status = s;
  }
  if (o.dynamic_metadata !== undefined) {
    const m = o.dynamic_metadata;
    if (m === null || typeof m !== 'object' || Array.isArray(m)) return 'decision.dynamic_metadata must be an object';
    ob.dynamic_metadata = m as Record<string, unknown>;
  }
  return compat(o.allowed, ob);
}

/** An engine evaluating opa-envoy-plugin policies (or taskgate decisions) at another entrypoint. */
export function envoyPolicyEngine(opts: EngineOptions = {}): PolicyEngine {
  return new PolicyEngine({ ...opts, entrypoint: opts.entrypoint ?? ENVOY_ENTRYPOINT, decisionAdapter: envoyDecision });
}

export function envoyObligations(d: { obligations: Record<string, unknown> }): EnvoyObligations | undefined {
  return d.obligations.envoy as EnvoyObligations | undefined;
}

function compat(allowed: boolean, envoy: EnvoyObligations): Decision {
  return {
    result: allowed ? 'allow' : 'deny',
    reasons: [allowed ? 'allowed by policy' : 'denied by policy'],
    mask: [],
    obligations: { envoy },
  };
}

function emptyObligations(): EnvoyObligations {
  return { headers: [], response_headers_to_add: [], request_headers_to_remove: [], query_parameters_to_set: [], query_parameters_to_remove: [] };
}

/** `{"k": "v"}`, `{"k": ["v1","v2"]}`, or an array of such objects (the plugin accepts all three). */
function headerPairs(v: unknown): [string, string][] | string {
  const out: [string, string][] = [];
  const objs = Array.isArray(v) ? v : [v];
  for (const h of objs) {
    if (h === null || typeof h !== 'object' || Array.isArray(h)) return 'must be an object (or array of objects) of strings';
    for (const [k, x] of Object.entries(h as Record<string, unknown>)) {
      if (typeof x === 'string') out.push([k, x]);
      else if (Array.isArray(x) && x.every((s) => typeof s === 'string')) for (const s of x as string[]) out.push([k, s]);
      else return `value of ${JSON.stringify(k)} must be a string or an array of strings`;
    }
  }
  return out;
}

function kind(v: unknown): string {
  return v === null ? 'null' : Array.isArray(v) ? 'array' : typeof v;
}
