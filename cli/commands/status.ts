import type { Command } from 'commander';
import type { ReviewRecord, StoredTask } from '../../control-plane/storage/records.ts';
import { isEligibleApprover } from '../../core/reviews.ts';
import { apiClient, controlPlaneOptions, print, type ControlPlaneCliOptions } from './task.ts';

export interface StatusReport {
  subject: string;
  tasks: StoredTask[];
  /** Requests waiting: the user's own held commands and those the user may approve. */
  pending: { mine: ReviewRecord[]; to_review: ReviewRecord[] };
  /** Time-boxed grants the user holds now. */
  grants: { review_id: string; task_id: string; resource: string; until: string; by: string[] }[];
}

/** Collects the user's view from the control plane (pure over the HTTP client; tested with a real control plane). */
export async function collectStatus(o: ControlPlaneCliOptions, now = Date.now()): Promise<StatusReport> {
  const api = apiClient(o);
  const me = await api.request<{ subject: string; groups?: string[] }>('GET', '/api/v1/whoami');
  const [{ tasks }, pending, approved] = await Promise.all([
    api.request<{ tasks: StoredTask[] }>('GET', `/api/v1/tasks?state=open&assignee=${encodeURIComponent(me.subject)}`),
    api.request<{ reviews: ReviewRecord[] }>('GET', '/api/v1/reviews?state=pending'),
    api.request<{ reviews: ReviewRecord[] }>('GET', '/api/v1/reviews?state=approved'),
  ]);
  const mine = (r: ReviewRecord) => r.identity.subject === me.subject || r.identity.acting_for === me.subject;
  return {
    subject: me.subject,
    tasks,
    pending: {
      mine: pending.reviews.filter(mine),
      to_review: pending.reviews.filter((r) => !mine(r) && isEligibleApprover(r.approvers, { subject: me.subject, groups: me.groups ?? [] })),
    },
    grants: approved.reviews
      .filter((r) => mine(r) && r.grant_until && Date.parse(r.grant_until) > now)
      .map((r) => ({ review_id: r.id, task_id: r.task_id, resource: r.resource.name, until: r.grant_until!, by: r.decided_by })),
  };
}

export function formatStatus(s: StatusReport): string {
  const out = [`signed in as ${s.subject}`, '', `open tasks (${s.tasks.length}):`];
  for (const t of s.tasks) out.push(`  ${t.id}  ${t.type}  expires ${t.expires_at}${t.title ? `  ${t.title}` : ''}`);
  out.push('', `your commands waiting for review (${s.pending.mine.length}):`);
  for (const r of s.pending.mine) out.push(`  ${r.id}  ${r.task_id}  ${r.resource.name}  ${r.command.replace(/\s+/g, ' ').slice(0, 70)}  (approvers: ${r.approvers.join(', ')})`);
  out.push('', `waiting for your review (${s.pending.to_review.length}):`);
  for (const r of s.pending.to_review) out.push(`  ${r.id}  ${r.task_id}  ${r.identity.subject}  ${r.command.replace(/\s+/g, ' ').slice(0, 70)}`);
  out.push('', `active grants (${s.grants.length}):`);
  for (const g of s.grants) out.push(`  ${g.task_id} on ${g.resource} until ${g.until} (granted by ${g.by.join(', ')})`);
  return out.join('\n');
}

export function registerStatusCommands(program: Command): void {
  controlPlaneOptions(program.command('status').description('your open tasks, commands waiting for review, reviews waiting for you, active grants')).action(
    async (o: ControlPlaneCliOptions) => {
      const s = await collectStatus(o);
      print(o, s, () => formatStatus(s));
    },
  );
}
