/**
 * Session recording in asciicast v2 (https://docs.asciinema.org/manual/asciicast/v2/):
 * a JSON header line, then `[time, "o"|"i"|"r", data]` event lines. Only what
 * the user was shown is recorded as output, so recordings hold masked output.
 *
 * Recordings go to a core/audit RecordingSink (one `append` per line): the
 * spool that ships to ClickHouse (SpoolRecordingSink), or FileRecordingSink,
 * which keeps `<dir>/<session>.cast` files for a single process.
 */
import { createWriteStream, type WriteStream } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { StringDecoder } from 'node:string_decoder';
import { readRecording, type RecordingChunk, type RecordingSink } from '../../core/audit/recordings.ts';
import type { AuditStore } from '../../core/audit/store.ts';
import { TaskgateError } from '../../core/errors.ts';

export type { RecordingChunk, RecordingSink };

/** Where a finished (or live) recording is read back: `taskgate replay`, the reviewers' player. */
export interface RecordingSource {
  /** The session's asciicast v2 text. Throws TaskgateError('not_found'). */
  asciicast(sessionId: string): Promise<string>;
}

const SESSION_ID = /^[A-Za-z0-9._-]{1,128}$/;

export class FileRecordingSink implements RecordingSink, RecordingSource {
  private readonly open = new Map<string, WriteStream>();
  private ready: Promise<unknown> | undefined;

  constructor(readonly dir: string) {}

  path(sessionId: string): string {
    if (!SESSION_ID.test(sessionId)) throw new TaskgateError('input_invalid', `invalid session id ${JSON.stringify(sessionId)}`);
    return join(this.dir, `${sessionId}.cast`);
  }

  private tail: Promise<unknown> = Promise.resolve();

  /** Never throws; lines are written in order. */
  append(sessionId: string, chunk: RecordingChunk): void {
    this.tail = this.tail.then(() => this.write(sessionId, chunk)).catch(() => {});
  }

  writable(): boolean {
    return true;
  }

  async flush(): Promise<void> {
    await this.tail;
  }

  private async write(sessionId: string, chunk: RecordingChunk): Promise<void> {
    this.ready ??= mkdir(this.dir, { recursive: true, mode: 0o700 });
    await this.ready;
    let s = this.open.get(sessionId);
    if (!s) {
      s = createWriteStream(this.path(sessionId), { flags: 'a', mode: 0o600 });
      s.on('error', () => {});
      this.open.set(sessionId, s);
    }
    if (!s.write(chunk.data)) await new Promise<void>((r) => s.once('drain', () => r()));
  }

  /** Flushes and closes a session's file. */
  async finish(sessionId: string): Promise<void> {
    await this.tail;
    const s = this.open.get(sessionId);
    if (!s) return;
    this.open.delete(sessionId);
    await new Promise<void>((r) => s.end(r));
  }

  async asciicast(sessionId: string): Promise<string> {
    await this.tail;
    try {
      return await readFile(this.path(sessionId), 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new TaskgateError('not_found', `no recording for session ${sessionId} in ${this.dir}`);
      throw e;
    }
  }
}

/** Recordings shipped to the audit store (ClickHouse / chDB): the reviewers' player reads them here. */
export function storeRecordingSource(store: AuditStore): RecordingSource {
  return {
    asciicast: async (sessionId) => {
      const chunks = await readRecording(store, sessionId, 'asciicast');
      if (chunks.length === 0) throw new TaskgateError('not_found', `no recording for session ${sessionId}`);
      return chunks.map((c) => c.data).join('');
    },
  };
}

export interface CastHeader {
  width: number;
  height: number;
  title?: string;
  env?: Record<string, string>;
}

/** Writes one session's asciicast v2 stream. Output and input are decoded as UTF-8 across chunk boundaries. */
export class AsciicastRecorder {
  private seq = 0;
  private readonly t0: bigint;
  private readonly out = new StringDecoder('utf8');
  private readonly inp = new StringDecoder('utf8');
  private closed = false;

