import type { Command } from 'commander';
import { readFile } from 'node:fs/promises';
import { buildBundle } from '../../compiler/build.ts';
import { PolicyEngine } from '../../core/engine/engine.ts';
import { TaskgateError } from '../../core/errors.ts';
import { fmtPolicies, lintPolicies, type FmtMode } from '../../compiler/lint.ts';
import { runPolicyTests } from '../../compiler/test.ts';

/** Policy commands: build, eval, test, fmt, lint (thin calls into compiler/). */
export function registerPolicyCommands(program: Command): void {
  program
    .command('build')
    .description('compile a policy directory to an OPA bundle with a WebAssembly policy')
    .argument('[dir]', 'policy directory', 'policies')
    .option('-o, --output <file>', 'bundle path', 'bundle.tar.gz')
    .option('-e, --entrypoint <path>', 'policy entrypoint (opa-envoy-plugin policies: envoy/authz/allow)', 'taskgate/decision')
    .action(async (dir: string, o: { output: string; entrypoint: string }) => {
      const r = await buildBundle({ dir, out: o.output, entrypoint: o.entrypoint });
      process.stdout.write(`built ${r.out} (revision ${r.revision}, ${r.files.length} source files, policy.wasm ${r.bundle.wasm.length} bytes)\n`);
    });

  program
    .command('test')
    .description('run opa test (with coverage) and the decision tables against the compiled WASM bundle and opa eval')
    .argument('[dir]', 'policy directory', 'policies')
    .option('--threshold <percent>', 'minimum coverage of the policy files', '90')
    .action(async (dir: string, o: { threshold: string }) => {
      const threshold = Number(o.threshold);
      if (!Number.isFinite(threshold) || threshold < 0 || threshold > 100) {
        throw new TaskgateError('input_invalid', `--threshold must be a percentage between 0 and 100, got ${o.threshold}`);
      }
      const r = await runPolicyTests({ dir, threshold });
      process.stdout.write(r.ok ? 'PASS\n' : 'FAIL\n');
      if (!r.ok) process.exitCode = 1;
    });

  program
    .command('fmt')
    .description('format Rego with opa fmt (default: list unformatted files and fail, like --check)')
    .argument('[dir]', 'policy directory', 'policies')
    .option('--check', 'list files that are not formatted and fail if any (default)')
    .option('--diff', 'show the formatting diff and fail if any')
    .option('-w, --write', 'rewrite files in place')
    .action(async (dir: string, o: { check?: boolean; diff?: boolean; write?: boolean }) => {
      const modes = (['check', 'diff', 'write'] as const).filter((m) => o[m]);
      if (modes.length > 1) throw new TaskgateError('input_invalid', `choose one of --check, --diff, --write (got ${modes.join(', ')})`);
      const mode: FmtMode = modes[0] ?? 'check';
      const r = await fmtPolicies(dir, mode);
      if (r.output) process.stdout.write(`${r.output}\n`);
      if (mode === 'write') process.stdout.write(r.output ? 'formatted the files above\n' : 'all files already formatted\n');
      else if (r.ok) process.stdout.write('all Rego files are formatted\n');
      else {
        process.stderr.write(`Rego files are not formatted: run taskgate fmt --write ${dir}\n`);
        process.exitCode = 1;
      }
    });

  program
    .command('lint')
    .description('opa check --strict (WebAssembly capabilities), catalog and decision-table validation, regal lint if installed')
    .argument('[dir]', 'policy directory', 'policies')
    .action(async (dir: string) => {
      const r = await lintPolicies(dir);
      for (const p of r.problems) process.stdout.write(`${p}\n`);
      process.stdout.write(`${r.ok ? 'ok' : `${r.problems.length} problem(s)`}: ${r.ran.join(', ')}\n`);
      if (!r.ok) process.exitCode = 1;
    });

  program
    .command('eval')
    .description('evaluate one input against a compiled bundle and print the decision')
    .requiredOption('-b, --bundle <file>', 'bundle .tar.gz')
    .requiredOption('-i, --input <file>', 'input JSON file (- for stdin)')
    .action(async (o: { bundle: string; input: string }) => {
      const engine = new PolicyEngine();
      await engine.load(await readFile(o.bundle), o.bundle);
      const raw = o.input === '-' ? await readStdin() : await readFile(o.input, 'utf8');
      let input: unknown;
      try {
        input = JSON.parse(raw);
      } catch (e) {
        throw new TaskgateError('input_invalid', `input ${o.input} is not valid JSON: ${(e as Error).message}`);
      }
      if (input === null || typeof input !== 'object' || Array.isArray(input)) {
        throw new TaskgateError('input_invalid', `input ${o.input} must be a JSON object (the policy input document)`);
      }
      const d = engine.evaluate(input);
      process.stdout.write(JSON.stringify(d, null, 2) + '\n');
      process.stderr.write(`evaluated in ${(d.eval_ns / 1000).toFixed(1)} µs (revision ${d.policy_revision})\n`);
    });
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}
