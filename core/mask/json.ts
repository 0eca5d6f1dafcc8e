/**
 * JSON masking for HTTP bodies (the HTTP proxy, Envoy ext_proc) and json/jsonb
 * columns.
 *
 * The text is parsed into a tree that remembers where every value sits, masking
 * decisions are made on the tree, and only the masked values are spliced into
 * the original text: everything else is byte-for-byte unchanged (key order,
 * whitespace, duplicate keys, and numbers beyond 2^53 survive).
 *
 * - `field` rules select values by path; a path that selects an object/array
 *   masks every scalar below it. Non-string scalars become null unless the
 *   strategy is hash/partial, which turn them into strings.
 * - detectors run over every string value not selected by a field rule (and
 *   over number literals, where a card number may hide).
 * - Kubernetes Secrets (`kind: Secret`): `data` values are base64. A field rule
 *   masks the whole value and the replacement is base64 again (so kubectl and
 *   client-go still decode it); detectors run over the decoded value.
 */
import { pathKey, type PathStep } from './field-path.ts';
import { setJsonColumnMasker, stricter, type FieldRule, type MaskCounts, type MaskPlan, type TextMaskResult } from './plan.ts';

type PNode =
  | { t: 'o'; s: number; e: number; keys: string[]; vals: PNode[] }
  | { t: 'a'; s: number; e: number; items: PNode[] }
  | { t: 's'; s: number; e: number; v: string }
  | { t: 'n' | 'b' | 'z'; s: number; e: number };

const MAX_DEPTH = 512;

class JsonSyntaxError extends Error {}

/** Parses JSON text into a positional tree; `multiple` accepts whitespace-separated values (NDJSON, watch streams). */
function parse(src: string, multiple: boolean): PNode[] {
  let i = 0;
  const n = src.length;
  const fail = (why: string): never => {
    throw new JsonSyntaxError(`${why} at offset ${i}`);
  };
  const ws = () => {
    while (i < n) {
      const c = src.charCodeAt(i);
      if (c === 32 || c === 10 || c === 13 || c === 9 || (c === 0xfeff && i === 0)) i++;
      else break;
    }
  };
  const str = (): PNode & { t: 's' } => {
    const s = i;
    i++;
    let escaped = false;
    for (;;) {
      if (i >= n) fail('unterminated string');
      const c = src.charCodeAt(i);
      if (c === 34) break;
      if (c === 92) {
        escaped = true;
        i += 2;
        continue;
      }
      if (c < 0x20) fail('control character in string');
      i++;
    }
    i++;
    let v: string;
    if (escaped) {
      try {
        v = JSON.parse(src.slice(s, i)) as string;
      } catch {
        return fail('bad escape in string');
      }
    } else v = src.slice(s + 1, i - 1);
    return { t: 's', s, e: i, v };
  };
  const NUM = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y;
  const value = (depth: number): PNode => {
    if (depth > MAX_DEPTH) fail(`nesting deeper than ${MAX_DEPTH}`);
    ws();
    if (i >= n) fail('unexpected end');
    const c = src.charCodeAt(i);
    const s = i;
    if (c === 123) {
      i++;
      const keys: string[] = [];
      const vals: PNode[] = [];
      ws();
      if (src.charCodeAt(i) === 125) {
        i++;
        return { t: 'o', s, e: i, keys, vals };
      }
      for (;;) {
        ws();
        if (src.charCodeAt(i) !== 34) fail('expected a key');
        keys.push(str().v);
        ws();
        if (src.charCodeAt(i) !== 58) fail('expected ":"');
        i++;
        vals.push(value(depth + 1));
        ws();
        const d = src.charCodeAt(i);
        i++;
        if (d === 44) continue;
        if (d === 125) return { t: 'o', s, e: i, keys, vals };
        i--;
        fail('expected "," or "}"');
      }
    }
    if (c === 91) {
      i++;
      const items: PNode[] = [];
      ws();
      if (src.charCodeAt(i) === 93) {
        i++;
        return { t: 'a', s, e: i, items };
      }
      for (;;) {
        items.push(value(depth + 1));
        ws();
        const d = src.charCodeAt(i);
        i++;
        if (d === 44) continue;
        if (d === 93) return { t: 'a', s, e: i, items };
        i--;
        fail('expected "," or "]"');
      }
    }
    if (c === 34) return str();
    if (src.startsWith('true', i)) {
      i += 4;
      return { t: 'b', s, e: i };
    }
    if (src.startsWith('false', i)) {
      i += 5;
      return { t: 'b', s, e: i };
    }
    if (src.startsWith('null', i)) {
      i += 4;
      return { t: 'z', s, e: i };
    }
    NUM.lastIndex = i;
    const m = NUM.exec(src);
    if (!m) return fail('unexpected character');
    i += m[0].length;
    return { t: 'n', s, e: i };
  };
  const out: PNode[] = [];
  ws();
  do {
    out.push(value(0));
    ws();
  } while (multiple && i < n);
  if (i < n) fail('trailing data');
  return out;
}

