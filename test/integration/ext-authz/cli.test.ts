import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { freePort } from '../../../devenv/net.ts';
import { authzClient, compileAt, envoyCheck, healthStatus } from './fixtures.ts';

/**
 * `taskgate ext-authz` as an operator runs it, on each gRPC transport: the
 * process serves Check and health, logs which transport it listens on, and
 * exits cleanly on SIGTERM.
 */
const BIN = resolve(import.meta.dirname, '../../../bin/taskgate.js');

const POLICY = `package envoy.authz
import rego.v1
default allow := false
allow if {
  input.attributes.request.http.method == "GET"
  startswith(input.attributes.request.http.path, "/people/")
}
`;

for (const transport of ['taskgate', 'grpc-js'] as const) {
  describe(`taskgate ext-authz --transport ${transport}`, () => {
    let dir: string;
    let proc: ChildProcess;
    let address: string;
    let stderr = '';

    before(async () => {
      dir = await mkdtemp(join(tmpdir(), 'taskgate-extauthz-cli-'));
      await writeFile(join(dir, 'bundle.tar.gz'), await compileAt(POLICY, 'envoy/authz/allow'));
      const port = await freePort();
      address = `127.0.0.1:${port}`;
      proc = spawn(
        process.execPath,
        [BIN, 'ext-authz', '--bundle', join(dir, 'bundle.tar.gz'), '--listen', address, '--envoy-entrypoint', 'envoy/authz/allow', '--audit-spool', join(dir, 'spool'), '--transport', transport],
        { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, TASKGATE_LOG_FORMAT: 'json' } },
      );
      proc.stderr!.on('data', (d: Buffer) => (stderr += d));
      await new Promise<void>((res, rej) => {
        const t = setTimeout(() => rej(new Error(`not ready in 30 s: ${stderr}`)), 30_000);
        proc.stderr!.on('data', () => stderr.includes('ext-authz ready') && (clearTimeout(t), res()));
        proc.once('exit', (c) => (clearTimeout(t), rej(new Error(`exited ${c}: ${stderr}`))));
      });
    });

    after(async () => {
      if (proc.exitCode === null) proc.kill('SIGKILL');
      await rm(dir, { recursive: true, force: true });
    });

    it('logs the transport it listens on', () => {
      const line = stderr.split('\n').find((l) => l.includes('ext-authz listening'));
      assert.ok(line, stderr);
      assert.equal(JSON.parse(line).transport, transport);
    });

    it('allows and denies by the policy, and reports SERVING', async () => {
      const envoy = authzClient(address);
      try {
        assert.equal((await envoy.check(envoyCheck('GET', '/people/alice'))).status.code, 0);
        const no = await envoy.check(envoyCheck('DELETE', '/people/alice'));
        assert.equal(no.status.code, 7);
        assert.equal(no.deniedResponse.status.code, 'Forbidden');
      } finally {
        envoy.close();
      }
      assert.equal(await healthStatus(address, 'envoy.service.auth.v3.Authorization'), 'SERVING');
    });

    it('exits 0 on SIGTERM', async () => {
      const code = await new Promise<number | null>((res) => {
        proc.once('exit', (c) => res(c));
        proc.kill('SIGTERM');
      });
      assert.equal(code, 0, stderr);
    });
  });
}
