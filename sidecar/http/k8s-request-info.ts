import type { KubernetesRequest } from '../../core/policy-contract.ts';

/**
 * Kubernetes API request attributes, derived exactly as the API server derives
 * them (k8s.io/apiserver/pkg/endpoints/request RequestInfoFactory.NewRequestInfo),
 * so a policy on `verb/resource/namespace/name` sees what RBAC would see.
 *
 * Input: the already normalised, percent-decoded path (see path.ts) and the
 * decoded query. Pure: no I/O.
 */

const API_PREFIXES = new Set(['api', 'apis']);
const GROUPLESS_PREFIXES = new Set(['api']);
/** /{specialVerb}/... legacy forms: the verb comes from the path. */
const SPECIAL_VERBS = new Set(['proxy', 'watch']);
/** Special verbs whose remaining parts are not a subresource. */
const SPECIAL_VERBS_NO_SUBRESOURCES = new Set(['proxy']);
/** Subresources of a namespace object (/api/v1/namespaces/{ns}/status). */
const NAMESPACE_SUBRESOURCES = new Set(['status', 'finalize']);

export function kubernetesRequestInfo(method: string, path: string, query: Record<string, string[]>): KubernetesRequest {
  const info: KubernetesRequest = {
    verb: method.toLowerCase(),
    api_group: '',
    version: '',
    resource: '',
    subresource: '',
    namespace: '',
    name: '',
    non_resource: true,
  };
  let parts = splitPath(path);
  if (parts.length < 3 || !API_PREFIXES.has(parts[0]!)) return info;
  const prefix = parts[0]!;
  parts = parts.slice(1);
  let group = '';
  if (!GROUPLESS_PREFIXES.has(prefix)) {
    if (parts.length < 3) return info;
    group = parts[0]!;
    parts = parts.slice(1);
  }
  info.non_resource = false;
  info.api_group = group;
  info.version = parts[0]!;
  parts = parts.slice(1);

  if (SPECIAL_VERBS.has(parts[0]!)) {
    // The API server rejects /watch or /proxy with nothing after it; the request carries no resource.
    if (parts.length < 2) {
      info.verb = parts[0]!;
      return info;
    }
    info.verb = parts[0]!;
    parts = parts.slice(1);
  } else {
    info.verb = verbForMethod(method);
  }

  if (parts[0] === 'namespaces') {
    if (parts.length > 1) {
      info.namespace = parts[1]!;
      if (parts.length > 2 && !NAMESPACE_SUBRESOURCES.has(parts[2]!)) parts = parts.slice(2);
    }
  }

  if (parts.length >= 3 && !SPECIAL_VERBS_NO_SUBRESOURCES.has(info.verb)) info.subresource = parts[2]!;
  if (parts.length >= 2) info.name = parts[1]!;
  if (parts.length >= 1) info.resource = parts[0]!;

  if (info.name === '' && info.verb === 'get') {
    info.verb = watchRequested(query.watch) ? 'watch' : 'list';
    const name = exactNameFromFieldSelector(query.fieldSelector?.[0]);
    if (name !== undefined) info.name = name;
  }
  if (info.name === '' && info.verb === 'delete') info.verb = 'deletecollection';
  return info;
}

function verbForMethod(method: string): string {
  switch (method.toUpperCase()) {
    case 'POST':
      return 'create';
    case 'GET':
    case 'HEAD':
      return 'get';
    case 'PUT':
      return 'update';
    case 'PATCH':
      return 'patch';
    case 'DELETE':
      return 'delete';
    default:
      return '';
  }
}

/** Go's strings.Split(strings.Trim(path, "/"), "/"): empty segments are kept. */
function splitPath(path: string): string[] {
  const trimmed = path.replace(/^\/+|\/+$/g, '');
  return trimmed === '' ? [] : trimmed.split('/');
}

const GO_TRUE = new Set(['1', 't', 'T', 'TRUE', 'true', 'True']);
const GO_FALSE = new Set(['0', 'f', 'F', 'FALSE', 'false', 'False']);

/**
 * `?watch=` as the API server reads it: strconv.ParseBool on the first value;
 * when that fails the server falls back to "anything but false/0 is a watch".
 */
function watchRequested(values: string[] | undefined): boolean {
  const v = values?.[0];
  if (v === undefined) return false;
  if (GO_TRUE.has(v)) return true;
  if (GO_FALSE.has(v)) return false;
  const l = v.toLowerCase();
  return l !== 'false' && l !== '0';
}

/** fieldSelector `metadata.name=x` (or `==`) makes a list a request for one named object. */
function exactNameFromFieldSelector(sel: string | undefined): string | undefined {
  if (!sel) return undefined;
  for (const term of sel.split(',')) {
    const m = /^\s*metadata\.name\s*(==|=)\s*(.*?)\s*$/.exec(term);
    if (!m) continue;
    const name = m[2]!;
    if (name === '' || name === '.' || name === '..' || name.includes('/') || name.includes('%')) return undefined;
    return name;
  }
  return undefined;
}
