import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { OidcAuthenticator } from '../../../core/identity/oidc.ts';
import { startPostgresProxy, type PostgresProxy } from '../../../sidecar/postgres/proxy.ts';
import type { TranscriptRecord } from '../../../sidecar/postgres/session.ts';
import { startHarness, type Harness } from './harness.ts';

describe('postgres sidecar: upstream login methods and transcript records', { timeout: 120_000 }, () => {
  let h: Harness;
  const proxies: PostgresProxy[] = [];
  before(async () => {
    h = await startHarness();
  });
  after(async () => {
    for (const p of proxies) await p.close();
    await h?.stop();
  });

  const records: [string, TranscriptRecord][] = [];
  async function proxyAs(user: string, password: string): Promise<PostgresProxy> {
    const p = await startPostgresProxy({
      gate: h.gate,
      authenticator: await OidcAuthenticator.discover({ issuer: h.issuer.issuer, audience: h.issuer.audience, allowInsecureLoopback: true }),
      upstream: { host: '127.0.0.1', port: h.pg.port, user, password, database: 'postgres' },
      resource: { name: 'orders-db' },
      recordings: { append: (sid, rec) => records.push([sid, rec]) },
    });
    proxies.push(p);
    return p;
  }

  for (const [user, password, method] of [
    ['md5_user', 'md5-secret', 'md5'],
    ['direct_pw', 'direct-secret', 'password'],
    ['taskgate_svc', 'svc-secret', 'scram-sha-256'],
  ] as const) {
    it(`logs in upstream with ${method}; the client only ever presents its token`, async () => {
      const p = await proxyAs(user, password);
      const r = await h.psql('OPS-1', ['-At', '-c', 'SELECT current_user'], { env: { PGPORT: String(p.address.port) } });
      assert.equal(r.stdout.trim(), user, r.stderr);
      const rec = records.findLast(([, x]) => x.text.includes('current_user'));
      assert.ok(rec, 'a transcript record for the statement');
      assert.equal(rec[1].decision, 'allow');
      assert.equal(rec[1].rows, 1);
    });
  }

  it('a wrong service password: the client gets a FATAL naming the upstream refusal, not the password', async () => {
    const p = await proxyAs('taskgate_svc', 'wrong');
    const r = await h.psql('OPS-1', ['-At', '-c', 'SELECT 1'], { env: { PGPORT: String(p.address.port) } });
    assert.match(r.stderr, /taskgate could not connect to the database: upstream refused the sidecar's login: password authentication failed/);
    assert.doesNotMatch(r.stderr, /wrong/);
  });
});
