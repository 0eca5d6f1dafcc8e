import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import { classifySql, loadSqlParser } from '../../../sidecar/postgres/classify.ts';
import { alignLineage, lineageOf, type ColumnLineage } from '../../../sidecar/postgres/lineage.ts';

async function lineage(sql: string): Promise<ColumnLineage[] | undefined> {
  const r = await classifySql(sql);
  return lineageOf(r.statements[0]!.node);
}

/** Per output column: sources (and `*schema.table` for stars, `?` when unknown). */
async function shape(sql: string): Promise<string[][]> {
  const l = await lineage(sql);
  assert.ok(l, `no lineage for ${sql}`);
  return l.map((c) => [...c.sources, ...c.stars.map((s) => `*${s}`), ...(c.unknown ? ['?'] : [])]);
}

before(async () => {
  await loadSqlParser();
});

describe('lineage: masked columns stay traceable through expressions', () => {
  const cases: [string, string[][]][] = [
    ["SELECT card || '' FROM customers", [['public.customers.card']]],
    ['SELECT upper(email) AS e FROM customers', [['public.customers.email']]],
    ['SELECT concat(first, last) FROM people', [['public.people.first', 'public.people.last']]],
    ["SELECT CASE WHEN vip THEN card ELSE 'n/a' END FROM customers", [['public.customers.card', 'public.customers.vip']]],
    ['SELECT card::text, CAST(ssn AS varchar) FROM customers', [['public.customers.card'], ['public.customers.ssn']]],
    ['SELECT c.card, o.total FROM customers c JOIN orders o ON o.cid = c.id', [['public.customers.card'], ['public.orders.total']]],
    ['SELECT (SELECT card FROM customers LIMIT 1) AS s, 1', [['public.customers.card'], []]],
    ['SELECT ARRAY(SELECT email FROM customers)', [['public.customers.email']]],
    ['WITH x AS (SELECT card AS k FROM customers) SELECT upper(k) FROM x', [['public.customers.card']]],
    ['WITH x(k) AS (SELECT card FROM customers) SELECT k FROM x', [['public.customers.card']]],
    ['SELECT s.k FROM (SELECT email AS k FROM customers) s', [['public.customers.email']]],
    ['SELECT kk FROM (SELECT email FROM customers) AS s(kk)', [['public.customers.email']]],
    ['SELECT * FROM (SELECT card, name FROM customers) s', [['public.customers.card'], ['public.customers.name']]],
    ['SELECT name FROM a UNION SELECT card FROM b', [['public.a.name', 'public.b.card']]],
    ['SELECT x, y FROM a UNION ALL SELECT p, q FROM b', [['public.a.x', 'public.b.p'], ['public.a.y', 'public.b.q']]],
    ['SELECT * FROM customers', [['*public.customers']]],
    ['SELECT c.* FROM customers c JOIN orders o ON true', [['*public.customers']]],
    ['SELECT row_to_json(c) FROM customers c', [['public.customers.c', '*public.customers']]],
    ['SELECT to_jsonb(c.*) FROM customers c', [['*public.customers']]],
    ['SELECT x FROM generate_series(1, 3) x', [['?']]],
    ['SELECT card FROM sales.customers', [['sales.customers.card']]],
    ['SELECT "Card Number" FROM "Customers"', [['public.Customers.Card Number']]],
    ['SELECT a FROM customers AS c(a, b)', [['*public.customers']]],
    ['SELECT max(card) OVER (PARTITION BY region) FROM customers', [['public.customers.card', 'public.customers.region']]],
    ['WITH RECURSIVE r(n, v) AS (SELECT 1, card FROM customers UNION ALL SELECT n + 1, v FROM r WHERE n < 3) SELECT v FROM r', [['public.customers.card']]],
    ["VALUES (1, 'x')", [[], []]],
    // correlated: an unqualified column may belong to the outer query; both are kept
    ['SELECT (SELECT card FROM settings LIMIT 1) FROM customers', [['public.customers.card', 'public.settings.card']]],
    ['SELECT * FROM pg_authid', [['*pg_catalog.pg_authid']]],
  ];
  for (const [sql, want] of cases) {
    it(sql, async () => {
      assert.deepEqual((await shape(sql)).map((x) => [...x].sort()), want.map((x) => [...x].sort()));
    });
  }
});

describe('lineage: statements with rows other than SELECT', () => {
  it('RETURNING lists', async () => {
    assert.deepEqual(await shape('DELETE FROM customers WHERE id = 1 RETURNING card, lower(email)'), [
      ['public.customers.card'],
      ['public.customers.email'],
    ]);
    assert.deepEqual(await shape("UPDATE customers c SET note = 'x' FROM cards k WHERE k.cid = c.id RETURNING k.pan"), [['public.cards.pan']]);
    assert.deepEqual(await shape('INSERT INTO t (a) VALUES (1) RETURNING *'), [['*public.t']]);
  });
  it('the query of COPY (query) TO, and the columns of COPY table TO', async () => {
    assert.deepEqual(await shape('COPY (SELECT upper(card) FROM customers) TO STDOUT'), [['public.customers.card']]);
    assert.deepEqual(await shape('COPY customers (card, name) TO STDOUT'), [['public.customers.card'], ['public.customers.name']]);
    assert.deepEqual(await shape('COPY customers TO STDOUT'), [['*public.customers']]);
  });
  it('no lineage for statements without rows; FETCH is unknown', async () => {
    assert.equal(await lineage('UPDATE t SET a = 1'), undefined);
    assert.equal(await lineage('CREATE TABLE t (a int)'), undefined);
    assert.equal(await lineage('COPY t FROM STDIN'), undefined);
    const f = await lineage('FETCH 5 FROM c');
    assert.ok(f && f[0]!.unknown && f[0]!.variable);
  });
  it('names output columns as PostgreSQL does', async () => {
    const l = await lineage('SELECT card, upper(email), card AS c2, 1, t.name::text FROM t');
    assert.deepEqual(l!.map((c) => c.name), ['card', 'upper', 'c2', '?column?', 'name']);
  });
});

describe('alignLineage', () => {
  it('spreads a single star over the columns RowDescription reports', async () => {
    const l = (await lineage('SELECT id, *, upper(email) FROM customers'))!;
    const a = alignLineage(l, 5);
    assert.equal(a.length, 5);
    assert.deepEqual(a[0]!.sources, ['public.customers.id']);
    assert.deepEqual(a[1]!.stars, ['public.customers']);
    assert.deepEqual(a[3]!.stars, ['public.customers']);
    assert.deepEqual(a[4]!.sources, ['public.customers.email']);
  });
  it('falls back to the union of everything, unknown, when positions cannot be known', async () => {
    const l = (await lineage('SELECT * FROM a, b'))!;
    const a = alignLineage(l, 4);
    assert.equal(a.length, 4);
    for (const c of a) {
      assert.deepEqual(c.stars, ['public.a', 'public.b']);
      assert.equal(c.unknown, true);
    }
  });
});
