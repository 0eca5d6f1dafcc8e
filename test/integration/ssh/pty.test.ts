/**
 * An interactive shell driven through a real terminal: tmux runs the OpenSSH
 * client with a pty; keys are typed with send-keys and the screen is read with
 * capture-pane. Proves the sidecar's line gate: a denied line never reaches
 * the server, and the recording replays to the same screen.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, test } from 'node:test';
import { waitFor } from '../../../devenv/net.ts';
import { startSshHarness, type SshHarness } from './harness.ts';

const run = promisify(execFile);
const COLS = 100;
const ROWS = 30;

describe('ssh sidecar: interactive shell with a pty (tmux + OpenSSH client)', () => {
  let h: SshHarness;
  let sock = '';
  const tmux = (...args: string[]) => run('tmux', ['-S', sock, '-f', '/dev/null', ...args], { timeout: 10_000 });
  const screen = async (target: string) => (await tmux('capture-pane', '-p', '-t', target)).stdout;
  const until = async (target: string, re: RegExp, what: string) => {
    try {
      await waitFor(async () => re.test(await screen(target)), 15_000, 50);
    } catch {
      assert.fail(`${what}: screen never matched ${re}\n---\n${await screen(target)}`);
    }
  };
  const atPrompt = async (target: string, what: string) => {
    const last = (text: string) => text.split('\n').filter((l) => l.trim() !== '').at(-1) ?? '';
    try {
      await waitFor(async () => /[#$]\s*$/.test(last(await screen(target))), 15_000, 50);
    } catch {
      assert.fail(`${what}: no prompt on the last line\n---\n${await screen(target)}`);
    }
  };
  const type = async (target: string, text: string) => {
    await tmux('send-keys', '-t', target, '-l', text);
  };
  const key = async (target: string, ...keys: string[]) => {
    await tmux('send-keys', '-t', target, ...keys);
  };

  before(async () => {
    h = await startSshHarness();
    sock = join(h.dir, 'tmux.sock');
  });
  after(async () => {
    await tmux('kill-server').catch(() => undefined);
    await h?.stop();
  });

  test('lines are decided one by one; a denied line never reaches the server; the recording replays to the same screen', async () => {
    await h.onServer('rm -f /tmp/tg-pty-denied /tmp/tg-pty-ctrlc');
    const env = h.sshEnv();
    const sshCmd = ['ssh', '-tt', '-q', ...h.sshArgs('alice+OPS-1'), '127.0.0.1'].map((a) => `'${a}'`).join(' ');
    // After ssh exits the pane keeps its last screen (sleep prints nothing).
    await run(
      'tmux',
      ['-S', sock, '-f', '/dev/null', 'new-session', '-d', '-s', 'live', '-x', String(COLS), '-y', String(ROWS), `${sshCmd}; sleep 600`],
      { env: { ...env, PS1: '' }, timeout: 10_000 },
    );
    await tmux('set-option', '-g', 'status', 'off');
    await atPrompt('live', 'first prompt');

    await type('live', 'echo hello-$((6*7))');
    await key('live', 'Enter');
    await until('live', /^hello-42$/m, 'allowed line output');

    // A denied line: it would create a file on the server.
    await type('live', 'rm -f /tmp/nothing; touch /tmp/tg-pty-denied');
    await key('live', 'Enter');
    await until('live', /taskgate: denied: .*rm/, 'denial message');
    await atPrompt('live', 'fresh prompt after the denial');
    const denied = await h.onServer('test -e /tmp/tg-pty-denied && echo present || echo absent');
    assert.equal(denied.stdout.trim(), 'absent', 'the denied line must never reach the server');

    // Editing: backspace and left-arrow insertion happen in the sidecar.
    await type('live', 'echo abX');
    await key('live', 'BSpace');
    await type('live', 'c-ac');
    await key('live', 'Left');
    await type('live', 'b');
    await key('live', 'Enter');
    await until('live', /^abc-abc$/m, 'edited line');

    // ^C drops the typed line: it is never sent.
    await type('live', 'touch /tmp/tg-pty-ctrlc');
    await key('live', 'C-c');
    await type('live', 'echo after-ctrl-c');
    await key('live', 'Enter');
    await until('live', /^after-ctrl-c$/m, 'line after ^C');
    const ctrlc = await h.onServer('test -e /tmp/tg-pty-ctrlc && echo present || echo absent');
    assert.equal(ctrlc.stdout.trim(), 'absent');

    await type('live', 'exit');
    await key('live', 'Enter');
    await waitFor(() => h.proxy.connections() === 0, 10_000);
    await new Promise((r) => setTimeout(r, 300));
    const live = await screen('live');

    // Audit: the shell session and each line as command events.
    const lines = h.audit.ofType('command').filter((e) => e.details?.kind === 'shell_line');
    assert.deepEqual(
      lines.map((e) => [e.command, e.decision]),
      [
        ['echo hello-$((6*7))', 'allow'],
        ['rm -f /tmp/nothing; touch /tmp/tg-pty-denied', 'deny'],
        ['echo abc-abc', 'allow'],
        ['echo after-ctrl-c', 'allow'],
        ['exit', 'allow'],
      ],
    );
    const shell = h.audit.ofType('command').find((e) => e.details?.kind === 'shell');
    assert.ok(shell, 'shell command event');
    const recording = String(shell.details?.recording);

    // Replay the recording with the CLI in a terminal of the same size: same screen.
    const cli = join(process.cwd(), 'bin', 'taskgate.js');
    await tmux('new-session', '-d', '-s', 'replay', '-x', String(COLS), '-y', String(ROWS), `node '${cli}' replay '${recording}' --dir '${h.recordings.dir}' --speed 0; sleep 600`);
    await until('replay', /after-ctrl-c/, 'replayed screen');
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(await screen('replay'), live);
  });
});