type Rule = Pick<FieldRule, 'strategy' | 'keep'> & { key: string };
type Splice = [start: number, end: number, text: string];

class Masker {
  readonly splices: Splice[] = [];
  findings = 0;
  constructor(
    private readonly plan: MaskPlan,
    private readonly src: string,
    readonly counts: MaskCounts,
    private readonly useFieldRules: boolean,
  ) {}

  private count(key: string): void {
    this.counts[key] = (this.counts[key] ?? 0) + 1;
    this.findings++;
  }

  private ruleAt(path: readonly PathStep[]): Rule | undefined {
    return this.useFieldRules && this.plan.fieldRules.length > 0 && path.length > 0 ? this.fieldRule(path) : undefined;
  }

  private fieldRule(path: readonly PathStep[]): Rule | undefined {
    let best: FieldRule | undefined;
    for (const r of this.plan.fieldRules) if (r.matcher(path)) best = stricter(best, r);
    return best && { strategy: best.strategy, keep: best.keep, key: pathKey(path) };
  }

  /** `secretData`: `node` is the `data` object of a Kubernetes Secret (its values are base64). */
  walk(node: PNode, path: PathStep[], rule: Rule | undefined, secretData: boolean): void {
    if (rule === undefined) rule = this.ruleAt(path);
    switch (node.t) {
      case 'o': {
        const isSecret = !secretData && isKubernetesSecret(node);
        for (let k = 0; k < node.keys.length; k++) {
          const key = node.keys[k]!;
          const child = node.vals[k]!;
          path.push(key);
          if (secretData && child.t === 's') this.secretValue(child, rule ?? this.ruleAt(path));
          else this.walk(child, path, rule, isSecret && key === 'data' && child.t === 'o');
          path.pop();
        }
        return;
      }
      case 'a':
        for (let k = 0; k < node.items.length; k++) {
          path.push(k);
          this.walk(node.items[k]!, path, rule, false);
          path.pop();
        }
        return;
      case 's':
        if (rule) return this.whole(node, node.v, rule);
        return this.detect(node, node.v);
      case 'n':
        if (rule) return this.whole(node, this.src.slice(node.s, node.e), rule);
        return this.detect(node, this.src.slice(node.s, node.e));
      case 'b':
        if (rule) return this.whole(node, this.src.slice(node.s, node.e), rule);
        return;
      case 'z':
        return;
    }
  }

  private whole(node: PNode, text: string, rule: Rule): void {
    const strict = node.t !== 's' && (rule.strategy === 'redact' || rule.strategy === 'null');
    const v = strict ? null : this.plan.wholeValue(rule.strategy, rule.keep, text);
    this.splices.push([node.s, node.e, v === null ? 'null' : JSON.stringify(v)]);
    this.count(rule.key);
  }

  private detect(node: PNode, text: string): void {
    if (!this.plan.hasDetectors) return;
    const r = this.plan.detect(text, this.counts);
    if (r === undefined) return;
    this.findings += r.findings;
    this.splices.push([node.s, node.e, r.text === null ? 'null' : JSON.stringify(r.text)]);
  }

