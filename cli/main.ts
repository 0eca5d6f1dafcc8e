import { Command } from 'commander';
import { tuneRuntimeForServing } from '../core/serving-runtime.ts';
import { runCli } from './run.ts';
import { registerPolicyCommands } from './commands/policy.ts';
import { registerIdentityCommands } from './commands/identity.ts';
import { registerInjectCommands } from './commands/inject.ts';
import { registerConnectCommands } from './commands/connect.ts';
import { registerSidecarCommands } from './commands/sidecar.ts';
import { registerDemoCommands } from './commands/demo.ts';
import { registerStatusCommands } from './commands/status.ts';
import { registerAuditCommands } from './commands/audit.ts';
import { registerInputCommands } from './commands/input.ts';
import { registerSshCommands } from './commands/ssh.ts';
import { registerTaskCommands } from './commands/task.ts';
import { registerReviewCommands } from './commands/review.ts';
import { registerControlPlaneCommands } from './commands/control-plane.ts';
import { registerExtAuthzCommands } from './commands/ext-authz.ts';

/**
 * The taskgate CLI. Each command file registers its commands and calls into
 * the shared core; nothing here holds logic of its own.
 */
const program = new Command('taskgate')
  .description('Task-bound access gateway: policy as code, enforced in the data path')
  .option('-v, --verbose', 'show detail (stack traces, debug logs)')
  .showHelpAfterError('(run with --help for usage)');

registerPolicyCommands(program);
registerIdentityCommands(program);
registerInjectCommands(program);
registerConnectCommands(program);
registerSidecarCommands(program);
registerDemoCommands(program);
registerStatusCommands(program);
registerAuditCommands(program);
registerInputCommands(program);
registerSshCommands(program);
registerTaskCommands(program);
registerReviewCommands(program);
registerControlPlaneCommands(program);
registerExtAuthzCommands(program);

// Before any server starts: see core/serving-runtime.ts.
tuneRuntimeForServing();
await runCli(program);
