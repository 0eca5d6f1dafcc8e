/**
 * Stream masking for byte streams (SSH channel output).
 *
 *   const sm = createStreamMasker(plan);
 *   channel.on('data', (b) => client.write(sm.push(b)));   // safe to emit now
 *   idle timer / end:        client.write(sm.flush());
 *
 * Bytes are handled as latin1 code units, so binary output passes through
 * byte-for-byte and detectors (ASCII only) never see into UTF-8 sequences.
 * push() holds back only the shortest tail that could still become (part of) a
 * match: a trailing run of digits/separators, a word that could be an email or
 * a key, an unfinished `-----BEGIN` line, an unfinished escape sequence or UTF-8
 * sequence. Masking is the same whichever way the stream is cut into chunks
 * (as long as flush() is only called at idle points, see below).
 *
 * Terminal escape sequences are never altered: SGR (colour) and erase-in-line
 * sequences are transparent to detection, so a card number highlighted by
 * `grep --color` is still found; other CSI/OSC/DCS sequences (cursor movement,
 * titles) act as separators and their content is not masked. A replaced match keeps every
 * escape sequence that was inside it, in order, after the replacement text.
 *
 * Private keys: once a `-----BEGIN ... PRIVATE KEY-----` line is complete, the
 * marker is emitted and the block is swallowed line by line (bounded memory)
 * until its END line, or until a line that cannot be key material.
 *
 * flush() emits what is held (an idle flush can therefore split a value that
 * is still arriving: a card number typed or printed slowly is then not
 * recognised). It keeps holding an unfinished BEGIN/END line and the current
 * line of an open key block.
 */
import { PEM_BEGIN, findMatches, pemBlockEnd, pendingTail, type Match } from './detectors.ts';
import type { MaskCounts, MaskPlan } from './plan.ts';
import { streamReplacement } from './strategies.ts';

export interface StreamMaskerOptions {
  /** Most bytes held back at once (default 64 KiB); beyond it the held value is redacted as `[redacted:overflow]`. */
  maxHoldBytes?: number;
}

export interface StreamMasker {
  /** Feeds a chunk; returns the output that is safe to emit now (possibly empty). */
  push(chunk: Uint8Array): Buffer;
  /**
   * Emits what is held back. `end` (default): the stream is over, everything
   * goes out (an open key block stays masked). `idle`: called from an idle timer
   * so prompts are not delayed; still holds an unfinished BEGIN/END line and the
   * current line of an open key block.
   */
  flush(mode?: 'idle' | 'end'): Buffer;
  /** Bytes currently held back. */
  pendingBytes(): number;
  /** Findings per `detector:<name>` (and `overflow`). */
  counts(): MaskCounts;
}

/** Left context kept from emitted text for boundary checks (longest lookbehind is ~45). */
const CTX = 96;
const ESC = 0x1b;
const MAX_ESCAPE = 4096;
const OVERFLOW = '[redacted:overflow]';
const EMPTY = Buffer.alloc(0);

/** The visible text of a raw (latin1) string: SGR sequences removed, other escapes replaced by NUL. */
interface Visible {
  v: string;
  /** raw index of v[j]; null when raw has no escapes (identity). */
  idx: Int32Array | null;
  /** [start, end) raw ranges of all complete escape sequences, in order. */
  escapes: number[];
  /** raw index where an unfinished escape sequence starts, or raw.length. */
  rawEnd: number;
}

function escapeEnd(raw: string, i: number): { end: number; sgr: boolean } | null {
  const n = raw.length;
  if (i + 1 >= n) return null;
  const c = raw.charCodeAt(i + 1);
  if (c === 0x5b) {
    // CSI: params 0x30-0x3F, intermediates 0x20-0x2F, final 0x40-0x7E
    let j = i + 2;
    while (j < n) {
      const d = raw.charCodeAt(j);
      if (d >= 0x40 && d <= 0x7e) return { end: j + 1, sgr: d === 0x6d || d === 0x4b }; // SGR, erase-in-line
      if (d < 0x20 || d > 0x3f) return { end: j, sgr: false }; // malformed: stop before the odd byte
      if (j - i > MAX_ESCAPE) return { end: j, sgr: false };
      j++;
    }
    return null;
  }
  if (c === 0x5d || c === 0x50 || c === 0x58 || c === 0x5e || c === 0x5f) {
    // OSC / DCS / SOS / PM / APC: up to BEL (OSC) or ST (ESC \)
    let j = i + 2;
    while (j < n) {
      const d = raw.charCodeAt(j);
      if (d === 0x07 && c === 0x5d) return { end: j + 1, sgr: false };
      if (d === ESC) {
        if (j + 1 >= n) return null;
        return { end: raw.charCodeAt(j + 1) === 0x5c ? j + 2 : j, sgr: false };
      }
      if (j - i > MAX_ESCAPE) return { end: j, sgr: false };
      j++;
    }
    return null;
  }
  // ESC, intermediates 0x20-0x2F, final 0x30-0x7E (charset selection, keypad modes, ...)
  let j = i + 1;
  while (j < n && raw.charCodeAt(j) >= 0x20 && raw.charCodeAt(j) <= 0x2f) j++;
  if (j >= n) return null;
  const f = raw.charCodeAt(j);
  return { end: f >= 0x30 && f <= 0x7e ? j + 1 : j, sgr: false };
}