  /** A Kubernetes Secret `data` value: base64 in, base64 out. */
  private secretValue(node: PNode & { t: 's' }, rule: Rule | undefined): void {
    const b = Buffer.from(node.v, 'base64');
    let decoded: string | undefined;
    try {
      decoded = new TextDecoder('utf-8', { fatal: true }).decode(b);
    } catch {
      decoded = undefined;
    }
    if (rule) {
      const v = this.plan.wholeValue(rule.strategy, rule.keep, decoded ?? node.v);
      this.splices.push([node.s, node.e, v === null ? 'null' : JSON.stringify(Buffer.from(v, 'utf8').toString('base64'))]);
      this.count(rule.key);
      return;
    }
    if (decoded === undefined || !this.plan.hasDetectors) return;
    const r = this.plan.detect(decoded, this.counts);
    if (r === undefined) return;
    this.findings += r.findings;
    this.splices.push([node.s, node.e, r.text === null ? 'null' : JSON.stringify(Buffer.from(r.text, 'utf8').toString('base64'))]);
  }

  output(): string {
    if (this.splices.length === 0) return this.src;
    let out = '';
    let last = 0;
    for (const [s, e, t] of this.splices) {
      out += this.src.slice(last, s) + t;
      last = e;
    }
    return out + this.src.slice(last);
  }
}

function isKubernetesSecret(node: PNode & { t: 'o' }): boolean {
  const k = node.keys.indexOf('kind');
  if (k < 0) return false;
  const v = node.vals[k]!;
  return v.t === 's' && v.v === 'Secret';
}

export interface JsonTextOptions {
  /** Refuse bodies larger than this (bytes). */
  maxBytes: number;
  /** Accept a sequence of JSON values separated by whitespace (NDJSON, Kubernetes watch). */
  multiple?: boolean;
}

export type JsonMaskResult =
  | { ok: true; body: Buffer; changed: boolean; counts: MaskCounts; findings: number }
  | { ok: false; error: 'too_large' | 'not_json'; message: string };

function maskSource(
  src: string,
  plan: MaskPlan,
  multiple: boolean,
  fieldRules = true,
): { text: string; counts: MaskCounts; findings: number } {
  const roots = parse(src, multiple);
  const m = new Masker(plan, src, {}, fieldRules);
  if (!plan.empty) for (const r of roots) m.walk(r, [], undefined, false);
  return { text: m.output(), counts: m.counts, findings: m.findings };
}

/**
 * Masks a JSON body. Never throws for bad input: a body over `maxBytes`, invalid
 * UTF-8 or invalid JSON is a result with `ok: false` and a one-line message (the
 * caller fails closed: it must not pass such a body through unmasked).
 */
export function maskJsonText(buf: Uint8Array, plan: MaskPlan, opts: JsonTextOptions): JsonMaskResult {
  if (buf.byteLength > opts.maxBytes) {
    return { ok: false, error: 'too_large', message: `JSON body of ${buf.byteLength} bytes exceeds the masking limit of ${opts.maxBytes} bytes` };
  }
  let src: string;
  try {
    src = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(buf);
  } catch {
    return { ok: false, error: 'not_json', message: 'body is not valid UTF-8, so it is not JSON' };
  }
  try {
    const r = maskSource(src, plan, opts.multiple === true);
    if (r.findings === 0) return { ok: true, body: Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength), changed: false, counts: r.counts, findings: 0 };
    return { ok: true, body: Buffer.from(r.text, 'utf8'), changed: true, counts: r.counts, findings: r.findings };
  } catch (e) {
    if (e instanceof JsonSyntaxError) return { ok: false, error: 'not_json', message: `body is not JSON: ${e.message}` };
    throw e;
  }
}

/** Masks a JSON value (a parsed body); returns a new value and counts. */
export function maskJson(value: unknown, plan: MaskPlan): { value: unknown; counts: MaskCounts } {
  if (value === undefined || plan.empty) return { value, counts: {} };
  const src = JSON.stringify(value);
  if (src === undefined) return { value, counts: {} };
  const r = maskSource(src, plan, false);
  if (r.findings === 0) return { value, counts: r.counts };
  return { value: JSON.parse(r.text) as unknown, counts: r.counts };
}

/** json/jsonb columns: detectors over the strings inside; text that is not JSON falls back to plain text. */
setJsonColumnMasker((plan, text, counts): TextMaskResult | undefined => {
  let r: ReturnType<typeof maskSource>;
  try {
    r = maskSource(text, plan, false, false);
  } catch (e) {
    if (e instanceof JsonSyntaxError) return plan.detect(text, counts);
    throw e;
  }
  for (const [k, v] of Object.entries(r.counts)) counts[k] = (counts[k] ?? 0) + v;
  return r.findings === 0 ? undefined : { text: r.text, findings: r.findings };
});

