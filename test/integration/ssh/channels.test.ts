import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:net';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { castOutput, parseAsciicast } from '../../../sidecar/ssh/recording.ts';
import { runProcess, startSshHarness, type SshHarness } from './harness.ts';

const CARD = '4242 4242 4242 4242';
const CARD_DIGITS = '4242424242424242';

describe('ssh sidecar: masking, recording, file transfer and forwarding', () => {
  let h: SshHarness;
  let echo: Server;
  let echoPort = 0;
  before(async () => {
    h = await startSshHarness();
    echo = createServer((s) => s.end('hello-from-forward-target\n'));
    await new Promise<void>((r) => echo.listen(0, '127.0.0.1', r));
    echoPort = (echo.address() as { port: number }).port;
  });
  after(async () => {
    echo?.close();
    await h?.stop();
  });

  test('card numbers in cat output are masked, including values split across packets, on stdout and stderr', async () => {
    // 30k lines (~1.2 MB): values land on every packet boundary the server happens to cut.
    const made = await h.onServer(`for i in $(seq 1 30000); do echo "row $i card ${CARD} end"; done > /tmp/tg-cards.txt; echo ok`);
    assert.equal(made.stdout.trim(), 'ok', made.stderr);
    const r = await h.ssh('alice+SUP-1', ['127.0.0.1', 'cat /tmp/tg-cards.txt; rm -f /tmp/tg-cards.txt']);
    // rm is forbidden: the whole command is denied. Read it without rm.
    assert.equal(r.code, 126);
    const c = await h.ssh('alice+SUP-1', ['127.0.0.1', 'cat /tmp/tg-cards.txt']);
    assert.equal(c.code, 0, c.stderr);
    const lines = c.stdout.split('\n').filter(Boolean);
    assert.equal(lines.length, 30000);
    assert.ok(!c.stdout.includes(CARD), 'no unmasked card number');
    assert.ok(!c.stdout.replace(/\D/g, '').includes(CARD_DIGITS));
    for (const l of lines) assert.match(l, /^row \d+ card \d{4} \d{4} \d{4} 4242 end$/);
    const ev = h.audit.ofType('command').find((e) => e.command === 'cat /tmp/tg-cards.txt');
    assert.equal(ev?.masked?.['detector:card'], 30000);

    // A value cut in two by time: the halves arrive in separate packets seconds apart.
    const split = await h.ssh('alice+SUP-1', ['127.0.0.1', `printf '4242 4242 '; sleep 0.5; printf '4242 4242\\n'; printf '4242 42' >&2; sleep 0.3; printf '42 4242 4242\\n' >&2`]);
    assert.equal(split.code, 0, split.stderr);
    assert.ok(!split.stdout.includes(CARD), split.stdout);
    assert.match(split.stdout, /^\d{4} \d{4} \d{4} 4242\n$/);
    assert.ok(!split.stderr.includes(CARD), split.stderr);

    // Other task types are not masked.
    const plain = await h.ssh('alice+OPS-1', ['127.0.0.1', 'head -1 /tmp/tg-cards.txt']);
    assert.equal(plain.stdout, `row 1 card ${CARD} end\n`);
  });

  test('UTF-8 and terminal escapes pass through masking intact', async () => {
    const r = await h.ssh('alice+SUP-1', ['127.0.0.1', `printf 'héllo ✓ \\033[1;31mred\\033[0m ${CARD} 日本\\n'`]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^héllo ✓ \x1b\[1;31mred\x1b\[0m \d{4} \d{4} \d{4} 4242 日本\n$/);
    assert.ok(!r.stdout.includes(CARD));
  });

  test('every session is recorded in asciicast v2 and the recording replays to what the client saw (masked)', async () => {
    const r = await h.ssh('alice+SUP-1', ['127.0.0.1', `printf 'line one\\n'; sleep 0.2; printf 'card ${CARD}\\nsecond ✓\\n'`]);
    assert.equal(r.code, 0, r.stderr);
    const ev = h.audit.ofType('command').find((e) => String(e.command).startsWith("printf 'line one"));
    const id = String(ev?.details?.recording);
    await new Promise((res) => setTimeout(res, 100));
    const cast = await h.recordings.asciicast(id);
    const { header, events } = parseAsciicast(cast);
    assert.equal(header.version, 2);
    assert.equal(header.width, 80);
    assert.ok(events.length >= 2);
    assert.ok(events.every((e, i) => i === 0 || e.time >= events[i - 1]!.time));
    assert.equal(castOutput(cast), r.stdout);
    assert.ok(!cast.includes(CARD));
  });

  test('sftp (modern scp) and legacy scp are denied unless the task type allows file transfer', async () => {
    const src = join(h.dir, 'upload.txt');
    await writeFile(src, 'payload\n');
    const scp = (login: string, legacy: boolean) =>
      runProcess('scp', [...(legacy ? ['-O'] : []), '-P', String(h.proxy.address.port), ...h.sshArgs(login).filter((_, i, a) => a[i] !== '-p' && a[i - 1] !== '-p' && a[i] !== '-l' && a[i - 1] !== '-l'), src, `${login}@127.0.0.1:/tmp/tg-upload-${legacy ? 'o' : 's'}.txt`], h.sshEnv(), undefined, 30_000, true);
    for (const legacy of [false, true]) {
      const denied = await scp('alice+OPS-1', legacy);
      assert.notEqual(denied.code, 0);
      const there = await h.onServer(`test -e /tmp/tg-upload-${legacy ? 'o' : 's'}.txt && echo present || echo absent`);
      assert.equal(there.stdout.trim(), 'absent');
      const ev = h.audit.ofType('decision').filter((e) => e.task_id === 'OPS-1').at(-1);
      assert.equal(ev?.decision, 'deny');
      assert.match(String(ev?.reasons), legacy ? /scp/ : /sftp/);
      const ok = await scp('alice+FT-1', legacy);
      assert.equal(ok.code, 0, ok.stderr);
      const got = await h.onServer(`cat /tmp/tg-upload-${legacy ? 'o' : 's'}.txt; rm -f /tmp/tg-upload-${legacy ? 'o' : 's'}.txt`);
      assert.equal(got.stdout, 'payload\n');
    }
  });

  test('local port forwarding (direct-tcpip) is denied unless allowed, and works when allowed', async () => {
    const denied = await h.ssh('alice+OPS-1', ['-W', `127.0.0.1:${echoPort}`, '127.0.0.1']);
    assert.notEqual(denied.code, 0);
    assert.match(denied.stderr, /open failed|administratively prohibited|stdio forwarding failed/i);
    assert.equal(denied.stdout, '');
    const fwd = h.audit.ofType('decision').find((e) => e.command === `direct-tcpip 127.0.0.1:${echoPort}` && e.task_id === 'OPS-1');
    assert.equal(fwd?.decision, 'deny');
    const ok = await h.ssh('alice+FT-1', ['-W', `127.0.0.1:${echoPort}`, '127.0.0.1']);
    assert.equal(ok.stdout, 'hello-from-forward-target\n', ok.stderr);
  });

  test('remote port forwarding (tcpip-forward) is denied', async () => {
    const r = await h.ssh('alice+OPS-1', ['-o', 'ExitOnForwardFailure=yes', '-R', `0:127.0.0.1:${echoPort}`, '127.0.0.1', 'echo should-not-run']);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /remote port forwarding failed/i);
    assert.ok(h.audit.ofType('decision').some((e) => String(e.command).startsWith('tcpip-forward') && e.decision === 'deny'));
  });

  test('agent forwarding is refused', async () => {
    const sock = join(h.dir, 'agent.sock');
    const agent = await runProcess('ssh-agent', ['-a', sock], process.env, undefined, 10_000, false);
    assert.equal(agent.code, 0, agent.stderr);
    const pid = /SSH_AGENT_PID=(\d+)/.exec(agent.stdout)?.[1];
    try {
      const r = await h.ssh('alice+OPS-1', ['-A', '127.0.0.1', 'echo ${SSH_AUTH_SOCK:-no-agent}'], { env: { SSH_AUTH_SOCK: sock } });
      assert.equal(r.stdout, 'no-agent\n', r.stderr);
    } finally {
      if (pid) process.kill(Number(pid));
    }
    assert.ok(h.audit.ofType('decision').some((e) => e.command === 'auth-agent-req' && e.decision === 'deny'));
  });
});

describe('ssh sidecar: pinned upstream host key', () => {
  let h: SshHarness;
  before(async () => {
    // Pin a different key for the upstream address: a man-in-the-middle as far as the sidecar knows.
    h = await startSshHarness({ knownHosts: (s) => `[127.0.0.1]:${s.port} ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHuOPNy1U5Yq5bH1F5cJ1mX0dQv1m6bQw3P4Jr0lJQ5c` });
  });
  after(async () => {
    await h?.stop();
  });

  test('a host key mismatch refuses the connection with a clear message and an audit event', async () => {
    const r = await h.ssh('alice+OPS-1', ['127.0.0.1', 'echo should-not-run']);
    assert.equal(r.code, 255);
    assert.equal(r.stdout, '');
    assert.match(r.stderr, /host key ssh-ed25519 does not match the pinned known_hosts entry/);
    const ev = h.audit.ofType('error').find((e) => e.details?.stage === 'upstream');
    assert.ok(ev);
    assert.match(String(ev.reasons), /does not match/);
  });
});
