/**
 * Content detectors: find sensitive values inside text.
 *
 * Every detector works on ASCII code units only, so the same code scans JS
 * strings (column values, JSON strings) and latin1-decoded byte buffers (SSH
 * output): a UTF-8 multi-byte sequence is never part of a match and acts as a
 * separator.
 *
 * A detector produces *candidates*: for every start position the leftmost-greedy
 * match beginning there, validated (Luhn, mod-97, invalid SSN ranges, JWT header
 * JSON, ...). `findMatches` then keeps a non-overlapping set, earliest start
 * first. Because candidates depend only on a bounded window around them (left
 * boundary context + the match + one character of right context), a stream can
 * be scanned chunk by chunk with the same result as scanning it whole; `tail`
 * tells the stream masker which suffix could still grow into a match.
 *
 * Findings carry positions and the detector name, never the value.
 */
import type { DetectorName } from '../policy-contract.ts';

export interface Match {
  start: number;
  end: number;
  detector: DetectorName;
}

export interface Detector {
  readonly name: DetectorName;
  /** Higher wins when two candidates start at the same index and have the same length. */
  readonly priority: number;
  /** Cheap pre-check on one pass of character statistics: false means `text` cannot contain a match. */
  mayMatch(text: string, st: TextStats): boolean;
  /** Appends every validated candidate with `start >= from`; `text` before `from` is context only. */
  candidates(text: string, from: number, out: Match[]): void;
  /**
   * Smallest index i >= from such that text[i..] could be the beginning (or an
   * unfinished part) of a match that needs more input to be decided;
   * `text.length` when nothing at the end of `text` is pending.
   */
  tail(text: string, from: number): number;
}

export interface DetectorOptions {
  /** Require a known card-network IIN prefix and length (default true). */
  cardIin?: boolean;
}

// ---- helpers ----------------------------------------------------------------

/** Character statistics of a text, computed in one pass and shared by every detector's pre-check. */
export interface TextStats {
  digits: number;
  upper: number;
  at: number;
  plus: number;
}

export function textStats(text: string): TextStats {
  let digits = 0;
  let upper = 0;
  let at = 0;
  let plus = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c <= 57) {
      if (c >= 48) digits++;
      else if (c === 43) plus++;
    } else if (c <= 90) {
      if (c >= 65) upper++;
      else if (c === 64) at++;
    }
  }
  return { digits, upper, at, plus };
}

const C_0 = 48;
const C_9 = 57;

function isDigit(c: number): boolean {
  return c >= C_0 && c <= C_9;
}

