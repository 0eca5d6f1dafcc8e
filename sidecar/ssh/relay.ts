/**
 * Moves bytes between the user's channel and the upstream channel: output
 * through the stream masker (stdout and stderr each keep their own state, so
 * a value split across packets is still found) and into the recording, with
 * backpressure in both directions.
 */
import type { Readable, Writable } from 'node:stream';
import { compileMaskPlan, createStreamMasker, type MaskPlanOptions, type StreamMasker } from '../../core/mask/index.ts';
import type { MaskRule } from '../../core/policy-contract.ts';

export type { StreamMasker };
export type MaskerFactory = (rules: MaskRule[]) => StreamMasker;

/** The shared stream masker (core/mask) for a decision's rules. Throws on an invalid rule: the caller denies. */
export function sharedMasker(opts: MaskPlanOptions = {}): MaskerFactory {
  return (rules) => createStreamMasker(compileMaskPlan(rules, opts));
}

/**
 * With a pty, held-back output (a digit run that could still grow into a card
 * number) is released after this much silence, so prompts and partial lines
 * are not delayed. Without a pty nothing is released early: a value is masked
 * however slowly it arrives.
 */
export const PTY_IDLE_FLUSH_MS = 50;

export interface Counter {
  bytes: number;
}

/** Copies src to dst through `masker`, calling `onOutput` with what the user is shown. Resolves at src end. */
export function relayOutput(
  src: Readable,
  dst: Writable,
  masker: StreamMasker | undefined,
  onOutput: (b: Buffer) => void,
  count: Counter,
  idleFlushMs?: number,
): Promise<void> {
  return new Promise((resolve) => {
    const send = (b: Buffer) => {
      if (b.length === 0) return true;
      count.bytes += b.length;
      onOutput(b);
      return dst.writable ? dst.write(b) : true;
    };
    let idle: NodeJS.Timeout | undefined;
    src.on('data', (d: Buffer) => {
      if (!send(masker ? masker.push(d) : d)) {
        src.pause();
        dst.once('drain', () => src.resume());
      }
      if (masker && idleFlushMs !== undefined && masker.pendingBytes() > 0) {
        if (idle) idle.refresh();
        else
          idle = setTimeout(() => {
            idle = undefined;
            send(masker.flush('idle'));
          }, idleFlushMs);
      }
    });
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      if (idle) clearTimeout(idle);
      if (masker) send(masker.flush('end'));
      resolve();
    };
    src.once('end', finish);
    src.once('close', finish);
  });
}

/** Copies user input to upstream with backpressure (exec stdin, scp, sftp, forwards). */
export function relayInput(src: Readable, dst: Writable, count: Counter, onInput?: (b: Buffer) => void): void {
  src.on('data', (d: Buffer) => {
    count.bytes += d.length;
    onInput?.(d);
    if (!dst.writable) return;
    if (!dst.write(d)) {
      src.pause();
      dst.once('drain', () => src.resume());
    }
  });
  src.once('end', () => {
    if (dst.writable) dst.end();
  });
}
