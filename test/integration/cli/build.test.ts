import { before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
const REPO = join(import.meta.dirname, '../../..');
const DIST = join(REPO, 'dist');

/**
 * `npm run build` output (dist/, plain JS for deployments that run without
 * tsx) finds what lives beside the sources: the pinned opa in .tools/bin, the
 * reference policies, the inbox's HTML/CSS/JS.
 */
describe('the build (dist/) runs like the sources', () => {
  let cwd: string;
  before(async () => {
    await run('npx', ['--no-install', 'tsc', '-p', 'tsconfig.build.json'], { cwd: REPO, timeout: 240_000 });
    cwd = await mkdtemp(join(tmpdir(), 'taskgate-dist-'));
  });

  it('taskgate test compiles and tests the policies with the project opa, from another directory', async () => {
    // PATH without .tools/bin: the build must find the pinned opa itself.
    const PATH = (process.env.PATH ?? '').split(':').filter((d) => !d.includes('.tools')).join(':');
    const { stdout } = await run(process.execPath, [join(DIST, 'cli/main.js'), 'test', join(REPO, 'policies')], {
      cwd,
      env: { ...process.env, PATH, TASKGATE_OPA: '' },
      timeout: 240_000,
    });
    assert.match(stdout, /decision tables: \d+\/\d+ cases passed/);
    assert.match(stdout, /PASS/);
  });

  it('the inbox serves its page from the build', async () => {
    const script = `
      const { serveInbox } = await import(${JSON.stringify(join(DIST, 'control-plane/inbox/assets.js'))});
      const res = { writeHead(s, h) { this.status = s; this.type = h['content-type']; }, end(b) { console.log(this.status, this.type, String(b).includes('<html') ? 'html' : 'other'); } };
      serveInbox('/inbox', res);`;
    const { stdout } = await run(process.execPath, ['--input-type=module', '-e', script], { cwd, timeout: 60_000 });
    assert.equal(stdout.trim(), '200 text/html; charset=utf-8 html');
  });
});
