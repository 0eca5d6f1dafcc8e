import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { OidcAuthenticator } from '../../../core/identity/oidc.ts';
import { startOidcIssuer, type OidcIssuer } from '../../../devenv/oidc-issuer.ts';
import { TaskgateError } from '../../../core/errors.ts';

describe('OIDC authenticator against a real oidc-provider', () => {
  let idp: OidcIssuer;
  let auth: OidcAuthenticator;
  before(async () => {
    idp = await startOidcIssuer({
      clients: [
        { client_id: 'taskgate-sidecar', client_secret: 's', service: true },
        { client_id: 'agent-x', client_secret: 'a', service: true, extra_claims: { taskgate_acting_for: 'alice@example.com' } },
      ],
    });
    auth = await OidcAuthenticator.discover({
      issuer: idp.issuer,
      audience: idp.audience,
      allowInsecureLoopback: true,
      clockToleranceSec: 0,
      jwksCooldownSec: 0,
      jwksCacheMaxAgeSec: 0.2,
    });
  });
  after(async () => idp.stop());

  const rejects = async (token: string, re: RegExp) => {
    await assert.rejects(auth.authenticate(token), (e: unknown) => e instanceof TaskgateError && e.code === 'auth_failed' && re.test(e.message));
  };

  it('accepts a user access token and reads subject and groups', async () => {
    const id = await auth.authenticate(await idp.token('alice@example.com'));
    assert.equal(id.subject, 'alice@example.com');
    assert.deepEqual(id.groups, ['engineering', 'dba']);
    assert.equal(id.type, 'user');
    assert.equal(id.issuer, idp.issuer);
    assert.ok(id.expires_at_ms! > Date.now());
  });

  it('reads a client-credentials token as a service identity acting for a named human', async () => {
    const plain = await auth.authenticate(await idp.serviceToken('taskgate-sidecar'));
    assert.equal(plain.type, 'service');
    assert.equal(plain.subject, 'taskgate-sidecar');
    assert.equal(plain.acting_for, undefined);
    const agent = await auth.authenticate(await idp.serviceToken('agent-x'));
    assert.equal(agent.type, 'service');
    assert.equal(agent.acting_for, 'alice@example.com');
  });

  it('rejects an expired token', async () => {
    const now = Math.floor(Date.now() / 1000);
    await rejects(await idp.signRaw({ sub: 'alice@example.com', iat: now - 600, exp: now - 60 }), /expired/);
  });

  it('rejects a wrong audience', async () => {
    await rejects(await idp.signRaw({ sub: 'alice@example.com', aud: 'some-other-api' }), /audience/);
  });

  it('rejects a wrong issuer', async () => {
    await rejects(await idp.signRaw({ sub: 'alice@example.com', iss: 'https://evil.example' }), /issuer/);
  });

  it('rejects a forged signature (key the issuer does not publish) and a tampered payload', async () => {
    await rejects(await idp.signRaw({ sub: 'alice@example.com' }, { kid: 'other' }), /key the issuer does not publish|signature/);
    const good = await idp.token('dave@example.com');
    const [h, p, s] = good.split('.');
    const payload = JSON.parse(Buffer.from(p!, 'base64url').toString());
    payload.groups = ['dba'];
    await rejects(`${h}.${Buffer.from(JSON.stringify(payload)).toString('base64url')}.${s}`, /signature/);
  });

  it('rejects garbage with a clear message', async () => {
    await rejects('hunter2', /not a JWT/);
    await rejects('a.b.c', /malformed|rejected/);
  });

  it('follows key rotation: tokens signed with a new key verify after the JWKS refresh', async () => {
    const before = await idp.token('bob@example.com');
    await idp.rotateKeys();
    const after = await idp.token('bob@example.com');
    assert.notEqual(JSON.parse(Buffer.from(before.split('.')[0]!, 'base64url').toString()).kid, JSON.parse(Buffer.from(after.split('.')[0]!, 'base64url').toString()).kid);
    assert.equal((await auth.authenticate(after)).subject, 'bob@example.com');
    assert.equal((await auth.authenticate(before)).subject, 'bob@example.com');
    await idp.rotateKeys({ dropOld: true });
    await new Promise((r) => setTimeout(r, 300)); // past the JWKS cache age: the removed key is gone
    await rejects(before, /key the issuer does not publish/);
  });
});

