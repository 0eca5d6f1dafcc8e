import type { Command } from 'commander';
import { loadConfigFile } from '../../core/config/load.ts';
import { TaskgateConfig } from '../../core/config/schema.ts';
import { createLogger } from '../../core/log.ts';
import { startSidecar } from '../../sidecar/runtime.ts';

/** `taskgate sidecar` (run the data path from taskgate.yaml) and `taskgate config check`. */
export function registerSidecarCommands(program: Command): void {
  program
    .command('sidecar')
    .description('run the sidecar: every PostgreSQL / SSH / HTTP listener and the ext_authz service configured in taskgate.yaml')
    .option('-c, --config <file>', 'configuration file', process.env.TASKGATE_CONFIG ?? 'taskgate.yaml')
    .action(async (o: { config: string }) => {
      const { config, baseDir } = await loadConfigFile(TaskgateConfig, o.config);
      const log = createLogger();
      const sc = await startSidecar(config, baseDir, { log });
      for (const l of sc.listening) log.info('listening', { ...l });
      log.info('metrics and health', { url: sc.metricsUrl, policy_revision: sc.engine.revision ?? null });
      await new Promise<void>((resolve) => {
        process.once('SIGTERM', resolve);
        process.once('SIGINT', resolve);
      });
      log.info('shutting down: closing listeners and flushing the audit spool');
      await sc.close();
    });

  const cfg = program.command('config').description('configuration helpers');
  cfg
    .command('check')
    .description('validate a taskgate.yaml (unknown keys and wrong types are errors naming the field)')
    .option('-c, --config <file>', 'configuration file', process.env.TASKGATE_CONFIG ?? 'taskgate.yaml')
    .option('--print', 'print the effective configuration (defaults and TASKGATE__ overrides applied)')
    .action(async (o: { config: string; print?: boolean }) => {
      const { config } = await loadConfigFile(TaskgateConfig, o.config);
      if (o.print) process.stdout.write(JSON.stringify(config, null, 2) + '\n');
      const n = config.postgres.length + config.ssh.length + config.http.length + (config.ext_authz ? 1 : 0);
      process.stderr.write(`${o.config}: ok (${n} listener${n === 1 ? '' : 's'})\n`);
    });
}
