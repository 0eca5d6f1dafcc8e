/**
 * The SSH sidecar: an SSH server (ssh2) that authenticates users with an OIDC
 * token, binds the connection to a task, decides every channel request with
 * the Gatekeeper, and relays allowed work to the real host over its own
 * upstream connection (pinned host key, key only taskgate holds).
 *
 * One file per concern: this one is the listener and the per-connection
 * state; channels.ts handles session channels (exec, shell, subsystems);
 * forwards.ts handles port forwarding.
 */
import { randomUUID } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import ssh2, { type AuthContext, type CipherAlgorithm, type Client as SshClient, type Connection } from 'ssh2';
import type { AuditSink } from '../../core/audit/event.ts';
import { errorMessage, TaskgateError } from '../../core/errors.ts';
import type { GateOutcome, Gatekeeper, HoldNotice, SessionContext } from '../../core/gate.ts';
import type { Authenticator, Identity } from '../../core/identity/identity.ts';
import { silentLogger, type Logger } from '../../core/log.ts';
import type { ResourceInput, SshRequest } from '../../core/policy-contract.ts';
import { handleSession } from './channels.ts';
import { handleForwards } from './forwards.ts';
import { loadOrCreateKey } from './keys.ts';
import { parseKnownHosts } from './known-hosts.ts';
import { sharedMasker, type MaskerFactory } from './relay.ts';
import type { RecordingSink } from './recording.ts';
import { commandSpec } from './request.ts';
import { connectUpstream, type UpstreamConfig } from './upstream.ts';

/** Exit status of a denied exec (the shell's "found but not executable"). */
export const DENIED_EXIT = 126;
/** Exit status when the sidecar cannot run the command (upstream unreachable, host key refused). */
export const SIDECAR_ERROR_EXIT = 255;
export const TASK_ENV = 'TASKGATE_TASK';

/**
 * Ciphers offered to users: AES-GCM/CTR run in Node's native crypto. OpenSSH
 * clients prefer chacha20-poly1305, which ssh2 implements in JavaScript when
 * its optional native binding is not built (as here): several times slower.
 */
export const FAST_CIPHERS: CipherAlgorithm[] = ['aes128-gcm@openssh.com', 'aes256-gcm@openssh.com', 'aes128-ctr', 'aes192-ctr', 'aes256-ctr'];

export interface SshProxyOptions {
  gate: Gatekeeper;
  authenticator: Authenticator;
  /** The resource this sidecar fronts: `{protocol: 'ssh', name, labels}`. */
  resource: ResourceInput;
  /** Host key path (OpenSSH format); generated and persisted when missing. */
  hostKeyPath: string;
  upstream: {
    host: string;
    port: number;
    username: string;
    /** The sidecar's client key; generated when missing (its `.pub` must be authorized upstream). */
    privateKeyPath: string;
    /** known_hosts file pinning the upstream host key. */
    knownHostsPath: string;
    readyTimeoutMs?: number;
  };
  listen?: { host?: string; port?: number };
  /** Session recordings (asciicast v2). Omitted: sessions are not recorded. */
  recordings?: RecordingSink;
  /** Stream masker for output; default the shared core/mask stream masker (without a hash key: `hash` rules then deny). */
  masker?: MaskerFactory;
  log?: Logger;
  /** Environment variables passed upstream (besides TASKGATE_TASK, which is consumed). Default LANG, LC_*. */
  passEnv?: RegExp;
  /** Banner shown before authentication. */
  banner?: string;
}

export interface SshProxy {
  address: { host: string; port: number };
  /** The sidecar's host key line (`ssh-ed25519 AAAA...`) for the users' known_hosts. */
  hostKeyPublic: string;
  /** Connections currently open. */
  connections(): number;
  close(): Promise<void>;
}

/** `alice+OPS-123` -> user alice, task OPS-123. The task is what follows the last `+`. */
export function parseLogin(username: string): { user: string; task: string } {
  const i = username.lastIndexOf('+');
  if (i <= 0) return { user: username, task: '' };
  return { user: username.slice(0, i), task: username.slice(i + 1) };
}

