import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import { loadSqlParser, SqlClassifier } from '../../../sidecar/postgres/classify.ts';
import { lineageOf } from '../../../sidecar/postgres/lineage.ts';
import { mulberry32 } from '../../support/random.ts';

const CORPUS = [
  "WITH d AS (DELETE FROM t WHERE id = 1 RETURNING *) SELECT * FROM d",
  "SELECT a, upper(b) FROM x JOIN y USING (id) WHERE c = 'it''s' ORDER BY 1 FOR UPDATE",
  "COPY (SELECT * FROM t) TO PROGRAM 'gzip > /tmp/x'",
  "DO $body$ BEGIN RAISE NOTICE 'x'; END $body$",
  "PREPARE p (int) AS UPDATE t SET v = $1 WHERE id = $2; EXECUTE p(1, 2)",
  "SELECT E'\\x41', U&'d\\0061t', B'101', X'1F', 1.5e3, $$dollar$$ /* c */ -- d",
  'CREATE FUNCTION f() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$',
];

// A hang or runaway parse, not a slow machine: one classification took 201 ms on a loaded 2-core VM.
const MAX_MS_PER_TEXT = 1000;

function check(c: SqlClassifier, text: string): void {
  const t0 = performance.now();
  const r = c.classifySync(text);
  const ms = performance.now() - t0;
  assert.ok(ms < MAX_MS_PER_TEXT, `classification took ${ms.toFixed(1)} ms for ${JSON.stringify(text.slice(0, 80))}`);
  for (const cs of r.statements) {
    const s = cs.statement;
    assert.equal(typeof s.command, 'string');
    assert.ok(s.command.length > 0);
    if (s.class === 'unparseable') assert.ok(s.command === 'UNPARSEABLE' || s.command === 'EXECUTE' || s.command === 'CREATE TABLE AS');
    else assert.ok(cs.node !== undefined);
    assert.ok(Array.isArray(s.tables) && Array.isArray(s.functions) && Array.isArray(s.flags));
    lineageOf(cs.node); // must not throw either
  }
}

before(async () => {
  await loadSqlParser();
});

describe('classifier fuzz: never throws, bounded time', () => {
  const seed = Number(process.env.FUZZ_SEED ?? 20240611);
  it(`random bytes (seed ${seed})`, () => {
    const c = new SqlClassifier({ cacheEntries: 0 });
    const r = mulberry32(seed);
    for (let i = 0; i < 1500; i++) {
      const len = Math.floor(r() * 64);
      const bytes = Buffer.alloc(len);
      for (let j = 0; j < len; j++) bytes[j] = Math.floor(r() * 256);
      check(c, bytes.toString('utf8'));
      check(c, bytes.toString('latin1'));
    }
  });
  it(`truncated and spliced SQL (seed ${seed})`, () => {
    const c = new SqlClassifier({ cacheEntries: 0 });
    const r = mulberry32(seed + 1);
    for (const sql of CORPUS) {
      for (let cut = 0; cut <= sql.length; cut++) check(c, sql.slice(0, cut));
      for (let i = 0; i < 100; i++) {
        const a = Math.floor(r() * sql.length);
        const b = Math.floor(r() * sql.length);
        const other = CORPUS[Math.floor(r() * CORPUS.length)]!;
        check(c, sql.slice(0, a) + other.slice(b));
      }
    }
  });
  it('token soup from SQL keywords and punctuation', () => {
    const c = new SqlClassifier({ cacheEntries: 0 });
    const r = mulberry32(seed + 2);
    const toks = ['SELECT', 'FROM', 'WITH', 'AS', '(', ')', ',', ';', 'DELETE', 'UPDATE', 'SET', 'WHERE', 'RETURNING', '*', 't', 'x.y', "'s'", '$1', '$$', 'EXPLAIN', 'ANALYZE', 'PREPARE', 'EXECUTE', 'COPY', 'TO', 'PROGRAM', 'FOR', 'UPDATE', 'UNION', 'VALUES', 'f(', 'INSERT', 'INTO', 'DO', '/*', '*/', '--', '\n', 'LATERAL', 'JOIN', 'ON', 'true'];
    for (let i = 0; i < 1500; i++) {
      const n = 1 + Math.floor(r() * 14);
      const parts: string[] = [];
      for (let j = 0; j < n; j++) parts.push(toks[Math.floor(r() * toks.length)]!);
      check(c, parts.join(' '));
    }
  });
});
