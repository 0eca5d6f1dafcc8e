/**
 * Session channels: pty/env/window-change bookkeeping, then exactly one of
 * exec (scp included), shell (with the line discipline when a pty was
 * requested) or a subsystem (sftp). Agent and X11 forwarding requests are
 * decided too. Each is decided by the Gatekeeper before anything reaches the
 * upstream host; a deny writes the reason on stderr and exits 126.
 */
import type { ClientChannel, PseudoTtyInfo, ServerChannel, Session } from 'ssh2';
import { errorMessage } from '../../core/errors.ts';
import type { GateOutcome, HoldNotice } from '../../core/gate.ts';
import type { SshRequest } from '../../core/policy-contract.ts';
import { LineDiscipline, type LineEvent } from './line-discipline.ts';
import { PTY_IDLE_FLUSH_MS, relayInput, relayOutput, type StreamMasker } from './relay.ts';
import { AsciicastRecorder } from './recording.ts';
import { execRequest, simpleRequest, subsystemRequest } from './request.ts';
import { DENIED_EXIT, SIDECAR_ERROR_EXIT, TASK_ENV, type SshConnection } from './server.ts';

const RED = '\x1b[1;31m';
const YELLOW = '\x1b[1;33m';
const RESET = '\x1b[0m';

type Outcome = GateOutcome | { refused: string };

interface SessionState {
  pty: PseudoTtyInfo | undefined;
  env: Record<string, string>;
  envTask: string;
  upstream: ClientChannel | undefined;
  recorder: AsciicastRecorder | undefined;
  abort: AbortController;
}

export function handleSession(conn: SshConnection, session: Session): void {
  const st: SessionState = { pty: undefined, env: {}, envTask: '', upstream: undefined, recorder: undefined, abort: new AbortController() };
  const passEnv = conn.opts.passEnv ?? /^(LANG|LC_[A-Z_]+)$/;

  session.on('pty', (accept, _reject, info) => {
    st.pty = info;
    accept?.();
  });
  session.on('env', (accept, reject, info) => {
    if (info.key === TASK_ENV) {
      st.envTask = info.val.trim();
      return accept?.();
    }
    if (passEnv.test(info.key)) {
      st.env[info.key] = info.val;
      return accept?.();
    }
    reject?.();
  });
  session.on('window-change', (accept, _reject, info) => {
    if (st.pty) Object.assign(st.pty, { cols: info.cols, rows: info.rows, width: info.width, height: info.height });
    st.upstream?.setWindow(info.rows, info.cols, info.height, info.width);
    st.recorder?.resize(info.cols, info.rows);
    accept?.();
  });
  session.on('signal', (accept, _reject, info) => {
    st.upstream?.signal(info.name.replace(/^SIG/, ''));
    accept?.();
  });
  // Forwarding an agent or X11 through the sidecar is not implemented: even an
  // allowed request is refused (and says so in the audit trail).
  session.on('auth-agent', (accept, reject) => void decideOnly(conn, st, simpleRequest('agent_forward', { command: 'auth-agent-req' }), reject, accept));
  session.on('x11', (accept, reject) => void decideOnly(conn, st, simpleRequest('x11', { command: 'x11-req' }), reject, accept));

  session.on('exec', (accept, _reject, info) => {
    const ch = accept();
    void runExec(conn, st, ch, info.command);
  });
  session.on('shell', (accept) => {
    const ch = accept();
    void runShell(conn, st, ch);
  });
  session.on('subsystem', (accept, _reject, info) => {
    const ch = accept();
    void runSubsystem(conn, st, ch, info.name);
  });
  session.on('close', () => st.abort.abort());
}

async function decideOnly(conn: SshConnection, st: SessionState, req: SshRequest, reject: (() => void) | undefined, _accept: unknown): Promise<void> {
  const o = await conn.decide(req, st.envTask, { signal: st.abort.signal });
  const allowed = 'allowed' in o && o.allowed;
  if (allowed) conn.log.warn(`${req.kind} allowed by policy but not supported by the sidecar; refused`, { session: conn.id });
  reject?.();
}

