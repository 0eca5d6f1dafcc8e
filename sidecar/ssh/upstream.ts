/**
 * The sidecar's connection to the real host: its own client key, and the
 * host key checked against a pinned known_hosts (a mismatch or an unpinned
 * host refuses the connection). One upstream connection per user connection.
 */
import ssh2, { type Client as SshClient } from 'ssh2';
import { TaskgateError } from '../../core/errors.ts';
import { blobKeyType, verifyHostKey, type HostKeyVerdict, type KnownHost } from './known-hosts.ts';

export interface UpstreamConfig {
  host: string;
  port: number;
  /** The account taskgate logs in as upstream. */
  username: string;
  /** OpenSSH private key text. */
  privateKey: string;
  /** Pinned host keys (parsed known_hosts). */
  knownHosts: KnownHost[];
  readyTimeoutMs?: number;
}

/** Connects and authenticates upstream. Throws TaskgateError('forbidden') on a host key problem, ('unavailable') otherwise. */
export function connectUpstream(cfg: UpstreamConfig): Promise<SshClient> {
  return new Promise((resolve, reject) => {
    const c = new ssh2.Client();
    let verdict: HostKeyVerdict = { ok: true };
    let settled = false;
    const fail = (e: TaskgateError) => {
      if (settled) return;
      settled = true;
      c.end();
      reject(e);
    };
    c.once('ready', () => {
      settled = true;
      c.removeAllListeners('error');
      c.on('error', () => {}); // later errors surface as channel/connection closes
      resolve(c);
    });
    c.once('error', (e: Error) => {
      if (!verdict.ok) return fail(new TaskgateError('forbidden', verdict.message));
      fail(new TaskgateError('unavailable', `upstream ${cfg.host}:${cfg.port} unreachable: ${e.message}`));
    });
    c.connect({
      host: cfg.host,
      port: cfg.port,
      username: cfg.username,
      privateKey: cfg.privateKey,
      readyTimeout: cfg.readyTimeoutMs ?? 10_000,
      keepaliveInterval: 15_000,
      // AES in Node's native crypto (ssh2's chacha20 is JavaScript without its optional binding).
      algorithms: { cipher: ['aes128-gcm@openssh.com', 'aes256-gcm@openssh.com', 'aes128-ctr', 'aes256-ctr'] },
      hostVerifier: (key: Buffer) => {
        verdict = verifyHostKey(cfg.knownHosts, cfg.host, cfg.port, blobKeyType(key), key);
        return verdict.ok;
      },
    });
    c.setNoDelay(true);
  });
}
