/**
 * One proxied PostgreSQL session after authentication: every frontend message
 * is inspected in order (statements classified and decided through the
 * Gatekeeper before they reach the server), and every backend message is
 * matched to the request it answers (so results can be masked, counted, cut
 * at policy limits, and audited). Unmodified bytes are forwarded untouched.
 */
import { serialize } from 'pg-protocol';
import { errorMessage } from '../../core/errors.ts';
import type { GateOutcome, Gatekeeper, SessionContext } from '../../core/gate.ts';
import type { Logger } from '../../core/log.ts';
import type { PgStatement, PostgresRequest } from '../../core/policy-contract.ts';
import { noLineage, type AnalyzedSql, type SqlClassifier } from './classifier-port.ts';
import {
  B,
  decodeCommandTag,
  decodeErrorFields,
  decodeReadyForQuery,
  decodeRowDescription,
  errorResponse,
  noticeResponse,
  tagRows,
  type FieldDesc,
} from './codec/backend.ts';
import { ProtocolError, type Frame, type FrameReader } from './codec/framing.ts';
import { decodeBind, decodeExecute, decodeFunctionCall, decodeParse, decodeQuery, decodeTarget, F } from './codec/frontend.ts';
import { commandEvent } from './audit-events.ts';
import { denyError, DENY_SQL, limitError } from './deny.ts';
import type { ResultMasker, ResultMasking } from './masking-port.ts';
import type { Duplex } from './message-pump.ts';

export interface TranscriptRecord {
  ts: string;
  kind: 'statement';
  text: string;
  decision: string;
  rows: number;
  bytes: number;
  error?: string;
}

export interface Recordings {
  append(sessionId: string, record: TranscriptRecord): void;
}

export interface SessionDeps {
  gate: Gatekeeper;
  classify: SqlClassifier;
  masking?: ResultMasking;
  recordings?: Recordings;
  log: Logger;
  /** Sends a CancelRequest for this session's upstream backend. */
  cancelUpstream: () => Promise<void>;
}

/** A statement as decided: what the policy saw and what it said. */
interface Decided {
  analyzed: AnalyzedSql;
  spec: { request: PostgresRequest; text: string; fingerprint: string };
  outcome: GateOutcome;
}

interface Prepared {
  decided: Decided;
  fields?: FieldDesc[];
}

interface Portal {
  stmt: Prepared | undefined;
  resultFormats: number[];
  fields?: FieldDesc[];
}

/** Progress of one statement's result: rows, bytes, masking, limits. */
interface Run {
  decided: Decided | undefined;
  started: number;
  rows: number;
  bytes: number;
  masker?: ResultMasker | undefined;
  masked: Record<string, number>;
  error?: string;
  /** A policy limit ended the result: the rest of it is swallowed. */
  cut: boolean;
  /** Which statement of a multi-statement string the next RowDescription belongs to. */
  resultIndex: number;
}

/** What the next backend messages answer, in order. */
type Entry =
  | { kind: 'query'; run: Run }
  | { kind: 'execute'; run: Run; portal: Portal }
  | { kind: 'deny'; run: Run; error: Buffer; extended: boolean }
  | { kind: 'parse' | 'bind' | 'close' | 'sync' }
  | { kind: 'describe'; target: Prepared | Portal | undefined; hidden: boolean };

const EMPTY = Buffer.alloc(0);
const TEXT_FORMAT: number[] = [];

export class PgSession {
  private readonly prepared = new Map<string, Prepared>();
  private readonly portals = new Map<string, Portal>();
  private readonly preparedStatements = new Map<string, PgStatement>();
  private readonly queue: Entry[] = [];
  private inbox: Frame[] = [];
  private inboxPos = 0;
  private running = false;
  private discardUntilSync = false;
  private backlog: Frame[] = [];
  private backlogPos = 0;
  private blocked = false;
  private closed = false;
  private txStatus: 'I' | 'T' | 'E' = 'I';
  private outBuf: Buffer | undefined;
  private outStart = 0;
  private outEnd = 0;
  private statements = 0;
  private onClosed: (() => void) | undefined;