function nl(st: SessionState): string {
  return st.pty ? '\r\n' : '\n';
}

function denialText(o: Outcome): string {
  if ('refused' in o) return o.refused;
  const reasons = o.decision.reasons.length ? o.decision.reasons.join('; ') : 'denied by policy';
  return reasons;
}

function holdText(n: HoldNotice): string {
  return `held for review ${n.review_id}: waiting for approval from ${n.approvers.join(', ') || 'a reviewer'} (expires ${n.expires_at})${n.reasons.length ? ` — ${n.reasons.join('; ')}` : ''}`;
}

/** The masker for a decision; undefined when no masking is asked. Throws when masking is asked but unavailable. */
function maskerFor(conn: SshConnection, o: GateOutcome): StreamMasker | undefined {
  // Column and field rules select PostgreSQL columns / JSON paths: a byte stream has only detectors.
  const rules = o.decision.mask.filter((r) => r.detector !== undefined);
  if (rules.length === 0) return undefined;
  if (!conn.opts.masker) throw new Error('the policy requires output masking but no masker is configured (fail closed)');
  try {
    return conn.opts.masker(rules);
  } catch (e) {
    throw new Error(`output masking cannot be set up (fail closed): ${errorMessage(e)}`);
  }
}

/** Masked-value counts of both output streams, merged (never values). */
function maskCounts(...ms: (StreamMasker | undefined)[]): Record<string, number> | undefined {
  const out: Record<string, number> = {};
  for (const m of ms) for (const [k, v] of Object.entries(m?.counts() ?? {})) out[k] = (out[k] ?? 0) + v;
  return Object.keys(out).length ? out : undefined;
}

/** The title is the request kind only: command text may hold values that output masking would have hidden. */
function startRecorder(conn: SshConnection, st: SessionState, channel: number, title: string): AsciicastRecorder | undefined {
  if (!conn.opts.recordings) return undefined;
  const env: Record<string, string> = { SHELL: '/bin/sh', ...(st.pty?.term ? { TERM: st.pty.term } : {}) };
  st.recorder = new AsciicastRecorder(conn.opts.recordings, `${conn.id}-${channel}`, {
    width: st.pty?.cols || 80,
    height: st.pty?.rows || 24,
    title,
    env,
  });
  return st.recorder;
}

function commandEvent(
  conn: SshConnection,
  o: Outcome,
  req: SshRequest,
  extra: { exit_status: number | string; bytes_out: number; bytes_in: number; started: number; channel: number; masked?: Record<string, number> | undefined },
): void {
  const id = conn.identity!;
  const g = 'decision_id' in o ? o : undefined;
  conn.audit.emit({
    type: 'command',
    session_id: conn.id,
    task_id: conn.taskId(),
    task_type: g?.task?.type ?? '',
    subject: id.subject,
    groups: id.groups,
    identity_type: id.type,
    resource: conn.opts.resource.name,
    protocol: 'ssh',
    command: req.command || req.kind,
    decision: g ? g.decision.result === 'review' ? 'deny' : g.decision.result : 'deny',
    reasons: g ? g.decision.reasons : [denialText(o)],
    ...(g?.review ? { review_id: g.review.id, approvers: g.review.by } : {}),
    bytes: extra.bytes_out,
    ...(extra.masked ? { masked: extra.masked } : {}),
    duration_us: Math.round((performance.now() - extra.started) * 1000),
    client_addr: conn.clientAddress,
    details: {
      kind: req.kind,
      exit_status: extra.exit_status,
      bytes_in: extra.bytes_in,
      channel: extra.channel,
      ...(g ? { decision_id: g.decision_id } : {}),
      ...(conn.opts.recordings ? { recording: `${conn.id}-${extra.channel}` } : {}),
    },
  });
}

/** Decides with a hold notice on stderr; returns the outcome. */
async function decideWithNotice(conn: SshConnection, st: SessionState, req: SshRequest, say: (line: string) => void): Promise<Outcome> {
  const o = await conn.decide(req, st.envTask, {
    signal: st.abort.signal,
    onHold: (n) => say(`${YELLOW}taskgate: ${holdText(n)}${RESET}`),
  });
  if ('decision_id' in o && o.allowed && o.review) say(`taskgate: review ${o.review.id} approved by ${o.review.by.join(', ')}`);
  return o;
}

