import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { OidcAuthenticator } from '../../../core/identity/oidc.ts';
import { startPostgresProxy, type PostgresProxy } from '../../../sidecar/postgres/proxy.ts';
import { startHarness, type Harness } from './harness.ts';

const run = promisify(execFile);

async function makeCa(dir: string, name: string): Promise<{ ca: string; cert: string; key: string }> {
  const p = (f: string) => join(dir, `${name}-${f}`);
  await run('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', p('ca.key'), '-out', p('ca.crt'), '-days', '2', '-subj', `/CN=${name}-ca`]);
  await run('openssl', ['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', p('server.key'), '-out', p('server.csr'), '-subj', '/CN=localhost']);
  await writeFile(p('ext'), 'subjectAltName=DNS:localhost,IP:127.0.0.1\n');
  await run('openssl', ['x509', '-req', '-in', p('server.csr'), '-CA', p('ca.crt'), '-CAkey', p('ca.key'), '-CAcreateserial', '-out', p('server.crt'), '-days', '2', '-extfile', p('ext')]);
  return { ca: p('ca.crt'), cert: p('server.crt'), key: p('server.key') };
}

describe('postgres sidecar: TLS to the client and to the upstream', { timeout: 180_000 }, () => {
  let h: Harness;
  let dir: string;
  let good: Awaited<ReturnType<typeof makeCa>>;
  let other: Awaited<ReturnType<typeof makeCa>>;
  const proxies: PostgresProxy[] = [];

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tg-pg-tls-'));
    good = await makeCa(dir, 'good');
    other = await makeCa(dir, 'other');
    if (process.getuid?.() === 0) await run('chown', ['-R', 'postgres:postgres', dir]);
    await run('chmod', ['0600', good.key]);
    await run('chmod', ['0755', dir]);
    h = await startHarness({ pgUsers: { conf: { ssl: 'on', ssl_cert_file: `'${good.cert}'`, ssl_key_file: `'${good.key}'` } } });
  });
  after(async () => {
    for (const p of proxies) await p.close();
    await h?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  async function proxyWith(upstreamCa: string | undefined, clientTls: boolean): Promise<PostgresProxy> {
    const p = await startPostgresProxy({
      gate: h.gate,
      authenticator: await OidcAuthenticator.discover({ issuer: h.issuer.issuer, audience: h.issuer.audience, allowInsecureLoopback: true }),
      upstream: {
        host: 'localhost',
        port: h.pg.port,
        user: 'taskgate_svc',
        password: 'svc-secret',
        database: 'postgres',
        ...(upstreamCa ? { tls: { ca: await readFile(upstreamCa) } } : {}),
      },
      resource: { name: 'orders-db' },
      ...(clientTls ? { tls: { cert: await readFile(good.cert), key: await readFile(good.key) } } : {}),
    });
    proxies.push(p);
    return p;
  }

  it('client TLS (sslmode=verify-full) and upstream TLS verify-full: the server sees an encrypted session', async () => {
    const p = await proxyWith(good.ca, true);
    const r = await h.psql('OPS-1', ['-At', '-c', 'SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()'], {
      env: { PGPORT: String(p.address.port), PGHOST: 'localhost', PGSSLMODE: 'verify-full', PGSSLROOTCERT: good.ca },
    });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), 't');
  });

  it('upstream certificate from an unknown CA: refused, the client is told why', async () => {
    const p = await proxyWith(other.ca, false);
    const r = await h.psql('OPS-1', ['-At', '-c', 'SELECT 1'], { env: { PGPORT: String(p.address.port) } });
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /could not connect to the database: upstream TLS to localhost:\d+: .*(self.signed|unable to verify|certificate)/i);
  });

  it('no TLS configured: SSLRequest is answered N (sslmode=require fails, prefer falls back on loopback)', async () => {
    const p = await proxyWith(undefined, false);
    const req = await h.psql('OPS-1', ['-At', '-c', 'SELECT 1'], { env: { PGPORT: String(p.address.port), PGSSLMODE: 'require' } });
    assert.match(req.stderr, /server does not support SSL/);
    const pref = await h.psql('OPS-1', ['-At', '-c', 'SELECT 2'], { env: { PGPORT: String(p.address.port), PGSSLMODE: 'prefer' } });
    assert.equal(pref.stdout.trim(), '2', pref.stderr);
  });
});
