import type { Command } from 'commander';
import { CommanderError } from 'commander';
import { isTaskgateError, errorMessage } from '../core/errors.ts';

/** Runs the program; every failure is one clear line (with a hint), details with --verbose. */
export async function runCli(program: Command, argv = process.argv): Promise<void> {
  program.exitOverride();
  try {
    await program.parseAsync(argv);
  } catch (e) {
    if (e instanceof CommanderError) {
      process.exitCode = e.exitCode;
      return;
    }
    const verbose = program.opts().verbose === true || process.env.TASKGATE_VERBOSE === '1';
    const code = isTaskgateError(e) ? e.code : 'internal';
    process.stderr.write(`taskgate: error[${code}]: ${errorMessage(e)}\n`);
    if (isTaskgateError(e) && e.hint) process.stderr.write(`  hint: ${e.hint}\n`);
    if (verbose && e instanceof Error && e.stack) process.stderr.write(e.stack + '\n');
    else if (!isTaskgateError(e)) process.stderr.write('  hint: re-run with --verbose for details\n');
    process.exitCode = process.exitCode && process.exitCode !== 0 ? process.exitCode : 1;
  }
}
