import { existsSync } from 'node:fs';
import { execFile } from 'node:child_process';
import { join, resolve } from 'node:path';
import { IGNORED } from './build.ts';
import { writeCapabilitiesFile } from './capabilities.ts';
import { loadCatalog } from './catalog.ts';
import { runOpa } from './opa.ts';
import { loadTables } from './tables.ts';
import { errorMessage } from '../core/errors.ts';
import { packageRoot } from '../core/package-root.ts';


export type FmtMode = 'check' | 'diff' | 'write' | 'list';

export interface FmtResult {
  ok: boolean;
  /** Files opa fmt would change (check/list), or the diff (diff), or files rewritten (write). */
  output: string;
}

/** `taskgate fmt`: opa fmt over the directory. check/diff fail when a file is not formatted. */
export async function fmtPolicies(dir: string, mode: FmtMode): Promise<FmtResult> {
  const flag = { check: ['--list', '--fail'], list: ['--list'], diff: ['--diff', '--fail'], write: ['--write', '--list'] }[mode];
  const r = await runOpa(['fmt', ...flag, resolve(dir)]);
  const output = (r.stdout + r.stderr).trim();
  if (mode === 'write' || mode === 'list') return { ok: r.code === 0, output };
  return { ok: r.code === 0 && (mode !== 'check' || output === ''), output };
}

export interface LintResult {
  ok: boolean;
  problems: string[];
  /** Which checks ran. */
  ran: string[];
}

/**
 * `taskgate lint`: `opa check --strict` of the shipped policy against the
 * WebAssembly capabilities (so an unsupported builtin is reported here too),
 * `opa check --strict` of the tests, the catalog and decision-table
 * validation, and `regal lint` when a regal binary is installed.
 */
export async function lintPolicies(dir: string): Promise<LintResult> {
  const problems: string[] = [];
  const ran: string[] = [];
  const abs = resolve(dir);
  const caps = await writeCapabilitiesFile();
  const ignores = IGNORED.flatMap((i) => ['--ignore', i]);
  const shipped = await runOpa(['check', '--strict', '--capabilities', caps, ...ignores, '.'], { cwd: abs });
  ran.push('opa check --strict (WebAssembly capabilities)');
  if (shipped.code !== 0) problems.push(...opaLines(shipped.stderr || shipped.stdout, dir));
  const testIgnores = IGNORED.filter((i) => i !== '*_test.rego').flatMap((i) => ['--ignore', i]);
  const tests = await runOpa(['check', '--strict', ...testIgnores, '.'], { cwd: abs });
  ran.push('opa check --strict (with tests)');
  if (tests.code !== 0 && shipped.code === 0) problems.push(...opaLines(tests.stderr || tests.stdout, dir));
  ran.push('catalog');
  let catalog;
  try {
    catalog = await loadCatalog(dir);
  } catch (e) {
    problems.push(...errorMessage(e).split('\n').slice(1).map((l) => l.trim()));
  }
  ran.push('decision tables');
  try {
    await loadTables(dir, catalog?.catalog);
  } catch (e) {
    problems.push(...errorMessage(e).split('\n').slice(1).map((l) => l.trim()));
  }
  const regal = regalPath();
  if (regal) {
    ran.push(`regal lint (${regal})`);
    const r = await new Promise<{ code: number; out: string }>((res) => {
      execFile(regal, ['lint', '--format', 'compact', ...IGNORED.flatMap((i) => ['--ignore-files', i]), abs], { timeout: 120_000 }, (err, stdout, stderr) => {
        res({ code: err ? 1 : 0, out: `${stdout}${stderr}`.trim() });
      });
    });
    if (r.code !== 0) problems.push(...r.out.split('\n').filter((l) => l.trim()));
  }
  return { ok: problems.length === 0, problems, ran };
}

function opaLines(output: string, dir: string): string[] {
  return output
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !/^\d+ errors? occurred:?$/.test(l))
    .map((l) => (/^[^\s/][^\s:]*\.rego:\d+/.test(l) ? join(dir, l) : l));
}

/** regal from $TASKGATE_REGAL, .tools/bin or PATH; undefined when not installed. */
export function regalPath(): string | undefined {
  if (process.env.TASKGATE_REGAL) return process.env.TASKGATE_REGAL;
  const local = join(packageRoot(), '.tools', 'bin', 'regal');
  if (existsSync(local)) return local;
  for (const d of (process.env.PATH ?? '').split(':')) {
    if (d && existsSync(join(d, 'regal'))) return join(d, 'regal');
  }
  return undefined;
}