async function runExec(conn: SshConnection, st: SessionState, ch: ServerChannel, command: string): Promise<void> {
  const started = performance.now();
  const channel = conn.nextChannel();
  const req = execRequest(command);
  const err = (line: string) => ch.stderr.write(line + nl(st));
  const o = await decideWithNotice(conn, st, req, err);
  const counts = { out: { bytes: 0 }, in: { bytes: 0 } };
  let masker: StreamMasker | undefined;
  let maskerErr: StreamMasker | undefined;
  const finish = (code: number) => {
    commandEvent(conn, o, req, { exit_status: code, bytes_out: counts.out.bytes, bytes_in: counts.in.bytes, started, channel, masked: maskCounts(masker, maskerErr) });
    ch.exit(code);
    ch.end();
  };
  if (!('decision_id' in o) || !o.allowed) {
    err(`${RED}taskgate: denied: ${denialText(o)}${RESET}`);
    return finish(DENIED_EXIT);
  }
  try {
    masker = maskerFor(conn, o);
    maskerErr = maskerFor(conn, o);
  } catch (e) {
    err(`${RED}taskgate: denied: ${errorMessage(e)}${RESET}`);
    return finish(DENIED_EXIT);
  }
  let up: ClientChannel;
  try {
    const client = await conn.upstreamClient();
    up = await new Promise<ClientChannel>((resolve, reject) =>
      client.exec(command, { env: st.env, ...(st.pty ? { pty: ptyOptions(st.pty) } : {}) }, (e, c) => (e ? reject(e) : resolve(c))),
    );
  } catch (e) {
    err(`${RED}taskgate: cannot run the command upstream: ${errorMessage(e)}${RESET}`);
    return finish(SIDECAR_ERROR_EXIT);
  }
  st.upstream = up;
  const rec = startRecorder(conn, st, channel, req.kind);
  const show = (b: Buffer) => {
    conn.bytes.out += b.length;
    rec?.output(b);
  };
  relayInput(ch, up, counts.in);
  const code = await relayUntilExit(conn, st, up, ch, [masker, maskerErr], show, counts, rec);
  finish(code);
}

/** Relays stdout and stderr (each through its own masker) until both end, then returns the exit status. */
async function relayUntilExit(
  conn: SshConnection,
  st: SessionState,
  up: ClientChannel,
  ch: ServerChannel,
  [masker, maskerErr]: [StreamMasker | undefined, StreamMasker | undefined],
  show: Parameters<typeof relayOutput>[3],
  counts: { in: { bytes: number }; out: { bytes: number } },
  rec: AsciicastRecorder | undefined,
): Promise<number> {
  const exit = exitOf(up);
  const idle = st.pty ? PTY_IDLE_FLUSH_MS : undefined;
  await Promise.all([relayOutput(up, ch, masker, show, counts.out, idle), relayOutput(up.stderr, ch.stderr, maskerErr, show, counts.out, idle)]);
  conn.bytes.in += counts.in.bytes;
  const code = await exit;
  await rec?.close();
  return code;
}

/** The upstream channel's exit status (a signal is 128+n like a shell reports it). */
function exitOf(up: ClientChannel): Promise<number> {
  return new Promise((resolve) => {
    let code = SIDECAR_ERROR_EXIT;
    up.on('exit', (c: number | null, signal?: string) => {
      if (typeof c === 'number') code = c;
      else if (signal) code = 128 + (SIGNALS[signal] ?? 0);
    });
    up.once('close', () => resolve(code));
  });
}

const SIGNALS: Record<string, number> = { HUP: 1, INT: 2, QUIT: 3, KILL: 9, PIPE: 13, TERM: 15 };

function ptyOptions(p: PseudoTtyInfo) {
  return { rows: p.rows, cols: p.cols, width: p.width, height: p.height, term: p.term };
}

