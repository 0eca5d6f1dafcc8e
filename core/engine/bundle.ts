import { createHash } from 'node:crypto';
import { TaskgateError } from '../errors.ts';
import { DECISION_ENTRYPOINT } from '../policy-contract.ts';
import { readTarGz } from './tar.ts';

export interface BundleManifest {
  revision?: string;
  roots?: string[];
  wasm?: { entrypoint: string; module: string }[];
  metadata?: Record<string, unknown>;
}

export interface PolicyBundle {
  revision: string;
  manifest: BundleManifest;
  wasm: Buffer;
  data: unknown;
  /** sha256 of the bundle bytes as loaded. */
  digest: string;
}

/**
 * Parses and verifies an OPA bundle whose policy is WebAssembly: the manifest
 * names a wasm module for `taskgate/decision`, the module is present and is
 * WebAssembly, data.json parses. Throws TaskgateError('bundle_invalid') with a
 * one-line reason otherwise.
 */
export function parseBundle(buf: Buffer, entrypoint = DECISION_ENTRYPOINT): PolicyBundle {
  const files = readTarGz(buf);
  const manifestRaw = files.get('/.manifest');
  let manifest: BundleManifest = {};
  if (manifestRaw) {
    try {
      manifest = JSON.parse(manifestRaw.toString('utf8')) as BundleManifest;
    } catch {
      throw new TaskgateError('bundle_invalid', 'bundle .manifest is not valid JSON');
    }
  }
  const wasmEntries = manifest.wasm ?? [];
  const entry = wasmEntries.find((w) => w.entrypoint === entrypoint);
  if (wasmEntries.length > 0 && !entry) {
    throw new TaskgateError(
      'bundle_invalid',
      `bundle has no wasm module for entrypoint "${entrypoint}" (has: ${wasmEntries.map((w) => w.entrypoint).join(', ') || 'none'})`,
    );
  }
  const modulePath = entry?.module ?? '/policy.wasm';
  const wasm = files.get(modulePath.startsWith('/') ? modulePath : `/${modulePath}`);
  if (!wasm) throw new TaskgateError('bundle_invalid', `bundle has no ${modulePath} (build it with: taskgate build)`);
  if (wasm.length < 8 || wasm.readUInt32BE(0) !== 0x0061736d) {
    throw new TaskgateError('bundle_invalid', `${modulePath} in the bundle is not WebAssembly`);
  }
  let data: unknown = {};
  const dataRaw = files.get('/data.json');
  if (dataRaw) {
    try {
      data = JSON.parse(dataRaw.toString('utf8'));
    } catch {
      throw new TaskgateError('bundle_invalid', 'bundle data.json is not valid JSON');
    }
  }
  const digest = createHash('sha256').update(buf).digest('hex');
  return { revision: manifest.revision || `sha256:${digest.slice(0, 16)}`, manifest, wasm, data, digest };
}
