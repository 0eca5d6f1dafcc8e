import { gunzipSync } from 'node:zlib';
import { TaskgateError } from '../errors.ts';

/** Files of a gzip'd tar archive (ustar/pax as written by `opa build`), by normalised path (`/policy.wasm`). */
export function readTarGz(buf: Buffer): Map<string, Buffer> {
  if (buf.length < 2 || buf[0] !== 0x1f || buf[1] !== 0x8b) {
    throw new TaskgateError('bundle_invalid', 'bundle is not gzip data (expected an OPA bundle .tar.gz)');
  }
  let tar: Buffer;
  try {
    tar = gunzipSync(buf);
  } catch (e) {
    throw new TaskgateError('bundle_invalid', `bundle is truncated or corrupt gzip: ${(e as Error).message}`);
  }
  return readTar(tar);
}

export function readTar(tar: Buffer): Map<string, Buffer> {
  const files = new Map<string, Buffer>();
  let off = 0;
  let paxPath: string | undefined;
  let sawEnd = false;
  while (off + 512 <= tar.length) {
    const header = tar.subarray(off, off + 512);
    if (header.every((b) => b === 0)) {
      sawEnd = true;
      break;
    }
    if (!verifyChecksum(header)) {
      throw new TaskgateError('bundle_invalid', `bundle is not a valid tar archive (bad header checksum at offset ${off})`);
    }
    const name = cstr(header.subarray(0, 100));
    const prefix = cstr(header.subarray(345, 500));
    const size = parseOctal(header.subarray(124, 136));
    if (!Number.isFinite(size)) throw new TaskgateError('bundle_invalid', `bundle is not a valid tar archive (bad size at offset ${off})`);
    const type = String.fromCharCode(header[156] ?? 0x30);
    const dataStart = off + 512;
    const dataEnd = dataStart + size;
    if (dataEnd > tar.length) throw new TaskgateError('bundle_invalid', `bundle is truncated: entry "${name}" needs ${size} bytes`);
    const data = tar.subarray(dataStart, dataEnd);
    if (type === 'x') {
      const m = /\d+ path=([^\n]*)\n/.exec(data.toString('utf8'));
      paxPath = m?.[1];
    } else if (type === '0' || type === '\0') {
      const full = paxPath ?? (prefix ? `${prefix}/${name}` : name);
      files.set(normalise(full), Buffer.from(data));
      paxPath = undefined;
    } else {
      paxPath = undefined;
    }
    off = dataStart + Math.ceil(size / 512) * 512;
  }
  if (!sawEnd && off < tar.length) throw new TaskgateError('bundle_invalid', 'bundle tar stream is truncated');
  return files;
}

function normalise(p: string): string {
  const s = p.replace(/^\.?\/*/, '');
  return '/' + s;
}

function cstr(b: Buffer): string {
  const z = b.indexOf(0);
  return b.subarray(0, z === -1 ? b.length : z).toString('utf8');
}

function parseOctal(b: Buffer): number {
  const s = cstr(b).trim();
  if (s === '') return 0;
  if (!/^[0-7]+$/.test(s)) return NaN;
  return parseInt(s, 8);
}

function verifyChecksum(h: Buffer): boolean {
  const stored = parseOctal(h.subarray(148, 156));
  if (!Number.isFinite(stored)) return false;
  let sum = 0;
  for (let i = 0; i < 512; i++) sum += i >= 148 && i < 156 ? 32 : (h[i] as number);
  return sum === stored;
}