  constructor(
    private readonly client: Duplex,
    private readonly clientReader: FrameReader,
    private readonly up: Duplex,
    private readonly upReader: FrameReader,
    readonly ctx: SessionContext,
    private readonly deps: SessionDeps,
  ) {}

  /** Starts relaying; resolves when both sides are closed. */
  run(): Promise<void> {
    const done = new Promise<void>((r) => (this.onClosed = r));
    this.client.on('data', (d: Buffer) => this.onClientData(d));
    this.up.on('data', (d: Buffer) => this.onUpstreamData(d));
    this.client.on('end', () => this.onClientEnd());
    this.client.on('close', () => this.close('client closed'));
    this.up.on('close', () => this.close('upstream closed'));
    this.client.on('error', (e) => this.close(`client error: ${errorMessage(e)}`));
    this.up.on('error', (e) => this.close(`upstream error: ${errorMessage(e)}`));
    // Bytes that arrived together with the last startup message.
    if (this.clientReader.buffered) this.onClientData(EMPTY);
    if (this.upReader.buffered) this.onUpstreamData(EMPTY);
    return done;
  }

  get transactionStatus(): 'I' | 'T' | 'E' {
    return this.txStatus;
  }

  /** A CancelRequest for this session: stop a held review, and cancel the running statement upstream. */
  cancel(): void {
    // Aborting the hold signal cancels a pending review (the statement is then denied); later holds get a fresh signal.
    const h = this.holds;
    this.holds = new AbortController();
    h.abort();
    this.deps.cancelUpstream().catch((e) => this.deps.log.warn('cancel request to upstream failed', { error: errorMessage(e) }));
  }

  /** Aborted by a CancelRequest or the end of the session: ends a statement's review hold. */
  private holds = new AbortController();

  // ---------------------------------------------------------------- client side

  private onClientData(chunk: Buffer): void {
    let frames: Frame[];
    try {
      frames = this.clientReader.feed(chunk);
    } catch (e) {
      this.fatal('08P01', `invalid message from client: ${errorMessage(e)}`);
      return;
    }
    if (frames.length === 0) return;
    if (this.inboxPos === this.inbox.length) {
      this.inbox = frames;
      this.inboxPos = 0;
    } else {
      for (const f of frames) this.inbox.push(f);
    }
    if (this.inbox.length - this.inboxPos > 4096) this.client.pause();
    if (!this.running) void this.processInbox();
  }

  private onClientEnd(): void {
    if (this.clientReader.buffered > 0) {
      this.fatal('08P01', `connection ended inside a message (${this.clientReader.buffered} bytes of an incomplete message)`);
      return;
    }
    // Let queued messages finish, then close the upstream side.
    const finish = () => (this.running ? setTimeout(finish, 5) : this.up.end());
    finish();
  }

  private async processInbox(): Promise<void> {
    this.running = true;
    this.up.cork();
    try {
      while (this.inboxPos < this.inbox.length && !this.closed) {
        const f = this.inbox[this.inboxPos++]!;
        const pending = this.onFrontend(f);
        if (pending) {
          this.up.uncork();
          await pending;
          this.up.cork();
        }
      }
    } catch (e) {
      if (e instanceof ProtocolError) this.fatal('08P01', `invalid message from client: ${e.message}`);
      else this.fatal('XX000', `taskgate internal error: ${errorMessage(e)}`);
    } finally {
      this.up.uncork();
      this.running = false;
      if (this.inboxPos >= this.inbox.length) {
        this.inbox = [];
        this.inboxPos = 0;
      }
      if (this.client.isPaused() && !this.up.writableNeedDrain) this.client.resume();
    }
  }

  private toUpstream(b: Buffer): void {
    if (!this.up.write(b) && !this.client.isPaused()) {
      this.client.pause();
      this.up.once('drain', () => {
        if (!this.closed) this.client.resume();
      });
    }
  }

