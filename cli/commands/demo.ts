import type { Command } from 'commander';
import { runDemo } from '../../demo/demo.ts';

export function registerDemoCommands(program: Command): void {
  program
    .command('demo')
    .description('run the end-to-end demo on embedded defaults (PostgreSQL, OIDC issuer, control plane on PGlite, sidecar, audit)')
    .option('--dir <dir>', 'working directory', '.taskgate/demo')
    .option('--port <port>', 'sidecar PostgreSQL port (0 = any free port)', '15432')
    .option('--exit', 'stop after the story instead of leaving the services up')
    .action(async (o: { dir: string; port: string; exit?: boolean }) => {
      const verbose = program.opts().verbose === true;
      const demo = await runDemo({ dir: o.dir, port: Number(o.port), exit: o.exit === true, verbose });
      if (o.exit) {
        await demo.close();
        return;
      }
      process.stdout.write('Ctrl-C stops everything.\n');
      await new Promise<void>((resolve) => {
        process.once('SIGINT', resolve);
        process.once('SIGTERM', resolve);
      });
      process.stdout.write('\nstopping ...\n');
      await demo.close();
    });
}