export async function startSshProxy(opts: SshProxyOptions): Promise<SshProxy> {
  const hostKey = await loadOrCreateKey(opts.hostKeyPath, 'taskgate-sidecar-host');
  const clientKey = await loadOrCreateKey(opts.upstream.privateKeyPath, 'taskgate-sidecar-upstream');
  let knownHostsText: string;
  try {
    knownHostsText = await readFile(opts.upstream.knownHostsPath, 'utf8');
  } catch (e) {
    throw new TaskgateError('config_invalid', `upstream known_hosts ${opts.upstream.knownHostsPath} unreadable: ${errorMessage(e)}`, {
      hint: 'pin the upstream host key: ssh-keyscan -p PORT HOST > known_hosts',
    });
  }
  const upstream: UpstreamConfig = {
    host: opts.upstream.host,
    port: opts.upstream.port,
    username: opts.upstream.username,
    privateKey: clientKey.private,
    knownHosts: parseKnownHosts(knownHostsText),
    readyTimeoutMs: opts.upstream.readyTimeoutMs ?? 10_000,
  };
  if (upstream.knownHosts.length === 0) {
    throw new TaskgateError('config_invalid', `upstream known_hosts ${opts.upstream.knownHostsPath} has no entries: the upstream host key must be pinned`);
  }
  const log = opts.log ?? silentLogger;
  opts = { ...opts, masker: opts.masker ?? sharedMasker() };
  const live = new Set<SshConnection>();
  const server = new ssh2.Server({ hostKeys: [hostKey.private], algorithms: { cipher: FAST_CIPHERS }, ...(opts.banner ? { banner: opts.banner } : {}) }, (client, info) => {
    // Keystroke echoes are tiny writes: no Nagle delay.
    (client as unknown as { setNoDelay(on: boolean): void }).setNoDelay(true);
    const conn = new SshConnection(opts, upstream, client, info.ip, log);
    live.add(conn);
    client.on('close', () => live.delete(conn));
  });
  server.on('error', (e: Error) => log.error('ssh listener error', { error: e.message }));
  const host = opts.listen?.host ?? '127.0.0.1';
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.listen?.port ?? 0, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : 0;
  log.info('ssh sidecar listening', { host, port, upstream: `${upstream.host}:${upstream.port}` });
  return {
    address: { host, port },
    hostKeyPublic: hostKey.public.split(/\s+/).slice(0, 2).join(' '),
    connections: () => live.size,
    close: async () => {
      for (const c of live) c.end('sidecar shutting down');
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

/** One user connection: identity, task, the upstream connection, audit of its lifetime. */
export class SshConnection {
  readonly id = randomUUID();
  readonly startedAt = new Date();
  identity: Identity | undefined;
  loginUser = '';
  loginTask = '';
  /** Task id fixed by the first decision (from the login, else SendEnv TASKGATE_TASK). */
  private task = '';
  private upstream: Promise<SshClient> | undefined;
  private channelSeq = 0;
  private ended = false;
  readonly bytes = { in: 0, out: 0 };
  private timers: NodeJS.Timeout[] = [];
  private unsubscribe: (() => void) | undefined;

  constructor(
    readonly opts: SshProxyOptions,
    private readonly upstreamCfg: UpstreamConfig,
    readonly client: Connection,
    readonly clientAddress: string,
    readonly log: Logger,
  ) {
    client.on('authentication', (ctx) => void this.authenticate(ctx));
    client.on('ready', () => this.ready());
    client.on('error', (e: Error) => log.debug('ssh client connection error', { error: e.message, session: this.id }));
    client.on('close', () => this.closed());
  }

  get audit(): AuditSink {
    return this.opts.gate.audit;
  }

  nextChannel(): number {
    return ++this.channelSeq;
  }

  private async authenticate(ctx: AuthContext): Promise<void> {
    const { user, task } = parseLogin(ctx.username);
    const verify = async (token: string | undefined) => {
      try {
        if (!token) throw new TaskgateError('auth_failed', 'empty token');
        this.identity = await this.opts.authenticator.authenticate(token.trim());
        this.loginUser = user;
        this.loginTask = task;
        ctx.accept();
      } catch (e) {
        this.audit.emit({
          type: 'error',
          session_id: this.id,
          protocol: 'ssh',
          resource: this.opts.resource.name,
          client_addr: this.clientAddress,
          reasons: [`authentication failed: ${errorMessage(e)}`],
          details: { stage: 'auth', login: ctx.username, method: ctx.method },
        });
        ctx.reject(['keyboard-interactive', 'password']);
      }
    };
    if (ctx.method === 'password') return verify(ctx.password);
    if (ctx.method === 'keyboard-interactive') {
      ctx.prompt([{ prompt: 'taskgate OIDC token: ', echo: false }], 'taskgate', 'Paste an OIDC access token (taskgate login prints one)', (answers) => {
        void verify(answers[0]);
      });
      return;
    }
    ctx.reject(['keyboard-interactive', 'password']);
  }

  private ready(): void {
    const id = this.identity!;
    this.audit.emit({
      type: 'session_start',
      session_id: this.id,
      task_id: this.loginTask,
      subject: id.subject,
      groups: id.groups,
      identity_type: id.type,
      resource: this.opts.resource.name,
      protocol: 'ssh',
      client_addr: this.clientAddress,
      details: { login_user: this.loginUser, upstream: `${this.upstreamCfg.username}@${this.upstreamCfg.host}:${this.upstreamCfg.port}` },
    });
    if (id.expires_at_ms) {
      const t = setTimeout(() => this.end('OIDC token expired'), Math.max(0, id.expires_at_ms - Date.now()));
      t.unref();
      this.timers.push(t);
    }
    this.unsubscribe = this.opts.gate.tasks.onEnded((ev) => {
      if (ev.task_id === this.task) this.end(`task ${ev.task_id} ${ev.state}`);
    });
    this.client.on('session', (accept) => handleSession(this, accept()));
    handleForwards(this);
  }

  /**
   * Fixes the connection's task: the login's `+TASK` wins; else the session's
   * TASKGATE_TASK env. A different task later on the same connection is refused.
   */
  bindTask(envTask: string): { ok: true } | { ok: false; reason: string } {
    const want = this.loginTask || envTask;
    if (this.loginTask && envTask && envTask !== this.loginTask) {
      return { ok: false, reason: `task ${envTask} from ${TASK_ENV} differs from task ${this.loginTask} in the login name` };
    }
    if (!want) {
      return { ok: false, reason: `no task id: log in as ${this.loginUser || 'user'}+TASK-ID (ssh -l ${this.loginUser || 'user'}+OPS-123 ...) or send ${TASK_ENV} (ssh -o SendEnv=${TASK_ENV})` };
    }
    if (this.task && want !== this.task) return { ok: false, reason: `this connection is bound to task ${this.task}; open a new connection for task ${want}` };
    this.task = want;
    return { ok: true };
  }

  sessionContext(): SessionContext {
    const ctx: SessionContext = {
      id: this.id,
      started_at: this.startedAt.toISOString(),
      identity: this.identity!,
      task_id: this.task,
      resource: this.opts.resource,
    };
    if (this.clientAddress) ctx.client_address = this.clientAddress;
    return ctx;
  }

  /**
   * Decides one request through the Gatekeeper. `envTask` is the session's
   * TASKGATE_TASK (if any). Returns the outcome, or a local denial reason when
   * no task is bound.
   */
  async decide(req: SshRequest, envTask: string, opts: { signal?: AbortSignal; onHold?: (n: HoldNotice) => void } = {}): Promise<GateOutcome | { refused: string }> {
    const bound = this.bindTask(envTask);
    if (!bound.ok) {
      this.audit.emit({
        type: 'error',
        session_id: this.id,
        subject: this.identity?.subject ?? '',
        resource: this.opts.resource.name,
        protocol: 'ssh',
        command: req.command || req.kind,
        decision: 'deny',
        reasons: [bound.reason],
        details: { kind: req.kind, stage: 'task' },
      });
      return { refused: bound.reason };
    }
    const o = await this.opts.gate.decide(this.sessionContext(), commandSpec(req), opts);
    if (o.allowed) this.applyTtl(o.decision.obligations.session_ttl_s);
    return o;
  }

  private ttlArmed = false;

  /** Obligation `session_ttl_s`: the connection ends that long after it started (the first allowed decision arms it). */
  private applyTtl(ttl: number | undefined): void {
    if (this.ttlArmed || typeof ttl !== 'number' || !(ttl > 0)) return;
    this.ttlArmed = true;
    const left = this.startedAt.getTime() + ttl * 1000 - Date.now();
    const t = setTimeout(() => this.end(`session_ttl_s ${ttl} reached`), Math.max(0, left));
    t.unref();
    this.timers.push(t);
  }

  /** The upstream connection, opened on first use. A refused host key is audited. */
  upstreamClient(): Promise<SshClient> {
    if (!this.upstream) {
      this.upstream = connectUpstream(this.upstreamCfg).then(
        (c) => {
          c.on('close', () => this.end('upstream connection closed'));
          return c;
        },
        (e: unknown) => {
          this.audit.emit({
            type: 'error',
            session_id: this.id,
            task_id: this.task,
            subject: this.identity?.subject ?? '',
            resource: this.opts.resource.name,
            protocol: 'ssh',
            reasons: [errorMessage(e)],
            details: { stage: 'upstream', code: e instanceof TaskgateError ? e.code : 'internal' },
          });
          throw e;
        },
      );
    }
    return this.upstream;
  }

  taskId(): string {
    return this.task;
  }

  end(reason: string): void {
    if (this.ended) return;
    this.log.info('ending ssh connection', { session: this.id, reason });
    this.endReason = reason;
    this.client.end();
  }

  private endReason = '';

  private closed(): void {
    if (this.ended) return;
    this.ended = true;
    for (const t of this.timers) clearTimeout(t);
    this.unsubscribe?.();
    void this.upstream?.then((c) => c.end()).catch(() => {});
    if (!this.identity) return;
    this.audit.emit({
      type: 'session_end',
      session_id: this.id,
      task_id: this.task || this.loginTask,
      subject: this.identity.subject,
      resource: this.opts.resource.name,
      protocol: 'ssh',
      bytes: this.bytes.out,
      duration_us: (Date.now() - this.startedAt.getTime()) * 1000,
      client_addr: this.clientAddress,
      details: { bytes_in: this.bytes.in, channels: this.channelSeq, ...(this.endReason ? { reason: this.endReason } : {}) },
    });
  }
}
