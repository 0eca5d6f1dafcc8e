import { createRequire } from 'node:module';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { TaskgateError } from '../core/errors.ts';
import { HOST_BUILTIN_DECLS } from '../core/engine/host-builtins.ts';
import { runOpa } from './opa.ts';

const require = createRequire(import.meta.url);

type Caps = { builtins: { name: string }[]; [k: string]: unknown };

/** Builtin names @open-policy-agent/opa-wasm can run (natively compiled or implemented in JS). */
export function sdkBuiltinNames(): Set<string> {
  // The package's exports map does not expose capabilities.json: resolve it beside the entry point.
  const file = join(dirname(require.resolve('@open-policy-agent/opa-wasm')), '..', 'capabilities.json');
  const sdk = JSON.parse(readFileSync(file, 'utf8')) as Caps;
  return new Set(sdk.builtins.map((b) => b.name));
}

/**
 * The builtins the shipped artifact can run: OPA's current capabilities (its
 * language features and exact declarations) restricted to the builtins
 * @open-policy-agent/opa-wasm supports, plus the host builtins taskgate
 * provides (core/engine/host-builtins.ts). Passed to `opa build
 * --capabilities` so any other builtin fails the build with file:line instead
 * of failing at evaluation time.
 */
export async function wasmCapabilities(): Promise<Caps> {
  const r = await runOpa(['capabilities', '--current']);
  if (r.code !== 0) throw new TaskgateError('tool_missing', `opa capabilities failed: ${r.stderr.trim()}`);
  const current = JSON.parse(r.stdout) as Caps;
  const allowed = sdkBuiltinNames();
  for (const h of HOST_BUILTIN_DECLS) allowed.add(h.name);
  return { ...current, builtins: current.builtins.filter((b) => allowed.has(b.name)) };
}

export async function writeCapabilitiesFile(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'taskgate-caps-'));
  const file = join(dir, 'capabilities.json');
  await writeFile(file, JSON.stringify(await wasmCapabilities()));
  return file;
}
