import type { RawHttpRequest } from '../sidecar/http/request-input.ts';
import { parseQuery } from '../sidecar/http/path.ts';

/**
 * Input from an Envoy CheckRequest (envoy.service.auth.v3), one concern only:
 *
 * - `raw`: method, target, headers, host for taskgate's own `request` block
 *   (built by sidecar/http/request-input.ts, the same code the HTTP proxy uses);
 * - `extra`: opa-envoy-plugin's input fields, so a policy written for it runs
 *   unchanged: `attributes` (the CheckRequest attributes in protojson form:
 *   lowerCamelCase, int64 as strings, bytes base64, timestamps RFC 3339),
 *   `parsed_path`, `parsed_query`, `parsed_body`, `truncated_body`. Built
 *   when first called: a Check answered from the decision cache never
 *   converts the attributes (a fifth of a cached Check's CPU, measured).
 */
export interface CheckInput {
  raw: RawHttpRequest;
  extra: () => Record<string, unknown>;
  /** Part of the cache key for what `extra` adds beyond `request` (body, credentials, peer); hashed with it. */
  fingerprint_extra: string;
  context_extensions: Record<string, string>;
  client_address?: string;
  request_id?: string;
}

export type CheckInputResult = ({ ok: true } & CheckInput) | { ok: false; reason: string };

type Obj = Record<string, unknown>;

export function checkInput(req: unknown): CheckInputResult {
  const attributes = asObj(asObj(req)?.attributes);
  const http = asObj(asObj(attributes?.request)?.http);
  if (!attributes || !http) return { ok: false, reason: 'CheckRequest has no attributes.request.http' };
  const method = str(http.method);
  const target = str(http.path);
  if (!method || !target) return { ok: false, reason: 'CheckRequest has no HTTP method or path' };
  const headers = headerMap(http);
  const host = str(http.host) || headers[':authority'] || headers.host || '';

  const q = target.indexOf('?');
  const pathOnly = q >= 0 ? target.slice(0, q) : target;
  let decodedPath: string;
  try {
    decodedPath = decodeURIComponent(pathOnly);
  } catch {
    return { ok: false, reason: 'path contains a malformed percent-escape' };
  }

  const rawBody = http.rawBody instanceof Uint8Array ? Buffer.from(http.rawBody) : undefined;
  const body = rawBody && rawBody.length > 0 ? rawBody.toString('utf8') : str(http.body);
  const pb = parsedBody(headers, body);
  if (!pb.ok) return pb;

  const source = asObj(attributes.source);
  const sock = asObj(asObj(source?.address)?.socketAddress);
  const client_address = sock ? str(sock.address) : undefined;
  const ctx = asObj(attributes.contextExtensions) ?? {};
  const context_extensions: Record<string, string> = {};
  for (const k of Object.keys(ctx)) context_extensions[k] = String(ctx[k]);

  // Not hashed here: requestFingerprint hashes it with the request block, in one pass.
  // The body is length-prefixed so its bytes cannot pose as the fields after it.
  const fx = `${headers.authorization ?? ''}\0${body.length}:${body}\0${client_address ?? ''}\0${str(source?.principal)}\0${JSON.stringify(ctx)}\0${
    attributes.metadataContext === undefined ? '' : JSON.stringify(protojson(attributes.metadataContext))
  }`;

  const out: CheckInput & { ok: true } = {
    ok: true,
    raw: { method, target, headers, host },
    extra: once(() => {
      const parsed_path = decodedPath.replace(/^\/+/, '').split('/');
      const parsed_query = { ...parseQuery(q >= 0 ? target.slice(q + 1).split('#')[0]! : '') };
      const extra: Obj = { attributes: protojson(attributes), parsed_path, parsed_query, truncated_body: pb.truncated };
      if (pb.value !== undefined) extra.parsed_body = pb.value;
      return extra;
    }),
    fingerprint_extra: fx,
    context_extensions,
  };
  if (client_address) out.client_address = client_address;
  const id = str(http.id);
  if (id) out.request_id = id;
  return out;
}

/** f's value, computed on the first call. */
function once<T>(f: () => T): () => T {
  let done = false;
  let v: T;
  return () => {
    if (!done) {
      v = f();
      done = true;
    }
    return v;
  };
}

/** headers (map) or header_map (list with value / raw_value), names lower-cased. */
function headerMap(http: Obj): Record<string, string> {
  const out: Record<string, string> = {};
  const m = asObj(http.headers);
  if (m) for (const k of Object.keys(m)) out[k.toLowerCase()] = String(m[k]);
  const list = asObj(http.headerMap)?.headers;
  if (Array.isArray(list)) {
    for (const h of list) {
      const o = asObj(h);
      if (!o) continue;
      const k = str(o.key).toLowerCase();
      const v = o.rawValue instanceof Uint8Array && o.rawValue.length > 0 ? Buffer.from(o.rawValue).toString('utf8') : str(o.value);
      if (k) out[k] = out[k] === undefined ? v : `${out[k]},${v}`;
    }
  }
  return out;
}

