import { maskJsonText } from '../../core/mask/json.ts';
import { compileMaskPlan, type MaskCounts, type MaskPlan } from '../../core/mask/plan.ts';
import type { MaskRule } from '../../core/policy-contract.ts';

/**
 * Response-body masking for HTTP (the proxy and ext_proc), on the shared mask
 * core (core/mask). Bodies are handled by content type:
 *
 * - `json` (application/json, *+json): buffered up to `maxBytes`, then masked
 *   as one document (field paths and detectors);
 * - `lines` (Kubernetes watch `application/json;stream=watch`, NDJSON): each
 *   complete line is masked and released at once, so a watch keeps streaming;
 *   only a partial line is held (up to `maxBytes`);
 * - `text` (text/*, e.g. `kubectl logs -f`): line by line through the content
 *   detectors, streaming;
 * - anything else cannot be masked: the body is refused (fail closed).
 *
 * A body or line over `maxBytes`, or JSON that does not parse, is an error:
 * the caller replaces the body with an error (never passes it unmasked).
 */
export type BodyMode = 'json' | 'lines' | 'text' | 'opaque';

export function bodyMode(contentType: string | undefined): BodyMode {
  const ct = (contentType ?? '').toLowerCase();
  if (/stream=watch|application\/(x-)?ndjson|application\/jsonl|application\/json-seq/.test(ct)) return 'lines';
  if (/^application\/([a-z0-9.+-]*\+)?json\b/.test(ct)) return 'json';
  if (ct.startsWith('text/')) return 'text';
  return 'opaque';
}

export interface MaskStreamOptions {
  maxBytes: number;
  hashKey?: string;
}

export type MaskStep = { ok: true; out: Buffer } | { ok: false; error: string };

export class BodyMasker {
  readonly mode: BodyMode;
  readonly counts: MaskCounts = {};
  private readonly plan: MaskPlan;
  private readonly max: number;
  private parts: Buffer[] = [];
  private size = 0;
  private failed: string | undefined;

  constructor(rules: readonly MaskRule[], contentType: string | undefined, opts: MaskStreamOptions) {
    this.plan = compileMaskPlan(rules, opts.hashKey !== undefined ? { hashKey: opts.hashKey } : {});
    this.mode = bodyMode(contentType);
    this.max = opts.maxBytes;
  }

  /** True when there is nothing to mask (the body can be passed through untouched). */
  get passthrough(): boolean {
    return this.plan.empty || (this.mode === 'text' && !this.plan.hasDetectors);
  }

  push(chunk: Buffer): MaskStep {
    if (this.failed) return { ok: false, error: this.failed };
    if (this.mode === 'opaque') return this.fail(`a response of this content type cannot be masked, so it is withheld`);
    this.parts.push(chunk);
    this.size += chunk.length;
    if (this.mode === 'json') {
      if (this.size > this.max) return this.fail(`response body exceeds the masking limit of ${this.max} bytes, so it is withheld`);
      return { ok: true, out: Buffer.alloc(0) };
    }
    const buf = this.parts.length === 1 ? this.parts[0]! : Buffer.concat(this.parts);
    const nl = buf.lastIndexOf(0x0a);
    if (nl < 0) {
      this.parts = [buf];
      if (this.size > this.max) return this.fail(`a response line exceeds the masking limit of ${this.max} bytes, so it is withheld`);
      return { ok: true, out: Buffer.alloc(0) };
    }
    const rest = buf.subarray(nl + 1);
    this.parts = rest.length ? [Buffer.from(rest)] : [];
    this.size = rest.length;
    return this.maskLines(buf.subarray(0, nl + 1));
  }

  end(): MaskStep {
    if (this.failed) return { ok: false, error: this.failed };
    const buf = Buffer.concat(this.parts);
    this.parts = [];
    this.size = 0;
    if (this.mode === 'opaque') return buf.length === 0 ? { ok: true, out: buf } : this.fail('a response of this content type cannot be masked, so it is withheld');
    if (this.mode === 'json') {
      if (buf.length === 0) return { ok: true, out: buf };
      const r = maskJsonText(buf, this.plan, { maxBytes: this.max });
      if (!r.ok) return this.fail(`response could not be masked (${r.message}), so it is withheld`);
      this.add(r.counts);
      return { ok: true, out: r.body };
    }
    return buf.length ? this.maskLines(buf) : { ok: true, out: buf };
  }

  private maskLines(buf: Buffer): MaskStep {
    if (this.mode === 'text') {
      const r = this.plan.maskText(buf.toString('utf8'), this.counts);
      return { ok: true, out: Buffer.from(r.text ?? '') };
    }
    const r = maskJsonText(buf, this.plan, { maxBytes: Math.max(this.max, buf.length), multiple: true });
    if (!r.ok) return this.fail(`a streamed response line could not be masked (${r.message}), so the stream is cut`);
    this.add(r.counts);
    // maskJsonText re-serialises the values; keep one value per line, as the client expects.
    return { ok: true, out: r.body.length && r.body[r.body.length - 1] !== 0x0a ? Buffer.concat([r.body, Buffer.from('\n')]) : r.body };
  }

  private add(c: MaskCounts): void {
    for (const [k, n] of Object.entries(c)) this.counts[k] = (this.counts[k] ?? 0) + n;
  }

  private fail(error: string): MaskStep {
    this.failed = error;
    this.parts = [];
    return { ok: false, error };
  }
}
