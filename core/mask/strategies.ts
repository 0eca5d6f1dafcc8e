/**
 * Mask strategies: what a sensitive value is replaced with.
 *
 * - redact:  `[redacted:<detector>]` for a detector finding inside text,
 *            `[redacted]` for a whole value selected by a column/field rule.
 * - partial: keep the last `keep` (default 4) letters/digits, `*` for the others,
 *            separators kept. Card numbers keep their first digit, their format
 *            and stay Luhn-valid; emails keep their first letter and domain
 *            (`j***@example.com`); IBANs keep their country code. JWTs and
 *            private keys are redacted instead (nothing in them is safe to show).
 * - hash:    `tok_` + 32 base32 characters of HMAC-SHA256(key, canonical value):
 *            deterministic per key, so masked values still join and group.
 *            Canonical forms: card/SSN digits only, phone digits (and leading +),
 *            email lower-cased, IBAN upper-case without spaces.
 * - null:    SQL NULL / JSON null; inside a byte stream it is redact.
 */
import { createHmac } from 'node:crypto';
import { TaskgateError } from '../errors.ts';
import type { DetectorName, MaskStrategy } from '../policy-contract.ts';

export const REDACTED = '[redacted]';
export const DEFAULT_KEEP = 4;
export const TOKEN_PREFIX = 'tok_';
const MIN_KEY_BYTES = 16;

const MARKERS: Record<DetectorName, string> = {
  card: '[redacted:card]',
  email: '[redacted:email]',
  phone: '[redacted:phone]',
  ssn: '[redacted:ssn]',
  iban: '[redacted:iban]',
  jwt: '[redacted:jwt]',
  cloud_key: '[redacted:cloud_key]',
  private_key: '[redacted:private_key]',
};

export function redactMarker(detector?: DetectorName): string {
  return detector === undefined ? REDACTED : MARKERS[detector];
}

// ---- hash key ---------------------------------------------------------------

/**
 * Parses the configured hash key: `hex:<hex>`, `base64:<b64>`, or any other
 * string used as UTF-8 bytes. At least 16 bytes.
 */
export function parseHashKey(input: string | Uint8Array): Buffer {
  let key: Buffer;
  if (typeof input !== 'string') key = Buffer.from(input);
  else if (input.startsWith('hex:')) key = Buffer.from(input.slice(4), 'hex');
  else if (input.startsWith('base64:')) key = Buffer.from(input.slice(7), 'base64');
  else key = Buffer.from(input, 'utf8');
  if (key.length < MIN_KEY_BYTES) {
    throw new TaskgateError('config_invalid', `mask hash key is ${key.length} bytes; at least ${MIN_KEY_BYTES} are required`, {
      hint: 'generate one with: openssl rand -hex 32 (and configure it as hex:<value>)',
    });
  }
  return key;
}

const B32 = 'abcdefghijklmnopqrstuvwxyz234567';

function base32(bytes: Buffer, nBytes: number): string {
  let out = '';
  let bits = 0;
  let acc = 0;
  for (let i = 0; i < nBytes; i++) {
    acc = (acc << 8) | bytes[i]!;
    bits += 8;
    while (bits >= 5) {
      bits -= 5;
      out += B32[(acc >>> bits) & 31];
    }
    acc &= (1 << bits) - 1;
  }
  if (bits > 0) out += B32[(acc << (5 - bits)) & 31];
  return out;
}

export type Tokenizer = (value: string, kind?: DetectorName) => string;

/** Deterministic keyed tokens: same key and value => same token. */
export function createTokenizer(key: Buffer): Tokenizer {
  return (value, kind) => {
    const mac = createHmac('sha256', key).update(canonical(value, kind), 'utf8').digest();
    return TOKEN_PREFIX + base32(mac, 20);
  };
}

export function canonical(value: string, kind?: DetectorName): string {
  switch (kind) {
    case 'card':
    case 'ssn':
      return value.replace(/\D/g, '');
    case 'phone':
      return (value.trimStart().startsWith('+') ? '+' : '') + value.replace(/\D/g, '');
    case 'email':
      return value.toLowerCase();
    case 'iban':
      return value.replace(/ /g, '').toUpperCase();
    default:
      return value;
  }
}

// ---- partial ----------------------------------------------------------------