/**
 * opa-envoy-plugin's parsed_body: JSON and form bodies by content type; a body
 * shorter than its content-length (Envoy's with_request_body max_request_bytes
 * with allow_partial_message) is `truncated_body: true` and not parsed. A JSON
 * body that does not parse is an error, as in the plugin (a deny).
 */
function parsedBody(headers: Record<string, string>, body: string): { ok: true; value?: unknown; truncated: boolean } | { ok: false; reason: string } {
  const ct = headers['content-type'];
  if (ct === undefined) return { ok: true, truncated: false };
  const cl = headers['content-length'];
  if (cl !== undefined && /^\d+$/.test(cl) && Number(cl) > Buffer.byteLength(body)) return { ok: true, truncated: true };
  if (headers['x-envoy-auth-partial-body'] === 'true') return { ok: true, truncated: true };
  if (ct.includes('application/json')) {
    if (body === '') return { ok: true, truncated: false };
    try {
      return { ok: true, value: JSON.parse(body), truncated: false };
    } catch {
      return { ok: false, reason: 'request body is not valid JSON (content-type application/json)' };
    }
  }
  if (ct.includes('application/x-www-form-urlencoded')) return { ok: true, value: { ...parseQuery(body) }, truncated: false };
  return { ok: true, truncated: false };
}

/** proto-loader object -> protojson value: bytes base64, Timestamp RFC 3339, Struct plain JSON. */
export function protojson(v: unknown, key = ''): unknown {
  if (v instanceof Uint8Array) return Buffer.from(v).toString('base64');
  if (Array.isArray(v)) return v.map((x) => protojson(x));
  const o = asObj(v);
  if (!o) return v;
  if (key === 'time' && 'seconds' in o) return timestamp(o);
  if (key === 'filterMetadata') return Object.fromEntries(Object.entries(o).map(([k, s]) => [k, structToJson(s)]));
  const out: Obj = {};
  for (const k of Object.keys(o)) out[k] = protojson(o[k], k);
  return out;
}

function timestamp(o: Obj): string {
  const ms = Number(o.seconds ?? 0) * 1000 + Math.floor(Number(o.nanos ?? 0) / 1e6);
  const iso = new Date(ms).toISOString();
  const nanos = Number(o.nanos ?? 0);
  return nanos % 1e6 === 0 ? iso.replace('.000Z', 'Z') : iso.replace(/\.\d{3}Z$/, `.${String(nanos).padStart(9, '0').replace(/0+$/, '')}Z`);
}

export function structToJson(s: unknown): unknown {
  const fields = asObj(asObj(s)?.fields) ?? {};
  return Object.fromEntries(Object.entries(fields).map(([k, v]) => [k, valueToJson(v)]));
}

function valueToJson(v: unknown): unknown {
  const o = asObj(v);
  if (!o) return null;
  if ('stringValue' in o) return o.stringValue;
  if ('numberValue' in o) return o.numberValue;
  if ('boolValue' in o) return o.boolValue;
  if ('structValue' in o) return structToJson(o.structValue);
  if ('listValue' in o) return ((asObj(o.listValue)?.values as unknown[]) ?? []).map(valueToJson);
  return null;
}

/** JSON -> google.protobuf.Struct message (for dynamic_metadata). */
export function jsonToStruct(v: Record<string, unknown>): { fields: Record<string, unknown> } {
  const fields: Record<string, unknown> = {};
  for (const k of Object.keys(v)) fields[k] = jsonToValue(v[k]);
  return { fields };
}

function jsonToValue(x: unknown): unknown {
  if (x === null || x === undefined) return { nullValue: 'NULL_VALUE' };
  if (typeof x === 'string') return { stringValue: x };
  if (typeof x === 'number') return { numberValue: x };
  if (typeof x === 'boolean') return { boolValue: x };
  if (Array.isArray(x)) return { listValue: { values: x.map(jsonToValue) } };
  if (typeof x === 'object') return { structValue: jsonToStruct(x as Record<string, unknown>) };
  return { stringValue: String(x) };
}

function asObj(v: unknown): Obj | undefined {
  return v !== null && typeof v === 'object' && !Array.isArray(v) && !(v instanceof Uint8Array) ? (v as Obj) : undefined;
}

function str(v: unknown): string {
  return typeof v === 'string' ? v : '';
}
