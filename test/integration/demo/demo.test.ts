import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const BIN = join(import.meta.dirname, '../../../bin/taskgate.js');

describe('taskgate demo', () => {
  it('plays the story end to end on embedded defaults and exits cleanly with --exit', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tg-demo-'));
    const r = await new Promise<{ code: number; out: string; err: string }>((resolve) => {
      const p = spawn(process.execPath, [BIN, 'demo', '--exit', '--port', '0', '--dir', join(dir, 'demo')], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      let err = '';
      p.stdout.on('data', (d) => (out += d));
      p.stderr.on('data', (d) => (err += d));
      const t = setTimeout(() => p.kill('SIGKILL'), 180_000);
      p.on('close', (code) => {
        clearTimeout(t);
        resolve({ code: code ?? -1, out, err });
      });
    });
    assert.equal(r.code, 0, r.err + r.out);
    assert.match(r.out, /\[5\/5\] starting the sidecar/);
    // 1. allowed, masked
    assert.match(r.out, /allowed; card numbers and emails are masked/);
    assert.ok(!r.out.includes('4111 1111 1111 1111') && !r.out.includes('jane.roe@example.com'), 'no card number or email in clear');
    assert.match(r.out, /41 \| tok_\w+ \| 4\d{3} 0000 0006 1111/);
    // 2. denied DROP
    assert.match(r.out, /denied \(SQLSTATE 42501\): .*DROP TABLE.*OPS-123/);
    // 3. held, approved, done
    assert.match(r.out, /held for review rv_[\w-]+; bob approves it/);
    assert.match(r.out, /done: UPDATE 1/);
    // 4. the evidence
    assert.match(r.out, /review_approved\s+│ alice@example.com/);
    assert.match(r.out, /decision\s+│ alice@example.com\s+│ DROP TABLE orders\s+│ deny/);
    assert.ok(!/oidc-provider WARNING/.test(r.out + r.err), 'no development warnings in the demo output');
  });
  it('stops cleanly on Ctrl-C, which a terminal sends to PostgreSQL too (the whole process group)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tg-demo-'));
    // detached: the demo leads a process group of its own, as a shell job in a terminal does.
    const p = spawn(process.execPath, [BIN, 'demo', '--port', '0', '--dir', join(dir, 'demo')], { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    let out = '';
    let err = '';
    p.stderr.on('data', (d) => (err += d));
    const closed = new Promise<number>((resolve) => p.on('close', (code) => resolve(code ?? -1)));
    const t = setTimeout(() => process.kill(-p.pid!, 'SIGKILL'), 180_000);
    await new Promise<void>((resolve) =>
      p.stdout.on('data', (d) => {
        out += d;
        if (out.includes('Ctrl-C stops everything.')) resolve();
      }),
    );
    // A second later, as a user reads the output first (sent at once, the demo won the race and hid the bug).
    await new Promise((r) => setTimeout(r, 1000));
    process.kill(-p.pid!, 'SIGINT');
    const code = await closed;
    clearTimeout(t);
    assert.equal(code, 0, err + out);
    assert.match(out, /stopping \.\.\.\n/);
    assert.ok(!/Unhandled|Error:|^\s+at /m.test(err + out.slice(out.indexOf('stopping'))), `no crash on the way out:\n${err}${out}`);
  });
});
