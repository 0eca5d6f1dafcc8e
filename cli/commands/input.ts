import type { Command } from 'commander';
import { readFile } from 'node:fs/promises';
import { classifySql } from '../../sidecar/postgres/classify.ts';
import { TaskgateError } from '../../core/errors.ts';
import { registerSshInputCommand } from './ssh.ts';
import { registerHttpInputCommand } from './ext-authz.ts';

/**
 * `taskgate input <protocol>`: print the `request` block a sidecar builds for
 * a command, so policy authors see exactly what their policy receives.
 * Other protocols add their subcommands to the same `input` group.
 */
export function registerInputCommands(program: Command): Command {
  const input = program.command('input').description('print the policy input `request` block a sidecar builds for a command');

  input
    .command('postgres')
    .description('classify SQL as the PostgreSQL sidecar does and print the request block as JSON')
    .option('--sql <text>', 'the SQL text (one or more statements)')
    .option('-f, --file <path>', 'read the SQL text from a file (- for stdin)')
    .option('--message <kind>', 'protocol message that carries it: query | parse', 'query')
    .action(async (o: { sql?: string; file?: string; message: string }) => {
      if ((o.sql === undefined) === (o.file === undefined)) {
        throw new TaskgateError('input_invalid', 'give exactly one of --sql <text> or --file <path>');
      }
      if (o.message !== 'query' && o.message !== 'parse') {
        throw new TaskgateError('input_invalid', `--message must be query or parse, not ${JSON.stringify(o.message)}`);
      }
      const text = o.sql ?? (o.file === '-' ? await readStdin() : await readFile(o.file!, 'utf8'));
      const r = await classifySql(text, { message: o.message });
      process.stdout.write(JSON.stringify(r.request, null, 2) + '\n');
    });

  registerSshInputCommand(input);
  registerHttpInputCommand(input);
  return input;
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}
