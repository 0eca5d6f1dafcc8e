import { execFile } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface TestPki {
  ca: string;
  cert: string;
  key: string;
  clientCert: string;
  clientKey: string;
}

/** A throwaway CA, a server certificate for 127.0.0.1/localhost and a client certificate (mTLS), made with openssl. */
export async function makePki(dir: string): Promise<TestPki> {
  const f = (n: string) => join(dir, n);
  const o = (...args: string[]) => run('openssl', args, { timeout: 30_000 });
  await o('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', f('ca.key'), '-out', f('ca.crt'), '-days', '2', '-subj', '/CN=taskgate test CA');
  await writeFile(f('san.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n');
  await o('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', f('srv.key'), '-out', f('srv.csr'), '-subj', '/CN=localhost');
  await o('x509', '-req', '-in', f('srv.csr'), '-CA', f('ca.crt'), '-CAkey', f('ca.key'), '-CAcreateserial', '-out', f('srv.crt'), '-days', '2', '-extfile', f('san.ext'));
  await writeFile(f('cli.ext'), 'extendedKeyUsage=clientAuth\n');
  await o('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', f('cli.key'), '-out', f('cli.csr'), '-subj', '/CN=envoy');
  await o('x509', '-req', '-in', f('cli.csr'), '-CA', f('ca.crt'), '-CAkey', f('ca.key'), '-CAcreateserial', '-out', f('cli.crt'), '-days', '2', '-extfile', f('cli.ext'));
  const r = (n: string) => readFile(f(n), 'utf8');
  return { ca: await r('ca.crt'), cert: await r('srv.crt'), key: await r('srv.key'), clientCert: await r('cli.crt'), clientKey: await r('cli.key') };
}
