/**
 * Test setup for the SSH sidecar: a real OpenSSH sshd (devenv/sshd.ts) on a
 * loopback port, a real OIDC issuer (tokens verified through its JWKS), a
 * fixture policy compiled to WASM, the Gatekeeper with in-process reviews, the
 * sidecar on a free port, and the real OpenSSH `ssh`/`scp` clients, which
 * answer the keyboard-interactive prompt with the token through SSH_ASKPASS.
 */
import { execFile, spawn } from 'node:child_process';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MemoryAuditSink } from '../../../core/audit/event.ts';
import { PolicyEngine } from '../../../core/engine/engine.ts';
import { Gatekeeper } from '../../../core/gate.ts';
import { OidcAuthenticator } from '../../../core/identity/oidc.ts';
import { InProcessReviews } from '../../../core/reviews.ts';
import { StaticTaskRegistry, type TaskRecord } from '../../../core/tasks.ts';
import { startOidcIssuer, type OidcIssuer } from '../../../devenv/oidc-issuer.ts';
import { startSshd, type SshdServer } from '../../../devenv/sshd.ts';
import { loadOrCreateKey } from '../../../sidecar/ssh/keys.ts';
import { FileRecordingSink } from '../../../sidecar/ssh/recording.ts';
import { startSshProxy, type SshProxy, type SshProxyOptions } from '../../../sidecar/ssh/server.ts';
import { compileRego } from '../../support/bundles.ts';

/**
 * Fixture policy for SSH. The task must be open and assigned to the caller.
 * exec / shell_line: denied when any program is rm, dd, shred, shutdown, a
 * dynamic name, or the command is unparseable; `systemctl` is held for review
 * by the task's reviewers; everything else allowed. shell: allowed.
 * sftp, scp, port forwards, agent, X11: only for `file-transfer` tasks.
 * `support` tasks mask card numbers (partial, keep 4) in output.
 */
export const SSH_POLICY = `package taskgate
import rego.v1

masks := [{"detector": "card", "strategy": "partial", "keep": 4}] if input.task.type == "support"
masks := [] if input.task.type != "support"
base := {"mask": masks, "obligations": {}}

ok if {
  input.task.state == "open"
  input.identity.subject == input.task.assignee
}
forbidden := {"rm", "dd", "shred", "shutdown"}
denied contains p.name if { some p in input.request.programs; p.name in forbidden }
denied contains sprintf("dynamic command name %s", [p.name]) if { some p in input.request.programs; p.dynamic }
denied contains sprintf("unparseable command (%s)", [input.request.parse_error]) if input.request.unparseable
denied contains input.request.kind if {
  input.request.kind in {"sftp", "scp", "port_forward", "remote_forward", "agent_forward", "x11", "subsystem"}
  input.task.type != "file-transfer"
}
held if { some p in input.request.programs; p.name == "systemctl" }

default decision := {"result": "deny", "reasons": ["task is unknown, not open, or not assigned to you"], "mask": [], "obligations": {}}
decision := object.union(base, {"result": "deny", "reasons": [sprintf("not allowed for %s tasks: %s", [input.task.type, concat(", ", denied)])]}) if {
  ok
  count(denied) > 0
}
decision := object.union(base, {"result": "review", "reasons": ["systemctl needs review"],
  "review": {"approvers": input.task.reviewers, "min_approvals": 1, "timeout_s": 30}}) if {
  ok
  count(denied) == 0
  held
  input.review.status == "none"
}
decision := object.union(base, {"result": "allow", "reasons": ["approved"]}) if {
  ok
  count(denied) == 0
  held
  input.review.status == "approved"
}
decision := object.union(base, {"result": "allow", "reasons": ["allowed"]}) if {
  ok
  count(denied) == 0
  not held
}
`;

export function task(id: string, type: string, over: Partial<TaskRecord> = {}): TaskRecord {
  return {
    id,
    type,
    assignee: 'alice@example.com',
    reviewers: ['bob@example.com'],
    state: 'open',
    expires_at: new Date(Date.now() + 3600_000).toISOString(),
    ...over,
  };
}

export interface RunResult {
  stdout: string;
  stderr: string;
  code: number;
  raw: Buffer;
}

export interface SshHarness {
  sshd: SshdServer;
  issuer: OidcIssuer;
  proxy: SshProxy;
  audit: MemoryAuditSink;
  reviews: InProcessReviews;
  tasks: StaticTaskRegistry;
  gate: Gatekeeper;
  recordings: FileRecordingSink;
  dir: string;
  alice: string;
  /** Path of an askpass script printing alice's token. */
  askpass: string;
  /** Common OpenSSH client options for the sidecar (port, no host key prompts, token by askpass). */
  sshArgs(login: string): string[];
  sshEnv(): NodeJS.ProcessEnv;
  /** Runs the real `ssh` client through the sidecar. */
  ssh(login: string, args: string[], opts?: { input?: string | Buffer; token?: string; timeoutMs?: number; env?: NodeJS.ProcessEnv }): Promise<RunResult>;
  /** Runs a command directly on the sshd (as the sidecar's upstream account) to inspect the server side. */
  onServer(command: string): Promise<RunResult>;
  stop(): Promise<void>;
}

export interface SshHarnessOptions {
  policy?: string;
  /** A compiled bundle (e.g. the reference policies) instead of `policy`. */
  bundle?: Buffer;
  tasks?: TaskRecord[];
  proxy?: Partial<SshProxyOptions>;
  /** Write this as the upstream known_hosts instead of the real pin. */
  knownHosts?: (sshd: SshdServer) => string;
}

