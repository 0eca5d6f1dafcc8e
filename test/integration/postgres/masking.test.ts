import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { serialize } from 'pg-protocol';
import { decodeDataRow } from '../../../sidecar/postgres/codec/backend.ts';
import { startHarness, type Harness } from './harness.ts';
import { rawSession } from './raw-client.ts';
import { luhnValid as luhn } from '../../../core/mask/index.ts';


describe('postgres sidecar: masking and result limits', { timeout: 180_000 }, () => {
  let h: Harness;
  before(async () => {
    h = await startHarness();
    await h.pg.psql(`CREATE TABLE customers (id int primary key, name text, email text, card text);
      INSERT INTO customers VALUES (1, 'Ann', 'ann@example.com', '4111111111111111'), (2, 'Ben', 'ben@example.org', '5500005555555559');`);
  });
  after(async () => {
    await h?.stop();
  });

  it('masks the card column (partial, last 4, Luhn-valid) and email (redact) for a support task; counts in audit', async () => {
    const c = h.client('SUP-1');
    await c.connect();
    try {
      const r = await c.query('SELECT id, name, email, card FROM customers ORDER BY id');
      assert.equal(r.rows[0].name, 'Ann');
      assert.notEqual(r.rows[0].email, 'ann@example.com');
      assert.doesNotMatch(String(r.rows[0].email), /ann@/);
      const card = String(r.rows[0].card).replace(/\D/g, '');
      assert.notEqual(card, '4111111111111111');
      assert.ok(card.endsWith('1111'), `kept last 4: ${r.rows[0].card}`);
      assert.ok(luhn(card), 'partial card stays Luhn-valid');
      const ev = h.audit.ofType('command').findLast((e) => e.command?.includes('FROM customers'));
      assert.equal(ev?.masked?.card, 2);
      assert.equal(ev?.masked?.email, 2);
      assert.equal(ev?.rows, 2);
    } finally {
      await c.end();
    }
  });

  it('expressions over masked columns stay masked: upper(email), card || \'\', a CTE, and SELECT *', async () => {
    const c = h.client('SUP-1');
    await c.connect();
    try {
      const up = await c.query('SELECT upper(email) AS e FROM customers WHERE id = 1');
      assert.doesNotMatch(String(up.rows[0].e), /ANN@EXAMPLE/);
      const cat = await c.query("SELECT card || '' AS c FROM customers WHERE id = 1");
      assert.notEqual(String(cat.rows[0].c), '4111111111111111');
      const cte = await c.query('WITH x AS (SELECT card AS k FROM customers) SELECT k FROM x ORDER BY k LIMIT 1');
      assert.doesNotMatch(String(cte.rows[0].k), /^4111111111111111$|^5500005555555559$/);
      const star = await c.query('SELECT * FROM customers WHERE id = 2');
      assert.notEqual(star.rows[0].card, '5500005555555559');
      assert.equal(star.rows[0].name, 'Ben');
    } finally {
      await c.end();
    }
  });

  it('psql (simple protocol) sees masked values; an unmasked task sees the data', async () => {
    const sup = await h.psql('SUP-1', ['-At', '-c', 'SELECT card FROM customers WHERE id = 1']);
    assert.equal(sup.code, 0, sup.stderr);
    assert.notEqual(sup.stdout.trim(), '4111111111111111');
    const ops = await h.psql('OPS-1', ['-At', '-c', 'SELECT card FROM customers WHERE id = 1']);
    assert.equal(ops.stdout.trim(), '4111111111111111');
  });

  it('binary result format: text columns masked, other masked columns become NULL', async () => {
    // A raw extended-protocol exchange requesting binary results for every column.
    const c = h.client('SUP-1');
    await c.connect();
    try {
      const r = await c.query({ text: 'SELECT email FROM customers WHERE id = 1', binary: true } as { text: string });
      const v = r.rows[0].email as unknown;
      const s = Buffer.isBuffer(v) ? v.toString('utf8') : String(v);
      assert.doesNotMatch(s, /ann@example\.com/);
    } finally {
      await c.end();
    }
  });

  it('extended protocol without Describe: the sidecar describes the portal itself and still masks', async () => {
    const s = await rawSession(h.proxy.address.port, { user: 'alice', database: 'postgres', options: '-c taskgate.task=SUP-1' }, h.alice);
    try {
      const r = await s.roundtrip(
        Buffer.concat([
          serialize.parse({ text: 'SELECT card FROM customers WHERE id = $1' }),
          serialize.bind({ values: ['1'] }),
          serialize.execute({}),
          serialize.sync(),
        ]),
      );
      const types = r.raw.map((m) => String.fromCharCode(m[0]!)).join('');
      assert.equal(types, '12DCZ', 'no RowDescription leaks to a client that did not ask for one');
      const row = decodeDataRow(r.raw[2]!.subarray(5));
      assert.notEqual(row[0]!.toString(), '4111111111111111');
      assert.ok(row[0]!.toString().endsWith('1111'));
    } finally {
      s.close();
    }
  });

  it('max_rows obligation ends the result with a clear error; the session stays usable', async () => {
    const c = h.client('LIM-1');
    await c.connect();
    try {
      await assert.rejects(c.query('SELECT g FROM generate_series(1, 100000) g'), (e: { code?: string; message: string }) => e.code === '54000' && /max_rows 5/.test(e.message));
      const ok = await c.query('SELECT g FROM generate_series(1, 3) g');
      assert.equal(ok.rows.length, 3);
      const r = await h.psql('LIM-1', ['-At', '-c', 'SELECT g FROM generate_series(1, 50) g', '-c', 'SELECT 42']);
      assert.match(r.stderr, /max_rows 5/);
      assert.match(r.stdout, /42/);
    } finally {
      await c.end();
    }
  });
});
