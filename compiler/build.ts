import { createHash } from 'node:crypto';
import { readdir, readFile, stat } from 'node:fs/promises';
import { join, relative, resolve } from 'node:path';
import { TaskgateError } from '../core/errors.ts';
import { DECISION_ENTRYPOINT } from '../core/policy-contract.ts';
import { parseBundle, type PolicyBundle } from '../core/engine/bundle.ts';
import { writeCapabilitiesFile } from './capabilities.ts';
import { loadCatalog } from './catalog.ts';
import { runOpa } from './opa.ts';

export interface BuildOptions {
  dir: string;
  out: string;
  entrypoint?: string;
}

export interface BuildResult {
  out: string;
  revision: string;
  bundle: PolicyBundle;
  files: string[];
}

/** Files `opa build`/`opa eval` skip: tests and decision tables are not part of the shipped policy. */
export const IGNORED = ['*_test.rego', '*.tests.yaml', '*.tests.yml', 'tests', '.*'];

/** Policy source files (Rego and data), sorted, test files excluded. */
export async function policySources(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (d: string): Promise<void> => {
    for (const e of await readdir(d, { withFileTypes: true })) {
      if (e.name.startsWith('.') || e.name === 'tests' || e.name === 'node_modules') continue;
      const p = join(d, e.name);
      if (e.isDirectory()) await walk(p);
      else if (/\.rego$/.test(e.name) && !/_test\.rego$/.test(e.name)) out.push(p);
      else if (/^data\.(json|ya?ml)$/.test(e.name)) out.push(p);
    }
  };
  await walk(dir);
  return out.sort();
}

/** Revision derived from the content: sha256 over each source's relative path and bytes. */
export async function contentRevision(dir: string, files: string[]): Promise<string> {
  const h = createHash('sha256');
  for (const f of files) {
    h.update(relative(dir, f)).update('\0').update(await readFile(f)).update('\0');
  }
  return `sha256:${h.digest('hex').slice(0, 24)}`;
}

/**
 * `taskgate build`: compiles a policy directory to an OPA bundle whose policy
 * is WebAssembly, restricted to the builtins the WASM path supports, and
 * verifies the result loads with the decision entrypoint.
 */
export async function buildBundle(opts: BuildOptions): Promise<BuildResult> {
  const dir = resolve(opts.dir);
  const entrypoint = opts.entrypoint ?? DECISION_ENTRYPOINT;
  const st = await stat(dir).catch(() => undefined);
  if (!st?.isDirectory()) throw new TaskgateError('policy_compile', `policy directory ${opts.dir} does not exist`);
  const files = await policySources(dir);
  if (!files.some((f) => f.endsWith('.rego'))) {
    throw new TaskgateError('policy_compile', `no .rego files in ${opts.dir}`);
  }
  await loadCatalog(dir);
  const revision = await contentRevision(dir, files);
  const caps = await writeCapabilitiesFile();
  const args = ['build', '-t', 'wasm', '-e', entrypoint, '--capabilities', caps, '-r', revision, '-o', resolve(opts.out)];
  for (const ig of IGNORED) args.push('--ignore', ig);
  args.push('.');
  const r = await runOpa(args, { cwd: dir });
  if (r.code !== 0) throw compileError(r.stderr || r.stdout, opts.dir);
  const buf = await readFile(resolve(opts.out));
  const bundle = parseBundle(buf, entrypoint);
  return { out: opts.out, revision: bundle.revision, bundle, files: files.map((f) => relative(dir, f)) };
}

/**
 * Turns opa's compiler output into one TaskgateError. Undefined functions that
 * OPA itself knows are reported as builtins the WASM target does not support.
 */
export function compileError(output: string, dir: string): TaskgateError {
  const lines = output
    .split('\n')
    .map((l) => l.trim().replace(/^error: (load error: )?\d+ errors? occurred( during loading)?: ?/, ''))
    .filter((l) => l && !/^\d+ errors? occurred:?$/.test(l));
  const unsupported = lines
    .map((l) => /^(.*?:\d+(?::\d+)?): rego_type_error: undefined function (\S+)/.exec(l))
    .filter((m): m is RegExpExecArray => m !== null);
  if (unsupported.length > 0) {
    const list = unsupported.map((m) => `${m[2]} at ${prefixed(dir, m[1] as string)}`).join('; ');
    return new TaskgateError(
      'policy_unsupported_builtin',
      `builtin not supported by the WebAssembly target (or not defined): ${list}`,
      { hint: 'use a WASM-supported builtin; see docs/writing-policies.md#builtins' },
    );
  }
  const msg = lines.map((l) => (/^[^\s:]+\.rego:\d+/.test(l) ? prefixed(dir, l) : l)).join('\n  ');
  return new TaskgateError('policy_compile', `policy does not compile:\n  ${msg}`);
}

function prefixed(dir: string, loc: string): string {
  return loc.startsWith('/') ? loc : join(dir, loc);
}