describe('OIDC verified-token cache', () => {
  let idp: OidcIssuer;
  before(async () => {
    idp = await startOidcIssuer({ clients: [] });
  });
  after(async () => idp.stop());

  const discover = (o: Partial<Parameters<typeof OidcAuthenticator.discover>[0]> = {}) =>
    OidcAuthenticator.discover({ issuer: idp.issuer, audience: idp.audience, allowInsecureLoopback: true, clockToleranceSec: 0, jwksCooldownSec: 0, ...o });
  const rejectsWith = (p: Promise<unknown>, re: RegExp) =>
    assert.rejects(p, (e: unknown) => e instanceof TaskgateError && e.code === 'auth_failed' && re.test(e.message));

  it('answers a repeated token from the cache with the same identity, and a tampered copy of it never hits', async () => {
    const auth = await discover();
    const token = await idp.token('alice@example.com');
    const first = await auth.authenticate(token);
    const again = await auth.authenticate(`Bearer ${token}`);
    assert.deepEqual(again, first);
    assert.deepEqual(auth.verifiedCacheStats(), { size: 1, hits: 1, misses: 1 });
    again.groups.push('admin'); // a caller mutating its copy does not change what the cache answers
    assert.deepEqual((await auth.authenticate(token)).groups, ['engineering', 'dba']);

    const [h, p, s] = token.split('.');
    const payload = JSON.parse(Buffer.from(p!, 'base64url').toString());
    payload.sub = 'mallory@example.com';
    await rejectsWith(auth.authenticate(`${h}.${Buffer.from(JSON.stringify(payload)).toString('base64url')}.${s}`), /signature/);
    await rejectsWith(auth.authenticate(`${h}.${p}.${s!.slice(0, -4)}AAAA`), /signature/);
    await rejectsWith(auth.authenticate(await idp.signRaw({ sub: 'alice@example.com' }, { kid: 'other' })), /key the issuer does not publish|signature/);
    assert.equal(auth.verifiedCacheStats().size, 1, 'failures are never cached');
  });

  it('honours exp: a cached token is rejected as expired once exp passes', async () => {
    const auth = await discover();
    const now = Math.floor(Date.now() / 1000);
    const token = await idp.signRaw({ sub: 'bob@example.com', exp: now + 2 });
    assert.equal((await auth.authenticate(token)).subject, 'bob@example.com');
    assert.equal((await auth.authenticate(token)).subject, 'bob@example.com');
    assert.equal(auth.verifiedCacheStats().hits, 1);
    await new Promise((r) => setTimeout(r, (now + 3) * 1000 - Date.now() + 50));
    await rejectsWith(auth.authenticate(token), /expired/);
    assert.equal(auth.verifiedCacheStats().size, 0);
  });

  it('keeps issuer and audience checks: a token for another audience or issuer is rejected every time', async () => {
    const auth = await discover();
    for (let i = 0; i < 2; i++) {
      await rejectsWith(auth.authenticate(await idp.signRaw({ sub: 'alice@example.com', aud: 'some-other-api' })), /audience/);
      await rejectsWith(auth.authenticate(await idp.signRaw({ sub: 'alice@example.com', iss: 'https://evil.example' })), /issuer/);
    }
    assert.equal(auth.verifiedCacheStats().size, 0);
  });

  it('drops every cached token when the issuer rotates its keys and the old key is gone', async () => {
    // A long JWKS cache age: only the rotation seen by a verification can evict the old token.
    const auth = await discover({ jwksCacheMaxAgeSec: 600 });
    const old = await idp.token('carol@example.com');
    await auth.authenticate(old);
    await auth.authenticate(old);
    assert.equal(auth.verifiedCacheStats().hits, 1);
    await idp.rotateKeys({ dropOld: true });
    // A token under the new key: unknown kid -> JWKS refetch -> the key set changed -> cache cleared.
    assert.equal((await auth.authenticate(await idp.token('carol@example.com'))).subject, 'carol@example.com');
    await rejectsWith(auth.authenticate(old), /key the issuer does not publish/);
  });

  it('stays within maxEntries, and can be turned off', async () => {
    const small = await discover({ verifiedTokenCache: { maxEntries: 4 } });
    for (let i = 0; i < 10; i++) await small.authenticate(await idp.signRaw({ sub: `u${i}@example.com` }));
    assert.ok(small.verifiedCacheStats().size <= 4, `size ${small.verifiedCacheStats().size}`);
    const off = await discover({ verifiedTokenCache: false });
    const token = await idp.token('alice@example.com');
    await off.authenticate(token);
    await off.authenticate(token);
    assert.deepEqual(off.verifiedCacheStats(), { size: 0, hits: 0, misses: 0 });
  });
});
