import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { serialize } from 'pg-protocol';
import { startHarness, task, type Harness } from './harness.ts';

describe('postgres sidecar: sessions and statements through real PostgreSQL', { timeout: 120_000 }, () => {
  let h: Harness;
  before(async () => {
    h = await startHarness();
    await h.pg.psql('CREATE TABLE items (id int primary key, name text); INSERT INTO items SELECT g, $$item$$ || g FROM generate_series(1, 10) g');
  });
  after(async () => {
    await h?.stop();
  });

  it('psql runs a query with the OIDC token as password and the task in PGOPTIONS', async () => {
    const r = await h.psql('OPS-1', ['-At', '-c', 'SELECT count(*), current_user FROM items']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), '10|taskgate_svc');
    const cmd = h.audit.ofType('command').find((e) => e.command?.includes('count'));
    assert.ok(cmd, 'a command audit event');
    assert.equal(cmd.subject, 'alice@example.com');
    assert.equal(cmd.task_id, 'OPS-1');
    assert.equal(cmd.decision, 'allow');
    assert.equal(cmd.rows, 1);
    assert.ok(h.audit.ofType('session_start').length >= 1);
  });

  it('a denied statement gets 42501 naming the command, reason and task; the session stays usable', async () => {
    const r = await h.psql('OPS-1', ['-At', '-c', 'DROP TABLE items', '-c', 'SELECT count(*) FROM items']);
    assert.match(r.stderr, /taskgate denied DROP TABLE on public\.items for task OPS-1: DROP TABLE is not allowed for data-fix tasks/);
    assert.equal(r.stdout.trim(), '10');
    const c = h.client('OPS-1');
    await c.connect();
    try {
      await assert.rejects(c.query('DROP TABLE items'), (e: { code?: string }) => e.code === '42501');
      const res = await c.query('SELECT count(*)::int AS n FROM items');
      assert.equal(res.rows[0].n, 10);
    } finally {
      await c.end();
    }
  });

  it('multi-statement string: one denied statement means none runs', async () => {
    const r = await h.psql('OPS-1', ['-At', '-c', "INSERT INTO items VALUES (100, 'x'); DROP TABLE items"]);
    assert.match(r.stderr, /42501|taskgate denied/);
    assert.equal((await h.pg.psql('SELECT count(*) FROM items WHERE id = 100')).trim(), '0');
  });

  it('a denied statement inside BEGIN leaves the transaction failed until ROLLBACK; savepoints work', async () => {
    const c = h.client('OPS-1');
    await c.connect();
    try {
      await c.query('BEGIN');
      await c.query("INSERT INTO items VALUES (200, 'in tx')");
      await assert.rejects(c.query('DROP TABLE items'), (e: { code?: string }) => e.code === '42501');
      await assert.rejects(c.query('SELECT 1'), (e: { code?: string }) => e.code === '25P02');
      await c.query('ROLLBACK');
      assert.equal((await c.query('SELECT count(*)::int AS n FROM items WHERE id = 200')).rows[0].n, 0);
      await c.query('BEGIN');
      await c.query("INSERT INTO items VALUES (201, 'kept')");
      await c.query('SAVEPOINT s1');
      await assert.rejects(c.query('DROP TABLE items'), (e: { code?: string }) => e.code === '42501');
      await c.query('ROLLBACK TO SAVEPOINT s1');
      await c.query("INSERT INTO items VALUES (202, 'kept too')");
      await c.query('COMMIT');
      assert.equal((await c.query('SELECT count(*)::int AS n FROM items WHERE id IN (201, 202)')).rows[0].n, 2);
    } finally {
      await c.end();
    }
  });

  it('pg driver: prepared statements, named and unnamed, with a denied Parse in the middle of a pipeline', async () => {
    const c = h.client('OPS-1');
    await c.connect();
    try {
      const results = await Promise.allSettled([
        c.query({ name: 'by_id', text: 'SELECT name FROM items WHERE id = $1', values: [3] }),
        c.query({ text: 'SELECT id FROM items WHERE id < $1 ORDER BY id', values: [4] }),
        c.query({ name: 'drop_it', text: 'DROP TABLE items' }),
        c.query({ name: 'by_id', text: 'SELECT name FROM items WHERE id = $1', values: [5] }),
      ]);
      assert.equal(results[0].status, 'fulfilled');
      assert.deepEqual((results[0] as PromiseFulfilledResult<{ rows: unknown[] }>).value.rows, [{ name: 'item3' }]);
      assert.deepEqual((results[1] as PromiseFulfilledResult<{ rows: unknown[] }>).value.rows, [{ id: 1 }, { id: 2 }, { id: 3 }]);
      assert.equal(results[2].status, 'rejected');
      assert.equal(((results[2] as PromiseRejectedResult).reason as { code: string }).code, '42501');
      assert.deepEqual((results[3] as PromiseFulfilledResult<{ rows: unknown[] }>).value.rows, [{ name: 'item5' }]);
    } finally {
      await c.end();
    }
  });

  it('COPY in and out through the proxy', async () => {
    const r = await h.psql('OPS-1', ['-At', '-c', "\\copy items FROM STDIN WITH (FORMAT csv)", '-c', 'SELECT count(*) FROM items WHERE id >= 1000'], {
      input: '1000,a\n1001,b\n1002,c\n',
    });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim().split('\n').pop(), '3');
    const out = await h.psql('OPS-1', ['-At', '-c', 'COPY (SELECT id, name FROM items WHERE id >= 1000 ORDER BY id) TO STDOUT WITH (FORMAT csv)']);
    assert.equal(out.stdout, '1000,a\n1001,b\n1002,c\n');
  });

  it('a held DELETE: NOTICE names the review and reviewers; runs once approved; denied review => 42501', async () => {
    const c = h.client('OPS-1');
    const notices: string[] = [];
    c.on('notice', (n) => notices.push(n.message ?? ''));
    await c.connect();
    try {
      const stop = h.reviews.onRequest((id) => setTimeout(() => h.reviews.approve(id, { subject: 'bob@example.com', groups: [] }), 100));
      const res = await c.query('DELETE FROM items WHERE id = 1000');
      stop();
      assert.equal(res.rowCount, 1);
      assert.match(notices.join('\n'), /held for review rv_[\w-]+ \(task OPS-1\); waiting for approval by bob@example\.com/);
      const ev = h.audit.ofType('command').find((e) => e.command?.startsWith('DELETE') && e.decision === 'allow');
      assert.ok(ev?.review_id?.startsWith('rv_'));
      assert.deepEqual(ev?.approvers, ['bob@example.com']);

      const stop2 = h.reviews.onRequest((id) => setTimeout(() => h.reviews.deny(id, { subject: 'bob@example.com', groups: [] }, 'not today'), 100));
      await assert.rejects(c.query('DELETE FROM items WHERE id = 1001'), (e: { code?: string; message: string }) => e.code === '42501' && /not today/.test(e.message));
      stop2();
      assert.equal((await c.query('SELECT count(*)::int AS n FROM items WHERE id = 1001')).rows[0].n, 1);
    } finally {
      await c.end();
    }
  });

  it('cancel: the client key maps to the upstream backend (pg_sleep is interrupted)', async () => {
    const c = h.client('OPS-1');
    await c.connect();
    try {
      const t0 = Date.now();
      const q = c.query('SELECT pg_sleep(20)');
      await new Promise((r) => setTimeout(r, 300));
      // A CancelRequest on a new connection with the key the sidecar issued to this client.
      const { processID, secretKey } = c as unknown as { processID: number; secretKey: number };
      const sock = connect(h.proxy.address.port, '127.0.0.1');
      await once(sock, 'connect');
      sock.end(serialize.cancel(processID, secretKey));
      await assert.rejects(q, (e: { code?: string }) => e.code === '57014');
      assert.ok(Date.now() - t0 < 10_000);
      assert.equal((await c.query('SELECT 1 AS x')).rows[0].x, 1);
    } finally {
      await c.end();
    }
  });

  it('closing the task ends its open sessions', async () => {
    h.tasks.put(task('END-1', 'data-fix'));
    const c = h.client('END-1');
    c.on('error', () => undefined);
    await c.connect();
    assert.equal((await c.query('SELECT 1 AS x')).rows[0].x, 1);
    h.tasks.end('END-1', 'closed');
    await assert.rejects(c.query('SELECT 1'), /task END-1 is closed|Connection terminated/);
    await c.end().catch(() => undefined);
  });

  it('refuses: a bad token (28P01), no task id (28000), a task of someone else (42501 per statement)', async () => {
    const bad = await h.psql('OPS-1', ['-c', 'SELECT 1'], { token: 'not-a-jwt' });
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /OIDC token rejected/);
    const noTask = await h.psql('OPS-1', ['-c', 'SELECT 1'], { env: { PGOPTIONS: '' } });
    assert.match(noTask.stderr, /no task id/);
    const other = await h.psql('BOB-1', ['-c', 'SELECT 1']);
    assert.match(other.stderr, /taskgate denied SELECT for task BOB-1: task is unknown, not open, or not assigned to you/);
    const viaApp = await h.psql('OPS-1', ['-At', '-c', 'SELECT 7'], { env: { PGOPTIONS: '', PGAPPNAME: 'taskgate:OPS-1' } });
    assert.equal(viaApp.stdout.trim(), '7', viaApp.stderr);
    const role = await h.psql('OPS-1', ['-c', 'SELECT 1'], { env: { PGOPTIONS: '-c taskgate.task=OPS-1 -c role=postgres' } });
    assert.match(role.stderr, /startup option -c role is not allowed/);
  });
});
