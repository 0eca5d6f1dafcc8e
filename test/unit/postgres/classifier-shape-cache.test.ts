import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import { classifySqlSync, loadSqlParser } from '../../../sidecar/postgres/classify.ts';
import { createSqlClassifier, shapeKey } from '../../../sidecar/postgres/classifier.ts';
import type { SqlClassifier } from '../../../sidecar/postgres/classifier-port.ts';

const TEMPLATES = [
  'SELECT abalance FROM pgbench_accounts WHERE aid = #',
  'UPDATE pgbench_accounts SET abalance = abalance + # WHERE aid = #',
  'UPDATE pgbench_tellers SET tbalance = tbalance + -# WHERE tid = #',
  'INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (#, #, #, #, CURRENT_TIMESTAMP)',
  'SELECT * FROM orders WHERE id IN (#, #) LIMIT # OFFSET #',
  'DELETE FROM t1 WHERE x > #.5 AND y < #e3',
  'WITH d AS (DELETE FROM orders WHERE id = # RETURNING *) SELECT * FROM d',
  'SELECT pg_terminate_backend(#)',
  'SET statement_timeout = #',
  'PREPARE p# AS SELECT # FROM t2',
  'SELECT # ; DROP TABLE items',
  'SELECT a FROM t WHERE b = # FOR UPDATE',
  'SELEC # broken',
];

const rnd = () => String(Math.floor(Math.random() * 100000));

describe('classifier shape cache (numeric literals)', () => {
  let classify: SqlClassifier;
  before(async () => {
    await loadSqlParser();
    classify = await createSqlClassifier();
  });

  it('a shape-cache hit equals a fresh classification of the same text', async () => {
    for (const t of TEMPLATES) {
      for (let i = 0; i < 5; i++) {
        const text = t.replace(/#/g, rnd);
        const got = await classify(text, { message: 'query', prepared: new Map() });
        const fresh = classifySqlSync(text, { message: 'query' });
        assert.deepEqual(got.statements, fresh.request.statements, text);
      }
    }
  });

  it('texts with quotes, dollars, comments, backslashes, non-ASCII or EXECUTE are not shape-cached', () => {
    for (const t of [
      "SELECT 'a' || 1",
      'SELECT "x" FROM t WHERE id = 1',
      'SELECT $1',
      'SELECT $$1$$',
      'SELECT 1 -- comment',
      'SELECT 1 /* c */',
      'SELECT E\\x',
      'SELECT 1 AS zoë',
      'EXECUTE p(1)',
      'execute p(1)',
    ]) {
      assert.equal(shapeKey(t), undefined, t);
    }
  });

  it('keys never collide with operators or identifiers', () => {
    assert.notEqual(shapeKey('SELECT a ? b'), shapeKey('SELECT a 5 b'));
    assert.notEqual(shapeKey('SELECT t1 FROM x'), shapeKey('SELECT t2 FROM x'));
    assert.notEqual(shapeKey('SELECT 1 FROM x'), shapeKey('SELECT a FROM x'));
    assert.equal(shapeKey('SELECT 1 FROM x WHERE y = 2.5e3'), shapeKey('SELECT 77 FROM x WHERE y = 9'));
  });

  it('unparseable text is classified afresh every time (error positions differ)', async () => {
    const a = await classify('SELECT 1 FROM WHERE', { message: 'query', prepared: new Map() });
    const b = await classify('SELECT 12345 FROM WHERE', { message: 'query', prepared: new Map() });
    assert.equal(a.statements[0]!.class, 'unparseable');
    assert.notDeepEqual(a.statements[0], b.statements[0]);
  });
});
