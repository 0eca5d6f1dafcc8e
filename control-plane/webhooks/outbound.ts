/**
 * Outgoing webhooks from the durable outbox (table webhook_deliveries): every
 * review and task change queues one delivery per target inside the
 * transaction that made the change. A dispatcher on each replica claims due
 * deliveries (SKIP LOCKED + a lease), POSTs them signed, and retries 5xx, 429,
 * timeouts and network errors with exponential backoff; other 4xx fail at once.
 *
 * Signature: `X-Taskgate-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>`.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { errorMessage, TaskgateError } from '../../core/errors.ts';
import { silentLogger, type Logger } from '../../core/log.ts';
import type { Database } from '../storage/db.ts';
import type { DeliveryRecord, ReviewRecord, StoredTask } from '../storage/records.ts';
import * as repo from '../storage/repo.ts';
import type { WebhookEvent } from '../service.ts';

export interface WebhookTarget {
  name: string;
  url: string;
  /** HMAC key for X-Taskgate-Signature. */
  secret: string;
  /** `json` (the event as JSON) or `slack` (a Slack-compatible message: text + blocks). Default json. */
  format?: 'json' | 'slack';
  /** Which events; default all. */
  events?: WebhookEvent[];
  timeout_ms?: number;
}

export interface DispatcherOptions {
  targets: WebhookTarget[];
  log?: Logger;
  now?: () => number;
  /** Give up after this many attempts (default 10). */
  maxAttempts?: number;
  /** First retry delay (default 1000 ms), doubled per attempt, capped at maxBackoffMs (default 5 min). */
  baseBackoffMs?: number;
  maxBackoffMs?: number;
  /** Poll interval for due retries (default 1000 ms); new deliveries are kicked at once. */
  pollMs?: number;
}

export function signPayload(secret: string, body: string, t = Math.floor(Date.now() / 1000)): string {
  return `t=${t},v1=${createHmac('sha256', secret).update(`${t}.${body}`).digest('hex')}`;
}

/** For receivers: checks the signature and that the timestamp is within `toleranceS` of now (replay window). */
export function verifyPayload(secret: string, body: string, header: string | undefined, toleranceS = 300, now = Date.now()): void {
  const m = /^t=(\d+),v1=([0-9a-f]{64})$/.exec(header ?? '');
  if (!m) throw new TaskgateError('auth_failed', 'X-Taskgate-Signature is missing or malformed');
  const t = Number(m[1]);
  if (Math.abs(now / 1000 - t) > toleranceS) throw new TaskgateError('auth_failed', 'X-Taskgate-Signature timestamp is outside the tolerance (replay?)');
  const want = createHmac('sha256', secret).update(`${t}.${body}`).digest();
  if (!timingSafeEqual(want, Buffer.from(m[2]!, 'hex'))) throw new TaskgateError('auth_failed', 'X-Taskgate-Signature does not match');
}

/** A Slack-compatible message (incoming webhook: `text` + Block Kit `blocks`). */
export function slackMessage(payload: Record<string, unknown>): Record<string, unknown> {
  const review = payload.review as ReviewRecord | undefined;
  const task = payload.task as StoredTask | undefined;
  const inbox = typeof payload.inbox_url === 'string' ? payload.inbox_url : undefined;
  const event = String(payload.event);
  let text: string;
  if (review) {
    const who = review.identity.acting_for ? `${review.identity.subject} (for ${review.identity.acting_for})` : review.identity.subject;
    const verb: Record<string, string> = {
      review_requested: `:hourglass: *${who}* asks to run a command on *${review.resource.name}* for task *${review.task_id}*`,
      review_approved: `:white_check_mark: Review ${review.id} approved by ${review.decided_by.join(', ')}${review.grant_until ? ` (grant until ${review.grant_until})` : ''}`,
      review_denied: `:no_entry: Review ${review.id} denied${review.decided_by.length ? ` by ${review.decided_by.join(', ')}` : ''}${review.decision_reason ? `: ${review.decision_reason}` : ''}`,
      review_expired: `:alarm_clock: Review ${review.id} expired without a decision`,
    };
    text = verb[event] ?? `${event}: ${review.id}`;
  } else if (task) {
    text = event === 'task_created' ? `:memo: Task *${task.id}* (${task.type}) opened for ${task.assignee}` : `:lock: Task *${task.id}* ${task.state}`;
  } else {
    text = event;
  }
  const blocks: Record<string, unknown>[] = [{ type: 'section', text: { type: 'mrkdwn', text } }];
  if (review && event === 'review_requested') {
    blocks.push({ type: 'section', text: { type: 'mrkdwn', text: '```' + review.command.slice(0, 2800) + '```' } });
    blocks.push({
      type: 'context',
      elements: [{ type: 'mrkdwn', text: `reasons: ${review.reasons.join('; ') || '—'} · approvers: ${review.approvers.join(', ')} · expires ${review.expires_at}` }],
    });
    if (inbox) blocks.push({ type: 'actions', elements: [{ type: 'button', text: { type: 'plain_text', text: 'Open inbox' }, url: `${inbox}#${review.id}` }] });
  }
  return { text: text.replaceAll('*', ''), blocks };
}