function isAsciiDigit(c: number): boolean {
  return c >= 48 && c <= 57;
}

/**
 * Keeps the first digit and the last `keep` digits (at most all but two), puts
 * zeros elsewhere and fixes one masked digit so the result passes the Luhn check.
 * Separators stay where they were.
 */
export function cardPartial(text: string, keep = DEFAULT_KEEP): string {
  const pos: number[] = [];
  for (let i = 0; i < text.length; i++) if (isAsciiDigit(text.charCodeAt(i))) pos.push(i);
  const n = pos.length;
  if (n < 3) return genericPartial(text, keep);
  const k = Math.max(0, Math.min(keep, n - 2));
  const digits = new Array<number>(n);
  for (let i = 0; i < n; i++) digits[i] = text.charCodeAt(pos[i]!) - 48;
  for (let i = 1; i < n - k; i++) digits[i] = 0;
  const adjust = n - k - 1;
  const weight = (i: number) => (n - 1 - i) % 2 === 1;
  const contrib = (d: number, dbl: boolean) => (dbl ? (d * 2 > 9 ? d * 2 - 9 : d * 2) : d);
  let sum = 0;
  for (let i = 0; i < n; i++) if (i !== adjust) sum += contrib(digits[i]!, weight(i));
  for (let d = 0; d <= 9; d++) {
    if ((sum + contrib(d, weight(adjust))) % 10 === 0) {
      digits[adjust] = d;
      break;
    }
  }
  const chars = text.split('');
  for (let i = 0; i < n; i++) chars[pos[i]!] = String.fromCharCode(48 + digits[i]!);
  return chars.join('');
}

/** `jane.doe@example.com` -> `j***@example.com`. */
export function emailPartial(text: string): string {
  const at = text.lastIndexOf('@');
  if (at <= 0) return genericPartial(text, DEFAULT_KEEP);
  const first = String.fromCodePoint(text.codePointAt(0)!);
  return first + '***' + text.slice(at);
}

const MASKABLE = /[\p{L}\p{N}]/u;

/** Letters and digits become `*` except the last `keep`; everything else stays. */
export function genericPartial(text: string, keep = DEFAULT_KEEP, keepLeading = 0): string {
  const cps = Array.from(text);
  let total = 0;
  for (const c of cps) if (MASKABLE.test(c)) total++;
  let seen = 0;
  let out = '';
  for (const c of cps) {
    if (!MASKABLE.test(c)) {
      out += c;
      continue;
    }
    out += seen < keepLeading || seen >= total - keep ? c : '*';
    seen++;
  }
  return out;
}

export function partial(text: string, keep: number | undefined, kind: DetectorName | undefined): string {
  const k = keep ?? DEFAULT_KEEP;
  switch (kind) {
    case 'card':
      return cardPartial(text, k);
    case 'email':
      return emailPartial(text);
    case 'iban':
      return genericPartial(text, k, 2);
    case 'jwt':
    case 'private_key':
      return redactMarker(kind);
    default:
      return genericPartial(text, k);
  }
}

// ---- apply ------------------------------------------------------------------

export interface StrategyContext {
  tokenize: Tokenizer | undefined;
}

/**
 * The replacement for `text` (a detector match when `kind` is set, otherwise a
 * whole value). `null` means the value becomes NULL; callers in a byte stream
 * use `streamReplacement` instead.
 */
export function replacement(
  strategy: MaskStrategy,
  text: string,
  keep: number | undefined,
  kind: DetectorName | undefined,
  ctx: StrategyContext,
): string | null {
  switch (strategy) {
    case 'redact':
      return redactMarker(kind);
    case 'partial':
      return partial(text, keep, kind);
    case 'hash':
      if (kind === 'private_key') return redactMarker(kind);
      if (!ctx.tokenize) throw new TaskgateError('config_invalid', 'mask strategy hash needs a hash key');
      return ctx.tokenize(text, kind);
    case 'null':
      return null;
  }
}

/** Inside a byte stream NULL does not exist: it is redact. */
export function streamReplacement(
  strategy: MaskStrategy,
  text: string,
  keep: number | undefined,
  kind: DetectorName,
  ctx: StrategyContext,
): string {
  return replacement(strategy, text, keep, kind, ctx) ?? redactMarker(kind);
}
