import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, stat, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser } from 'playwright-core';
import { launchChromium } from '../../support/browser.ts';
import { startOidcIssuer, type OidcIssuer } from '../../../devenv/oidc-issuer.ts';

const BIN = join(import.meta.dirname, '../../../bin/taskgate.js');

/** Runs the taskgate CLI; `onStderr` sees stderr as it arrives. */
function cli(args: string[], env: Record<string, string>, onStderr?: (s: string) => void): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [BIN, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => {
      stderr += d;
      onStderr?.(stderr);
    });
    const t = setTimeout(() => p.kill('SIGKILL'), 60_000);
    p.on('close', (code) => {
      clearTimeout(t);
      resolve({ code: code ?? -1, stdout, stderr });
    });
  });
}

describe('taskgate login (device flow against oidc-provider, approved in real Chromium)', () => {
  let idp: OidcIssuer;
  let browser: Browser;
  let dir: string;
  before(async () => {
    idp = await startOidcIssuer();
    dir = await mkdtemp(join(tmpdir(), 'tg-login-'));
    browser = await launchChromium();
  });
  after(async () => {
    await browser?.close();
    await idp?.stop();
  });

  it('signs in through the browser, caches the token 0600, and whoami verifies it', async () => {
    const tokenFile = join(dir, 'token.json');
    const env = { TASKGATE_TOKEN_FILE: tokenFile, TASKGATE_ISSUER: idp.issuer, TASKGATE_RESOURCE: 'urn:taskgate' };
    let approved: Promise<void> | undefined;
    const login = cli(['login'], env, (err) => {
      const m = /open (\S+)/.exec(err);
      if (m && !approved) {
        approved = (async () => {
          const page = await browser.newPage();
          await page.goto(m[1]!);
          // oidc-provider's device flow: confirm the code, then its login form (devInteractions).
          await page.locator('button[type=submit], input[type=submit]').first().click();
          await page.locator('input[name=login]').fill('alice@example.com');
          await page.locator('input[name=password]').fill('alice');
          await page.locator('button[type=submit], input[type=submit]').first().click();
          await page.waitForLoadState('networkidle');
          await page.close();
        })();
      }
    });
    const r = await login;
    await approved;
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /logged in as alice@example.com/);
    assert.equal((await stat(tokenFile)).mode & 0o777, 0o600);
    const cached = JSON.parse(await readFile(tokenFile, 'utf8'));
    assert.equal(cached.issuer, idp.issuer);

    const who = await cli(['whoami', '--json'], env);
    assert.equal(who.code, 0, who.stderr);
    const id = JSON.parse(who.stdout);
    assert.equal(id.subject, 'alice@example.com');
    assert.deepEqual(id.groups, ['engineering', 'dba']);
  });

  it('whoami without a login says so in one line with a hint', async () => {
    const r = await cli(['whoami'], { TASKGATE_TOKEN_FILE: join(dir, 'none.json') });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^taskgate: error\[auth_failed\]: not logged in\n  hint: run `taskgate login`\n$/);
  });
});