export class WebhookDispatcher {
  private readonly targets: Map<string, WebhookTarget>;
  private readonly log: Logger;
  private readonly clock: () => number;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private again = false;
  private stopped = false;

  constructor(
    private readonly db: Database,
    private readonly opts: DispatcherOptions,
  ) {
    this.targets = new Map(opts.targets.map((t) => [t.name, t]));
    this.log = opts.log ?? silentLogger;
    this.clock = opts.now ?? Date.now;
  }

  start(): void {
    if (this.targets.size === 0) return;
    this.timer = setInterval(() => this.kick(), this.opts.pollMs ?? 1000);
    this.timer.unref();
    this.kick();
  }

  /** Runs a delivery pass now (called on every `outbox` change notification). */
  kick(): void {
    if (this.stopped || this.targets.size === 0) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = this.pass()
      .catch((e) => this.log.warn('webhook delivery pass failed', { error: errorMessage(e) }))
      .finally(() => {
        this.running = undefined;
        if (this.again) {
          this.again = false;
          this.kick();
        }
      });
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    await this.running;
  }

  private async pass(): Promise<void> {
    for (;;) {
      const now = this.clock();
      const lease = new Date(now + 60_000).toISOString();
      const batch = await repo.claimDeliveries(this.db, new Date(now).toISOString(), lease, 20);
      if (batch.length === 0) return;
      await Promise.all(batch.map((d) => this.deliver(d)));
      if (this.stopped) return;
    }
  }

  private async deliver(d: DeliveryRecord): Promise<void> {
    const target = this.targets.get(d.target);
    const now = () => new Date(this.clock()).toISOString();
    if (!target) {
      await repo.recordDelivery(this.db, d.id, { state: 'failed', error: `webhook target ${d.target} is no longer configured`, now: now() });
      return;
    }
    const payload = d.payload as Record<string, unknown>;
    const body = JSON.stringify(target.format === 'slack' ? slackMessage(payload) : { id: d.id, ...payload });
    let status: number | undefined;
    let error: string | undefined;
    try {
      const res = await fetch(target.url, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'user-agent': 'taskgate-webhooks/1',
          'x-taskgate-event': d.event,
          'x-taskgate-delivery': d.id,
          'x-taskgate-attempt': String(d.attempts),
          'x-taskgate-signature': signPayload(target.secret, body, Math.floor(this.clock() / 1000)),
        },
        body,
        signal: AbortSignal.timeout(target.timeout_ms ?? 10_000),
      });
      status = res.status;
      await res.arrayBuffer().catch(() => undefined);
      if (res.ok) {
        await repo.recordDelivery(this.db, d.id, { state: 'delivered', status, now: now() });
        return;
      }
      error = `HTTP ${res.status}`;
    } catch (e) {
      error = errorMessage(e);
    }
    const retryable = status === undefined || status >= 500 || status === 429 || status === 408;
    const max = this.opts.maxAttempts ?? 10;
    if (!retryable || d.attempts >= max) {
      this.log.warn('webhook delivery failed for good', { target: d.target, delivery: d.id, attempts: d.attempts, error });
      await repo.recordDelivery(this.db, d.id, { state: 'failed', ...(status ? { status } : {}), error: error ?? 'failed', now: now() });
      return;
    }
    const backoff = Math.min((this.opts.baseBackoffMs ?? 1000) * 2 ** (d.attempts - 1), this.opts.maxBackoffMs ?? 300_000);
    const jitter = backoff * 0.2 * Math.random();
    const next = new Date(this.clock() + backoff + jitter).toISOString();
    await repo.recordDelivery(this.db, d.id, { state: 'pending', ...(status ? { status } : {}), error: error ?? 'failed', next_attempt_at: next, now: now() });
  }
}