  /** Handles one frontend message; returns a promise when it must wait for a decision. */
  private onFrontend(f: Frame): Promise<void> | void {
    if (this.discardUntilSync && f.type !== F.Sync) {
      // PostgreSQL ignores everything after an error until Sync; so do we (nothing was sent upstream).
      if (f.type === F.Terminate) return this.terminate(f);
      return;
    }
    switch (f.type) {
      case F.Query:
        return this.onQuery(decodeQuery(f.payload), f.raw);
      case F.Parse:
        return this.onParse(f);
      case F.Bind: {
        const b = decodeBind(f.payload);
        const stmt = this.prepared.get(b.statement);
        this.portals.set(b.portal, { stmt, resultFormats: b.resultFormats });
        this.queue.push({ kind: 'bind' });
        this.toUpstream(f.raw);
        return;
      }
      case F.Describe: {
        const t = decodeTarget(f.payload, 'Describe');
        const target = t.kind === 'S' ? this.prepared.get(t.name) : this.portals.get(t.name);
        this.queue.push({ kind: 'describe', target, hidden: false });
        this.toUpstream(f.raw);
        return;
      }
      case F.Execute:
        return this.onExecute(f);
      case F.Close: {
        const t = decodeTarget(f.payload, 'Close');
        if (t.kind === 'S') {
          this.prepared.delete(t.name);
          this.preparedStatements.delete(t.name);
        } else this.portals.delete(t.name);
        this.queue.push({ kind: 'close' });
        this.toUpstream(f.raw);
        return;
      }
      case F.Sync:
        this.discardUntilSync = false;
        this.queue.push({ kind: 'sync' });
        this.toUpstream(f.raw);
        return;
      case F.Flush:
      case F.CopyData:
      case F.CopyDone:
      case F.CopyFail:
        this.toUpstream(f.raw);
        return;
      case F.Terminate:
        return this.terminate(f);
      case F.FunctionCall:
        return this.onFunctionCall(f);
      default:
        throw new ProtocolError(`unsupported frontend message type ${JSON.stringify(String.fromCharCode(f.type))} (0x${f.type.toString(16)})`);
    }
  }

  private terminate(f: Frame): void {
    this.toUpstream(f.raw);
    this.up.end();
  }

  private async decideSql(text: string, message: PostgresRequest['message']): Promise<Decided> {
    let analyzed: AnalyzedSql;
    try {
      analyzed = await this.deps.classify(text, { message, prepared: this.preparedStatements });
    } catch (e) {
      analyzed = {
        statements: [
          { command: 'UNPARSEABLE', class: 'unparseable', tables: [], functions: [], fingerprint: 'unparseable', text: '<unparseable>', flags: [`classifier_error: ${errorMessage(e)}`] },
        ],
        lineage: noLineage,
      };
    }
    return this.decide(analyzed, message);
  }

  private async decide(analyzed: AnalyzedSql, message: PostgresRequest['message']): Promise<Decided> {
    const sts = analyzed.statements;
    const spec = {
      request: { message, statements: sts },
      text: sts.length === 1 ? sts[0]!.text : sts.map((s) => s.text).join('; '),
      fingerprint: sts.length === 1 ? sts[0]!.fingerprint : sts.map((s) => s.fingerprint).join(';'),
    };
    const outcome = await this.deps.gate.decide(this.ctx, spec, {
      signal: this.holds.signal,
      onHold: (n) => {
        this.client.write(
          noticeResponse({
            severity: 'NOTICE',
            code: '00000',
            message: `taskgate: statement held for review ${n.review_id} (task ${this.ctx.task_id}); waiting for approval by ${n.approvers.join(', ') || 'a reviewer'} until ${n.expires_at}`,
            detail: n.reasons.join('; '),
          }),
        );
      },
    });
    return { analyzed, spec, outcome };
  }

  private newRun(decided: Decided | undefined): Run {
    return { decided, started: performance.now(), rows: 0, bytes: 0, masked: {}, cut: false, resultIndex: 0 };
  }

  private async onQuery(text: string, raw: Buffer): Promise<void> {
    if (text.trim() === '') {
      // An empty query runs nothing: PostgreSQL answers EmptyQueryResponse.
      this.queue.push({ kind: 'query', run: this.newRun(undefined) });
      this.toUpstream(raw);
      return;
    }
    const d = await this.decideSql(text, 'query');
    if (this.closed) return;
    const run = this.newRun(d);
    if (d.outcome.allowed) {
      this.rememberPrepares(d);
      this.queue.push({ kind: 'query', run });
      this.toUpstream(raw);
    } else {
      this.queue.push({ kind: 'deny', run, error: denyError(this.ctx, d.spec.request.statements, d.outcome), extended: false });
      this.toUpstream(serialize.query(DENY_SQL));
    }
  }