export async function startSshHarness(opts: SshHarnessOptions = {}): Promise<SshHarness> {
  const dir = await mkdtemp(join(tmpdir(), 'taskgate-ssh-test-'));
  const upstreamKey = await loadOrCreateKey(join(dir, 'upstream_ed25519'), 'taskgate-sidecar-upstream');
  const sshd = await startSshd({ authorizedKeys: [upstreamKey.public] });
  const issuer = await startOidcIssuer();
  try {
    const engine = new PolicyEngine();
    await engine.load(opts.bundle ?? (await compileRego(opts.policy ?? SSH_POLICY)));
    const tasks = new StaticTaskRegistry(opts.tasks ?? [
      task('OPS-1', 'ops'),
      task('SUP-1', 'support'),
      task('FT-1', 'file-transfer'),
      task('BOB-1', 'ops', { assignee: 'bob@example.com' }),
    ]);
    const reviews = new InProcessReviews();
    const audit = new MemoryAuditSink();
    const gate = new Gatekeeper({ engine, tasks, reviews, audit });
    const authenticator = await OidcAuthenticator.discover({ issuer: issuer.issuer, audience: issuer.audience, allowInsecureLoopback: true });
    const knownHosts = join(dir, 'known_hosts');
    await writeFile(knownHosts, (opts.knownHosts ? opts.knownHosts(sshd) : sshd.knownHostsLine) + '\n');
    const recordings = new FileRecordingSink(join(dir, 'recordings'));
    const proxy = await startSshProxy({
      gate,
      authenticator,
      resource: { protocol: 'ssh', name: 'web-1', labels: { env: 'test' } },
      hostKeyPath: join(dir, 'sidecar_host_ed25519'),
      upstream: { host: sshd.host, port: sshd.port, username: sshd.user, privateKeyPath: join(dir, 'upstream_ed25519'), knownHostsPath: knownHosts },
      recordings,
      ...opts.proxy,
    });
    const alice = await issuer.token('alice@example.com');
    const askpass = join(dir, 'askpass.sh');
    await writeFile(join(dir, 'token'), alice);
    await writeFile(askpass, `#!/bin/sh\ncat "${join(dir, 'token')}"\n`);
    await chmod(askpass, 0o755);
    const sshArgs = (login: string) => [
      '-p', String(proxy.address.port),
      '-l', login,
      '-o', 'StrictHostKeyChecking=no',
      '-o', 'UserKnownHostsFile=/dev/null',
      '-o', 'LogLevel=ERROR',
      '-o', 'PreferredAuthentications=keyboard-interactive,password',
      '-o', 'PubkeyAuthentication=no',
      '-o', 'ConnectTimeout=10',
      '-o', 'BatchMode=no',
      '-F', '/dev/null',
    ];
    const sshEnv = (): NodeJS.ProcessEnv => {
      const env: NodeJS.ProcessEnv = { ...process.env, SSH_ASKPASS: askpass, SSH_ASKPASS_REQUIRE: 'force', DISPLAY: ':0' };
      delete env.SSH_AUTH_SOCK;
      return env;
    };
    const ssh: SshHarness['ssh'] = async (login, args, o = {}) => {
      let env = { ...sshEnv(), ...o.env };
      if (o.token !== undefined) {
        const alt = join(dir, `askpass-${Math.random().toString(36).slice(2)}.sh`);
        await writeFile(alt, `#!/bin/sh\nprintf '%s\\n' '${o.token.replace(/'/g, '')}'\n`);
        await chmod(alt, 0o755);
        env = { ...env, SSH_ASKPASS: alt };
      }
      return runProcess('ssh', [...sshArgs(login), ...args], env, o.input, o.timeoutMs ?? 30_000, true);
    };
    const onServer = (command: string) =>
      runProcess(
        'ssh',
        ['-p', String(sshd.port), '-i', join(dir, 'upstream_ed25519'), '-o', `UserKnownHostsFile=${knownHosts}`, '-o', 'StrictHostKeyChecking=yes', '-o', 'BatchMode=yes', '-F', '/dev/null', `${sshd.user}@127.0.0.1`, command],
        { ...process.env, SSH_AUTH_SOCK: '' },
        undefined,
        20_000,
        false,
      );
    return {
      sshd,
      issuer,
      proxy,
      audit,
      reviews,
      tasks,
      gate,
      recordings,
      dir,
      alice,
      askpass,
      sshArgs,
      sshEnv,
      ssh,
      onServer,
      stop: async () => {
        await proxy.close();
        await issuer.stop();
        await sshd.stop();
        await rm(dir, { recursive: true, force: true });
      },
    };
  } catch (e) {
    await issuer.stop().catch(() => undefined);
    await sshd.stop().catch(() => undefined);
    throw e;
  }
}

/** Runs a process with a hard timeout (killed, then the test fails rather than hangs). */
export function runProcess(cmd: string, args: string[], env: NodeJS.ProcessEnv, input: string | Buffer | undefined, timeoutMs: number, detached: boolean): Promise<RunResult> {
  return new Promise((resolve) => {
    // setsid: no controlling terminal, so ssh uses SSH_ASKPASS instead of /dev/tty.
    const child = detached ? spawn('setsid', ['-w', cmd, ...args], { env, stdio: ['pipe', 'pipe', 'pipe'] }) : spawn(cmd, args, { env, stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.on('data', (d: Buffer) => err.push(d));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const raw = Buffer.concat(out);
      resolve({ stdout: raw.toString('utf8'), stderr: Buffer.concat(err).toString('utf8') + (signal ? `\n[killed: ${signal}]` : ''), code: code ?? 255, raw });
    });
    child.stdin.on('error', () => {});
    if (input !== undefined) child.stdin.end(input);
    else child.stdin.end();
  });
}

export { execFile };
