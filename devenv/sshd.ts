/**
 * Starts a real OpenSSH server (Debian's /usr/sbin/sshd) on a free loopback
 * port with a generated config and host key, accepting only the public keys
 * it is given: used by the SSH sidecar's integration tests, its benchmark and
 * the demo. Runs `sshd -D -e -f <config>` in a private temp directory.
 *
 * As root the login user is root (`PermitRootLogin prohibit-password`: keys
 * only); otherwise the current user (sshd then cannot switch users, which is
 * fine for a single-user test server).
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { TaskgateError } from '../core/errors.ts';
import { freePort, waitFor } from './net.ts';

const run = promisify(execFile);

export interface SshdOptions {
  /** Public key lines (`ssh-ed25519 AAAA...`) allowed to log in. */
  authorizedKeys: string[];
  /** Extra sshd_config lines. */
  extraConfig?: string[];
  sshdPath?: string;
}

export interface SshdServer {
  host: string;
  port: number;
  /** The account keys log in as. */
  user: string;
  dir: string;
  /** `ssh-ed25519 AAAA...` of the server's host key. */
  hostKeyPublic: string;
  /** A known_hosts line pinning this server (`[127.0.0.1]:port ssh-ed25519 AAAA...`). */
  knownHostsLine: string;
  /** Everything sshd wrote on stderr (LogLevel ERROR, -e). */
  logs(): string;
  stop(): Promise<void>;
}

async function ensurePrivsepUser(): Promise<void> {
  try {
    await run('getent', ['passwd', 'sshd']);
  } catch {
    await run('useradd', ['--system', '--no-create-home', '--home-dir', '/run/sshd', '--shell', '/usr/sbin/nologin', 'sshd']).catch((e: Error) => {
      // a concurrent test may have created it in the meantime
      if (!/already exists/.test(e.message)) throw e;
    });
  }
}

export async function startSshd(opts: SshdOptions): Promise<SshdServer> {
  const sshd = opts.sshdPath ?? '/usr/sbin/sshd';
  if (!existsSync(sshd)) {
    throw new TaskgateError('tool_missing', `OpenSSH server not found at ${sshd}`, { hint: 'apt-get install openssh-server' });
  }
  const root = typeof process.getuid === 'function' && process.getuid() === 0;
  // sshd's privilege separation directory must exist (the Debian service normally creates it).
  if (root && !existsSync('/run/sshd')) await mkdir('/run/sshd', { recursive: true, mode: 0o755 });
  // ... and so must its unprivileged user (Debian's postinst creates it; a bare install may not have run it).
  if (root) await ensurePrivsepUser();
  const dir = await mkdtemp(join(tmpdir(), 'taskgate-sshd-'));
  const hostKey = join(dir, 'ssh_host_ed25519_key');
  await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'taskgate-devenv-sshd', '-f', hostKey]);
  const hostKeyPublic = (await readFile(hostKey + '.pub', 'utf8')).trim().split(/\s+/).slice(0, 2).join(' ');
  await writeFile(join(dir, 'authorized_keys'), opts.authorizedKeys.map((k) => k.trim()).join('\n') + '\n', { mode: 0o600 });
  const port = await freePort();
  const cfg = join(dir, 'sshd_config');
  await writeFile(
    cfg,
    [
      `Port ${port}`,
      'ListenAddress 127.0.0.1',
      `HostKey ${hostKey}`,
      `PidFile ${join(dir, 'sshd.pid')}`,
      `AuthorizedKeysFile ${join(dir, 'authorized_keys')}`,
      'PermitRootLogin prohibit-password',
      'PubkeyAuthentication yes',
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      'UsePAM no',
      'StrictModes no',
      'AllowTcpForwarding yes',
      'X11Forwarding no',
      'PrintMotd no',
      'PrintLastLog no',
      'AcceptEnv LANG LC_*',
      'Subsystem sftp internal-sftp',
      'MaxStartups 100:30:200',
      'MaxSessions 100',
      'LogLevel ERROR',
      ...(opts.extraConfig ?? []),
      '',
    ].join('\n'),
  );
  let logs = '';
  const child: ChildProcess = spawn(sshd, ['-D', '-e', '-f', cfg], { stdio: ['ignore', 'ignore', 'pipe'] });
  child.stderr?.on('data', (d: Buffer) => (logs = (logs + d.toString()).slice(-64 * 1024)));
  let exited = false;
  child.on('exit', () => (exited = true));
  const stop = async () => {
    if (!exited) {
      child.kill('SIGTERM');
      await waitFor(() => exited, 5_000).catch(() => child.kill('SIGKILL'));
    }
    await rm(dir, { recursive: true, force: true });
  };
  try {
    await waitFor(async () => {
      if (exited) throw new Error(`sshd exited: ${logs.trim()}`);
      return existsSync(join(dir, 'sshd.pid'));
    }, 10_000);
  } catch (e) {
    await stop();
    throw new TaskgateError('unavailable', `sshd did not start: ${(e as Error).message}`);
  }
  return {
    host: '127.0.0.1',
    port,
    user: root ? 'root' : userInfo().username,
    dir,
    hostKeyPublic,
    knownHostsLine: `[127.0.0.1]:${port} ${hostKeyPublic}`,
    logs: () => logs,
    stop,
  };
}