  /** `PREPARE x AS ...` / DEALLOCATE through the simple protocol: EXECUTE x is classified as what x runs. */
  private rememberPrepares(d: Decided): void {
    for (const p of d.analyzed.prepares ?? []) this.preparedStatements.set(p.name, p.statement);
    for (const name of d.analyzed.deallocates ?? []) {
      if (name === null) this.preparedStatements.clear();
      else this.preparedStatements.delete(name);
    }
  }

  private async onParse(f: Frame): Promise<void> {
    const p = decodeParse(f.payload);
    const d = await this.decideSql(p.text, 'parse');
    if (this.closed) return;
    if (d.outcome.allowed) {
      this.prepared.set(p.name, { decided: d });
      if (p.name && d.spec.request.statements.length === 1) this.preparedStatements.set(p.name, d.spec.request.statements[0]!);
      this.queue.push({ kind: 'parse' });
      this.toUpstream(f.raw);
      return;
    }
    // Denied at Parse: the statement never reaches the server. A deliberately
    // failing statement takes its place so the server's transaction state is
    // exactly what a failed Parse would leave; then skip to Sync.
    this.prepared.delete(p.name);
    this.queue.push({ kind: 'deny', run: this.newRun(d), error: denyError(this.ctx, d.spec.request.statements, d.outcome), extended: true });
    this.toUpstream(serialize.parse({ text: DENY_SQL }));
    this.toUpstream(serialize.bind({}));
    this.toUpstream(serialize.execute({}));
    this.discardUntilSync = true;
  }

  private onExecute(f: Frame): void {
    const e = decodeExecute(f.payload);
    const portal = this.portals.get(e.portal) ?? { stmt: undefined, resultFormats: TEXT_FORMAT };
    const run = this.newRun(portal.stmt?.decided);
    // Masking needs the row shape; a client that did not Describe gets one on its behalf (hidden).
    if (this.deps.masking && (portal.stmt?.decided.outcome.decision.mask.length ?? 0) > 0 && !portal.fields) {
      this.queue.push({ kind: 'describe', target: portal, hidden: true });
      this.toUpstream(serialize.describe({ type: 'P', name: e.portal }));
    }
    this.queue.push({ kind: 'execute', run, portal });
    this.toUpstream(f.raw);
  }

  private async onFunctionCall(f: Frame): Promise<void> {
    const { oid } = decodeFunctionCall(f.payload);
    const st: PgStatement = {
      command: 'FUNCTION CALL',
      class: 'admin',
      tables: [],
      functions: [`oid:${oid}`],
      fingerprint: `function_call:${oid}`,
      text: `<FunctionCall message, function oid ${oid}>`,
      flags: ['function_call_message'],
    };
    const d = await this.decide({ statements: [st], lineage: noLineage }, 'function_call');
    if (this.closed) return;
    const run = this.newRun(d);
    if (d.outcome.allowed) {
      this.queue.push({ kind: 'query', run });
      this.toUpstream(f.raw);
    } else {
      this.queue.push({ kind: 'deny', run, error: denyError(this.ctx, [st], d.outcome), extended: false });
      this.toUpstream(serialize.query(DENY_SQL));
    }
  }

  // ---------------------------------------------------------------- server side

  private onUpstreamData(chunk: Buffer): void {
    let frames: Frame[];
    try {
      frames = this.upReader.feed(chunk);
    } catch (e) {
      this.fatal('08P01', `invalid message from the PostgreSQL server: ${errorMessage(e)}`);
      return;
    }
    if (this.backlogPos === this.backlog.length) {
      this.backlog = frames;
      this.backlogPos = 0;
    } else for (const f of frames) this.backlog.push(f);
    this.drainBacklog();
  }