/** A-Z a-z 0-9 _ */
function isWord(c: number): boolean {
  return (c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c === 95;
}

export function luhnValid(digits: string): boolean {
  let sum = 0;
  let dbl = false;
  for (let i = digits.length - 1; i >= 0; i--) {
    let d = digits.charCodeAt(i) - C_0;
    if (dbl) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
    dbl = !dbl;
  }
  return sum % 10 === 0;
}

/** Known card networks: IIN prefix ranges and the lengths they issue. */
export function cardIinValid(digits: string): boolean {
  const n = digits.length;
  const p1 = digits.charCodeAt(0) - C_0;
  const p2 = Number(digits.slice(0, 2));
  const p3 = Number(digits.slice(0, 3));
  const p4 = Number(digits.slice(0, 4));
  switch (p1) {
    case 4: // Visa
      return n === 13 || n === 16 || n === 19;
    case 5: // Mastercard 51-55; Maestro 50, 56-58
      if (p2 >= 51 && p2 <= 55) return n === 16;
      return (p2 === 50 || (p2 >= 56 && p2 <= 58)) && n >= 13 && n <= 19;
    case 2: // Mastercard 2221-2720; Mir 2200-2204
      if (p4 >= 2221 && p4 <= 2720) return n === 16;
      return p4 >= 2200 && p4 <= 2204 && n >= 16 && n <= 19;
    case 3: // Amex 34/37; Diners 300-305, 36, 38, 39; JCB 3528-3589
      if (p2 === 34 || p2 === 37) return n === 15;
      if ((p3 >= 300 && p3 <= 305) || p2 === 36 || p2 === 38 || p2 === 39) return n >= 14 && n <= 19;
      return p4 >= 3528 && p4 <= 3589 && n >= 16 && n <= 19;
    case 6: // Discover 6011, 644-649, 65; UnionPay 62; Maestro 63, 67
      if (p4 === 6011 || (p3 >= 644 && p3 <= 649) || p2 === 65 || p2 === 62) return n >= 16 && n <= 19;
      return (p2 === 63 || p2 === 67) && n >= 13 && n <= 19;
    default:
      return false;
  }
}

/** Leftmost match of a global, `$`-anchored regex searched from max(from, len - maxLen). */
function tailByRegex(re: RegExp, text: string, from: number, maxLen: number): number {
  re.lastIndex = Math.max(from, text.length - maxLen);
  const m = re.exec(text);
  return m ? m.index : text.length;
}

/** Runs a global regex over every start position >= from, validating each leftmost match. */
function regexCandidates(
  re: RegExp,
  text: string,
  from: number,
  out: Match[],
  detector: DetectorName,
  accept: (m: RegExpExecArray) => { start: number; end: number } | null,
): void {
  re.lastIndex = from;
  let m: RegExpExecArray | null;
  while ((m = re.exec(text)) !== null) {
    const span = accept(m);
    if (span) out.push({ start: span.start, end: span.end, detector });
    re.lastIndex = m.index + 1;
  }
}

// ---- card ---------------------------------------------------------------------

/** A maximal run of >= 13 digits in groups separated by single spaces or dashes. */
const CARD_RUN = /(?<![A-Za-z0-9_])(?<!\d[ -])\d(?:[ -]?\d){12,}/g;
const CARD_TAIL = /(?<![A-Za-z0-9_])(?<!\d[ -])\d(?:[ -]?\d){0,19}[ .,-]?$/g;

function cardDetector(opts: DetectorOptions): Detector {
  const requireIin = opts.cardIin !== false;
  return {
    name: 'card',
    priority: 4,
    mayMatch: (t, st) => st.digits >= 13,
    candidates(text, from, out) {
      CARD_RUN.lastIndex = from;
      let m: RegExpExecArray | null;
      while ((m = CARD_RUN.exec(text)) !== null) {
        const s = m.index;
        const run = m[0];
        CARD_RUN.lastIndex = s + run.length;
        if (run.length < 13) continue;
        // a decimal fraction such as 0.4111111111111111 is a number, not a card
        if (s >= 2 && (text.charCodeAt(s - 1) === 46 || text.charCodeAt(s - 1) === 44) && isDigit(text.charCodeAt(s - 2))) continue;
        const span = cardSpan(text, s, s + run.length, requireIin);
        if (span > 0) out.push({ start: s, end: span, detector: 'card' });
      }
    },
    tail: (text, from) => tailByRegex(CARD_TAIL, text, from, 45),
  };
}

/**
 * The longest prefix of the run [s, e) made of whole groups that is a valid card
 * number; returns its end or -1. Multi-group numbers need groups of >= 3 digits.
 */
function cardSpan(text: string, s: number, e: number, requireIin: boolean): number {
  const ends: number[] = [];
  const counts: number[] = [];
  let digits = 0;
  let groupLen = 0;
  let minGroup = 99;
  const minGroups: number[] = [];
  for (let i = s; i <= e; i++) {
    if (i < e && isDigit(text.charCodeAt(i))) {
      digits++;
      groupLen++;
      continue;
    }
    if (groupLen < minGroup) minGroup = groupLen;
    ends.push(i);
    counts.push(digits);
    minGroups.push(minGroup);
    groupLen = 0;
    if (digits > 19) break;
  }
  const runEndsHere = (k: number) => ends[k] === e;
  for (let k = ends.length - 1; k >= 0; k--) {
    const n = counts[k]!;
    if (n > 19) continue;
    if (n < 13) break;
    if (k > 0 && minGroups[k]! < 3) continue;
    const end = ends[k]!;
    if (runEndsHere(k)) {
      const nc = end < text.length ? text.charCodeAt(end) : -1;
      // glued to a word, or a decimal number such as 4111111111111111.50
      if (nc >= 0 && isWord(nc)) continue;
      if ((nc === 46 || nc === 44) && isDigit(text.charCodeAt(end + 1))) continue;
    }
    const raw = text.slice(s, end);
    const ds = k === 0 ? raw : raw.replace(/[ -]/g, '');
    if (!luhnValid(ds)) continue;
    if (requireIin && !cardIinValid(ds)) continue;
    return end;
  }
  return -1;
}

// ---- email --------------------------------------------------------------------

const EMAIL =
  /[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.([A-Za-z]{2,24})(?![A-Za-z0-9-]|\.[A-Za-z0-9]|:[^\s])/y;
const EMAIL_TAIL = /(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]{1,64}(?:@[A-Za-z0-9.-]{0,253}:?)?$/g;
/** File extensions that look like TLDs: `icon@2x.png` is a file name. */
const NOT_TLD = new Set([
  'png', 'jpg', 'jpeg', 'gif', 'svg', 'webp', 'ico', 'bmp', 'tif', 'tiff',
  'js', 'mjs', 'cjs', 'ts', 'tsx', 'jsx', 'css', 'scss', 'map', 'json', 'txt',
  'html', 'htm', 'xml', 'yml', 'yaml', 'lock', 'log', 'ttf', 'woff', 'woff2', 'eot', 'pdf',
]);

function isLocalChar(c: number): boolean {
  return isWord(c) || c === 46 || c === 37 || c === 43 || c === 45;
}

const emailDetector: Detector = {
  name: 'email',
  priority: 1,
  mayMatch: (t, st) => st.at > 0 && t.length >= 6,
  candidates(text, from, out) {
    // anchored on '@': the local part is the run of local-part characters before it
    for (let a = text.indexOf('@', from + 1); a >= 0; a = text.indexOf('@', a + 1)) {
      let p = a;
      while (p > 0 && isLocalChar(text.charCodeAt(p - 1))) p--;
      if (p === a || a - p > 64 || p < from) continue;
      EMAIL.lastIndex = p;
      const m = EMAIL.exec(text);
      if (!m || m.index !== p) continue;
      if (NOT_TLD.has(m[1]!.toLowerCase())) continue;
      out.push({ start: p, end: p + m[0].length, detector: 'email' });
    }
  },
  tail: (text, from) => tailByRegex(EMAIL_TAIL, text, from, 64 + 1 + 253),
};

// ---- phone --------------------------------------------------------------------

/** E.164-style: +CC then groups; 8-15 digits in total. */
const PHONE_INTL =
  /(?<![A-Za-z0-9_+])\+\d{1,3}(?:[ .-]?\(\d{1,5}\))?(?:[ .-]?\d{1,6}){1,6}(?![A-Za-z0-9_]|[.-]\d|\d)/g;
/** North American national formats: (415) 555-2671, 415-555-2671, 415.555.2671, 1-800-555-0199. */
const PHONE_NANP =
  /(?<![A-Za-z0-9_+.-])(?:1[ .-])?(?:\(\d{3}\)[ .-]?\d{3}[ .-]|\d{3}([.-])\d{3}\1)\d{4}(?![A-Za-z0-9_]|[.-]\d)/g;
/** Every NANP form ends in three digits, a separator and four digits. */
const NANP_HINT = /\d{3}[ .-]\d{4}/g;
const PHONE_TAIL = /(?<![A-Za-z0-9_])[+(\d][\d ().-]{0,58}$/g;

function countDigits(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) if (isDigit(s.charCodeAt(i))) n++;
  return n;
}

const phoneDetector: Detector = {
  name: 'phone',
  priority: 0,
  mayMatch: (t, st) => st.digits >= 8,
  candidates(text, from, out) {
    if (text.indexOf('+', from) >= 0) {
      regexCandidates(PHONE_INTL, text, from, out, 'phone', (m) => {
        const n = countDigits(m[0]);
        return n >= 8 && n <= 15 ? { start: m.index, end: m.index + m[0].length } : null;
      });
    }
    NANP_HINT.lastIndex = from;
    if (NANP_HINT.test(text)) regexCandidates(PHONE_NANP, text, from, out, 'phone', (m) => ({ start: m.index, end: m.index + m[0].length }));
  },
  tail: (text, from) => tailByRegex(PHONE_TAIL, text, from, 60),
};

// ---- SSN ----------------------------------------------------------------------

const SSN = /(?<![A-Za-z0-9_-])(?<!\d[ .])(\d{3})([- ])(\d{2})\2(\d{4})(?![A-Za-z0-9_]|[- ]\d)/g;
const SSN_TAIL = /(?<![A-Za-z0-9_-])\d[\d -]{0,11}$/g;

function ssnValid(area: string, group: string, serial: string): boolean {
  if (area === '000' || area === '666' || area.charCodeAt(0) === 57 /* 9xx */) return false;
  return group !== '00' && serial !== '0000';
}

const ssnDetector: Detector = {
  name: 'ssn',
  priority: 3,
  mayMatch: (t, st) => st.digits >= 9 && t.length >= 11,
  candidates(text, from, out) {
    regexCandidates(SSN, text, from, out, 'ssn', (m) =>
      ssnValid(m[1]!, m[3]!, m[4]!) ? { start: m.index, end: m.index + m[0].length } : null,
    );
  },
  tail: (text, from) => tailByRegex(SSN_TAIL, text, from, 13),
};

// ---- IBAN ---------------------------------------------------------------------

/** Country code -> IBAN length (SWIFT IBAN registry). */
export const IBAN_LENGTHS: Readonly<Record<string, number>> = {
  AD: 24, AE: 23, AL: 28, AT: 20, AZ: 28, BA: 20, BE: 16, BG: 22, BH: 22, BI: 27, BR: 29, BY: 28,
  CH: 21, CR: 22, CY: 28, CZ: 24, DE: 22, DJ: 27, DK: 18, DO: 28, EE: 20, EG: 29, ES: 24, FI: 18,
  FK: 18, FO: 18, FR: 27, GB: 22, GE: 22, GI: 23, GL: 18, GR: 27, GT: 28, HR: 21, HU: 28, IE: 22,
  IL: 23, IQ: 23, IS: 26, IT: 27, JO: 30, KW: 30, KZ: 20, LB: 28, LC: 32, LI: 21, LT: 20, LU: 20,
  LV: 21, LY: 25, MC: 27, MD: 24, ME: 22, MK: 19, MN: 20, MR: 27, MT: 31, MU: 30, NI: 28, NL: 18,
  NO: 15, OM: 23, PK: 24, PL: 28, PS: 29, PT: 25, QA: 29, RO: 24, RS: 22, RU: 33, SA: 24, SC: 31,
  SD: 18, SE: 24, SI: 19, SK: 24, SM: 27, SO: 23, ST: 25, SV: 28, TL: 23, TN: 24, TR: 26, UA: 29,
  VA: 22, VG: 24, XK: 20, YE: 30,
};

const IBAN_START = /(?<![A-Za-z0-9_])([A-Z]{2})\d{2}[A-Z0-9 ]/g;
const IBAN_TAIL = /(?<![A-Za-z0-9_])[A-Z](?:[A-Z](?:\d(?:\d[A-Z0-9 ]{0,40})?)?)?$/g;

export function ibanMod97Valid(iban: string): boolean {
  const re = iban.slice(4) + iban.slice(0, 4);
  let rem = 0;
  for (let i = 0; i < re.length; i++) {
    const c = re.charCodeAt(i);
    if (c >= C_0 && c <= C_9) rem = (rem * 10 + (c - C_0)) % 97;
    else rem = (rem * 100 + (c - 55)) % 97; // A=10 .. Z=35
  }
  return rem === 1;
}

const ibanDetector: Detector = {
  name: 'iban',
  priority: 5,
  mayMatch: (t, st) => st.upper >= 2 && st.digits >= 2 && t.length >= 15,
  candidates(text, from, out) {
    IBAN_START.lastIndex = from;
    let m: RegExpExecArray | null;
    while ((m = IBAN_START.exec(text)) !== null) {
      const s = m.index;
      IBAN_START.lastIndex = s + 1;
      const len = IBAN_LENGTHS[m[1]!];
      if (len === undefined) continue;
      // collect `len` characters of [A-Z0-9], allowing single spaces between them
      let i = s;
      let got = '';
      while (got.length < len && i < text.length) {
        const c = text.charCodeAt(i);
        if ((c >= 65 && c <= 90) || isDigit(c)) {
          got += text[i];
          i++;
        } else if (c === 32 && got.length > 0 && i + 1 < text.length && text.charCodeAt(i - 1) !== 32) {
          const n = text.charCodeAt(i + 1);
          if (!((n >= 65 && n <= 90) || isDigit(n))) break;
          i++;
        } else break;
      }
      if (got.length !== len) continue;
      if (i < text.length && isWord(text.charCodeAt(i))) continue;
      if (!ibanMod97Valid(got)) continue;
      out.push({ start: s, end: i, detector: 'iban' });
    }
  },
  tail: (text, from) => tailByRegex(IBAN_TAIL, text, from, 44),
};

// ---- JWT ----------------------------------------------------------------------

const JWT = /(?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*(?![A-Za-z0-9_.-])/g;
/** `e`, `ey`, `eyJ...` and dots/segments after it, up to the hold limit. */
const JWT_TAIL = /(?<![A-Za-z0-9_-])e(?:y(?:J[A-Za-z0-9_.-]*)?)?$/g;

function jwtHeaderValid(seg: string): boolean {
  try {
    const json = Buffer.from(seg, 'base64url').toString('utf8');
    const h = JSON.parse(json) as unknown;
    return h !== null && typeof h === 'object' && typeof (h as { alg?: unknown }).alg === 'string';
  } catch {
    return false;
  }
}

const jwtDetector: Detector = {
  name: 'jwt',
  priority: 6,
  mayMatch: (t) => t.length >= 20 && t.indexOf('eyJ') >= 0,
  candidates(text, from, out) {
    regexCandidates(JWT, text, from, out, 'jwt', (m) => {
      const dot = m[0].indexOf('.');
      return jwtHeaderValid(m[0].slice(0, dot)) ? { start: m.index, end: m.index + m[0].length } : null;
    });
  },
  tail: (text, from) => tailByRegex(JWT_TAIL, text, from, 16384),
};

// ---- cloud keys ---------------------------------------------------------------

const CLOUD_TOKEN = new RegExp(
  [
    // AWS access key ids (long-term and temporary) and other IAM unique ids
    String.raw`(?<![A-Za-z0-9])(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AIPA|ANPA|ANVA|AROA|APKA|ASCA)[A-Z2-7]{16}(?![A-Za-z0-9])`,
    // Google API key
    String.raw`(?<![A-Za-z0-9_-])AIza[0-9A-Za-z_-]{35}(?![A-Za-z0-9_-])`,
    // GitHub tokens
    String.raw`(?<![A-Za-z0-9_])gh[pousr]_[A-Za-z0-9]{36,251}(?![A-Za-z0-9_])`,
    String.raw`(?<![A-Za-z0-9_])github_pat_[A-Za-z0-9_]{22,255}(?![A-Za-z0-9_])`,
    // Slack tokens
    String.raw`(?<![A-Za-z0-9_-])xox[abposr]-[A-Za-z0-9-]{10,250}(?![A-Za-z0-9_-])`,
    // Stripe live secret / restricted keys
    String.raw`(?<![A-Za-z0-9_])(?:sk|rk)_live_[A-Za-z0-9]{24,247}(?![A-Za-z0-9_])`,
  ].join('|'),
  'g',
);
/** AWS secret access key: 40 base64 characters, only with its name in front of it. */
const AWS_SECRET_NAME = /secret_?access_?key|aws_secret_key/gi;
const AWS_SECRET_VALUE = /["']?[ \t]{0,8}[:=][ \t]{0,8}["']?([A-Za-z0-9/+]{40})(?![A-Za-z0-9/+=])/y;
/** Literal starts of the tokens above: cheap to find, then verified with CLOUD_TOKEN. */
const CLOUD_TOKEN_HINT = /A(?:KIA|SIA|BIA|CCA|GPA|IDA|IPA|NPA|NVA|ROA|PKA|SCA|Iza)|gh[pousr]_|github_pat_|xox[abposr]-|[sr]k_live_/g;
/** Any token start follows a non-alphanumeric character; the rest is token characters. */
const CLOUD_KEY_TAIL = /(?<![A-Za-z0-9])[A-Za-z0-9_/+-]{1,300}$/g;

const cloudKeyDetector: Detector = {
  name: 'cloud_key',
  priority: 7,
  mayMatch: (t) => t.length >= 20,
  candidates(text, from, out) {
    CLOUD_TOKEN_HINT.lastIndex = from;
    let h: RegExpExecArray | null;
    while ((h = CLOUD_TOKEN_HINT.exec(text)) !== null) {
      CLOUD_TOKEN.lastIndex = h.index;
      const m = CLOUD_TOKEN.exec(text);
      if (m && m.index === h.index) out.push({ start: m.index, end: m.index + m[0].length, detector: 'cloud_key' });
      CLOUD_TOKEN_HINT.lastIndex = h.index + 1;
    }
    // the name may sit in the left context (before `from`); the value must start at or after it
    AWS_SECRET_NAME.lastIndex = Math.max(0, from - 64);
    let n: RegExpExecArray | null;
    while ((n = AWS_SECRET_NAME.exec(text)) !== null) {
      AWS_SECRET_VALUE.lastIndex = n.index + n[0].length;
      const v = AWS_SECRET_VALUE.exec(text);
      if (v) {
        const start = v.index + v[0].length - v[1]!.length;
        if (start >= from) out.push({ start, end: start + 40, detector: 'cloud_key' });
      }
      AWS_SECRET_NAME.lastIndex = n.index + 1;
    }
  },
  tail: (text, from) => tailByRegex(CLOUD_KEY_TAIL, text, from, 300),
};

// ---- private keys -------------------------------------------------------------

export const PEM_BEGIN = /-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----/g;
const PEM_END = /-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----/y;
/** A possibly unfinished BEGIN/END line at the end of the text. */
const PEM_LINE_TAIL = /-(?:[-A-Z0-9 ]{0,60})$/g;
/** Longest line accepted inside a key block (PEM wraps at 64-76). */
export const PEM_MAX_LINE = 256;

/** Characters of PEM body lines (base64), their headers (`Proc-Type: 4,ENCRYPTED`) and line ends. */
function pemBodyChar(c: number): boolean {
  return (
    (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || (c >= 48 && c <= 58) ||
    c === 43 || c === 47 || c === 61 || c === 13 || c === 32 || c === 44 || c === 45
  );
}

export interface PemBlockEnd {
  /** End of the block (exclusive). */
  end: number;
  /** false: the text ended inside the block, more input could extend it. */
  complete: boolean;
  /** When incomplete: where the terminator of the last complete line starts. */
  lastLineStart: number;
}

/**
 * Where a private-key block whose body starts at `bodyStart` ends: after its END
 * line; or, when a line appears that cannot be key material (a shell prompt
 * after `head -1 id_rsa`, an error message), before that line's line break; or
 * at the end of the text (incomplete).
 */
export function pemBlockEnd(text: string, bodyStart: number): PemBlockEnd {
  let termStart = bodyStart;
  let lineLen = 0;
  for (let i = bodyStart; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 10) {
      let t = i;
      while (t > termStart && text.charCodeAt(t - 1) === 13) t--;
      termStart = t;
      lineLen = 0;
      continue;
    }
    if (c === 45 && text.startsWith('-----END ', i)) {
      PEM_END.lastIndex = i;
      const m = PEM_END.exec(text);
      if (m) return { end: i + m[0].length, complete: true, lastLineStart: termStart };
    }
    if (!pemBodyChar(c) || ++lineLen > PEM_MAX_LINE) return { end: termStart, complete: true, lastLineStart: termStart };
  }
  return { end: text.length, complete: false, lastLineStart: termStart };
}

const privateKeyDetector: Detector = {
  name: 'private_key',
  priority: 8,
  mayMatch: (t) => t.length >= 20 && t.indexOf('-----BEGIN ') >= 0,
  candidates(text, from, out) {
    PEM_BEGIN.lastIndex = from;
    let m: RegExpExecArray | null;
    while ((m = PEM_BEGIN.exec(text)) !== null) {
      const s = m.index;
      out.push({ start: s, end: pemBlockEnd(text, s + m[0].length).end, detector: 'private_key' });
      PEM_BEGIN.lastIndex = s + 1;
    }
  },
  tail: (text, from) => tailByRegex(PEM_LINE_TAIL, text, from, 62),
};

// ---- registry -----------------------------------------------------------------

export function createDetectors(opts: DetectorOptions = {}): Record<DetectorName, Detector> {
  return {
    card: cardDetector(opts),
    email: emailDetector,
    phone: phoneDetector,
    ssn: ssnDetector,
    iban: ibanDetector,
    jwt: jwtDetector,
    cloud_key: cloudKeyDetector,
    private_key: privateKeyDetector,
  };
}

const DEFAULT_DETECTORS = createDetectors();

export function detectorByName(name: DetectorName, opts?: DetectorOptions): Detector {
  return opts && opts.cardIin === false ? createDetectors(opts)[name] : DEFAULT_DETECTORS[name];
}

/**
 * Non-overlapping matches of `detectors` in `text` starting at or after `from`
 * (text before `from` is left context). Earliest start wins; then the longer
 * match; then the detector priority.
 */
export function findMatches(text: string, detectors: readonly Detector[], from = 0): Match[] {
  let cands: Match[] | null = null;
  const st = textStats(text);
  for (const d of detectors) {
    if (!d.mayMatch(text, st)) continue;
    cands ??= [];
    d.candidates(text, from, cands);
  }
  if (cands === null || cands.length === 0) return EMPTY;
  if (cands.length === 1) return cands;
  cands.sort((a, b) => a.start - b.start || b.end - a.end || prio(b) - prio(a));
  const out: Match[] = [];
  let end = -1;
  for (const c of cands) {
    if (c.start < end) continue;
    out.push(c);
    end = c.end;
  }
  return out;
}

const EMPTY: Match[] = [];
const PRIORITY: Record<DetectorName, number> = {
  private_key: 8, cloud_key: 7, jwt: 6, iban: 5, card: 4, ssn: 3, email: 1, phone: 0,
};
function prio(m: Match): number {
  return PRIORITY[m.detector];
}

/** Smallest index >= from where a pending (undecided) match could begin; text.length if none. */
export function pendingTail(text: string, detectors: readonly Detector[], from: number): number {
  let t = text.length;
  for (const d of detectors) {
    const x = d.tail(text, from);
    if (x < t) t = x;
  }
  return t;
}
