/**
 * The web inbox in real Chromium (playwright-core): a reviewer signs in with
 * a real OIDC token; a psql statement held by the PostgreSQL sidecar (real
 * proxy, real Gatekeeper with ControlPlaneTasks/ControlPlaneReviews, real
 * PostgreSQL) appears on the open page live (SSE, no reload) with the command,
 * the task and who asks; approving it there lets psql complete, denying it
 * makes psql fail with the reviewer's reason.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { type Browser, type Page } from 'playwright-core';
import { launchChromium } from '../../support/browser.ts';
import { psqlThroughSidecar, type PsqlResult } from '../../support/psql.ts';
import { MemoryAuditSink } from '../../../core/audit/event.ts';
import { Gatekeeper } from '../../../core/gate.ts';
import { OidcAuthenticator } from '../../../core/identity/oidc.ts';
import { connectControlPlane, type ControlPlaneClient } from '../../../control-plane/client/connect.ts';
import { ControlPlaneHttp } from '../../../control-plane/client/http.ts';
import { startControlPlane, type ControlPlane } from '../../../control-plane/server.ts';
import { startOidcIssuer, type OidcIssuer } from '../../../devenv/oidc-issuer.ts';
import { startPostgres, type PgServer } from '../../../devenv/postgres.ts';
import { startPostgresProxy, type PostgresProxy } from '../../../sidecar/postgres/proxy.ts';
import { fixtureEngine, within } from './fixture.ts';

const SIDECAR = 'inbox-sidecar-token-' + 'y'.repeat(20);

describe('web inbox in Chromium approves a held psql statement', () => {
  let idp: OidcIssuer;
  let pg: PgServer;
  let cp: ControlPlane;
  let client: ControlPlaneClient;
  let proxy: PostgresProxy;
  let browser: Browser;
  let page: Page;

  const psql = async (sql: string): Promise<PsqlResult> =>
    psqlThroughSidecar({
      bin: join(pg.bin, 'psql'),
      port: proxy.address.port,
      token: await idp.token('alice@example.com'),
      task: 'WEB-1',
      args: ['-X', '-q', '-At', '-c', sql],
      env: { PGSSLMODE: 'disable' },
    });

  before(async () => {
    idp = await startOidcIssuer();
    pg = await startPostgres({ users: [{ name: 'taskgate_svc', password: 'svc-secret', method: 'scram-sha-256', superuser: true }] });
    await pg.psql('CREATE TABLE items (id int primary key, name text)');
    const auth = await OidcAuthenticator.discover({ issuer: idp.issuer, audience: idp.audience, allowInsecureLoopback: true });
    cp = await startControlPlane({ authenticator: auth, serviceTokens: [{ name: 'sidecar-inbox', token: SIDECAR }], admins: ['carol@example.com'] });
    client = connectControlPlane({ url: cp.url, token: SIDECAR });
    await client.ready();
    const gate = new Gatekeeper({ engine: await fixtureEngine(), tasks: client.tasks, reviews: client.reviews, audit: new MemoryAuditSink() });
    proxy = await startPostgresProxy({
      gate,
      authenticator: auth,
      upstream: { host: pg.host, port: pg.port, user: 'taskgate_svc', password: 'svc-secret', database: 'postgres' },
      resource: { name: 'orders-db', labels: { timeout_s: '60' } },
    });
    await new ControlPlaneHttp({ url: cp.url, token: await idp.token('carol@example.com') }).request('POST', '/api/v1/tasks', {
      id: 'WEB-1',
      type: 'data-fix',
      assignee: 'alice@example.com',
      reviewers: ['bob@example.com'],
      title: 'Fix item names',
      ttl_s: 600,
    });
    browser = await launchChromium();
    page = await browser.newPage();
    page.setDefaultTimeout(15_000);
    await page.goto(`${cp.url}/inbox`);
    await page.fill('#token', await idp.token('bob@example.com'));
    await page.click('#signin-button');
    await page.waitForSelector('#live.on');
    assert.equal(await page.textContent('#who-name'), 'bob@example.com');
  });
  after(async () => {
    await browser?.close();
    await proxy?.close();
    await client?.close();
    await cp?.close();
    await pg?.stop();
    await idp?.stop();
  });

  test('a held INSERT appears live with command, task and requester; Approve lets psql complete', async () => {
    assert.equal(await page.textContent('#count'), '0');
    const run = psql("INSERT INTO items VALUES (1, 'approved-from-inbox')");
    // The sidecar hands reviewers literal-masked SQL: values never reach the inbox.
    const card = page.locator('#reviews li.review', { hasText: 'INSERT INTO items' });
    await card.waitFor();
    assert.match((await card.locator('.who').textContent()) ?? '', /alice@example\.com/);
    const shown = (await card.locator('.command').textContent()) ?? '';
    assert.match(shown, /INSERT INTO items/);
    assert.doesNotMatch(shown, /approved-from-inbox/, 'literals are masked for reviewers');
    await card.locator('.task', { hasText: 'WEB-1 · data-fix · assignee alice@example.com · Fix item names' }).waitFor();
    assert.match((await card.locator('.reasons').textContent()) ?? '', /writes need the task reviewer/);
    assert.equal(await page.textContent('#count'), '1');
    await card.locator('.reason').fill('checked the row');
    await card.locator('button.approve').click();
    const r = await within(run, 15_000, 'psql');
    assert.equal(r.code, 0, r.stderr);
    assert.equal((await pg.psql('SELECT name FROM items WHERE id = 1')).trim(), 'approved-from-inbox');
    await page.locator('#decided li.review .outcome.approved', { hasText: 'checked the row' }).waitFor();
    assert.equal(await page.textContent('#count'), '0');
  });

  test('Deny with a reason: psql fails with it and nothing is written', async () => {
    const run = psql("INSERT INTO items VALUES (2, 'denied-from-inbox')");
    const card = page.locator('#reviews li.review', { hasText: 'INSERT INTO items' });
    await card.waitFor();
    await card.locator('.reason').fill('wrong table');
    await card.locator('button.deny').click();
    const r = await within(run, 15_000, 'psql');
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /wrong table/);
    assert.equal((await pg.psql('SELECT count(*) FROM items WHERE id = 2')).trim(), '0');
  });

  test('a time-boxed grant chosen on the page lets the next write through without another review', async () => {
    const run = psql("INSERT INTO items VALUES (3, 'grant-from-inbox')");
    const card = page.locator('#reviews li.review', { hasText: 'INSERT INTO items' });
    await card.waitFor();
    await card.locator('input[type=radio][value=grant]').check();
    await card.locator('.grant-min').fill('10');
    await card.locator('button.approve').click();
    assert.equal((await within(run, 15_000, 'psql')).code, 0);
    const next = await within(psql("INSERT INTO items VALUES (4, 'under-grant')"), 15_000, 'psql under grant');
    assert.equal(next.code, 0, next.stderr);
    assert.equal((await pg.psql('SELECT count(*) FROM items WHERE id IN (3, 4)')).trim(), '2');
    await page.locator('#decided li.review .outcome.approved', { hasText: 'grant until' }).waitFor();
  });
});