  private drainBacklog(): void {
    if (this.blocked || this.closed) return;
    this.client.cork();
    try {
      while (this.backlogPos < this.backlog.length) {
        const f = this.backlog[this.backlogPos++]!;
        const wait = this.onBackend(f);
        if (wait) {
          this.blocked = true;
          this.up.pause();
          wait.then(
            () => {
              this.blocked = false;
              if (!this.client.writableNeedDrain) this.up.resume();
              this.drainBacklog();
            },
            (e) => this.fatal('XX000', `taskgate could not prepare result masking: ${errorMessage(e)}`),
          );
          break;
        }
      }
    } catch (e) {
      this.fatal('08P01', `invalid message from the PostgreSQL server: ${errorMessage(e)}`);
    }
    this.flushOut();
    this.client.uncork();
    if (this.client.writableNeedDrain && !this.up.isPaused()) {
      this.up.pause();
      this.client.once('drain', () => {
        if (!this.blocked && !this.closed) this.up.resume();
      });
    }
  }

  /** Queues bytes for the client, merging adjacent views of one received chunk into one write. */
  private out(b: Buffer): void {
    if (this.outBuf && b.buffer === this.outBuf.buffer && b.byteOffset === this.outEnd) {
      this.outEnd += b.length;
      return;
    }
    this.flushOut();
    this.outBuf = b;
    this.outStart = b.byteOffset;
    this.outEnd = b.byteOffset + b.length;
  }

  private flushOut(): void {
    const b = this.outBuf;
    if (!b) return;
    this.outBuf = undefined;
    const view = b.byteOffset === this.outStart && b.length === this.outEnd - this.outStart ? b : Buffer.from(b.buffer, this.outStart, this.outEnd - this.outStart);
    this.client.write(view);
  }

  private onBackend(f: Frame): Promise<void> | void {
    const t = f.type;
    if (t === B.NoticeResponse || t === B.Notification || t === B.ParameterStatus) {
      this.out(f.raw);
      return;
    }
    const head = this.queue[0];
    if (!head) {
      // Nothing outstanding: a FATAL error (e.g. admin shutdown) or a protocol violation. Relay it.
      this.out(f.raw);
      return;
    }
    switch (head.kind) {
      case 'query':
        return this.onQueryResponse(head.run, f);
      case 'execute':
        return this.onExecuteResponse(head.run, head.portal, f);
      case 'deny':
        return this.onDenyResponse(head, f);
      case 'describe':
        return this.onDescribeResponse(head, f);
      case 'parse':
      case 'bind':
      case 'close':
        this.out(f.raw);
        if (t === B.ErrorResponse) this.failExtended();
        else this.queue.shift();
        return;
      case 'sync':
        this.out(f.raw);
        if (t === B.ReadyForQuery) {
          this.txStatus = decodeReadyForQuery(f.payload);
          this.queue.shift();
        }
        return;
    }
  }

  /** After an ErrorResponse in the extended protocol the server skips to Sync: so do the expectations. */
  private failExtended(): void {
    while (this.queue.length && this.queue[0]!.kind !== 'sync') {
      const e = this.queue.shift()!;
      if (e.kind === 'execute' && e.run.decided) this.finish(e.run);
    }
  }

  private resultShapeMasker(run: Run, fields: FieldDesc[]): Promise<void> | void {
    const d = run.decided;
    if (!this.deps.masking || !d || d.outcome.decision.mask.length === 0) return;
    const lineage = d.analyzed.statements.length === 1 ? d.analyzed.lineage(0) : undefined;
    const tables = d.spec.request.statements.flatMap((s) => s.tables.map((t) => `${t.schema}.${t.name}`));
    // Masking that cannot be set up ends the result (fail closed): no unmasked row leaves.
    const failed = (e: unknown) => this.cut(run, `masking unavailable: ${errorMessage(e)}`, 'XX000');
    try {
      const r = this.deps.masking.forResult({ fields, rules: d.outcome.decision.mask, lineage, tables });
      if (r instanceof Promise) return r.then((m) => void (run.masker = m), failed);
      run.masker = r;
    } catch (e) {
      failed(e);
    }
  }

  private onRows(run: Run, f: Frame): void {
    if (run.cut) return;
    run.rows++;
    let raw = f.raw;
    if (run.masker) raw = run.masker.maskRow(f.payload) ?? raw;
    run.bytes += raw.length;
    const ob = run.decided?.outcome.decision.obligations;
    if (ob && ((ob.max_rows !== undefined && run.rows > ob.max_rows) || (ob.max_bytes !== undefined && run.bytes > ob.max_bytes))) {
      run.rows--;
      this.cut(run, ob.max_rows !== undefined && run.rows >= ob.max_rows ? `max_rows ${ob.max_rows}` : `max_bytes ${ob.max_bytes}`);
      return;
    }
    this.out(raw);
  }

