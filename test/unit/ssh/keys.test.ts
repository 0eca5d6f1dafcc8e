import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import ssh2 from 'ssh2';
import { generateEd25519, publicBlob } from '../../../sidecar/ssh/keys.ts';

describe('ed25519 key generation', () => {
  // ssh2's generator alone makes a malformed key about once in 200 draws (a 31-byte public key):
  // 2,000 draws without the check fail this test with near certainty.
  test('every generated key parses back, with a 32-byte public key in both halves', () => {
    for (let i = 0; i < 2000; i++) {
      const kp = generateEd25519('taskgate-test');
      assert.ok(!(ssh2.utils.parseKey(kp.private) instanceof Error), kp.private);
      const blob = publicBlob(kp.private);
      assert.equal(blob.readUInt32BE(4 + 11), 32);
      assert.equal(kp.public.split(' ')[1], blob.toString('base64'));
    }
  });
});
