import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const REPO = join(import.meta.dirname, '../../..');
const BIN = join(REPO, 'bin/taskgate.js');

function cli(args: string[], env: Record<string, string> = {}) {
  return new Promise<{ code: number; stdout: string; stderr: string }>((resolve) =>
    execFile(process.execPath, [BIN, ...args], { env: { ...process.env, ...env } }, (err, stdout, stderr) =>
      resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    ),
  );
}

describe('taskgate config check', () => {
  it('accepts the shipped example configuration', async () => {
    const r = await cli(['config', 'check', '-c', join(REPO, 'examples/envoy/taskgate.yaml')]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /ok \(1 listener\)/);
  });

  it('names every bad field by its path, in one error', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tg-cc-'));
    const f = join(dir, 'taskgate.yaml');
    await writeFile(
      f,
      `policy: {bundle: b.tar.gz, pol_min_s: 3}
identity: {issuer: "not a url", audience: taskgate}
postgres:
  - {name: db, listen: "6432", upstream: {host: db, user: svc}}
  - {name: db, listen: "127.0.0.1:6433", upstream: {host: db, user: svc}}
`,
    );
    const r = await cli(['config', 'check', '-c', f]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /error\[config_invalid\]/);
    assert.match(r.stderr, /policy: unknown key "pol_min_s"/);
    assert.match(r.stderr, /identity\.issuer: /);
    assert.match(r.stderr, /postgres\[0\]\.listen: expected host:port/);
    assert.match(r.stderr, /postgres\[1\]\.name: resource name "db" is already used by postgres\[0\]/);
    assert.match(r.stderr, /hint: see docs\/configuration.md/);
  });

  it('applies TASKGATE__ environment overrides (--print shows the effective config)', async () => {
    const r = await cli(['config', 'check', '-c', join(REPO, 'examples/envoy/taskgate.yaml'), '--print'], { TASKGATE__POLICY__POLL_MIN_S: '42' });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(JSON.parse(r.stdout).policy.poll_min_s, 42);
  });
});
