import type { Command } from 'commander';
import { readFile } from 'node:fs/promises';
import { buildBundle } from '../../compiler/build.ts';
import { PolicyEngine } from '../../core/engine/engine.ts';
import { TaskgateError } from '../../core/errors.ts';

/** Policy commands: build, eval (test, fmt, lint live in compiler/ too). */
export function registerPolicyCommands(program: Command): void {
  program
    .command('build')
    .description('compile a policy directory to an OPA bundle with a WebAssembly policy')
    .argument('[dir]', 'policy directory', 'policies')
    .option('-o, --output <file>', 'bundle path', 'bundle.tar.gz')
    .action(async (dir: string, o: { output: string }) => {
      const r = await buildBundle({ dir, out: o.output });
      process.stdout.write(`built ${r.out} (revision ${r.revision}, ${r.files.length} source files, policy.wasm ${r.bundle.wasm.length} bytes)\n`);
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
