import type { Command } from 'commander';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { TaskgateError } from '../../core/errors.ts';
import { FileRecordingSink, replayAsciicast } from '../../sidecar/ssh/recording.ts';
import { execRequest } from '../../sidecar/ssh/request.ts';

const DEFAULT_RECORDINGS = process.env.TASKGATE_RECORDINGS ?? join('.taskgate', 'recordings');

/** `taskgate replay <session>`: plays a recorded SSH session (asciicast v2) in the terminal. */
export function registerSshCommands(program: Command): void {
  program
    .command('replay')
    .description('play a recorded SSH session (asciicast v2) in this terminal')
    .argument('<session>', 'session id (every channel of the session, in order) or a channel recording id (<session>-<n>)')
    .option('-d, --dir <dir>', 'recordings directory', DEFAULT_RECORDINGS)
    .option('-s, --speed <n>', 'playback speed (2 = twice as fast; 0 = no delays)', '1')
    .option('-i, --idle-limit <seconds>', 'longest pause kept between two outputs', '2')
    .option('--cat', 'print the recorded output at once (same as --speed 0)')
    .action(async (session: string, o: { dir: string; speed: string; idleLimit: string; cat?: boolean }) => {
      const speed = o.cat ? 0 : Number(o.speed);
      const idle = Number(o.idleLimit);
      if (!Number.isFinite(speed) || speed < 0) throw new TaskgateError('input_invalid', `--speed must be a number >= 0, not ${o.speed}`);
      if (!Number.isFinite(idle) || idle < 0) throw new TaskgateError('input_invalid', `--idle-limit must be a number >= 0, not ${o.idleLimit}`);
      const casts = await sessionCasts(o.dir, session);
      for (const text of casts) {
        await replayAsciicast(text, (d) => process.stdout.write(d), { speed: speed === 0 ? Infinity : speed, idleLimit: speed === 0 ? 0 : idle });
      }
    });
}

/** `taskgate input ssh --command "<text>"`: the `request` block the SSH sidecar builds for an exec command. */
export function registerSshInputCommand(input: Command): void {
  input
    .command('ssh')
    .description('analyse a command as the SSH sidecar does (exec) and print the request block as JSON')
    .requiredOption('-c, --command <text>', 'the command line as `ssh host <command>` would send it')
    .option('--line', 'analyse it as a line typed in an interactive shell (kind shell_line)')
    .action((o: { command: string; line?: boolean }) => {
      process.stdout.write(JSON.stringify(execRequest(o.command, o.line ? 'shell_line' : 'exec'), null, 2) + '\n');
    });
}

/** The asciicast texts of a session: `<id>.cast`, else every `<id>-<n>.cast` in channel order. */
export async function sessionCasts(dir: string, session: string): Promise<string[]> {
  const sink = new FileRecordingSink(dir);
  try {
    return [await sink.asciicast(session)];
  } catch (e) {
    if (!(e instanceof TaskgateError) || e.code !== 'not_found') throw e;
  }
  const names = (await readdir(dir).catch(() => [] as string[]))
    .map((n) => ({ n, m: new RegExp(`^${session.replace(/[^A-Za-z0-9]/g, '\\$&')}-(\\d+)\\.cast$`).exec(n) }))
    .filter((x) => x.m)
    .sort((a, b) => Number(a.m![1]) - Number(b.m![1]));
  if (names.length === 0) throw new TaskgateError('not_found', `no recording for session ${session} in ${dir}`, { hint: 'the session id is in the audit events (session_id, details.recording)' });
  return Promise.all(names.map((x) => readFile(join(dir, x.n), 'utf8')));
}