async function runSubsystem(conn: SshConnection, st: SessionState, ch: ServerChannel, name: string): Promise<void> {
  const started = performance.now();
  const channel = conn.nextChannel();
  const req = subsystemRequest(name);
  const o = await conn.decide(req, st.envTask, { signal: st.abort.signal });
  const counts = { out: { bytes: 0 }, in: { bytes: 0 } };
  const finish = (code: number) => {
    commandEvent(conn, o, req, { exit_status: code, bytes_out: counts.out.bytes, bytes_in: counts.in.bytes, started, channel });
    ch.exit(code);
    ch.end();
  };
  if (!('decision_id' in o) || !o.allowed) {
    // The sftp/scp client speaks a binary protocol on stdout; the reason goes to stderr.
    ch.stderr.write(`taskgate: ${name} denied: ${denialText(o)}\n`);
    return finish(DENIED_EXIT);
  }
  let up: ClientChannel;
  try {
    const client = await conn.upstreamClient();
    up = await new Promise<ClientChannel>((resolve, reject) => client.subsys(name, (e, c) => (e ? reject(e) : resolve(c))));
  } catch (e) {
    ch.stderr.write(`taskgate: cannot start ${name} upstream: ${errorMessage(e)}\n`);
    return finish(SIDECAR_ERROR_EXIT);
  }
  st.upstream = up;
  relayInput(ch, up, counts.in);
  const exit = exitOf(up);
  // File transfer protocols are relayed as is: masking would corrupt them.
  await Promise.all([relayOutput(up, ch, undefined, () => {}, counts.out), relayOutput(up.stderr, ch.stderr, undefined, () => {}, counts.out)]);
  conn.bytes.in += counts.in.bytes;
  conn.bytes.out += counts.out.bytes;
  finish(await exit);
}

async function runShell(conn: SshConnection, st: SessionState, ch: ServerChannel): Promise<void> {
  const started = performance.now();
  const channel = conn.nextChannel();
  const req = simpleRequest('shell', { command: 'shell' });
  const say = (line: string) => (st.pty ? ch.write(line + '\r\n') : ch.stderr.write(line + '\n'));
  const o = await decideWithNotice(conn, st, req, say);
  const counts = { out: { bytes: 0 }, in: { bytes: 0 } };
  if (!('decision_id' in o) || !o.allowed) {
    say(`${RED}taskgate: shell denied: ${denialText(o)}${RESET}`);
    commandEvent(conn, o, req, { exit_status: DENIED_EXIT, bytes_out: 0, bytes_in: 0, started, channel });
    ch.exit(DENIED_EXIT);
    ch.end();
    return;
  }
  let masker: StreamMasker | undefined;
  let maskerErr: StreamMasker | undefined;
  let up: ClientChannel;
  try {
    masker = maskerFor(conn, o);
    maskerErr = maskerFor(conn, o);
    const client = await conn.upstreamClient();
    up = await new Promise<ClientChannel>((resolve, reject) => {
      const cb = (e: Error | undefined, c: ClientChannel) => (e ? reject(e) : resolve(c));
      if (st.pty) client.shell(ptyOptions(st.pty), { env: st.env }, cb);
      else client.shell(false, { env: st.env }, cb);
    });
  } catch (e) {
    say(`${RED}taskgate: cannot start the shell upstream: ${errorMessage(e)}${RESET}`);
    commandEvent(conn, o, req, { exit_status: SIDECAR_ERROR_EXIT, bytes_out: 0, bytes_in: 0, started, channel });
    ch.exit(SIDECAR_ERROR_EXIT);
    ch.end();
    return;
  }
  st.upstream = up;
  const rec = startRecorder(conn, st, channel, 'shell');
  const show = (b: Buffer | string) => {
    const n = typeof b === 'string' ? Buffer.byteLength(b) : b.length;
    conn.bytes.out += n;
    rec?.output(b);
  };
  const toUser = (s: string) => {
    show(s);
    if (ch.writable) ch.write(s);
  };
  const lines = new LineGate(conn, st, up, toUser, channel);
  ch.on('data', (d: Buffer) => {
    counts.in.bytes += d.length;
    rec?.input(d);
    lines.feed(d);
  });
  ch.once('end', () => lines.close());
  const code = await relayUntilExit(conn, st, up, ch, [masker, maskerErr], show, counts, rec);
  commandEvent(conn, o, req, { exit_status: code, bytes_out: counts.out.bytes, bytes_in: counts.in.bytes, started, channel, masked: maskCounts(masker, maskerErr) });
  ch.exit(code);
  ch.end();
}