function visible(raw: string, final: boolean): Visible {
  if (raw.indexOf('\x1b') < 0) return { v: raw, idx: null, escapes: [], rawEnd: raw.length };
  const idx: number[] = [];
  const escapes: number[] = [];
  let v = '';
  let runStart = 0;
  let i = 0;
  let rawEnd = raw.length;
  while (i < raw.length) {
    if (raw.charCodeAt(i) !== ESC) {
      idx.push(i);
      i++;
      continue;
    }
    const e = escapeEnd(raw, i);
    if (e === null && !final) {
      rawEnd = i;
      break;
    }
    const end = e === null ? raw.length : e.end;
    v += raw.slice(runStart, i);
    escapes.push(i, end);
    if (e === null || !e.sgr) {
      v += '\x00';
      idx.push(i);
    }
    i = end;
    runStart = i;
  }
  v += raw.slice(runStart, rawEnd);
  return { v, idx: Int32Array.from(idx), escapes, rawEnd };
}

/** Start of an unfinished UTF-8 sequence at the end of raw (latin1), or raw.length. */
function utf8Cut(raw: string, end: number): number {
  for (let k = 1; k <= 3 && end - k >= 0; k++) {
    const b = raw.charCodeAt(end - k);
    if (b < 0x80) return end;
    if (b >= 0xc0) {
      const need = b >= 0xf0 ? 4 : b >= 0xe0 ? 3 : 2;
      return k < need ? end - k : end;
    }
  }
  return end;
}

