import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { planLaunch } from '../../../cli/commands/connect.ts';

const BIN = join(import.meta.dirname, '../../../bin/taskgate.js');
const base = { token: 'eyJ.tok.en', user: 'alice', tmp: '/tmp/x', extra: ['-c', 'select 1'] };

describe('taskgate connect', () => {
  it('psql gets the token as PGPASSWORD and the task in PGOPTIONS', () => {
    const p = planLaunch('orders-db', { protocol: 'postgres', host: '127.0.0.1', port: 15432, database: 'orders', sslmode: 'prefer' }, 'OPS-123', base);
    assert.equal(p.command, 'psql');
    assert.deepEqual(p.args, ['-c', 'select 1']);
    assert.equal(p.env.PGPASSWORD, 'eyJ.tok.en');
    assert.equal(p.env.PGOPTIONS, '-c taskgate.task=OPS-123');
    assert.equal(p.env.PGUSER, 'alice');
    assert.equal(p.env.PGPORT, '15432');
  });

  it('ssh logs in as user+task and asks `taskgate token` for the password (no token on disk)', () => {
    const p = planLaunch('web-1', { protocol: 'ssh', host: '127.0.0.1', port: 2222, known_hosts: '[127.0.0.1]:2222 ssh-ed25519 AAAA' }, 'OPS-9', { ...base, extra: ['uptime'] });
    assert.equal(p.command, 'ssh');
    assert.deepEqual(p.args.slice(0, 4), ['-p', '2222', '-l', 'alice+OPS-9']);
    assert.deepEqual(p.args.slice(-2), ['127.0.0.1', 'uptime']);
    assert.equal(p.env.SSH_ASKPASS_REQUIRE, 'force');
    const askpass = p.files[p.env.SSH_ASKPASS!]!;
    assert.match(askpass.content, /taskgate\.js" token/);
    assert.ok(!JSON.stringify(p).includes('eyJ.tok.en'));
    assert.ok(p.args.includes('StrictHostKeyChecking=yes'));
  });

  it('kubectl gets a kubeconfig with a /task/<id> server prefix and an exec credential plugin', () => {
    const p = planLaunch('k8s', { protocol: 'http', url: 'https://127.0.0.1:18443/', kubernetes: true, insecure_skip_tls_verify: false }, 'OPS-7', { ...base, extra: ['get', 'pods'] });
    assert.equal(p.command, 'kubectl');
    const cfg = JSON.parse(p.files[p.env.KUBECONFIG!]!.content);
    assert.equal(cfg.clusters[0].cluster.server, 'https://127.0.0.1:18443/task/OPS-7');
    assert.deepEqual(cfg.users[0].user.exec.args.slice(1), ['token', '--kubernetes']);
    assert.equal(p.files[p.env.KUBECONFIG!]!.mode, 0o600);
    assert.ok(!JSON.stringify(p).includes('eyJ.tok.en'));
  });

  it('`taskgate token --kubernetes` prints an ExecCredential; unknown resources are one clear error', async () => {
    const r = spawnSync(process.execPath, [BIN, 'token', '--kubernetes'], { env: { ...process.env, TASKGATE_TOKEN: 'abc.def.ghi' }, encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout), { apiVersion: 'client.authentication.k8s.io/v1', kind: 'ExecCredential', status: { token: 'abc.def.ghi' } });
    const dir = await mkdtemp(join(tmpdir(), 'tg-res-'));
    const f = join(dir, 'resources.yaml');
    await writeFile(f, 'resources:\n  db: {protocol: postgres, port: 5432, prot: 1}\n');
    const bad = spawnSync(process.execPath, [BIN, 'connect', 'db', '--task', 'X', '--resources', f], { env: { ...process.env, TASKGATE_TOKEN: 'a.b.c' }, encoding: 'utf8' });
    assert.equal(bad.status, 1);
    assert.match(bad.stderr, /resources\.db: unknown key "prot"/);
  });
});
