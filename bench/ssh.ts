/**
 * SSH sidecar benchmark, one run, loopback only, real OpenSSH on both ends:
 *
 * 1. throughput of `cat` of a large file (default 200 MB) with the OpenSSH
 *    client: direct to sshd vs through the sidecar with masking off and on
 *    (best of N runs each);
 * 2. keystroke echo latency in a pty (p50/p99): direct (the remote tty
 *    echoes) vs through the sidecar (its line discipline echoes).
 *
 *   node --import tsx bench/ssh.ts [--mb 200] [--runs 2] [--keys 400]
 */
import { spawn } from 'node:child_process';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import ssh2, { type ClientChannel } from 'ssh2';
import { MemoryAuditSink } from '../core/audit/event.ts';
import { PolicyEngine } from '../core/engine/engine.ts';
import { Gatekeeper } from '../core/gate.ts';
import { OidcAuthenticator } from '../core/identity/oidc.ts';
import { InProcessReviews } from '../core/reviews.ts';
import { StaticTaskRegistry } from '../core/tasks.ts';
import { startOidcIssuer } from '../devenv/oidc-issuer.ts';
import { startSshd } from '../devenv/sshd.ts';
import { loadOrCreateKey } from '../sidecar/ssh/keys.ts';
import { FileRecordingSink } from '../sidecar/ssh/recording.ts';
import { startSshProxy } from '../sidecar/ssh/server.ts';
import { compileRego } from '../test/support/bundles.ts';

const arg = (name: string, def: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : def;
};
const MB = arg('mb', 200);
const RUNS = arg('runs', 2);
const KEYS = arg('keys', 400);

const policy = (mask: boolean) => `package taskgate
import rego.v1
decision := {"result": "allow", "reasons": ["bench"], "obligations": {},
  "mask": ${mask ? '[{"detector": "card", "strategy": "partial", "keep": 4}, {"detector": "email", "strategy": "redact"}]' : '[]'}} if input.task.type
`;

function runSsh(args: string[], env: NodeJS.ProcessEnv): Promise<{ bytes: number; ms: number; code: number; stderr: string }> {
  return new Promise((resolve) => {
    const t0 = performance.now();
    const child = spawn('setsid', ['-w', 'ssh', ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let bytes = 0;
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (bytes += d.length));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 300_000);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ bytes, ms: performance.now() - t0, code: code ?? 255, stderr });
    });
  });
}

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
}

