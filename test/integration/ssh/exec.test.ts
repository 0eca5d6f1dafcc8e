import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { startSshHarness, type SshHarness } from './harness.ts';

describe('ssh sidecar: exec through real OpenSSH client and server', () => {
  let h: SshHarness;
  before(async () => {
    h = await startSshHarness();
  });
  after(async () => {
    await h?.stop();
  });

  test('an allowed command runs upstream and its output, stderr and exit status come back', async () => {
    const r = await h.ssh('alice+OPS-1', ['127.0.0.1', 'echo hello; echo oops >&2; exit 3']);
    assert.equal(r.stdout, 'hello\n');
    assert.match(r.stderr, /oops/);
    assert.equal(r.code, 3);
    const cmd = h.audit.ofType('command').find((e) => e.command === 'echo hello; echo oops >&2; exit 3');
    assert.ok(cmd, 'command audit event');
    assert.equal(cmd.decision, 'allow');
    assert.equal(cmd.details?.exit_status, 3);
    assert.equal(cmd.task_id, 'OPS-1');
    assert.equal(cmd.subject, 'alice@example.com');
  });

  for (const [command, marker] of [
    ['ls; rm -rf /tmp/tg-x1', 'tg-x1'],
    ['echo $(rm /tmp/tg-x2)', 'tg-x2'],
    ['bash -c "rm /tmp/tg-x3"', 'tg-x3'],
    ['sudo rm /tmp/tg-x4', 'tg-x4'],
    ['env FOO=1 rm /tmp/tg-x5', 'tg-x5'],
    ['echo /tmp/tg-x6 | xargs rm', 'tg-x6'],
    ['cat /etc/hostname | rm /tmp/tg-x7', 'tg-x7'],
    ['echo `rm /tmp/tg-x8`', 'tg-x8'],
    ['find /tmp -name tg-x9 -exec rm {} \\;', 'tg-x9'],
    ['sh <<EOF\nrm /tmp/tg-x10\nEOF', 'tg-x10'],
  ] as const) {
    test(`bypass shape is denied and never runs: ${command.replace(/\n/g, '\\n')}`, async () => {
      const made = await h.onServer(`touch /tmp/${marker} && echo ok`);
      assert.equal(made.stdout.trim(), 'ok', made.stderr);
      const r = await h.ssh('alice+OPS-1', ['127.0.0.1', command]);
      assert.equal(r.code, 126, r.stderr);
      assert.match(r.stderr, /taskgate: denied: .*rm/);
      assert.equal(r.stdout, '');
      const still = await h.onServer(`test -e /tmp/${marker} && echo present; rm -f /tmp/${marker}`);
      assert.equal(still.stdout.trim(), 'present', 'the file must survive: the command never reached the server');
    });
  }

  test('a command name built from an expansion is denied as dynamic', async () => {
    const r = await h.ssh('alice+OPS-1', ['127.0.0.1', 'X=rm; $X /tmp/nothing']);
    assert.equal(r.code, 126);
    assert.match(r.stderr, /dynamic command name \$X/);
  });

  test('an unparseable command is denied', async () => {
    const r = await h.ssh('alice+OPS-1', ['127.0.0.1', 'echo "unterminated']);
    assert.equal(r.code, 126);
    assert.match(r.stderr, /unparseable/);
  });

  test('quoted text is not a program: echo of "rm -rf /" is allowed', async () => {
    const r = await h.ssh('alice+OPS-1', ['127.0.0.1', "echo 'rm -rf /'"]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'rm -rf /\n');
  });

  test('task from SendEnv TASKGATE_TASK when the login has none; missing task is refused', async () => {
    const env = await h.ssh('alice', ['-o', 'SendEnv=TASKGATE_TASK', '127.0.0.1', 'echo via-env'], {});
    // TASKGATE_TASK not set in this environment: refused with the convention explained
    assert.equal(env.code, 126);
    assert.match(env.stderr, /no task id: log in as alice\+TASK-ID/);
    process.env.TASKGATE_TASK = 'OPS-1';
    try {
      const ok = await h.ssh('alice', ['-o', 'SendEnv=TASKGATE_TASK', '127.0.0.1', 'echo via-env']);
      assert.equal(ok.stdout, 'via-env\n', ok.stderr);
      process.env.TASKGATE_TASK = 'SUP-1';
      const clash = await h.ssh('alice+OPS-1', ['-o', 'SendEnv=TASKGATE_TASK', '127.0.0.1', 'echo clash']);
      assert.equal(clash.code, 126);
      assert.match(clash.stderr, /differs from task OPS-1/);
    } finally {
      delete process.env.TASKGATE_TASK;
    }
  });

  test('a task assigned to someone else is denied', async () => {
    const r = await h.ssh('alice+BOB-1', ['127.0.0.1', 'id']);
    assert.equal(r.code, 126);
    assert.match(r.stderr, /not assigned to you/);
  });

  test('a bad token is refused at authentication', async () => {
    const r = await h.ssh('alice+OPS-1', ['-o', 'NumberOfPasswordPrompts=1', '127.0.0.1', 'id'], { token: 'not-a-jwt' });
    assert.equal(r.code, 255);
    assert.match(r.stderr, /Permission denied/);
    assert.ok(h.audit.ofType('error').some((e) => e.reasons?.[0]?.startsWith('authentication failed')));
  });

  test('review: the command waits, stderr names the review and reviewer, then runs when approved', async () => {
    const seen = new Promise<string>((resolve) => {
      const off = h.reviews.onRequest((id) => {
        off();
        resolve(id);
      });
    });
    const run = h.ssh('alice+OPS-1', ['127.0.0.1', 'systemctl --version >/dev/null 2>&1; echo after-review']);
    const id = await seen;
    h.reviews.approve(id, { subject: 'bob@example.com', groups: [] });
    const r = await run;
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'after-review\n');
    assert.match(r.stderr, new RegExp(`held for review ${id}: waiting for approval from bob@example.com`));
    assert.match(r.stderr, /approved by bob@example.com/);
  });

  test('review denied: exit 126 and the reviewer reason', async () => {
    const seen = new Promise<string>((resolve) => {
      const off = h.reviews.onRequest((id) => {
        off();
        resolve(id);
      });
    });
    const run = h.ssh('alice+OPS-1', ['127.0.0.1', 'systemctl restart nothing']);
    h.reviews.deny(await seen, { subject: 'bob@example.com', groups: [] }, 'not today');
    const r = await run;
    assert.equal(r.code, 126);
    assert.match(r.stderr, /denied: review rv_[^ ]+ denied: not today/);
  });

  test('session start and end are audited', async () => {
    await h.ssh('alice+OPS-1', ['127.0.0.1', 'true']);
    const start = h.audit.ofType('session_start').at(-1);
    assert.ok(start);
    assert.equal(start.subject, 'alice@example.com');
    assert.equal(start.details?.login_user, 'alice');
    // session_end is emitted when the connection closes (after the client exits)
    await new Promise((r) => setTimeout(r, 200));
    assert.ok(h.audit.ofType('session_end').some((e) => e.session_id === start.session_id));
  });
});
