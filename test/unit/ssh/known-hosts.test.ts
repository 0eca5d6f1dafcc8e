import assert from 'node:assert/strict';
import { createHmac, randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import ssh2 from 'ssh2';
import { blobKeyType, hostName, parseKnownHosts, verifyHostKey } from '../../../sidecar/ssh/known-hosts.ts';
import { parseLogin } from '../../../sidecar/ssh/server.ts';

const key = () => {
  const kp = ssh2.utils.generateKeyPairSync('ed25519');
  const b64 = kp.public.split(' ')[1]!;
  return { b64, blob: Buffer.from(b64, 'base64') };
};

describe('known_hosts pinning', () => {
  const a = key();
  const b = key();

  test('plain entry with a port matches only its key', () => {
    const kh = parseKnownHosts(`# comment\n[10.0.0.5]:2222 ssh-ed25519 ${a.b64}\n`);
    assert.deepEqual(verifyHostKey(kh, '10.0.0.5', 2222, 'ssh-ed25519', a.blob), { ok: true });
    const v = verifyHostKey(kh, '10.0.0.5', 2222, 'ssh-ed25519', b.blob);
    assert.equal(v.ok, false);
    assert.equal(!v.ok && v.reason, 'mismatch');
    const u = verifyHostKey(kh, '10.0.0.5', 22, 'ssh-ed25519', a.blob);
    assert.equal(!u.ok && u.reason, 'unknown');
  });

  test('hashed host names', () => {
    const salt = randomBytes(20);
    const h = createHmac('sha1', salt).update(hostName('db.internal', 22)).digest('base64');
    const kh = parseKnownHosts(`|1|${salt.toString('base64')}|${h} ssh-ed25519 ${a.b64}`);
    assert.deepEqual(verifyHostKey(kh, 'db.internal', 22, 'ssh-ed25519', a.blob), { ok: true });
    assert.equal(verifyHostKey(kh, 'db.internal', 22, 'ssh-ed25519', b.blob).ok, false);
  });

  test('wildcards, negation, lists and @revoked', () => {
    const kh = parseKnownHosts(`*.prod,!bad.prod ssh-ed25519 ${a.b64}\n@revoked * ssh-ed25519 ${b.b64}`);
    assert.equal(verifyHostKey(kh, 'web.prod', 22, 'ssh-ed25519', a.blob).ok, true);
    const neg = verifyHostKey(kh, 'bad.prod', 22, 'ssh-ed25519', a.blob);
    assert.equal(!neg.ok && neg.reason, 'unknown');
    const rev = verifyHostKey(kh, 'web.prod', 22, 'ssh-ed25519', b.blob);
    assert.equal(!rev.ok && rev.reason, 'revoked');
  });

  test('key type from the blob', () => {
    assert.equal(blobKeyType(a.blob), 'ssh-ed25519');
  });
});

describe('login name', () => {
  test('user+TASK splits at the last plus', () => {
    assert.deepEqual(parseLogin('alice+OPS-123'), { user: 'alice', task: 'OPS-123' });
    assert.deepEqual(parseLogin('a+b+OPS-9'), { user: 'a+b', task: 'OPS-9' });
    assert.deepEqual(parseLogin('alice'), { user: 'alice', task: '' });
    assert.deepEqual(parseLogin('+OPS-1'), { user: '+OPS-1', task: '' });
  });
});
