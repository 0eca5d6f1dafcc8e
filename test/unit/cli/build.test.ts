import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
const REPO = join(import.meta.dirname, '../../..');

describe('npm run build', () => {
  it('emits plain JavaScript that runs without tsx (the deployable CLI and sidecar)', async () => {
    // Inside the repository so that the emitted code resolves node_modules like a deployment would.
    await mkdir(join(REPO, '.taskgate'), { recursive: true });
    const out = await mkdtemp(join(REPO, '.taskgate', 'dist-test-'));
    after(() => rm(out, { recursive: true, force: true }));
    await run(process.execPath, [join(REPO, 'node_modules/typescript/bin/tsc'), '-p', join(REPO, 'tsconfig.build.json'), '--outDir', out], { cwd: REPO });
    const help = await run(process.execPath, [join(out, 'cli/main.js'), '--help']);
    assert.match(help.stdout, /sidecar/);
    const check = await run(process.execPath, [join(out, 'cli/main.js'), 'config', 'check', '-c', join(REPO, 'examples/envoy/taskgate.yaml')]);
    assert.match(check.stderr, /ok \(1 listener\)/);
  });
});
