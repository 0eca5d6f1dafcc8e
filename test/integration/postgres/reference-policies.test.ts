import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { buildBundle } from '../../../compiler/build.ts';
import { startHarness, task, type Harness } from './harness.ts';

/** The shipped policies/ (task-type catalog + Rego) enforced by the sidecar end to end. */
describe('postgres sidecar with the reference policies (policies/)', { timeout: 180_000 }, () => {
  let h: Harness;
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tg-ref-policies-'));
    const out = join(dir, 'bundle.tar.gz');
    await buildBundle({ dir: 'policies', out });
    h = await startHarness({ policyBundle: await readFile(out), proxy: { maskHashKey: 'hex:' + 'ab'.repeat(32) } });
    h.tasks.put(task('RO-1', 'read-only'));
    await h.pg.psql(`CREATE TABLE orders (id int primary key, total int);
      CREATE TABLE customers (id int primary key, email text, card_number text);
      INSERT INTO orders VALUES (1, 10), (2, 20);
      INSERT INTO customers VALUES (1, 'ann@example.com', '4111111111111111');`);
  });
  after(async () => {
    await h?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('a read-only task: SELECT runs, DROP TABLE is denied with the policy reasons', async () => {
    const ok = await h.psql('RO-1', ['-At', '-c', 'SELECT sum(total) FROM orders']);
    assert.equal(ok.stdout.trim(), '30', ok.stderr);
    const drop = await h.psql('RO-1', ['-At', '-c', 'DROP TABLE orders']);
    assert.match(drop.stderr, /ERROR: {2}taskgate denied DROP TABLE on public\.orders for task RO-1: .*not allowed for task type read-only/);
    assert.equal((await h.pg.psql("SELECT to_regclass('public.orders') IS NOT NULL")).trim(), 't');
  });

  it('a read-only task sees card numbers partially masked and emails as keyed tokens', async () => {
    const c = h.client('RO-1');
    await c.connect();
    try {
      const r = await c.query('SELECT email, card_number FROM customers');
      assert.notEqual(r.rows[0].email, 'ann@example.com');
      assert.doesNotMatch(String(r.rows[0].email), /ann/);
      assert.ok(String(r.rows[0].card_number).replace(/\D/g, '').endsWith('1111'));
      assert.notEqual(String(r.rows[0].card_number).replace(/\D/g, ''), '4111111111111111');
      const again = await c.query('SELECT email FROM customers');
      assert.equal(again.rows[0].email, r.rows[0].email, 'hash tokens are deterministic (masked values still join)');
    } finally {
      await c.end();
    }
  });
});
