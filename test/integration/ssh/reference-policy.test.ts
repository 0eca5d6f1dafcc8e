/**
 * The SSH sidecar against the reference policies (policies/, compiled with the
 * real compiler) and the task-type catalog: what a deployment runs.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { buildBundle } from '../../../compiler/build.ts';
import { startSshHarness, task, type SshHarness } from './harness.ts';

describe('ssh sidecar with the reference policies', () => {
  let h: SshHarness;
  before(async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tg-ref-bundle-'));
    try {
      await buildBundle({ dir: 'policies', out: join(dir, 'bundle.tar.gz') });
      const bundle = await readFile(join(dir, 'bundle.tar.gz'));
      h = await startSshHarness({ bundle, tasks: [task('RO-1', 'read-only'), task('DEP-1', 'deploy')] });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
  after(async () => {
    await h?.stop();
  });

  test('read-only: reading is allowed and card numbers in the output are masked', async () => {
    await h.onServer(`printf 'order 1 card 4242 4242 4242 4242 ok\\n' > /tmp/tg-ref-orders.txt`);
    const r = await h.ssh('alice+RO-1', ['127.0.0.1', 'cat /tmp/tg-ref-orders.txt | grep card']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^order 1 card \d{4} \d{4} \d{4} 4242 ok\n$/);
    assert.ok(!r.stdout.includes('4242 4242 4242 4242'));
  });

  test('read-only: bypass shapes are denied with the catalog reason', async () => {
    for (const cmd of ['ls; rm -rf /tmp/x', 'echo $(rm x)', 'bash -c "rm x"', 'cat /etc/hostname | sh', 'find / -name x -exec rm {} \\;', 'X=rm; $X y', 'echo hi > /etc/motd']) {
      const r = await h.ssh('alice+RO-1', ['127.0.0.1', cmd]);
      assert.equal(r.code, 126, `${cmd}: ${r.stderr}`);
      assert.match(r.stderr, /taskgate: denied: .*(not allowed|computed at run time|redirection)/, cmd);
    }
  });

  test('read-only: sftp and port forwarding are denied', async () => {
    const fwd = await h.ssh('alice+RO-1', ['-W', '127.0.0.1:9', '127.0.0.1']);
    assert.notEqual(fwd.code, 0);
    const d = h.audit.ofType('decision').filter((e) => e.task_id === 'RO-1').at(-1);
    assert.equal(d?.command, 'direct-tcpip 127.0.0.1:9');
    assert.equal(d?.decision, 'deny');
  });

  test('deploy: an interactive shell is not a kind the task type grants', async () => {
    const r = await h.ssh('alice+DEP-1', ['-tt', '127.0.0.1'], { input: 'exit\n' });
    assert.equal(r.code, 126, r.stderr);
    assert.match(r.stdout + r.stderr, /shell denied/);
  });
});
