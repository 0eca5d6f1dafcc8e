/**
 * Well-formed HTTP/2 request header lists (RFC 9113 §8.2, §8.3). A list that
 * fails is a malformed request: a stream error, never a guess.
 *
 * Headers are the flat [name, value, …] lists the HPACK decoder returns.
 */

/** Connection-specific fields that HTTP/2 forbids (RFC 9113 §8.2.2). */
const CONNECTION_SPECIFIC = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade']);
const REQUEST_PSEUDO = new Set([':method', ':scheme', ':authority', ':path']);

/** tchar (RFC 9110 §5.6.2) without upper-case letters: HTTP/2 field names are lower case. */
const NAME_CHAR = (() => {
  const t = new Uint8Array(256);
  for (const c of "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz") t[c.charCodeAt(0)] = 1;
  return t;
})();

function badName(name: string, from: number): boolean {
  if (name.length <= from) return true;
  for (let i = from; i < name.length; i++) if (NAME_CHAR[name.charCodeAt(i)] !== 1) return true;
  return false;
}

/** NUL, CR or LF anywhere, or white space at either end (RFC 9113 §8.2.1). */
function badValue(v: string): boolean {
  const n = v.length;
  if (n === 0) return false;
  const first = v.charCodeAt(0);
  const last = v.charCodeAt(n - 1);
  if (first === 0x20 || first === 0x09 || last === 0x20 || last === 0x09) return true;
  for (let i = 0; i < n; i++) {
    const c = v.charCodeAt(i);
    if (c === 0 || c === 0x0a || c === 0x0d) return true;
  }
  return false;
}

/**
 * Checks a request's header list. Returns its content-length (-1 when it has
 * none), or why the request is malformed.
 */
export function validateRequestHeaders(h: string[]): number | string {
  let regular = false;
  let method: string | undefined;
  let scheme = false;
  let path = false;
  let authority = false;
  let contentLength = -1;
  for (let i = 0; i < h.length; i += 2) {
    const name = h[i]!;
    const value = h[i + 1]!;
    if (name.charCodeAt(0) === 0x3a) {
      if (regular) return `pseudo-header ${name} after a regular header`;
      if (!REQUEST_PSEUDO.has(name)) return `pseudo-header ${name} is not allowed in a request`;
      if (name === ':method') {
        if (method !== undefined) return 'duplicate :method';
        if (value === '' || badName(value.toLowerCase(), 0)) return 'malformed :method';
        method = value;
      } else if (name === ':scheme') {
        if (scheme) return 'duplicate :scheme';
        scheme = true;
      } else if (name === ':path') {
        if (path) return 'duplicate :path';
        if (value === '') return 'empty :path';
        path = true;
      } else {
        if (authority) return 'duplicate :authority';
        authority = true;
      }
      if (badValue(value)) return `malformed value of ${name}`;
      continue;
    }
    regular = true;
    if (badName(name, 0)) return `malformed header name ${JSON.stringify(name)} (HTTP/2 names are lower-case tokens)`;
    if (badValue(value)) return `malformed value of header ${name}`;
    if (CONNECTION_SPECIFIC.has(name)) return `connection-specific header ${name} is not allowed in HTTP/2`;
    if (name === 'te' && value !== 'trailers') return 'te other than "trailers"';
    if (name === 'content-length') {
      if (!/^[0-9]{1,15}$/.test(value)) return 'malformed content-length';
      const n = Number(value);
      if (contentLength >= 0 && n !== contentLength) return 'conflicting content-length';
      contentLength = n;
    }
  }
  if (method === undefined) return 'request without :method';
  if (method === 'CONNECT') {
    if (!authority) return 'CONNECT without :authority';
    if (scheme || path) return 'CONNECT with :scheme or :path';
  } else if (!scheme || !path) return 'request without :scheme or :path';
  return contentLength;
}

/**
 * Checks a trailer list: no pseudo-headers, well-formed names and values, no connection-specific fields (they make
 * any HTTP/2 message malformed, RFC 9113 §8.2.2). Empty string when fine.
 */
export function validateTrailers(h: string[]): string {
  for (let i = 0; i < h.length; i += 2) {
    const name = h[i]!;
    const value = h[i + 1]!;
    if (name.charCodeAt(0) === 0x3a) return `pseudo-header ${name} in trailers`;
    if (badName(name, 0)) return `malformed trailer name ${JSON.stringify(name)}`;
    if (badValue(value)) return `malformed value of trailer ${name}`;
    if (CONNECTION_SPECIFIC.has(name)) return `connection-specific field ${name} is not allowed in HTTP/2 trailers`;
    if (name === 'te' && value !== 'trailers') return 'te other than "trailers"';
  }
  return '';
}