/** Types KEYS characters one at a time into a pty shell and times each echo. */
async function keystrokeLatency(connect: ssh2.ConnectConfig): Promise<number[]> {
  const c = new ssh2.Client();
  await new Promise<void>((resolve, reject) => {
    c.once('ready', () => resolve()).once('error', reject).connect({ ...connect, readyTimeout: 20_000 });
    c.setNoDelay(true);
  });
  const sh = await new Promise<ClientChannel>((resolve, reject) =>
    c.shell({ term: 'xterm', cols: 200, rows: 50 }, (e, s) => (e ? reject(e) : resolve(s))),
  );
  let buf = '';
  let waiter: ((s: string) => void) | undefined;
  sh.on('data', (d: Buffer) => {
    buf += d.toString('latin1');
    waiter?.(buf);
  });
  const until = (pred: (s: string) => boolean, ms = 10_000) =>
    new Promise<void>((resolve, reject) => {
      if (pred(buf)) return resolve();
      const t = setTimeout(() => reject(new Error(`timeout; have ${JSON.stringify(buf.slice(-80))}`)), ms);
      waiter = (s) => {
        if (pred(s)) {
          clearTimeout(t);
          waiter = undefined;
          resolve();
        }
      };
    });
  await until((s) => /[#$] ?$/.test(s.trimEnd()));
  await new Promise((r) => setTimeout(r, 300));
  const samples: number[] = [];
  for (let i = 0; i < KEYS; i++) {
    if (i % 40 === 0) {
      sh.write('\x15'); // ^U: clear the line (nothing is ever submitted)
      await new Promise((r) => setTimeout(r, 20));
    }
    const ch = String.fromCharCode(97 + (i % 26));
    buf = '';
    const t0 = performance.now();
    sh.write(ch);
    await until((s) => s.includes(ch));
    samples.push(performance.now() - t0);
  }
  sh.write('\x15');
  c.end();
  return samples;
}

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'taskgate-bench-ssh-'));
  const upstreamKey = await loadOrCreateKey(join(dir, 'upstream_ed25519'));
  const directKey = await loadOrCreateKey(join(dir, 'direct_ed25519'));
  const sshd = await startSshd({ authorizedKeys: [upstreamKey.public, directKey.public] });
  const issuer = await startOidcIssuer();
  const knownHosts = join(dir, 'known_hosts');
  await writeFile(knownHosts, sshd.knownHostsLine + '\n');
  const file = `/tmp/taskgate-bench-${process.pid}.txt`;
  const proxies: { close(): Promise<void> }[] = [];
  try {
    // Text output (base64 lines): digits and words the detectors must look at.
    const gen = await runSsh(
      ['-p', String(sshd.port), '-i', join(dir, 'direct_ed25519'), '-o', `UserKnownHostsFile=${knownHosts}`, '-o', 'BatchMode=yes', '-F', '/dev/null', `${sshd.user}@127.0.0.1`, `base64 -w 76 /dev/urandom | head -c ${MB * 1024 * 1024} > ${file}`],
      process.env,
    );
    if (gen.code !== 0) throw new Error(`could not create the test file: ${gen.stderr}`);
    const token = await issuer.token('alice@example.com');
    const askpass = join(dir, 'askpass.sh');
    await writeFile(askpass, `#!/bin/sh\nprintf '%s\\n' '${token}'\n`);
    await chmod(askpass, 0o755);
    const authenticator = await OidcAuthenticator.discover({ issuer: issuer.issuer, audience: issuer.audience, allowInsecureLoopback: true });
    const tasks = new StaticTaskRegistry([
      { id: 'BENCH-1', type: 'bench', assignee: 'alice@example.com', reviewers: [], state: 'open', expires_at: new Date(Date.now() + 3600_000).toISOString() },
    ]);
    const start = async (mask: boolean, record = false) => {
      const engine = new PolicyEngine();
      await engine.load(await compileRego(policy(mask)));
      const gate = new Gatekeeper({ engine, tasks, reviews: new InProcessReviews(), audit: new MemoryAuditSink() });
      const p = await startSshProxy({
        gate,
        authenticator,
        resource: { protocol: 'ssh', name: 'bench', labels: {} },
        hostKeyPath: join(dir, 'sidecar_host'),
        upstream: { host: sshd.host, port: sshd.port, username: sshd.user, privateKeyPath: join(dir, 'upstream_ed25519'), knownHostsPath: knownHosts },
        ...(record ? { recordings: new FileRecordingSink(join(dir, 'recordings')) } : {}),
      });
      proxies.push(p);
      return p;
    };
    const plain = await start(false);
    const masked = await start(true);
    const recorded = await start(false, true);
    const common = ['-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'LogLevel=ERROR', '-F', '/dev/null'];
    const viaArgs = (port: number) => ['-p', String(port), '-l', 'alice+BENCH-1', ...common, '-o', 'PreferredAuthentications=keyboard-interactive,password', '-o', 'PubkeyAuthentication=no', '127.0.0.1', `cat ${file}`];
    const directArgs = ['-p', String(sshd.port), '-i', join(dir, 'direct_ed25519'), ...common, '-o', 'BatchMode=yes', '-o', 'Ciphers=aes128-gcm@openssh.com', `${sshd.user}@127.0.0.1`, `cat ${file}`];
    const env = { ...process.env, SSH_ASKPASS: askpass, SSH_ASKPASS_REQUIRE: 'force', DISPLAY: ':0' };
    const expected = MB * 1024 * 1024;

    const best = async (label: string, args: string[]) => {
      let ms = Infinity;
      for (let i = 0; i < RUNS; i++) {
        const r = await runSsh(args, env);
        if (r.code !== 0 || r.bytes !== expected) throw new Error(`${label}: exit ${r.code}, ${r.bytes} bytes (want ${expected}): ${r.stderr}`);
        ms = Math.min(ms, r.ms);
      }
      const mbps = MB / (ms / 1000);
      return { label, ms, mbps };
    };
    const results = [
      await best('direct to sshd (OpenSSH, aes128-gcm)', directArgs),
      await best('via sidecar, masking off', viaArgs(plain.address.port)),
      await best('via sidecar, masking on (card+email)', viaArgs(masked.address.port)),
      await best('via sidecar, masking off, asciicast recording to a file', viaArgs(recorded.address.port)),
    ];
    const base = results[0]!.mbps;
    console.log(`\n## cat of a ${MB} MB text file (best of ${RUNS})`);
    console.log('| path | time (s) | MB/s | vs direct |');
    console.log('| --- | ---: | ---: | ---: |');
    for (const r of results) console.log(`| ${r.label} | ${(r.ms / 1000).toFixed(2)} | ${r.mbps.toFixed(0)} | ${((r.mbps / base) * 100).toFixed(0)}% |`);

    const direct = await keystrokeLatency({ host: sshd.host, port: sshd.port, username: sshd.user, privateKey: directKey.private, hostVerifier: () => true });
    const via = await keystrokeLatency({ host: '127.0.0.1', port: plain.address.port, username: 'alice+BENCH-1', password: token, hostVerifier: () => true });
    console.log(`\n## keystroke echo latency in a pty (${KEYS} keys, ssh2 client)`);
    console.log('| path | p50 (ms) | p99 (ms) |');
    console.log('| --- | ---: | ---: |');
    console.log(`| direct to sshd (remote tty echo) | ${pct(direct, 50).toFixed(3)} | ${pct(direct, 99).toFixed(3)} |`);
    console.log(`| via sidecar (local line discipline echo) | ${pct(via, 50).toFixed(3)} | ${pct(via, 99).toFixed(3)} |`);
    console.log(`| added by the sidecar | ${(pct(via, 50) - pct(direct, 50)).toFixed(3)} | ${(pct(via, 99) - pct(direct, 99)).toFixed(3)} |`);
  } finally {
    for (const p of proxies) await p.close().catch(() => undefined);
    await runSsh(['-p', String(sshd.port), '-i', join(dir, 'direct_ed25519'), '-o', `UserKnownHostsFile=${knownHosts}`, '-o', 'BatchMode=yes', '-F', '/dev/null', `${sshd.user}@127.0.0.1`, `rm -f ${file}`], process.env).catch(() => undefined);
    await issuer.stop();
    await sshd.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
