import type { Command } from 'commander';
import type { ReviewRecord } from '../../control-plane/storage/records.ts';
import { apiClient, controlPlaneOptions, parseDuration, print, type ControlPlaneCliOptions } from './task.ts';

function who(r: ReviewRecord): string {
  return r.identity.acting_for ? `${r.identity.subject} (for ${r.identity.acting_for})` : r.identity.subject;
}

function line(r: ReviewRecord): string {
  const n = r.approvals.filter((a) => a.decision === 'approve').length;
  return `${r.id}\t${r.state}\t${r.task_id}\t${who(r)}\t${r.resource.name}\t${n}/${r.min_approvals}\t${r.command.replace(/\s+/g, ' ').slice(0, 80)}`;
}

function detail(r: ReviewRecord): string {
  return [
    `review ${r.id} (${r.state})`,
    `  task:       ${r.task_id}`,
    `  requester:  ${who(r)}`,
    `  resource:   ${r.resource.name} (${r.protocol})`,
    `  command:    ${r.command}`,
    `  reasons:    ${r.reasons.join('; ') || '-'}`,
    `  approvers:  ${r.approvers.join(', ')} (need ${r.min_approvals})`,
    `  approvals:  ${r.approvals.map((a) => `${a.approver} ${a.decision}${a.kind === 'grant' ? ` grant ${a.grant_s}s` : ''}${a.reason ? ` "${a.reason}"` : ''}`).join('; ') || '-'}`,
    `  expires:    ${r.expires_at}`,
    ...(r.decided_at ? [`  decided:    ${r.decided_at} by ${r.decided_by.join(', ') || 'system'}${r.decision_reason ? `: ${r.decision_reason}` : ''}`] : []),
    ...(r.grant_until ? [`  grant until ${r.grant_until}`] : []),
  ].join('\n');
}

/** `taskgate review list|show|approve|deny`: the reviewer's CLI, with the reviewer's own token. */
export function registerReviewCommands(program: Command): void {
  const review = program.command('review').description('review requests waiting for your decision');

  controlPlaneOptions(
    review.command('list').description('requests you may decide (pending by default)').option('-s, --state <state>', 'pending | approved | denied | expired | cancelled | all', 'pending').option('--task <id>', 'only this task'),
  ).action(async (o: ControlPlaneCliOptions & { state: string; task?: string }) => {
    const q = new URLSearchParams({ state: o.state });
    if (o.task) q.set('task_id', o.task);
    const { reviews } = await apiClient(o).request<{ reviews: ReviewRecord[] }>('GET', `/api/v1/reviews?${q}`);
    print(o, reviews, () => (reviews.length ? reviews.map(line).join('\n') : 'nothing waits for you'));
  });

  controlPlaneOptions(review.command('show').description('show one request in full').argument('<id>')).action(async (id: string, o: ControlPlaneCliOptions) => {
    const { review: r } = await apiClient(o).request<{ review: ReviewRecord }>('GET', `/api/v1/reviews/${encodeURIComponent(id)}`);
    print(o, r, () => detail(r));
  });

  controlPlaneOptions(
    review
      .command('approve')
      .description('approve: this exact command once, or with --grant a time-boxed grant for the task on that resource')
      .argument('<id>')
      .option('-m, --reason <text>', 'reason (audited)')
      .option('-g, --grant <duration>', 'time-boxed grant, e.g. 30m'),
  ).action(async (id: string, o: ControlPlaneCliOptions & { reason?: string; grant?: string }) => {
    const body = { ...(o.reason ? { reason: o.reason } : {}), ...(o.grant ? { grant_s: parseDuration(o.grant) } : {}) };
    const out = await apiClient(o).request<{ review: ReviewRecord; changed: boolean }>('POST', `/api/v1/reviews/${encodeURIComponent(id)}/approve`, body);
    print(o, out, () => `${out.changed ? '' : '(already recorded) '}review ${id} is ${out.review.state}${out.review.state === 'pending' ? ` (${out.review.approvals.length}/${out.review.min_approvals} approvals)` : ''}${out.review.grant_until ? `, grant until ${out.review.grant_until}` : ''}`);
  });

  controlPlaneOptions(review.command('deny').description('deny: the held command fails with your reason').argument('<id>').option('-m, --reason <text>', 'reason (shown to the requester, audited)')).action(
    async (id: string, o: ControlPlaneCliOptions & { reason?: string }) => {
      const out = await apiClient(o).request<{ review: ReviewRecord; changed: boolean }>('POST', `/api/v1/reviews/${encodeURIComponent(id)}/deny`, o.reason ? { reason: o.reason } : {});
      print(o, out, () => `review ${id} is ${out.review.state}`);
    },
  );
}