  constructor(
    private readonly sink: RecordingSink,
    readonly sessionId: string,
    header: CastHeader,
  ) {
    this.t0 = process.hrtime.bigint();
    const h = { version: 2, width: header.width, height: header.height, timestamp: Math.floor(Date.now() / 1000), ...(header.title ? { title: header.title } : {}), env: header.env ?? {} };
    this.line(JSON.stringify(h));
  }

  output(data: Buffer | string): void {
    this.event('o', typeof data === 'string' ? data : this.out.write(data));
  }

  input(data: Buffer | string): void {
    this.event('i', typeof data === 'string' ? data : this.inp.write(data));
  }

  resize(width: number, height: number): void {
    this.event('r', `${width}x${height}`);
  }

  /** Ends the recording (flushing a partial UTF-8 sequence) and waits for the sink. */
  async close(): Promise<void> {
    if (this.closed) return;
    const rest = this.out.end();
    if (rest) this.event('o', rest);
    this.closed = true;
    await this.sink.flush().catch(() => {});
  }

  private event(code: 'o' | 'i' | 'r', data: string): void {
    if (!data || this.closed) return;
    const t = Number(process.hrtime.bigint() - this.t0) / 1e9;
    this.line(JSON.stringify([Math.round(t * 1e6) / 1e6, code, data]));
  }

  private line(text: string): void {
    const chunk: RecordingChunk = { kind: 'asciicast', seq: this.seq++, data: text + '\n' };
    try {
      this.sink.append(this.sessionId, chunk);
    } catch {
      // a sink never throws; a broken one must not take the session down
    }
  }
}

export interface CastEvent {
  time: number;
  code: string;
  data: string;
}

/** Parses asciicast v2 text. Throws TaskgateError('input_invalid') on a malformed file. */
export function parseAsciicast(text: string): { header: CastHeader & { version: number; timestamp?: number }; events: CastEvent[] } {
  const lines = text.split('\n').filter((l) => l.trim() !== '');
  const first = lines[0];
  if (!first) throw new TaskgateError('input_invalid', 'empty recording');
  let header: CastHeader & { version: number };
  try {
    header = JSON.parse(first) as CastHeader & { version: number };
  } catch {
    throw new TaskgateError('input_invalid', 'recording header is not JSON');
  }
  if (header.version !== 2) throw new TaskgateError('input_invalid', `unsupported asciicast version ${String(header.version)}`);
  const events: CastEvent[] = [];
  for (let i = 1; i < lines.length; i++) {
    let ev: unknown;
    try {
      ev = JSON.parse(lines[i]!);
    } catch {
      throw new TaskgateError('input_invalid', `recording line ${i + 1} is not JSON`);
    }
    if (!Array.isArray(ev) || typeof ev[0] !== 'number' || typeof ev[1] !== 'string' || typeof ev[2] !== 'string') {
      throw new TaskgateError('input_invalid', `recording line ${i + 1} is not an asciicast event`);
    }
    events.push({ time: ev[0], code: ev[1], data: ev[2] });
  }
  return { header, events };
}

export interface ReplayOptions {
  /** Playback speed multiplier (2 = twice as fast). */
  speed?: number;
  /** Longest pause kept between two events, seconds. */
  idleLimit?: number;
  /** 0 plays without delays. */
  signal?: AbortSignal;
}

/** Plays the output events of a recording to `write`, with their timing (scaled). */
export async function replayAsciicast(text: string, write: (data: string) => void, opts: ReplayOptions = {}): Promise<void> {
  const { events } = parseAsciicast(text);
  const speed = opts.speed && opts.speed > 0 ? opts.speed : 1;
  const idle = opts.idleLimit ?? 2;
  let last = 0;
  for (const ev of events) {
    if (opts.signal?.aborted) return;
    if (ev.code !== 'o') continue;
    const gap = Math.min(Math.max(0, ev.time - last), idle) / speed;
    last = ev.time;
    if (gap > 0.001 && Number.isFinite(speed)) await new Promise((r) => setTimeout(r, gap * 1000));
    write(ev.data);
  }
}

/** The output a viewer sees, concatenated (tests, reviewers' text view). */
export function castOutput(text: string): string {
  return parseAsciicast(text)
    .events.filter((e) => e.code === 'o')
    .map((e) => e.data)
    .join('');
}
