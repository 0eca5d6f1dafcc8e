/**
 * Request-target normalisation for the HTTP data path. The decision must be
 * taken on the path the upstream will act on, so:
 *
 * - percent-escapes are decoded (the Kubernetes API server, like any Go
 *   server, routes on the decoded path);
 * - duplicate slashes are merged (what Envoy's `merge_slashes` does);
 * - anything whose meaning differs between a proxy and an upstream is refused:
 *   `.`/`..` segments, an encoded `/` or `\`, NUL or control characters,
 *   malformed escapes, a backslash, a path that is not origin-form.
 *
 * `canonical` is the re-encoded form the HTTP proxy forwards. `merged_slashes`
 * tells ext_authz (which cannot rewrite the path Envoy forwards) that Envoy
 * did not merge slashes, so the upstream would parse a different path: it
 * refuses those.
 */
export type PathResult =
  | { ok: true; path: string; canonical: string; changed: boolean; merged_slashes: boolean; query: string }
  | { ok: false; reason: string };

export function normalizeRequestPath(target: string): PathResult {
  if (target === '' || target[0] !== '/') return { ok: false, reason: `request target ${JSON.stringify(clip(target))} is not an absolute path` };
  const hash = target.indexOf('#');
  if (hash >= 0) target = target.slice(0, hash);
  const q = target.indexOf('?');
  const rawPath = q >= 0 ? target.slice(0, q) : target;
  const query = q >= 0 ? target.slice(q + 1) : '';
  if (/[\u0000-\u001f\u007f\\]/.test(rawPath)) return { ok: false, reason: 'path contains a control character or a backslash' };
  const rawSegments = rawPath.split('/').slice(1);
  const segments: string[] = [];
  let merged = false;
  for (const [i, raw] of rawSegments.entries()) {
    if (raw === '') {
      if (i !== rawSegments.length - 1 || segments.length === 0) merged = rawSegments.length > 1;
      // A trailing slash is meaningful to some upstreams but not to routing; empty middle segments are merged.
      if (i === rawSegments.length - 1 && segments.length > 0) segments.push('');
      continue;
    }
    if (/%2f|%5c|%00/i.test(raw)) return { ok: false, reason: 'path contains an encoded "/", "\\" or NUL (ambiguous between proxy and upstream)' };
    let seg: string;
    try {
      seg = decodeURIComponent(raw);
    } catch {
      return { ok: false, reason: 'path contains a malformed percent-escape' };
    }
    if (/[\u0000-\u001f\u007f]/.test(seg)) return { ok: false, reason: 'path contains an encoded control character' };
    if (seg === '.' || seg === '..') return { ok: false, reason: 'path contains a "." or ".." segment (ambiguous between proxy and upstream)' };
    segments.push(seg);
  }
  const path = '/' + segments.join('/');
  const canonical = '/' + segments.map(encodeSegment).join('/');
  return { ok: true, path, canonical, changed: canonical !== rawPath, merged_slashes: merged, query };
}

/** Encodes a decoded segment as RFC 3986 pchar: unreserved, sub-delims, ':' and '@' stay literal. */
function encodeSegment(s: string): string {
  return encodeURIComponent(s).replace(/%(21|24|26|27|28|29|2A|2B|2C|3B|3D|3A|40)/g, (_, h: string) => String.fromCharCode(parseInt(h, 16)));
}

/**
 * Query string to a map of decoded values, keeping repeats in order (`+` is a
 * space, as Go's url.ParseQuery reads it). Malformed escapes are kept raw.
 */
export function parseQuery(query: string): Record<string, string[]> {
  const out: Record<string, string[]> = Object.create(null) as Record<string, string[]>;
  if (query === '') return out;
  for (const pair of query.split('&')) {
    if (pair === '') continue;
    const eq = pair.indexOf('=');
    const k = decodeQueryPart(eq >= 0 ? pair.slice(0, eq) : pair);
    const v = eq >= 0 ? decodeQueryPart(pair.slice(eq + 1)) : '';
    (out[k] ??= []).push(v);
  }
  return out;
}

function decodeQueryPart(s: string): string {
  const plus = s.replace(/\+/g, ' ');
  try {
    return decodeURIComponent(plus);
  } catch {
    return plus;
  }
}

function clip(s: string): string {
  return s.length > 80 ? s.slice(0, 80) + '…' : s;
}
