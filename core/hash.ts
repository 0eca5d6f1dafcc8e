import { createHash, hash as oneShotHash } from 'node:crypto';

const hasOneShot = typeof oneShotHash === 'function';

/**
 * Hex SHA-256. crypto.hash (Node >= 20.12) skips the Hash object: about twice
 * as fast for the short inputs of the data path (audit rows, request
 * fingerprints); older Node falls back to createHash.
 */
export function sha256hex(s: string | Uint8Array): string {
  return hasOneShot ? oneShotHash('sha256', s, 'hex') : createHash('sha256').update(s).digest('hex');
}
