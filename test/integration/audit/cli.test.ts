import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { SpoolAuditSink } from '../../../core/audit/spool-sink.ts';
import { listSegments } from '../../../core/audit/spool/writer.ts';

const run = promisify(execFile);
const bin = fileURLToPath(new URL('../../../bin/taskgate.js', import.meta.url));
let root: string;

async function cli(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  try {
    const r = await run(process.execPath, [bin, 'audit', ...args, '--spool', root], { timeout: 60_000 });
    return { code: 0, out: r.stdout, err: r.stderr };
  } catch (e) {
    const x = e as { code: number; stdout: string; stderr: string };
    return { code: x.code, out: x.stdout, err: x.stderr };
  }
}

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'tg-audit-cli-'));
  const sink = await SpoolAuditSink.open({ dir: join(root, 'events') });
  sink.emit({ type: 'decision', task_id: 'OPS-123', subject: 'alice', protocol: 'postgres', resource: 'orders-db', command: 'SELECT 1', decision: 'allow' });
  sink.emit({ type: 'decision', task_id: 'OPS-123', subject: 'alice', protocol: 'postgres', resource: 'orders-db', command: 'DROP TABLE orders', decision: 'deny', reasons: ['not in task'] });
  sink.emit({ type: 'decision', task_id: 'OPS-9', subject: 'bob', decision: 'allow' });
  await sink.flush();
  await sink.close();
});
after(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('taskgate audit (embedded: chDB over the spool)', () => {
  it('task shows the timeline of that task only', async () => {
    const r = await cli('task', 'OPS-123', '-f', 'csv');
    assert.equal(r.code, 0, r.err);
    const lines = r.out.trim().split('\n');
    assert.equal(lines.length, 3);
    assert.match(lines[2]!, /DROP TABLE orders.*deny/);
  });

  it('query runs SQL with json output', async () => {
    const r = await cli('query', "SELECT subject, count() AS n FROM events FINAL WHERE decision = 'allow' GROUP BY subject ORDER BY subject", '-f', 'json');
    assert.equal(r.code, 0, r.err);
    const rows = r.out.trim().split('\n').map((l) => JSON.parse(l) as { subject: string; n: string | number });
    assert.deepEqual(rows.map((x) => [x.subject, Number(x.n)]), [['alice', 1], ['bob', 1]]);
  });

  it('tail --no-follow prints the newest events', async () => {
    const r = await cli('tail', '--no-follow', '-n', '2');
    assert.equal(r.code, 0, r.err);
    assert.equal(r.out.trim().split('\n').length, 2);
    assert.match(r.out, /OPS-9/);
  });

  it('verify passes, then fails with exit 2 after an event is altered in the spool', async () => {
    assert.equal((await cli('verify')).code, 0);
    const [seg] = await listSegments(join(root, 'events'));
    const p = join(root, 'events', seg!);
    const { crcHex } = await import('../../../core/audit/row.ts');
    const ls = (await readFile(p, 'utf8')).split('\n').filter(Boolean);
    const body = ls[1]!.slice(0, -19).replace('"deny"', '"allow"');
    ls[1] = body + ',"_crc":"' + crcHex(body) + '"}';
    await writeFile(p, ls.join('\n') + '\n');
    const r = await cli('verify');
    assert.equal(r.code, 2);
    assert.match(r.out, /ALTERED .* seq 2/);
  });

  it('an unknown task is a clear not_found error', async () => {
    const r = await cli('task', 'NOPE-1');
    assert.equal(r.code, 1);
    assert.match(r.err, /error\[not_found\]: no audit events for task NOPE-1/);
  });
});
