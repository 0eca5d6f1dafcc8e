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
