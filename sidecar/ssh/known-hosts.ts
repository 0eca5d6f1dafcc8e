/**
 * Pinned upstream host keys in OpenSSH known_hosts format: plain and hashed
 * (`|1|salt|hash`) host patterns, `[host]:port` for non-default ports,
 * wildcards and negation, `@revoked` markers. (`@cert-authority` lines are
 * not supported and never match.) Pure: no I/O.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';

export interface KnownHost {
  marker: '' | '@revoked' | '@cert-authority';
  patterns: string[];
  keyType: string;
  key: Buffer;
}

export type HostKeyVerdict =
  | { ok: true }
  | { ok: false; reason: 'mismatch' | 'unknown' | 'revoked'; message: string };

export function parseKnownHosts(text: string): KnownHost[] {
  const out: KnownHost[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    const f = line.split(/\s+/);
    let marker: KnownHost['marker'] = '';
    if (f[0] === '@revoked' || f[0] === '@cert-authority') marker = f.shift() as KnownHost['marker'];
    const [hosts, keyType, b64] = f;
    if (!hosts || !keyType || !b64) continue;
    out.push({ marker, patterns: hosts.split(','), keyType, key: Buffer.from(b64, 'base64') });
  }
  return out;
}

/** The name known_hosts uses for a host and port. */
export function hostName(host: string, port: number): string {
  return port === 22 ? host : `[${host}]:${port}`;
}

function globMatch(pattern: string, name: string): boolean {
  const re = new RegExp('^' + pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.') + '$', 'i');
  return re.test(name);
}

function patternMatches(p: string, name: string): boolean {
  if (p.startsWith('|1|')) {
    const [, , salt, hash] = p.split('|');
    if (!salt || !hash) return false;
    const mac = createHmac('sha1', Buffer.from(salt, 'base64')).update(name).digest();
    const want = Buffer.from(hash, 'base64');
    return want.length === mac.length && timingSafeEqual(mac, want);
  }
  return globMatch(p, name);
}

function entryMatches(e: KnownHost, name: string): boolean {
  let hit = false;
  for (const p of e.patterns) {
    if (p.startsWith('!')) {
      if (patternMatches(p.slice(1), name)) return false;
    } else if (patternMatches(p, name)) hit = true;
  }
  return hit;
}

/** Checks the key an upstream presented against the pinned entries for host:port. */
export function verifyHostKey(entries: KnownHost[], host: string, port: number, keyType: string, key: Buffer): HostKeyVerdict {
  const name = hostName(host, port);
  const mine = entries.filter((e) => e.marker !== '@cert-authority' && entryMatches(e, name));
  if (mine.some((e) => e.marker === '@revoked' && e.key.equals(key))) {
    return { ok: false, reason: 'revoked', message: `upstream ${name} presented a revoked ${keyType} host key` };
  }
  const pinned = mine.filter((e) => e.marker === '');
  if (pinned.some((e) => e.key.equals(key))) return { ok: true };
  if (pinned.length === 0) {
    return { ok: false, reason: 'unknown', message: `upstream ${name} has no pinned host key in known_hosts: refusing to connect` };
  }
  return {
    ok: false,
    reason: 'mismatch',
    message: `upstream ${name} host key ${keyType} does not match the pinned known_hosts entry (possible man-in-the-middle): refusing to connect`,
  };
}

/** The key type named inside an SSH public key blob. */
export function blobKeyType(key: Buffer): string {
  if (key.length < 4) return 'unknown';
  const n = key.readUInt32BE(0);
  return key.subarray(4, 4 + n).toString('latin1');
}
