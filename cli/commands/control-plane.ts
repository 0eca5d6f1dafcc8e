import type { Command } from 'commander';
import { loadConfig } from '../../control-plane/config.ts';
import { startControlPlane } from '../../control-plane/server.ts';
import { OidcAuthenticator } from '../../core/identity/oidc.ts';
import { createLogger } from '../../core/log.ts';

/** `taskgate control-plane --config file.yaml`: runs the control plane until SIGINT/SIGTERM. */
export function registerControlPlaneCommands(program: Command): void {
  program
    .command('control-plane')
    .description('run the control plane: tasks, reviews, web inbox, webhooks (PGlite by default, PostgreSQL for several replicas)')
    .requiredOption('-c, --config <file>', 'control-plane YAML (docs/control-plane.md)')
    .option('--listen <host:port>', 'override listen address')
    .action(async (o: { config: string; listen?: string }) => {
      const cfg = await loadConfig(o.config);
      const log = createLogger({ base: { component: 'control-plane' } });
      const authenticator = await OidcAuthenticator.discover(cfg.oidc);
      let [host, port] = [cfg.host, cfg.port];
      if (o.listen) {
        const m = /^(.*):(\d+)$/.exec(o.listen);
        if (m) [host, port] = [m[1]!, Number(m[2])];
      }
      const cp = await startControlPlane({ ...cfg.options, authenticator, host, port, storage: cfg.storage, log });
      process.stdout.write(`control plane on ${cp.url} (storage ${cp.db.engine}); inbox ${cp.url}/inbox\n`);
      await new Promise<void>((resolve) => {
        const stop = () => resolve();
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
      });
      await cp.close();
    });
}
