/** A minimal raw wire-protocol client for tests that need exact bytes (transparency, fuzz, streaming). */
import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import { serialize } from 'pg-protocol';
import { FrameReader, type Frame } from '../../../sidecar/postgres/codec/framing.ts';

export interface RawSession {
  sock: Socket;
  /** Sends bytes and collects raw backend bytes until ReadyForQuery (or close); `onFrame` sees each message. */
  roundtrip(bytes: Buffer, onFrame?: (f: Frame) => void, timeoutMs?: number): Promise<{ frames: number; bytes: number; raw: Buffer[] }>;
  close(): void;
}

export async function rawSession(port: number, params: Record<string, string>, password: string, keepRaw = true): Promise<RawSession> {
  const sock = connect(port, '127.0.0.1');
  await once(sock, 'connect');
  const reader = new FrameReader(false);
  let listener: ((f: Frame) => void) | undefined;
  let ended = false;
  sock.on('data', (d: Buffer) => {
    for (const f of reader.feed(d)) listener?.(f);
  });
  sock.on('close', () => {
    ended = true;
    listener?.({ type: -1, payload: Buffer.alloc(0), raw: Buffer.alloc(0) });
  });
  const roundtrip: RawSession['roundtrip'] = (bytes, onFrame, timeoutMs = 60_000) =>
    new Promise((resolve, reject) => {
      const raw: Buffer[] = [];
      let frames = 0;
      let total = 0;
      const t = setTimeout(() => reject(new Error('roundtrip timed out')), timeoutMs);
      listener = (f) => {
        if (f.type === -1) {
          clearTimeout(t);
          resolve({ frames, bytes: total, raw });
          return;
        }
        frames++;
        total += f.raw.length;
        if (keepRaw) raw.push(Buffer.from(f.raw));
        onFrame?.(f);
        if (f.type === 0x5a /* Z */) {
          clearTimeout(t);
          listener = undefined;
          resolve({ frames, bytes: total, raw });
        }
      };
      if (ended) listener({ type: -1, payload: Buffer.alloc(0), raw: Buffer.alloc(0) });
      else if (bytes.length) sock.write(bytes);
    });
  sock.write(serialize.startup(params));
  // AuthenticationCleartextPassword, then the token.
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('no auth request')), 10_000);
    listener = (f) => {
      if (f.type === 0x52) {
        clearTimeout(t);
        listener = undefined;
        resolve();
      } else if (f.type === 0x45 || f.type === -1) reject(new Error('refused during startup'));
    };
  });
  await roundtrip(serialize.password(password));
  return { sock, roundtrip, close: () => sock.destroy() };
}
