/**
 * The whole sidecar from a taskgate.yaml: real PostgreSQL upstream, a real
 * OIDC issuer, the reference policies compiled to WASM, psql as the client.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, writeFile, readdir, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildBundle } from '../../../compiler/build.ts';
import { loadConfigFile } from '../../../core/config/load.ts';
import { TaskgateConfig } from '../../../core/config/schema.ts';
import { silentLogger } from '../../../core/log.ts';
import { InProcessReviews } from '../../../core/reviews.ts';
import { startPostgres, type PgServer } from '../../../devenv/postgres.ts';
import { startOidcIssuer, type OidcIssuer } from '../../../devenv/oidc-issuer.ts';
import { freePort, waitFor } from '../../../devenv/net.ts';
import { startSidecar, type Sidecar } from '../../../sidecar/runtime.ts';
import { authzClient, envoyCheck, okHeader } from '../ext-authz/fixtures.ts';
import { psqlThroughSidecar } from '../../support/psql.ts';

const REPO = join(import.meta.dirname, '../../..');

describe('taskgate sidecar from taskgate.yaml (real PostgreSQL, OIDC, reference policies)', () => {
  let pg: PgServer;
  let idp: OidcIssuer;
  let sc: Sidecar;
  let dir: string;
  let port: number;
  let authzPort: number;
  const reviews = new InProcessReviews();

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tg-runtime-'));
    [pg, idp] = await Promise.all([startPostgres({ users: [{ name: 'taskgate_svc', password: 'svc-secret', method: 'scram-sha-256', superuser: true }] }), startOidcIssuer()]);
    await pg.psql(`CREATE TABLE public.orders (id int primary key, customer_email text, card_number text, status text);
      INSERT INTO public.orders VALUES (1, 'jane@example.com', '4111111111111111', 'paid'), (42, 'joe@example.org', '5500005555555559', 'paid');`);
    await buildBundle({ dir: join(REPO, 'policies'), out: join(dir, 'bundle.tar.gz') });
    await writeFile(join(dir, 'upstream-password'), 'svc-secret\n');
    port = await freePort();
    authzPort = await freePort();
    await writeFile(join(dir, 'k8s-token'), 'service-account-token\n');
    const expires = new Date(Date.now() + 3600_000).toISOString();
    await writeFile(
      join(dir, 'taskgate.yaml'),
      `policy:
  bundle: bundle.tar.gz
identity:
  issuer: ${idp.issuer}
  audience: ${idp.audience}
  allow_insecure_loopback: true
tasks:
  - {id: OPS-1, type: read-only, assignee: alice@example.com, reviewers: [bob@example.com], expires_at: "${expires}"}
  - {id: OPS-2, type: data-fix, assignee: alice@example.com, reviewers: [bob@example.com], expires_at: "${expires}"}
audit:
  spool_dir: spool
  fsync: none
metrics:
  listen: 127.0.0.1:0
postgres:
  - name: orders-db
    listen: 127.0.0.1:${port}
    labels: {env: test}
    upstream: {host: 127.0.0.1, port: ${pg.port}, database: postgres, user: taskgate_svc, password_file: upstream-password}
ext_authz:
  listen: 127.0.0.1:${authzPort}
  resources:
    - {name: k8s-test, kubernetes: true, upstream_token_file: k8s-token}
`,
    );
    const { config, baseDir } = await loadConfigFile(TaskgateConfig, join(dir, 'taskgate.yaml'), {});
    sc = await startSidecar(config, baseDir, { log: silentLogger, reviews });
  });
  after(async () => {
    reviews.close();
    await sc?.close();
    await Promise.all([pg?.stop(), idp?.stop()]);
  });

  async function psql(task: string, sql: string, token?: string) {
    return psqlThroughSidecar({
      bin: join(pg.bin, 'psql'),
      port,
      token: token ?? (await idp.token('alice@example.com')),
      task,
      args: ['-X', '-At', '-v', 'ON_ERROR_STOP=1', '-c', sql],
    });
  }


  it('allows a read for a read-only task and masks card numbers and emails per the catalog', async () => {
    const r = await psql('OPS-1', 'SELECT id, customer_email, card_number FROM orders ORDER BY id');
    assert.equal(r.code, 0, r.stderr);
    assert.ok(!r.stdout.includes('4111111111111111'), `card number masked: ${r.stdout}`);
    assert.ok(!r.stdout.includes('jane@example.com'), `email masked: ${r.stdout}`);
    assert.match(r.stdout, /^1\|/m);
  });

  it('denies DROP TABLE for a read-only task with SQLSTATE 42501 naming the task, and the table survives', async () => {
    const r = await psql('OPS-1', 'DROP TABLE orders');
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /OPS-1/);
    assert.equal((await pg.psql('SELECT count(*) FROM orders')).trim(), '2');
  });

  it('holds an UPDATE for data-fix until the reviewer approves, then runs it', async () => {
    const p = psql('OPS-2', "UPDATE orders SET status = 'refunded' WHERE id = 42");
    await waitFor(() => reviews.list().length === 1, 20_000);
    const [held] = reviews.list();
    assert.match(held!.spec.command, /UPDATE/);
    assert.ok(!held!.spec.command.includes('refunded'), 'literals are masked in what the reviewer sees');
    reviews.approve(held!.id, { subject: 'bob@example.com', groups: [] });
    const r = await p;
    assert.equal(r.code, 0, r.stderr);
    assert.equal((await pg.psql('SELECT status FROM orders WHERE id = 42')).trim(), 'refunded');
  });

  it('rejects a forged token and an unknown task', async () => {
    const forged = await idp.signRaw({ sub: 'alice@example.com' }, { kid: 'other' });
    const bad = await psql('OPS-1', 'SELECT 1', forged);
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /signature|key|auth/i);
    const unknown = await psql('NOPE-1', 'SELECT 1');
    assert.notEqual(unknown.code, 0);
    assert.match(unknown.stderr, /NOPE-1/);
  });

  it('serves Envoy ext_authz from the same config and gate: allow injects the upstream credential, deny is a 403 naming the task', async () => {
    const envoy = authzClient(`127.0.0.1:${authzPort}`);
    try {
      const token = await idp.token('alice@example.com');
      const h = { authorization: `Bearer ${token}`, 'x-taskgate-task': 'OPS-1' };
      const ok = await envoy.check(envoyCheck('GET', '/api/v1/namespaces/shop/pods', h));
      assert.equal(ok.status.code, 0, JSON.stringify(ok.deniedResponse ?? {}));
      assert.equal(okHeader(ok, 'authorization'), 'Bearer service-account-token');
      const no = await envoy.check(envoyCheck('DELETE', '/api/v1/namespaces/shop/pods/web-1', h));
      assert.equal(no.deniedResponse.status.code, 'Forbidden');
      assert.match(no.deniedResponse.body, /OPS-1/);
    } finally {
      envoy.close();
    }
  });

  it('serves metrics, health and readiness, and spools audit events', async () => {
    const m = await (await fetch(`${sc.metricsUrl}/metrics`)).text();
    assert.match(m, /taskgate_decisions_total\{protocol="postgres",result="allow"\}/);
    assert.match(m, /taskgate_decisions_total\{protocol="postgres",result="deny"\}/);
    const ready = await fetch(`${sc.metricsUrl}/readyz`);
    assert.equal(ready.status, 200);
    await sc.audit.flush();
    const files = await readdir(join(dir, 'spool', 'events'));
    const text = (await Promise.all(files.map((f) => readFile(join(dir, 'spool', 'events', f)).catch(() => Buffer.alloc(0))))).map((b) => b.toString('utf8')).join('');
    assert.match(text, /"task_id":"OPS-1"/);
    assert.match(text, /"decision":"deny"/);
    assert.ok(!text.includes('4111111111111111'), 'no card number in the audit spool');
  });
});