  /** A policy limit was reached: end the result with an error now, stop the server's work, swallow the rest. */
  private cut(run: Run, what: string, code = '54000'): void {
    if (run.cut) return;
    run.cut = true;
    run.error = code === '54000' ? `result limit reached (${what})` : what;
    this.out(limitError(this.ctx, what, code));
    this.cancel();
  }

  private onQueryResponse(run: Run, f: Frame): Promise<void> | void {
    switch (f.type) {
      case B.RowDescription:
        if (!run.cut) this.out(f.raw);
        return this.resultShapeMasker(run, decodeRowDescription(f.payload));
      case B.DataRow:
        return this.onRows(run, f);
      case B.CopyData:
        if (run.cut) return;
        run.bytes += f.raw.length;
        this.out(f.raw);
        return;
      case B.CopyOut:
      case B.CopyBoth:
        if (run.decided && run.decided.outcome.decision.mask.length > 0 && !run.cut) {
          // COPY TO STDOUT output is not parsed into columns: with mask rules in force it is refused.
          this.cut(run, 'COPY TO STDOUT is refused while mask rules apply (its rows would not be masked)', '42501');
          return;
        }
        if (!run.cut) this.out(f.raw);
        return;
      case B.CommandComplete:
        this.collectMasked(run);
        if (!run.cut) this.out(f.raw);
        if (run.rows === 0) run.rows = tagRows(decodeCommandTag(f.payload));
        return;
      case B.ErrorResponse:
        if (!run.cut) {
          run.error = decodeErrorFields(f.payload).code;
          this.out(f.raw);
        }
        return;
      case B.ReadyForQuery:
        this.txStatus = decodeReadyForQuery(f.payload);
        this.out(f.raw);
        this.queue.shift();
        this.finish(run);
        return;
      default:
        // EmptyQueryResponse, CopyIn/CopyDone, FunctionCallResponse, ...
        if (!run.cut) this.out(f.raw);
    }
  }

  private onExecuteResponse(run: Run, portal: Portal, f: Frame): Promise<void> | void {
    switch (f.type) {
      case B.DataRow:
        if (!run.masker && !run.resultIndex) {
          run.resultIndex = 1;
          const fields = portal.fields ?? portal.stmt?.fields;
          if (fields) {
            const w = this.resultShapeMasker(run, withFormats(fields, portal.resultFormats));
            if (w) {
              this.backlogPos--; // re-run this DataRow once the masker is ready
              run.resultIndex = 1;
              return w;
            }
          }
        }
        return this.onRows(run, f);
      case B.CopyData:
        if (!run.cut) {
          run.bytes += f.raw.length;
          this.out(f.raw);
        }
        return;
      case B.CopyOut:
      case B.CopyBoth:
        if (run.decided && run.decided.outcome.decision.mask.length > 0) {
          this.cut(run, 'COPY TO STDOUT is refused while mask rules apply (its rows would not be masked)', '42501');
          return;
        }
        this.out(f.raw);
        return;
      case B.CommandComplete:
      case B.PortalSuspended:
      case B.EmptyQuery:
        this.collectMasked(run);
        if (f.type === B.CommandComplete && run.rows === 0) run.rows = tagRows(decodeCommandTag(f.payload));
        if (run.cut) {
          // The client already has the limit error: the server's answers up to Sync are not for it.
          this.queue.shift();
          this.finish(run);
          this.swallowUntilSync();
          return;
        }
        this.out(f.raw);
        this.queue.shift();
        this.finish(run);
        return;
      case B.ErrorResponse:
        if (!run.cut) {
          run.error = decodeErrorFields(f.payload).code;
          this.out(f.raw);
        }
        this.queue.shift();
        this.finish(run);
        this.failExtended();
        return;
      default:
        if (!run.cut) this.out(f.raw);
    }
  }

