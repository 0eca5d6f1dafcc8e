import { sha256hex } from '../../core/hash.ts';
import type { HttpRequest } from '../../core/policy-contract.ts';
import { kubernetesRequestInfo } from './k8s-request-info.ts';
import { normalizeRequestPath, parseQuery } from './path.ts';

/**
 * The `request` block for HTTP, shared by the HTTP proxy and ext_authz: one
 * function, so a policy sees the same input whichever entry point is in front.
 */
export interface RawHttpRequest {
  method: string;
  /** Request target as received: path and query (`/api/v1/pods?watch=1`). */
  target: string;
  /** Header names in any case; repeated headers as arrays or comma-joined. */
  headers: Record<string, string | string[] | undefined>;
  /** Host (or :authority); falls back to the Host header. */
  host?: string;
}

export interface HttpInputOptions {
  /** Parse Kubernetes API paths into `request.kubernetes` (an API server upstream). */
  kubernetes?: boolean;
  /** Appended to the fingerprint: what an entry point adds to the input beyond `request` (ext_authz). */
  fingerprint_extra?: string;
}

export type HttpInputResult =
  | {
      ok: true;
      request: HttpRequest;
      /** Re-encoded normalised path + original query: what the proxy forwards. */
      forward_target: string;
      /** Duplicate slashes were merged: the upstream would see another path (ext_authz refuses these). */
      merged_slashes: boolean;
      /** Audit / reviewer text: `GET /api/v1/namespaces/shop/pods?watch=1`. */
      text: string;
      /** Decision-cache and grant key. */
      fingerprint: string;
    }
  | { ok: false; reason: string };

/**
 * Headers never placed in the policy input: credentials (identity reaches the
 * policy as `input.identity`, verified) and hop-by-hop plumbing.
 */
export const SECRET_HEADERS = new Set(['authorization', 'proxy-authorization', 'cookie', 'x-taskgate-upstream-authorization']);

/**
 * Headers that differ on every request and must not split the decision cache.
 * A policy that reads one of these still sees it; its decision is cached by
 * the rest of the request. Documented in docs/http.md.
 */
export const VOLATILE_HEADERS = new Set([
  'x-request-id',
  'traceparent',
  'tracestate',
  'x-b3-traceid',
  'x-b3-spanid',
  'x-b3-parentspanid',
  'x-b3-sampled',
  'x-b3-flags',
  'b3',
  'x-envoy-expected-rq-timeout-ms',
  'x-envoy-internal',
  'x-forwarded-proto',
  'content-length',
  'date',
  'x-taskgate-decision-id',
]);

export const TASK_HEADER = 'x-taskgate-task';

export function buildHttpRequest(raw: RawHttpRequest, opts: HttpInputOptions = {}): HttpInputResult {
  const method = raw.method.toUpperCase();
  if (!/^[A-Z][A-Z0-9_-]{0,31}$/.test(method)) return { ok: false, reason: `invalid HTTP method ${JSON.stringify(raw.method.slice(0, 40))}` };
  const p = normalizeRequestPath(raw.target);
  if (!p.ok) return p;
  const query = parseQuery(p.query);
  const headers = policyHeaders(raw.headers);
  const host = (raw.host ?? headers.host ?? '').toLowerCase();
  const request: HttpRequest = { method, path: p.path, query, headers, host };
  if (opts.kubernetes) request.kubernetes = kubernetesRequestInfo(method, p.path, query);
  const forward_target = p.canonical + (p.query ? `?${p.query}` : '');
  return {
    ok: true,
    request,
    forward_target,
    merged_slashes: p.merged_slashes,
    text: `${method} ${forward_target}`,
    fingerprint: requestFingerprint(request, opts.fingerprint_extra),
  };
}

/** Lower-cased, credential-free headers; repeated values joined with ", " (RFC 9110). */
export function policyHeaders(h: Record<string, string | string[] | undefined>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const k of Object.keys(h)) {
    const v = h[k];
    if (v === undefined) continue;
    const name = k.toLowerCase();
    if (name.startsWith(':') || SECRET_HEADERS.has(name)) continue;
    const value = Array.isArray(v) ? v.join(', ') : v;
    out[name] = out[name] === undefined ? value : `${out[name]}, ${value}`;
  }
  return out;
}

/**
 * Everything in the request a policy can see, minus volatile headers, hashed.
 * Query keys and header names are sorted so equivalent requests share a key.
 */
export function requestFingerprint(r: HttpRequest, extra = ''): string {
  // One string, one hash update: the same bytes (so the same key) as feeding the parts one by one, without a native call per part.
  let s = `${r.method}\0${r.path}\0${r.host}\0`;
  for (const k of Object.keys(r.query).sort()) s += `${k}=${JSON.stringify(r.query[k])}&`;
  s += '\0';
  for (const k of Object.keys(r.headers).sort()) {
    if (!VOLATILE_HEADERS.has(k)) s += `${k}:${r.headers[k]!}\n`;
  }
  s += '\0';
  s += extra;
  return `http:${sha256hex(s).slice(0, 32)}`;
}

/**
 * The task a request is for: `x-taskgate-task` header, or a `/task/<id>` path
 * prefix (for clients such as kubectl that cannot add headers: the kubeconfig
 * server URL carries it). Returns the target with the prefix removed.
 */
export function taskFromRequest(target: string, headers: Record<string, string | string[] | undefined>): { task_id?: string; target: string } {
  const m = /^\/task\/([^/?#]+)(?=[/?#]|$)/.exec(target);
  const fromHeader = headerValue(headers, TASK_HEADER);
  if (m) {
    let id: string;
    try {
      id = decodeURIComponent(m[1]!);
    } catch {
      id = m[1]!;
    }
    const rest = target.slice(m[0].length) || '/';
    return { task_id: fromHeader || id, target: rest.startsWith('/') ? rest : `/${rest}` };
  }
  return fromHeader ? { task_id: fromHeader, target } : { target };
}

export function headerValue(h: Record<string, string | string[] | undefined>, name: string): string | undefined {
  const v = h[name] ?? Object.entries(h).find(([k]) => k.toLowerCase() === name)?.[1];
  const s = Array.isArray(v) ? v[0] : v;
  return s === undefined || s === '' ? undefined : s.trim();
}

/** `Bearer <token>` from an Authorization value; undefined when absent or another scheme. */
export function bearerToken(h: Record<string, string | string[] | undefined>): string | undefined {
  const v = headerValue(h, 'authorization');
  const m = v ? /^Bearer\s+(\S+)\s*$/i.exec(v) : null;
  return m ? m[1] : undefined;
}
