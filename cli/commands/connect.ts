import type { Command } from 'commander';
import { spawn } from 'node:child_process';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { currentToken } from '../../core/identity/current-token.ts';
import { loadResources, defaultResourcesFile, type ClientResource } from '../../core/client/resources.ts';
import { TaskgateError } from '../../core/errors.ts';
import { packageRoot } from '../../core/package-root.ts';

const BIN = join(packageRoot(), 'bin', 'taskgate.js');

export interface Launch {
  command: string;
  args: string[];
  env: Record<string, string>;
  files: Record<string, { content: string; mode: number }>;
}

/**
 * How to start the user's usual client for a resource with the token and the
 * task wired in. Pure: returns the command, environment and helper files.
 * The token itself never lands on disk: ssh and kubectl ask `taskgate token`
 * for it when they need it.
 */
export function planLaunch(name: string, r: ClientResource, task: string, opts: { token: string; user: string; tmp: string; extra: string[] }): Launch {
  const taskgate = `${JSON.stringify(process.execPath)} ${JSON.stringify(BIN)}`;
  switch (r.protocol) {
    case 'postgres':
      return {
        command: 'psql',
        args: opts.extra,
        env: {
          PGHOST: r.host,
          PGPORT: String(r.port),
          PGDATABASE: r.database,
          PGUSER: r.user ?? opts.user,
          PGPASSWORD: opts.token,
          PGOPTIONS: `-c taskgate.task=${task}`,
          PGSSLMODE: r.sslmode,
          PGAPPNAME: `taskgate-connect:${name}`,
        },
        files: {},
      };
    case 'ssh': {
      const askpass = join(opts.tmp, 'askpass');
      const args = [
        '-p', String(r.port),
        '-l', `${r.user ?? opts.user}+${task}`,
        '-o', 'PreferredAuthentications=keyboard-interactive,password',
        '-o', 'PubkeyAuthentication=no',
        '-o', 'NumberOfPasswordPrompts=1',
      ];
      const files: Launch['files'] = { [askpass]: { content: `#!/bin/sh\nexec ${taskgate} token\n`, mode: 0o700 } };
      if (r.known_hosts) {
        const kh = join(opts.tmp, 'known_hosts');
        files[kh] = { content: r.known_hosts.endsWith('\n') ? r.known_hosts : r.known_hosts + '\n', mode: 0o600 };
        args.push('-o', `UserKnownHostsFile=${kh}`, '-o', 'StrictHostKeyChecking=yes');
      }
      return { command: 'ssh', args: [...args, r.host, ...opts.extra], env: { SSH_ASKPASS: askpass, SSH_ASKPASS_REQUIRE: 'force', TASKGATE_TASK: task }, files };
    }
    case 'http': {
      if (!r.kubernetes) {
        return {
          command: 'curl',
          args: ['-sS', '-H', `x-taskgate-task: ${task}`, '-H', `authorization: Bearer ${opts.token}`, ...opts.extra],
          env: {},
          files: {},
        };
      }
      const kubeconfig = join(opts.tmp, 'kubeconfig');
      const server = `${r.url.replace(/\/$/, '')}/task/${encodeURIComponent(task)}`;
      const cluster: Record<string, unknown> = { server };
      if (r.ca_file) cluster['certificate-authority'] = r.ca_file;
      if (r.insecure_skip_tls_verify) cluster['insecure-skip-tls-verify'] = true;
      const cfg = {
        apiVersion: 'v1',
        kind: 'Config',
        clusters: [{ name, cluster }],
        users: [
          {
            name: 'taskgate',
            user: {
              exec: {
                apiVersion: 'client.authentication.k8s.io/v1',
                command: process.execPath,
                args: [BIN, 'token', '--kubernetes'],
                interactiveMode: 'Never',
              },
            },
          },
        ],
        contexts: [{ name, context: { cluster: name, user: 'taskgate' } }],
        'current-context': name,
      };
      return { command: 'kubectl', args: opts.extra, env: { KUBECONFIG: kubeconfig }, files: { [kubeconfig]: { content: JSON.stringify(cfg, null, 2), mode: 0o600 } } };
    }
  }
}

export function registerConnectCommands(program: Command): void {
  program
    .command('connect')
    .description('start psql / ssh / kubectl against a taskgate resource with your token and task wired in')
    .argument('<resource>', 'resource name from your resources file')
    .argument('[args...]', 'extra arguments for the client (after --)')
    .requiredOption('-t, --task <id>', 'the task you are working on (e.g. OPS-123)')
    .option('--resources <file>', 'resources file', defaultResourcesFile())
    .option('--dry-run', 'print the command and environment instead of running it (token redacted)')
    .action(async (name: string, extra: string[], o: { task: string; resources: string; dryRun?: boolean }) => {
      const resources = await loadResources(o.resources);
      const r = resources[name];
      if (!r) throw new TaskgateError('not_found', `no resource named ${name} (known: ${Object.keys(resources).join(', ') || 'none'})`);
      const { token, cached } = await currentToken();
      const user = (cached?.subject ?? process.env.USER ?? 'user').split('@')[0]!;
      const tmp = await mkdtemp(join(tmpdir(), 'taskgate-connect-'));
      await chmod(tmp, 0o700);
      try {
        const plan = planLaunch(name, r, o.task, { token, user, tmp, extra });
        if (o.dryRun) {
          const redact = (s: string) => s.split(token).join('<token>');
          process.stdout.write(
            JSON.stringify({ command: plan.command, args: plan.args.map(redact), env: Object.fromEntries(Object.entries(plan.env).map(([k, v]) => [k, redact(v)])) }, null, 2) + '\n',
          );
          return;
        }
        for (const [f, { content, mode }] of Object.entries(plan.files)) await writeFile(f, content, { mode });
        const code = await new Promise<number>((res, rej) => {
          const child = spawn(plan.command, plan.args, { stdio: 'inherit', env: { ...process.env, ...plan.env } });
          child.on('error', (e) =>
            rej(new TaskgateError('tool_missing', `cannot start ${plan.command}: ${(e as NodeJS.ErrnoException).code ?? e.message}`, { hint: `install ${plan.command}` })),
          );
          child.on('exit', (c, sig) => res(c ?? (sig ? 128 : 1)));
        });
        process.exitCode = code;
      } finally {
        await rm(tmp, { recursive: true, force: true });
      }
    });

  program
    .command('token')
    .description('print your current access token (refreshing it if needed); used by ssh askpass and kubectl')
    .option('--kubernetes', 'print a client.authentication.k8s.io/v1 ExecCredential')
    .action(async (o: { kubernetes?: boolean }) => {
      const { token, cached } = await currentToken();
      if (o.kubernetes) {
        const status: Record<string, string> = { token };
        if (cached) status.expirationTimestamp = new Date(cached.expires_at).toISOString();
        process.stdout.write(JSON.stringify({ apiVersion: 'client.authentication.k8s.io/v1', kind: 'ExecCredential', status }) + '\n');
      } else {
        process.stdout.write(token + '\n');
      }
    });
}