export function createStreamMasker(plan: MaskPlan, opts: StreamMaskerOptions = {}): StreamMasker {
  const maxHold = opts.maxHoldBytes ?? 65536;
  const detectors = plan.detectors;
  const pemActive = plan.detectorRule('private_key') !== undefined;
  const counts: MaskCounts = {};
  let pending = '';
  let ctx = '';
  let pem = false;
  let skipToken = false;

  const count = (k: string) => {
    counts[k] = (counts[k] ?? 0) + 1;
  };

  const repFor = (m: Match, vis: string): string => {
    const rule = plan.detectorRule(m.detector)!;
    return streamReplacement(rule.strategy, vis.slice(m.start, m.end), rule.keep, m.detector, plan.strategyContext);
  };

  const pemDetector = plan.detectorRule('private_key')?.detector;

  function process(mode: 'push' | 'idle' | 'end'): Buffer {
    if (pending.length === 0) return EMPTY;
    const final = mode !== 'push';
    // an unfinished UTF-8 sequence at the very end waits for its other bytes
    const limit = final ? pending.length : utf8Cut(pending, pending.length);
    const raw = limit === pending.length ? pending : pending.slice(0, limit);
    const rest = limit === pending.length ? '' : pending.slice(limit);
    const vis = visible(raw, final);
    const V = vis.v;
    const rawPos = (j: number) => (j >= V.length ? vis.rawEnd : vis.idx === null ? j : vis.idx[j]!);
    let out = '';
    /** Emits the escapes inside raw [a, b). */
    const escapesIn = (a: number, b: number) => {
      let s = '';
      const es = vis.escapes;
      for (let k = 0; k < es.length; k += 2) if (es[k]! >= a && es[k]! < b) s += raw.slice(es[k]!, es[k + 1]!);
      return s;
    };
    let rawDone = 0; // raw bytes already written to out
    const emitPlain = (b: number) => {
      const rb = rawPos(b);
      if (rb > rawDone) {
        out += raw.slice(rawDone, rb);
        rawDone = rb;
      }
    };
    const emitReplaced = (a: number, b: number, rep: string) => {
      emitPlain(a);
      const rb = rawPos(b);
      out += rep + (vis.escapes.length > 0 ? escapesIn(rawDone, rb) : '');
      rawDone = rb;
    };

    let pos = 0; // V index up to which output is decided
    let hold = V.length; // V index from which input is held back

    const advanceCtx = (upTo: number) => {
      if (upTo > pos) ctx = (ctx + V.slice(pos, upTo)).slice(-CTX);
    };

    for (;;) {
      if (skipToken) {
        // after an overflow: swallow the rest of the oversized token
        let j = pos;
        while (j < V.length && /[A-Za-z0-9_.+/=-]/.test(V[j]!)) j++;
        emitReplaced(pos, j, '');
        advanceCtx(j);
        pos = j;
        if (j === V.length) break;
        skipToken = false;
      }
      if (pem) {
        const b = pemBlockEnd(V, pos);
        if (b.complete) {
          emitReplaced(pos, b.end, '');
          advanceCtx(b.end);
          pos = b.end;
          pem = false;
          continue;
        }
        // swallow complete lines, hold the last (it may be the END line)
        const upTo = mode === 'end' ? V.length : b.lastLineStart;
        emitReplaced(pos, upTo, '');
        advanceCtx(upTo);
        pos = upTo;
        hold = upTo;
        break;
      }
      // normal scanning of ctx + V[pos..]
      const S = ctx + V.slice(pos);
      const base = ctx.length; // S index of V[pos]
      const matches = detectors.length === 0 ? [] : findMatches(S, detectors, base);
      let h =
        mode === 'push' && detectors.length > 0
          ? pendingTail(S, detectors, base)
          : mode === 'idle' && pemDetector
            ? pemDetector.tail(S, base)
            : S.length;
      let open: Match | undefined;
      for (const m of matches) {
        if (m.detector === 'private_key' && m.end === S.length) {
          PEM_BEGIN.lastIndex = m.start;
          const hdr = PEM_BEGIN.exec(S)!;
          const blk = pemBlockEnd(S, m.start + hdr[0].length);
          if (!blk.complete) {
            open = m;
            break;
          }
        }
        if (m.end > h && m.start < h) h = m.start;
      }
      if (open && h < open.start) open = undefined; // something before the block is still undecided
      if (open && mode === 'end') {
        // the text ends inside a key block: it is masked to the end, and stays open
        h = S.length;
      }
      // emit V[pos .. pos + h - base) with matches that end within it
      let cursor = base;
      for (const m of matches) {
        if (m.end > h && m !== open) break;
        if (m === open) break;
        emitReplaced(pos + m.start - base, pos + m.end - base, repFor(m, S));
        count('detector:' + m.detector);
        cursor = m.end;
      }
      const stop = open ? open.start : h;
      emitPlain(pos + stop - base);
      advanceCtx(pos + stop - base);
      pos = pos + stop - base;
      if (open) {
        const rule = plan.detectorRule('private_key')!;
        const marker = streamReplacement(rule.strategy, '', rule.keep, 'private_key', plan.strategyContext);
        PEM_BEGIN.lastIndex = open.start;
        const hdr = PEM_BEGIN.exec(S)!;
        const hdrEnd = pos + hdr[0].length;
        emitReplaced(pos, hdrEnd, marker);
        count('detector:private_key');
        advanceCtx(hdrEnd);
        pos = hdrEnd;
        pem = true;
        continue;
      }
      hold = pos;
      break;
    }

    // bounded memory: an oversized held value is redacted, the rest of it skipped
    if (!final && V.length - hold > maxHold) {
      emitReplaced(hold, V.length, OVERFLOW);
      count('overflow');
      advanceCtx(V.length);
      pos = hold = V.length;
      skipToken = !pem;
    }

    emitPlain(hold);
    pending = raw.slice(rawDone) + rest;
    return out.length === 0 ? EMPTY : Buffer.from(out, 'latin1');
  }

  return {
    push(chunk) {
      if (chunk.byteLength === 0) return EMPTY;
      pending += Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength).toString('latin1');
      return process('push');
    },
    flush(mode = 'end') {
      return process(mode);
    },
    pendingBytes: () => pending.length,
    counts: () => ({ ...counts }),
  };
}

/** Masks a whole byte buffer as one stream (push + flush). */
export function maskBytes(plan: MaskPlan, data: Uint8Array): Buffer {
  const sm = createStreamMasker(plan, { maxHoldBytes: Number.MAX_SAFE_INTEGER });
  return Buffer.concat([sm.push(data), sm.flush()]);
}

