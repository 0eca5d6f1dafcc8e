import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { serialize } from 'pg-protocol';
import { ALLOW_ALL_POLICY, startHarness, type Harness } from './harness.ts';
import { rawSession } from './raw-client.ts';

const run = promisify(execFile);

/** Queries whose results must be byte-identical through the proxy and direct. */
const CORPUS = [
  'SELECT 1',
  "SELECT 'zoë 💳'::text AS t, NULL::int AS n, 1.5::numeric AS x, now()::date - now()::date AS d",
  'SELECT g, md5(g::text) FROM generate_series(1, 500) g',
  'SELECT * FROM corpus ORDER BY id',
  'SELECT count(*), sum(id) FROM corpus',
  "SELECT '{\"a\": [1, 2]}'::jsonb, ARRAY[1,2,3], '\\x00ff'::bytea, interval '1 day 2 hours'",
  'SELECT 1; SELECT 2',
  'SELECT * FROM corpus WHERE false',
  'SELECT 1/0',
  'SELECT nosuchcolumn FROM corpus',
  'SELEC broken syntax',
  'BEGIN; SELECT 1; COMMIT',
  'SHOW server_version_num',
  '',
];

describe('postgres sidecar: transparency in allow-all mode, fuzz, streaming, pgbench', { timeout: 300_000 }, () => {
  let h: Harness;
  before(async () => {
    h = await startHarness({ policy: ALLOW_ALL_POLICY });
    await h.pg.psql("CREATE TABLE corpus (id int primary key, v text, j jsonb); INSERT INTO corpus SELECT g, repeat('v', g % 17), jsonb_build_object('g', g) FROM generate_series(1, 300) g");
  });
  after(async () => {
    await h?.stop();
  });

  it('a query corpus gives byte-identical backend messages through the proxy and direct', async () => {
    const direct = await rawSession(h.pg.port, { user: 'direct_pw', database: 'postgres' }, 'direct-secret');
    const proxied = await rawSession(h.proxy.address.port, { user: 'alice', database: 'postgres', options: '-c taskgate.task=OPS-1' }, h.alice);
    try {
      for (const q of CORPUS) {
        const a = await direct.roundtrip(serialize.query(q));
        const b = await proxied.roundtrip(serialize.query(q));
        // ErrorResponses carry the server's source line/position: identical too, since the same server answers.
        assert.equal(Buffer.concat(b.raw).toString('hex'), Buffer.concat(a.raw).toString('hex'), `differs for: ${q}`);
      }
      const ext = Buffer.concat([
        serialize.parse({ name: 'x', text: 'SELECT id, v FROM corpus WHERE id < $1' }),
        serialize.bind({ statement: 'x', values: ['20'] }),
        serialize.describe({ type: 'P' }),
        serialize.execute({ rows: 7 }),
        serialize.execute({}),
        serialize.sync(),
      ]);
      const a = await direct.roundtrip(ext);
      const b = await proxied.roundtrip(ext);
      assert.equal(Buffer.concat(b.raw).toString('hex'), Buffer.concat(a.raw).toString('hex'), 'extended protocol with a row limit');
    } finally {
      direct.close();
      proxied.close();
    }
  });

  it('psql output is identical through the proxy and direct', async () => {
    const script = CORPUS.filter((q) => q).map((q) => q + ';').join('\n');
    const viaProxy = await h.psql('OPS-1', ['-v', 'ON_ERROR_STOP=0'], { input: script });
    const direct = await h.psql('', ['-v', 'ON_ERROR_STOP=0'], { input: script, token: 'svc-secret', env: { PGPORT: String(h.pg.port), PGUSER: 'taskgate_svc', PGOPTIONS: '' } });
    assert.ok(direct.stdout.includes('(500 rows)'));
    assert.equal(viaProxy.stdout, direct.stdout);
    assert.equal(viaProxy.stderr.replace(/\s+/g, ' '), direct.stderr.replace(/\s+/g, ' '));
  });

  it('fuzz: random and truncated messages close the connection with an ErrorResponse; the proxy keeps serving', async () => {
    for (let i = 0; i < 30; i++) {
      const s = await rawSession(h.proxy.address.port, { user: 'alice', database: 'postgres', options: '-c taskgate.task=OPS-1' }, h.alice);
      let payload: Buffer;
      if (i % 3 === 0) payload = randomBytes(1 + (i * 37) % 300);
      else if (i % 3 === 1) payload = Buffer.concat([Buffer.from([0x7a]), randomBytes(20)]);
      else {
        const q = serialize.query('SELECT 1');
        payload = q.subarray(0, 1 + (i % (q.length - 1)));
      }
      let sawError = false;
      s.sock.write(payload);
      s.sock.end(); // then the client goes away (possibly inside a message)
      const r = await s.roundtrip(Buffer.alloc(0), (f) => {
        if (f.type === 0x45) sawError = true;
      }, 15_000);
      // Either the bytes happened to form valid messages (then a Z ended the exchange) or we got an error and a close.
      assert.ok(sawError || r.frames > 0, `case ${i}: no answer`);
      s.close();
    }
    const after = await h.psql('OPS-1', ['-At', '-c', 'SELECT 1']);
    assert.equal(after.stdout.trim(), '1');
  });

  it('streams a large result with bounded memory (2M rows, ~250 MB on the wire)', async () => {
    const s = await rawSession(h.proxy.address.port, { user: 'alice', database: 'postgres', options: '-c taskgate.task=OPS-1' }, h.alice, false);
    global.gc?.();
    const base = process.memoryUsage().rss;
    let peak = base;
    const timer = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 50);
    try {
      const r = await s.roundtrip(serialize.query("SELECT g, repeat('x', 100) FROM generate_series(1, 2000000) g"), undefined, 240_000);
      assert.ok(r.bytes > 200_000_000, `streamed ${r.bytes} bytes`);
      assert.ok(r.frames >= 2_000_002);
    } finally {
      clearInterval(timer);
      s.close();
    }
    const grew = (peak - base) / 1e6;
    assert.ok(grew < 150, `RSS grew ${grew.toFixed(0)} MB while streaming ~250 MB`);
  });

  it('pgbench completes through the proxy (select-only, simple and extended protocol)', async () => {
    const env = { ...process.env, PGPASSWORD: 'svc-secret' };
    await run(join(h.pg.bin, 'pgbench'), ['-i', '-s', '1', '-q', '-h', '127.0.0.1', '-p', String(h.pg.port), '-U', 'taskgate_svc', 'postgres'], { env });
    for (const mode of ['simple', 'extended', 'prepared']) {
      const r = await run(join(h.pg.bin, 'pgbench'), ['-S', '-c', '2', '-t', '200', '-M', mode, '-h', '127.0.0.1', '-p', String(h.proxy.address.port), '-U', 'alice', 'postgres'], {
        env: { ...process.env, PGPASSWORD: h.alice, PGOPTIONS: '-c taskgate.task=OPS-1' },
        timeout: 60_000,
      });
      assert.match(r.stdout, /number of transactions actually processed: 400\/400/, `${mode}: ${r.stdout}${r.stderr}`);
    }
  });
});
