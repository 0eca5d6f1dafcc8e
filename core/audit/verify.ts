/**
 * Chain verification: recompute every event's hash from its stored fields
 * and check each event links to its predecessor (prev_hash = previous hash,
 * seq = previous seq + 1), per source. An altered event fails its hash; a
 * removed one breaks the link. Works on ClickHouse/chDB (`events FINAL`) and
 * on the raw spool segments.
 *
 * Limits: a chain proves order and integrity from its first checked event on;
 * removing the newest events leaves a shorter valid chain (compare `last_seq`
 * with the sidecar's own `acknowledgedSeq` / the shipper cursor to see that).
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { sha256hex } from '../hash.ts';
import { canonicalFromRow, ZERO_HASH } from './row.ts';
import { scanBuffer } from './spool/segment.ts';
import { listSegments } from './spool/writer.ts';
import type { AuditStore } from './store.ts';

export interface ChainProblem {
  source: string;
  seq: number;
  id: string;
  kind: 'altered' | 'missing' | 'broken_link' | 'duplicate_seq';
  detail: string;
}

export interface SourceReport {
  source: string;
  first_seq: number;
  last_seq: number;
  events: number;
}

export interface VerifyReport {
  ok: boolean;
  sources: SourceReport[];
  problems: ChainProblem[];
}

type Row = Record<string, unknown>;

/** Checks rows of one source, in seq order. */
export class ChainChecker {
  private prevSeq = -1;
  private prevHash = '';
  private readonly rep: SourceReport;
  constructor(
    readonly source: string,
    private readonly problems: ChainProblem[],
    private readonly maxProblems = 1000,
  ) {
    this.rep = { source, first_seq: 0, last_seq: 0, events: 0 };
  }

  add(r: Row): void {
    const seq = Number(r.seq);
    const id = String(r.id ?? '');
    const hash = String(r.hash ?? '');
    const prev = String(r.prev_hash ?? '');
    if (this.rep.events === 0) this.rep.first_seq = seq;
    this.rep.events++;
    this.rep.last_seq = seq;
    const computed = sha256hex(canonicalFromRow(r));
    if (computed !== hash) this.problem(seq, id, 'altered', `stored hash ${hash.slice(0, 12)}… != recomputed ${computed.slice(0, 12)}…`);
    if (this.prevSeq >= 0) {
      if (seq === this.prevSeq) this.problem(seq, id, 'duplicate_seq', 'two different events carry this sequence number');
      else if (seq !== this.prevSeq + 1) this.problem(seq, id, 'missing', `events ${this.prevSeq + 1}..${seq - 1} are missing`);
      else if (prev !== this.prevHash) this.problem(seq, id, 'broken_link', `prev_hash does not match event ${this.prevSeq}'s hash`);
    } else if (seq === 1 && prev !== ZERO_HASH) {
      this.problem(seq, id, 'broken_link', 'first event of the source must have a zero prev_hash');
    }
    this.prevSeq = seq;
    this.prevHash = hash;
  }

  report(): SourceReport {
    return this.rep;
  }

  private problem(seq: number, id: string, kind: ChainProblem['kind'], detail: string): void {
    if (this.problems.length < this.maxProblems) this.problems.push({ source: this.source, seq, id, kind, detail });
  }
}

/** Verifies the chain of every source (or one) stored in `events`, streaming page by page. */
export async function verifyStore(store: AuditStore, opts: { source?: string; pageSize?: number } = {}): Promise<VerifyReport> {
  const page = opts.pageSize ?? 50_000;
  const esc = (s: string) => s.replace(/\\/g, '\\\\').replace(/'/g, "\\'");
  const sources = opts.source
    ? [opts.source]
    : (await store.rows<{ source: string }>('SELECT DISTINCT source FROM events ORDER BY source')).map((r) => r.source);
  const problems: ChainProblem[] = [];
  const reports: SourceReport[] = [];
  for (const src of sources) {
    const checker = new ChainChecker(src, problems);
    let after = -1;
    for (;;) {
      const rows = await store.rows<Row>(
        `SELECT * FROM events FINAL WHERE source = '${esc(src)}' AND seq > ${after} ORDER BY seq, id LIMIT ${page}`,
      );
      for (const r of rows) checker.add(r);
      if (rows.length < page) break;
      after = Number(rows[rows.length - 1]!.seq);
    }
    reports.push(checker.report());
  }
  return { ok: problems.length === 0, sources: reports, problems };
}

/** Verifies the spool's segments (intact records; damaged ones show up as missing events). */
export async function verifySpool(dir: string): Promise<VerifyReport & { damaged_bytes: number }> {
  const problems: ChainProblem[] = [];
  let checker: ChainChecker | undefined;
  let damaged = 0;
  for (const seg of await listSegments(dir)) {
    const buf = await readFile(join(dir, seg));
    const scan = scanBuffer(buf, true);
    for (const d of scan.damaged) damaged += d.end - d.start;
    for (const rec of scan.records) {
      const row = JSON.parse(buf.subarray(rec.start, rec.end).toString('utf8')) as Row;
      checker ??= new ChainChecker(String(row.source), problems);
      checker.add(row);
    }
  }
  return { ok: problems.length === 0 && damaged === 0, sources: checker ? [checker.report()] : [], problems, damaged_bytes: damaged };
}
