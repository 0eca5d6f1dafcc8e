/**
 * Moves bytes between the user's channel and the upstream channel: output
 * through the stream masker (stdout and stderr each keep their own state, so
 * a value split across packets is still found) and into the recording, with
 * backpressure in both directions.
 */
import type { Readable, Writable } from 'node:stream';
import type { MaskRule } from '../../core/policy-contract.ts';

/** A byte-stream masker: correct across chunk boundaries, UTF-8 and ANSI safe (core/mask createStreamMasker). */
export interface StreamMasker {
  push(chunk: Buffer): Buffer;
  end(): Buffer;
}

export type MaskerFactory = (rules: MaskRule[]) => StreamMasker;

export interface Counter {
  bytes: number;
}

/** Copies src to dst through `masker`, calling `onOutput` with what the user is shown. Resolves at src end. */
export function relayOutput(src: Readable, dst: Writable, masker: StreamMasker | undefined, onOutput: (b: Buffer) => void, count: Counter): Promise<void> {
  return new Promise((resolve) => {
    const send = (b: Buffer) => {
      if (b.length === 0) return true;
      count.bytes += b.length;
      onOutput(b);
      return dst.writable ? dst.write(b) : true;
    };
    src.on('data', (d: Buffer) => {
      if (!send(masker ? masker.push(d) : d)) {
        src.pause();
        dst.once('drain', () => src.resume());
      }
    });
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      if (masker) send(masker.end());
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
