import type { AuthzResult, Header } from '../sidecar/http/authorize.ts';
import { jsonToStruct } from './check-input.ts';

/**
 * CheckResponse from an authorization result, one concern only. Allow is
 * google.rpc.Status OK with an OkHttpResponse (decision id header, upstream
 * credential set, the user's token and the task header removed); deny is
 * PERMISSION_DENIED (UNAUTHENTICATED for 401) with a DeniedHttpResponse
 * carrying the status, headers and JSON body.
 */
const GRPC_OK = 0;
const GRPC_PERMISSION_DENIED = 7;
const GRPC_UNAUTHENTICATED = 16;

export function checkResponse(r: AuthzResult): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  if (r.allowed) {
    // Envoy stores this under envoy.filters.http.ext_authz; forwarded to ext_proc it carries the mask rules.
    const meta: Record<string, unknown> = {};
    if (r.dynamic_metadata) for (const k of Object.keys(r.dynamic_metadata)) meta[k] = r.dynamic_metadata[k];
    meta.taskgate_decision_id = r.decision_id;
    meta.taskgate_mask = JSON.stringify(r.mask);
    out.dynamicMetadata = jsonToStruct(meta);
  } else if (r.dynamic_metadata) out.dynamicMetadata = jsonToStruct(r.dynamic_metadata);
  if (r.allowed) {
    out.status = { code: GRPC_OK };
    const ok: Record<string, unknown> = { headers: headerOptions(r.set_headers), headersToRemove: r.remove_headers };
    if (r.response_headers.length) ok.responseHeadersToAdd = headerOptions(r.response_headers, true);
    if (r.query_set.length) ok.queryParametersToSet = r.query_set.map(([key, value]) => ({ key, value }));
    if (r.query_remove.length) ok.queryParametersToRemove = r.query_remove;
    out.okResponse = ok;
    return out;
  }
  out.status = { code: r.status === 401 ? GRPC_UNAUTHENTICATED : GRPC_PERMISSION_DENIED, message: 'denied by taskgate' };
  out.deniedResponse = { status: { code: r.status }, headers: headerOptions(r.headers), body: r.body };
  return out;
}

/** append=false overwrites (what opa-envoy-plugin sends); response headers are appended. */
function headerOptions(h: Header[], append = false): Record<string, unknown>[] {
  return h.map(([key, value]) => ({ header: { key, value }, append: { value: append } }));
}
