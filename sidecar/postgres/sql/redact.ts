/**
 * Literal-free statement text from the PostgreSQL scanner (libpg-query `scan`).
 *
 * libpg-query's `normalize` leaves literals in place in many utility statements
 * (`COPY t TO PROGRAM '…'`, `ALTER SYSTEM SET x = '…'`, column DEFAULTs, the
 * body of `PREPARE p AS …`, `COMMENT ON … IS '…'`), so the text the policy and
 * the audit see is built from the scanner's tokens instead: every string, bit
 * string, hex string and numeric constant becomes `$n` (numbered after the
 * highest `$n` parameter already present), comments are dropped. Identifiers,
 * keywords and operators are kept as written.
 */
import { scanSync, type ScanToken } from 'libpg-query';

const LITERAL_TOKENS = new Set(['SCONST', 'USCONST', 'BCONST', 'XCONST', 'ICONST', 'FCONST']);
const COMMENT_TOKENS = new Set(['SQL_COMMENT', 'C_COMMENT']);
/** U&'…', B'…', X'…', N'…', E'…' string forms the scanner's name table reports as UNKNOWN. */
const PREFIXED_STRING = /^(?:u&|[bxne])'/i;

function isLiteral(t: ScanToken): boolean {
  return LITERAL_TOKENS.has(t.tokenName) || PREFIXED_STRING.test(t.text);
}

/**
 * The scanner's tokens for `bytes` (UTF-8), or undefined when the scanner
 * itself rejects the text (e.g. an unterminated quoted string).
 */
export function scanTokens(text: string): ScanToken[] | undefined {
  try {
    return scanSync(text).tokens;
  } catch {
    return undefined;
  }
}

/**
 * Rebuilds the UTF-8 byte range [start, end) of `bytes` from `tokens` with
 * literals replaced by `$n` and comments removed. Tokens are separated as in
 * the source (one space where the source had any whitespace).
 */
export function redactRange(bytes: Buffer, tokens: readonly ScanToken[], start: number, end: number): string {
  let maxParam = 0;
  for (const t of tokens) {
    if (t.start < start || t.end > end) continue;
    if (t.tokenName === 'PARAM') {
      const n = Number(t.text.slice(1));
      if (Number.isFinite(n) && n > maxParam) maxParam = n;
    }
  }
  let out = '';
  let last = -1;
  let gap = false;
  let next = maxParam;
  for (const t of tokens) {
    if (t.start < start || t.end > end) continue;
    if (COMMENT_TOKENS.has(t.tokenName)) {
      gap = true;
      continue;
    }
    if (out !== '' && (gap || t.start > last)) out += ' ';
    out += isLiteral(t) ? `$${++next}` : bytes.toString('utf8', t.start, t.end);
    last = t.end;
    gap = false;
  }
  return out;
}

/**
 * Last-resort redaction for text the scanner cannot tokenise: quoted strings,
 * dollar-quoted bodies and numbers become `?`. Used only for UNPARSEABLE text.
 */
export function redactUnscannable(text: string): string {
  return text
    .replace(/\$([A-Za-z_\x80-\uffff][\w\x80-\uffff]*)?\$[\s\S]*?(?:\$\1\$|$)/g, '?')
    .replace(/(?:[eEbBxXnN]|[uU]&)?'(?:[^']|'')*(?:'|$)/g, '?')
    .replace(/(?<![\w$])\d[\d_]*(?:\.\d*)?(?:[eE][+-]?\d+)?/g, '?')
    .replace(/\/\*[\s\S]*?(?:\*\/|$)|--[^\n]*/g, ' ')
    .replace(/\s+/g, ' ')
    .trim();
}

/**
 * A parse error message safe to show and audit: the token after "at or near"
 * is replaced when it is (or starts) a literal, so `syntax error at or near
 * "'hunter2'"` does not carry the value.
 */
export function safeParseError(message: string): string {
  return message.replace(/at or near "((?:[^"]|"")*)"/, (whole, tok: string) =>
    /^[A-Za-z_][\w$]*$|^[^\w\s'$"]{1,3}$/.test(tok) ? whole : 'at or near <literal>',
  );
}