/**
 * Evaluates every line a user submits in an interactive shell before it is
 * sent upstream. With a pty the sidecar echoes and edits locally (the
 * upstream shell only ever receives whole, allowed lines); without one, input
 * is split at newlines.
 */
class LineGate {
  private readonly ld: LineDiscipline | undefined;
  private queue: Promise<void> = Promise.resolve();
  private held: AbortController | undefined;
  private raw = '';

  constructor(
    private readonly conn: SshConnection,
    private readonly st: SessionState,
    private readonly up: ClientChannel,
    private readonly toUser: (s: string) => void,
    private readonly channel: number,
  ) {
    this.ld = st.pty ? new LineDiscipline() : undefined;
  }

  feed(d: Buffer): void {
    if (this.held && d.includes(3)) this.held.abort(); // ^C while a line waits for review
    if (this.ld) {
      for (const ev of this.ld.feed(d)) this.enqueue(ev);
      return;
    }
    this.raw += d.toString('utf8');
    let i: number;
    while ((i = this.raw.indexOf('\n')) >= 0) {
      const line = this.raw.slice(0, i);
      this.raw = this.raw.slice(i + 1);
      this.enqueue({ type: 'line', line, erase: '' });
    }
  }

  close(): void {
    this.queue = this.queue.then(() => {
      if (this.up.writable) this.up.end();
    });
  }

  private enqueue(ev: LineEvent): void {
    // Echo must stay in order with decisions on earlier lines.
    this.queue = this.queue.then(() => this.handle(ev)).catch((e: unknown) => this.conn.log.error('shell line handling failed', { error: errorMessage(e) }));
  }

  private send(s: string): void {
    if (this.up.writable) this.up.write(s);
  }

  private async handle(ev: LineEvent): Promise<void> {
    switch (ev.type) {
      case 'echo':
        return this.toUser(ev.data);
      case 'interrupt':
        this.toUser(ev.erase);
        return this.send('\x03');
      case 'eof':
        return this.send('\x04');
      case 'passthrough':
        return this.send(ev.data);
      case 'line':
        return this.line(ev.line, ev.erase);
    }
  }

  private async line(text: string, erase: string): Promise<void> {
    const pty = this.ld !== undefined;
    const eol = pty ? '\r' : '\n';
    if (text.trim() === '') return this.send(eol);
    const started = performance.now();
    const req = execRequest(text, 'shell_line');
    this.held = new AbortController();
    const signal = AbortSignal.any([this.held.signal, this.st.abort.signal]);
    const say = (s: string) => (pty ? this.toUser(`\r\n${s}`) : this.toUser(`${s}\n`));
    const o = await this.conn.decide(req, this.st.envTask, { signal, onHold: (n) => say(`${YELLOW}taskgate: ${holdText(n)}${RESET}`) });
    this.held = undefined;
    const allowed = 'decision_id' in o && o.allowed;
    commandEvent(this.conn, o, req, { exit_status: allowed ? 'sent' : DENIED_EXIT, bytes_out: 0, bytes_in: Buffer.byteLength(text), started, channel: this.channel });
    if (allowed) {
      if (o.review) say(`taskgate: review ${o.review.id} approved by ${o.review.by.join(', ')}\r\n`);
      // Remove the local echo: the remote shell echoes the line itself.
      if (pty && !o.review) this.toUser(erase);
      this.send(text + eol);
      return;
    }
    say(`${RED}taskgate: denied: ${denialText(o)}${RESET}${pty ? '\r\n' : ''}`);
    // A fresh prompt from the remote shell (its input line is empty: only whole lines are ever sent).
    if (pty) this.send(eol);
  }
}
