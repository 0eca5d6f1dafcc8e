/**
 * Session recordings (PostgreSQL statement/response transcripts, SSH
 * asciicast v2 streams), spooled like events and shipped to the ClickHouse
 * table `recordings`, keyed by session. The SSH and PostgreSQL proxies call
 * RecordingSink.append(); `taskgate replay` reads a session back with
 * readRecording().
 *
 * Masking applies before append: a recording holds what the user saw.
 */
import { chDateTime, crcHex } from './row.ts';
import { MicroClock, uuidv7At } from './spool-sink.ts';
import { readSpoolState, SpoolWriter, type SpoolOptions } from './spool/writer.ts';
import type { AuditStore } from './store.ts';

export type RecordingKind = 'asciicast' | 'pg_transcript';

export interface RecordingChunk {
  kind: RecordingKind;
  /** Per-session, per-kind order (0, 1, 2 …): the replay order. */
  seq: number;
  /** One asciicast v2 line (header or event) or one transcript entry (JSON text). */
  data: string;
}

export interface RecordingSink {
  /** Never blocks, never throws. */
  append(sessionId: string, chunk: RecordingChunk): void;
  writable(): boolean;
  flush(): Promise<void>;
}

interface Queued {
  session_id: string;
  chunk: RecordingChunk;
  ts_us: number;
}

export class SpoolRecordingSink implements RecordingSink {
  private readonly clock = new MicroClock();
  private constructor(private readonly writer: SpoolWriter<Queued>) {}

  static async open(opts: SpoolOptions): Promise<SpoolRecordingSink> {
    const state = await readSpoolState(opts.dir, opts.source);
    const writer = await SpoolWriter.open<Queued>(opts, (q, seq) => sealRecording(q, seq, state.source), state);
    return new SpoolRecordingSink(writer);
  }

  get dir(): string {
    return this.writer.dir;
  }

  append(sessionId: string, chunk: RecordingChunk): void {
    this.writer.push({ session_id: sessionId, chunk, ts_us: this.clock.now() });
  }

  writable(): boolean {
    return this.writer.writable();
  }

  flush(): Promise<void> {
    return this.writer.flush();
  }

  close(): Promise<void> {
    return this.writer.close();
  }
}

function sealRecording(q: Queued, spoolSeq: number, source: string): string {
  const body = JSON.stringify({
    spool_seq: spoolSeq,
    id: uuidv7At(Math.floor(q.ts_us / 1000)),
    ts: chDateTime(q.ts_us),
    ts_us: q.ts_us,
    source,
    session_id: q.session_id,
    kind: q.chunk.kind,
    seq: q.chunk.seq,
    data: q.chunk.data,
  }).slice(0, -1);
  return body + ',"_crc":"' + crcHex(body) + '"}\n';
}

export interface StoredChunk extends RecordingChunk {
  ts_us: number;
}

/** A session's recording, in replay order, each chunk once (FINAL dedups redelivered rows). */
export async function readRecording(store: AuditStore, sessionId: string, kind?: RecordingKind): Promise<StoredChunk[]> {
  const esc = sessionId.replace(/\\/g, '\\\\').replace(/'/g, "\\'");
  const k = kind ? ` AND kind = '${kind}'` : '';
  const rows = await store.rows<{ kind: RecordingKind; seq: string | number; data: string; ts_us: string | number }>(
    `SELECT kind, seq, data, ts_us FROM recordings FINAL WHERE session_id = '${esc}'${k} ORDER BY kind, seq`,
  );
  return rows.map((r) => ({ kind: r.kind, seq: Number(r.seq), data: r.data, ts_us: Number(r.ts_us) }));
}
