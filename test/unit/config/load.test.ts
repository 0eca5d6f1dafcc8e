import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { z } from 'zod';
import { ConfigError, envOverrides, loadConfigFile } from '../../../core/config/load.ts';

const schema = z.strictObject({
  policy: z.strictObject({ bundle: z.string(), poll_min_s: z.number().int().positive().default(10) }),
  listeners: z.array(z.strictObject({ name: z.string(), listen: z.string() })).default([]),
});

async function file(text: string): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'tg-cfg-'));
  const f = join(d, 'taskgate.yaml');
  await writeFile(f, text);
  return f;
}

describe('config loading', () => {
  it('loads, applies defaults', async () => {
    const { config } = await loadConfigFile(schema, await file('policy:\n  bundle: b.tar.gz\n'), {});
    assert.deepEqual(config, { policy: { bundle: 'b.tar.gz', poll_min_s: 10 }, listeners: [] });
  });

  it('names the path of unknown keys and wrong types', async () => {
    const f = await file('policy:\n  bundle: 3\n  bundel: x\nlisteners:\n  - name: db\n    listen: 1\n');
    await assert.rejects(loadConfigFile(schema, f, {}), (e: unknown) => {
      assert.ok(e instanceof ConfigError);
      const byPath = Object.fromEntries(e.issues.map((i) => [i.path, i.message]));
      assert.match(byPath['policy.bundle']!, /string/);
      assert.match(byPath['policy']!, /unknown key "bundel"/);
      assert.match(byPath['listeners[0].listen']!, /string/);
      return true;
    });
  });

  it('reports YAML syntax errors with a line', async () => {
    await assert.rejects(loadConfigFile(schema, await file('policy:\n  bundle: [\n'), {}), /line \d/);
    await assert.rejects(loadConfigFile(schema, await file('a: 1\na: 2\n'), {}), /line 2/);
  });

  it('environment overrides win over the file', async () => {
    const env = { TASKGATE__POLICY__BUNDLE: 'https://bundles/x.tar.gz', TASKGATE__POLICY__POLL_MIN_S: '30', OTHER: '1' };
    assert.deepEqual(envOverrides(env), { policy: { bundle: 'https://bundles/x.tar.gz', poll_min_s: 30 } });
    const { config } = await loadConfigFile(schema, await file('policy:\n  bundle: b.tar.gz\n'), env);
    assert.equal(config.policy.bundle, 'https://bundles/x.tar.gz');
    assert.equal(config.policy.poll_min_s, 30);
  });

  it('a missing file is one clear line', async () => {
    await assert.rejects(loadConfigFile(schema, '/nonexistent/taskgate.yaml', {}), /cannot read config \/nonexistent\/taskgate.yaml: ENOENT/);
  });
});

describe('ext_authz section: transport', () => {
  const base = { listen: '127.0.0.1:9191', resources: [{ name: 'k8s' }] };
  it("defaults to taskgate's own gRPC server and accepts grpc-js", async () => {
    const { ExtAuthzSection } = await import('../../../core/config/schema.ts');
    assert.equal(ExtAuthzSection.parse(base).transport, 'taskgate');
    assert.equal(ExtAuthzSection.parse({ ...base, transport: 'grpc-js' }).transport, 'grpc-js');
  });
  it('refuses any other transport, naming the choices', async () => {
    const { ExtAuthzSection } = await import('../../../core/config/schema.ts');
    const r = ExtAuthzSection.safeParse({ ...base, transport: 'envoy' });
    assert.equal(r.success, false);
    assert.match(JSON.stringify(r.error?.issues), /taskgate.*grpc-js/);
  });
});
