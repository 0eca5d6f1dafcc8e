/**
 * Builds the policy `request` block for each SSH channel request: exec (with
 * the shell analysis), shell, shell lines, subsystems (sftp), legacy scp,
 * port forwards, agent forwarding and X11. Pure functions, no sockets.
 */
import { sha256hex } from '../../core/hash.ts';
import type { SshKind, SshRequest } from '../../core/policy-contract.ts';
import type { CommandSpec } from '../../core/gate.ts';
import { analyzeShell } from './shell-parse.ts';

/** `exec`: a legacy-protocol scp (`scp -t`/`scp -f`) is kind `scp`; everything else kind `exec`. */
export function execRequest(command: string, kind: 'exec' | 'shell_line' = 'exec'): SshRequest {
  const a = analyzeShell(command);
  const req: SshRequest = { kind, command, argv: a.argv, programs: a.programs };
  if (a.redirects.length > 0) req.redirects = a.redirects;
  if (a.unparseable) {
    req.unparseable = true;
    req.parse_error = a.parse_error ?? 'unparseable';
  }
  if (kind === 'exec' && isScp(a.argv)) req.kind = 'scp';
  return req;
}

/** scp's remote side: `scp [-v] [-r] [-p] [-d] -t|-f path` as the scp client sends it. */
function isScp(argv: string[]): boolean {
  const first = argv[0];
  if (!first || first.slice(first.lastIndexOf('/') + 1) !== 'scp') return false;
  return argv.slice(1).some((a) => /^-[a-zA-Z]*[tf][a-zA-Z]*$/.test(a));
}

export function simpleRequest(kind: Exclude<SshKind, 'exec' | 'shell_line'>, extra: Partial<SshRequest> = {}): SshRequest {
  return { kind, command: extra.command ?? '', argv: [], programs: [], ...extra };
}

export function subsystemRequest(name: string): SshRequest {
  return simpleRequest(name === 'sftp' ? 'sftp' : 'subsystem', { subsystem: name, command: name === 'sftp' ? 'sftp' : `subsystem ${name}` });
}

export function forwardRequest(kind: 'port_forward' | 'remote_forward', host: string, port: number): SshRequest {
  return simpleRequest(kind, { command: `${kind === 'port_forward' ? 'direct-tcpip' : 'tcpip-forward'} ${host}:${port}`, forward: { host, port } });
}

/** The gate's view of a request: text for audit/reviewers and an exact fingerprint (the decision cache key). */
export function commandSpec(req: SshRequest): CommandSpec {
  const text = req.command || req.kind;
  const fingerprint = 'ssh:' + sha256hex(`${req.kind}\0${text}`).slice(0, 32);
  return { request: req, text, fingerprint, summary: { kind: req.kind, programs: req.programs.map((p) => ({ name: p.name, via: p.via, ...(p.dynamic ? { dynamic: true } : {}) })), ...(req.unparseable ? { unparseable: true } : {}) } };
}
