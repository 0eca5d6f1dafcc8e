/**
 * SSH keys the sidecar holds: its own host key (stable across restarts: read
 * from config, generated and persisted when missing) and the client key it
 * presents upstream. Both in OpenSSH format.
 */
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import ssh2 from 'ssh2';
import { TaskgateError } from '../../core/errors.ts';

const { utils } = ssh2;

export interface KeyPair {
  /** OpenSSH private key (PEM-like text). */
  private: string;
  /** `ssh-ed25519 AAAA... comment` line. */
  public: string;
}

/** Reads the private key at `path`, or generates an ed25519 key there (0600) and `path.pub` beside it. */
export async function loadOrCreateKey(path: string, comment = 'taskgate'): Promise<KeyPair> {
  if (existsSync(path)) {
    const text = await readFile(path, 'utf8');
    const parsed = utils.parseKey(text);
    if (parsed instanceof Error) throw new TaskgateError('config_invalid', `key ${path} is not a usable private key: ${parsed.message}`);
    const k = Array.isArray(parsed) ? parsed[0] : parsed;
    if (!k) throw new TaskgateError('config_invalid', `key ${path} holds no key`);
    return { private: text, public: `${k.type} ${k.getPublicSSH().toString('base64')} ${comment}` };
  }
  const kp = generateEd25519(comment);
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  await writeFile(path, kp.private, { mode: 0o600 });
  await writeFile(path + '.pub', kp.public + '\n', { mode: 0o644 });
  return { private: kp.private, public: kp.public };
}

/**
 * A new ed25519 key pair in OpenSSH format. ssh2's generateKeyPairSync drops a
 * leading zero byte of the 32-byte public key (about 1 key in 200: its OpenSSH
 * text then says 31 bytes, and ssh2's own parser, like OpenSSH's, refuses it
 * as malformed), so a key is kept only once it parses back; a few tries make
 * a bad draw vanishingly unlikely.
 */
export function generateEd25519(comment: string): KeyPair {
  for (let tries = 0; tries < 8; tries++) {
    const kp = utils.generateKeyPairSync('ed25519', { comment });
    if (!(utils.parseKey(kp.private) instanceof Error)) return kp;
  }
  throw new TaskgateError('internal', 'could not generate a well-formed ed25519 key in 8 tries');
}

/** The public key blob of a private key (what known_hosts pins). */
export function publicBlob(privateKey: string): Buffer {
  const parsed = utils.parseKey(privateKey);
  if (parsed instanceof Error) throw new TaskgateError('config_invalid', `not a private key: ${parsed.message}`);
  const k = Array.isArray(parsed) ? parsed[0] : parsed;
  if (!k) throw new TaskgateError('config_invalid', 'no key');
  return k.getPublicSSH();
}
