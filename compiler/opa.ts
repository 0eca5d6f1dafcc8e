import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { TaskgateError } from '../core/errors.ts';
import { packageRoot } from '../core/package-root.ts';


/** Finds the opa binary: $TASKGATE_OPA, the project's .tools/bin/opa, then PATH. */
export function opaPath(): string {
  const env = process.env.TASKGATE_OPA;
  if (env) return env;
  const local = join(packageRoot(), '.tools', 'bin', 'opa');
  if (existsSync(local)) return local;
  for (const d of (process.env.PATH ?? '').split(':')) {
    const p = join(d, 'opa');
    if (d && existsSync(p)) return p;
  }
  throw new TaskgateError('tool_missing', 'the opa binary was not found', {
    hint: 'run `bash scripts/setup.sh` (builds the pinned opa into .tools/bin) or set TASKGATE_OPA=/path/to/opa',
  });
}

export interface OpaResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs opa with arguments; never throws on a non-zero exit (the caller reads code/stderr). */
export function runOpa(args: string[], opts: { cwd?: string; input?: string; timeoutMs?: number } = {}): Promise<OpaResult> {
  const bin = opaPath();
  return new Promise((res, rej) => {
    const child = execFile(
      bin,
      args,
      { cwd: opts.cwd, maxBuffer: 64 * 1024 * 1024, timeout: opts.timeoutMs ?? 120_000 },
      (err, stdout, stderr) => {
        if (err && typeof (err as NodeJS.ErrnoException).code === 'string') {
          rej(new TaskgateError('tool_missing', `could not run ${bin}: ${err.message}`));
          return;
        }
        res({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
      },
    );
    if (opts.input !== undefined) child.stdin?.end(opts.input);
  });
}
