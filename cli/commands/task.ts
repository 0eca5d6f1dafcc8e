import type { Command } from 'commander';
import { ControlPlaneHttp } from '../../control-plane/client/http.ts';
import type { StoredTask } from '../../control-plane/storage/records.ts';
import { currentToken } from '../../core/identity/current-token.ts';
import { defaultTokenFile } from '../../core/identity/token-cache.ts';

/** Where the CLI reaches the control plane with the user's own token (`taskgate login`, or TASKGATE_TOKEN). */
export function controlPlaneOptions(cmd: Command): Command {
  return cmd
    .option('--server <url>', 'control-plane URL (env TASKGATE_CONTROL_PLANE)', process.env.TASKGATE_CONTROL_PLANE ?? 'http://127.0.0.1:8181')
    .option('--token-file <path>', 'token cache from `taskgate login`', defaultTokenFile())
    .option('--json', 'print JSON');
}

export interface ControlPlaneCliOptions {
  server: string;
  tokenFile: string;
  json?: boolean;
}

export function apiClient(o: ControlPlaneCliOptions): ControlPlaneHttp {
  return new ControlPlaneHttp({ url: o.server, token: async () => (await currentToken({ file: o.tokenFile })).token, timeoutMs: 15_000 });
}

export function print(o: { json?: boolean }, value: unknown, text: () => string): void {
  process.stdout.write(o.json ? JSON.stringify(value, null, 2) + '\n' : text() + '\n');
}

function taskLine(t: StoredTask): string {
  return `${t.id}\t${t.state}\t${t.type}\t${t.assignee}\treviewers=${t.reviewers.join(',')}\texpires=${t.expires_at}${t.title ? `\t${t.title}` : ''}`;
}

function taskDetail(t: StoredTask): string {
  return [
    `task ${t.id} (${t.state})`,
    `  type:      ${t.type}`,
    `  assignee:  ${t.assignee}`,
    `  reviewers: ${t.reviewers.join(', ')}`,
    `  expires:   ${t.expires_at}`,
    ...(t.title ? [`  title:     ${t.title}`] : []),
    ...(t.ticket ? [`  ticket:    ${t.ticket}`] : []),
    `  source:    ${t.source}`,
    ...(t.ended_at ? [`  ended:     ${t.ended_at}`] : []),
  ].join('\n');
}

/** Parses 90s, 30m, 8h, 7d. */
export function parseDuration(s: string): number {
  const m = /^(\d+)\s*([smhd])$/.exec(s.trim());
  if (!m) throw new Error(`duration ${JSON.stringify(s)} must look like 30m, 8h or 7d`);
  return Number(m[1]) * { s: 1, m: 60, h: 3600, d: 86400 }[m[2] as 's' | 'm' | 'h' | 'd'];
}

/** `taskgate task create|close|list|show`: the task registry through the control-plane API. */
export function registerTaskCommands(program: Command): void {
  const task = program.command('task').description('tasks in the control plane: what an assignee may do, reviewed by whom, until when');

  controlPlaneOptions(
    task
      .command('create')
      .description('open a task')
      .argument('<id>', 'task id, e.g. OPS-123')
      .requiredOption('-t, --type <type>', 'task type from the policy catalog')
      .requiredOption('-a, --assignee <subject>', 'who works on it')
      .requiredOption('-r, --reviewer <subject...>', 'reviewer(s): subjects or group:<name>')
      .option('-e, --expires-in <duration>', 'lifetime, e.g. 8h or 7d', '7d')
      .option('--title <text>', 'title')
      .option('--ticket <url>', 'link to the ticket'),
  ).action(async (id: string, o: ControlPlaneCliOptions & { type: string; assignee: string; reviewer: string[]; expiresIn: string; title?: string; ticket?: string }) => {
    const body = { id, type: o.type, assignee: o.assignee, reviewers: o.reviewer, ttl_s: parseDuration(o.expiresIn), ...(o.title ? { title: o.title } : {}), ...(o.ticket ? { ticket: o.ticket } : {}) };
    const { task: t } = await apiClient(o).request<{ task: StoredTask }>('POST', '/api/v1/tasks', body);
    print(o, t, () => `created ${taskDetail(t)}`);
  });

  controlPlaneOptions(
    task.command('close').description('close a task: its access ends at once (held commands fail, sessions end, grants revoked)').argument('<id>').option('--reason <text>', 'why'),
  ).action(async (id: string, o: ControlPlaneCliOptions & { reason?: string }) => {
    const { task: t } = await apiClient(o).request<{ task: StoredTask }>('POST', `/api/v1/tasks/${encodeURIComponent(id)}/close`, o.reason ? { reason: o.reason } : {});
    print(o, t, () => `task ${t.id} is ${t.state}`);
  });

  controlPlaneOptions(
    task.command('list').description('list tasks').option('-s, --state <state>', 'open | closed | expired').option('-a, --assignee <subject>', 'only this assignee'),
  ).action(async (o: ControlPlaneCliOptions & { state?: string; assignee?: string }) => {
    const q = new URLSearchParams();
    if (o.state) q.set('state', o.state);
    if (o.assignee) q.set('assignee', o.assignee);
    const { tasks } = await apiClient(o).request<{ tasks: StoredTask[] }>('GET', `/api/v1/tasks${q.size ? `?${q}` : ''}`);
    print(o, tasks, () => (tasks.length ? tasks.map(taskLine).join('\n') : 'no tasks'));
  });

  controlPlaneOptions(task.command('show').description('show one task').argument('<id>')).action(async (id: string, o: ControlPlaneCliOptions) => {
    const { task: t } = await apiClient(o).request<{ task: StoredTask }>('GET', `/api/v1/tasks/${encodeURIComponent(id)}`);
    print(o, t, () => taskDetail(t));
  });
}