  /** Marks the expectations up to the next Sync so their answers are dropped (after a limit error). */
  private swallowUntilSync(): void {
    for (let i = 0; i < this.queue.length && this.queue[i]!.kind !== 'sync'; i++) {
      const e = this.queue[i]!;
      if (e.kind === 'execute') e.run.cut = true;
      else if (e.kind !== 'deny') this.queue[i] = { kind: 'describe', target: undefined, hidden: true };
    }
  }

  private onDenyResponse(e: Extract<Entry, { kind: 'deny' }>, f: Frame): void {
    if (f.type === B.ErrorResponse) {
      const fields = decodeErrorFields(f.payload);
      // Our failing statement's own error becomes the deny; any other (e.g. 25P02 in a failed
      // transaction) is what PostgreSQL itself would have said for this statement.
      this.out(fields.code === '42501' ? e.error : f.raw);
      e.run.error = fields.code === '42501' ? '42501' : fields.code;
      if (e.extended) {
        this.queue.shift();
        this.finish(e.run);
        this.failExtended();
      }
      return;
    }
    if (f.type === B.ReadyForQuery) {
      this.txStatus = decodeReadyForQuery(f.payload);
      this.out(f.raw);
      this.queue.shift();
      this.finish(e.run);
    }
    // ParseComplete / BindComplete of the failing statement: not for the client.
  }

  private onDescribeResponse(e: Extract<Entry, { kind: 'describe' }>, f: Frame): void {
    if (f.type === B.ParameterDescription) {
      if (!e.hidden) this.out(f.raw);
      return;
    }
    if (f.type === B.RowDescription && e.target) e.target.fields = decodeRowDescription(f.payload);
    if (f.type === B.ErrorResponse) {
      if (!e.hidden) this.out(f.raw);
      this.failExtended();
      return;
    }
    if (!e.hidden) this.out(f.raw);
    this.queue.shift();
  }

  private collectMasked(run: Run): void {
    if (!run.masker) return;
    for (const [k, v] of Object.entries(run.masker.counts())) run.masked[k] = (run.masked[k] ?? 0) + v;
    run.masker = undefined;
  }

  // ---------------------------------------------------------------- audit, lifecycle

  private finish(run: Run): void {
    const d = run.decided;
    if (!d) return;
    this.collectMasked(run);
    this.statements++;
    const s = this.ctx;
    const o = d.outcome;
    const ev = commandEvent(s, d.spec, o, run);
    this.deps.gate.audit.emit(ev);
    if (this.deps.recordings) {
      const rec: TranscriptRecord = { ts: new Date().toISOString(), kind: 'statement', text: d.spec.text, decision: o.decision.result, rows: run.rows, bytes: run.bytes };
      if (run.error) rec.error = run.error;
      try {
        this.deps.recordings.append(s.id, rec);
      } catch (e) {
        this.deps.log.warn('recording append failed', { error: errorMessage(e) });
      }
    }
  }

  get statementCount(): number {
    return this.statements;
  }

  /** Ends the session with a FATAL error to the client. */
  fatal(code: string, message: string): void {
    if (this.closed) return;
    this.deps.log.warn('closing session', { session: this.ctx.id, code, reason: message });
    this.flushOut();
    this.client.end(errorResponse({ severity: 'FATAL', code, message }));
    this.up.end(serialize.end());
    this.close(message);
  }

  private close(reason: string): void {
    if (this.closed) return;
    this.closed = true;
    this.holds.abort();
    this.deps.log.debug('session closed', { session: this.ctx.id, reason });
    if (!this.client.destroyed) this.client.end();
    if (!this.up.destroyed) this.up.end(serialize.end());
    setTimeout(() => {
      this.client.destroy();
      this.up.destroy();
    }, 1000).unref();
    this.onClosed?.();
  }
}

/** Applies Bind's result format codes to a statement's RowDescription. */
export function withFormats(fields: FieldDesc[], formats: number[]): FieldDesc[] {
  if (formats.length === 0) return fields.every((f) => f.format === 0) ? fields : fields.map((f) => ({ ...f, format: 0 }));
  return fields.map((f, i) => ({ ...f, format: formats.length === 1 ? formats[0]! : (formats[i] ?? 0) }));
}
