/**
 * Tasks from a tracker: GitHub issue and Jira issue webhook payloads mapped to
 * tasks by a documented, configurable mapping (docs/control-plane.md), with
 * their signatures checked (GitHub `X-Hub-Signature-256`, Jira `X-Hub-Signature`,
 * both `sha256=<hex HMAC of the raw body>`). Pure functions: no I/O.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { TaskgateError } from '../../core/errors.ts';
import type { TaskInputBody } from '../service.ts';

export interface GithubMapping {
  /** The webhook secret configured on the GitHub repository/organisation. */
  secret: string;
  /** Task id template over {repo} (owner/name) and {number}; default `{repo}#{number}`. */
  task_id?: string;
  /** Label prefix naming the task type: `taskgate:type/schema-migration`. Default `taskgate:type/`. */
  type_label_prefix?: string;
  /** Label prefix naming a reviewer (login, or `group:<name>`): `taskgate:reviewer/bob`. Default `taskgate:reviewer/`. */
  reviewer_label_prefix?: string;
  /** GitHub login => identity subject (e.g. the OIDC email). */
  users?: Record<string, string>;
  /** Subject for logins not in `users`, `{login}` substituted; default `{login}`. */
  user_template?: string;
  /** Reviewers when the issue has no reviewer label. */
  default_reviewers?: string[];
  /** Task lifetime in seconds from the webhook; default: the control plane's default. */
  ttl_s?: number;
}

export interface JiraMapping {
  /** The secret configured on the Jira webhook. */
  secret: string;
  /** Dotted path under `issue.fields` holding the task type; default `issuetype.name`. */
  type_field?: string;
  /** Jira value => task type. When set, issues whose value is not listed are ignored. */
  type_map?: Record<string, string>;
  /** Path under `issue.fields` holding the assignee; default `assignee`. */
  assignee_field?: string;
  /** Path under `issue.fields` holding the reviewer(s) (a user picker, multi-user picker or text); no default. */
  reviewer_field?: string;
  /** Which user attribute is the identity subject; default `emailAddress`. */
  user_attribute?: 'emailAddress' | 'accountId' | 'name';
  /** Jira user attribute value => identity subject. */
  users?: Record<string, string>;
  /** Status names that end the task; default Done, Closed, Resolved. */
  closed_statuses?: string[];
  default_reviewers?: string[];
  ttl_s?: number;
}

export type TrackerAction =
  | { action: 'upsert'; task: TaskInputBody }
  | { action: 'close'; task_id: string; reason: string }
  | { action: 'ignore'; reason: string };

/** Checks `sha256=<hex>` against the HMAC-SHA256 of the raw body, in constant time. */
export function verifyHubSignature(secret: string, raw: Buffer, header: string | undefined, name: string): void {
  if (!header) throw new TaskgateError('auth_failed', `missing ${name} header: configure the webhook secret on the tracker`);
  const m = /^sha256=([0-9a-f]{64})$/i.exec(header.trim());
  if (!m) throw new TaskgateError('auth_failed', `${name} must be sha256=<64 hex digits>`);
  const want = createHmac('sha256', secret).update(raw).digest();
  const got = Buffer.from(m[1]!, 'hex');
  if (!timingSafeEqual(want, got)) throw new TaskgateError('auth_failed', `${name} does not match the payload (wrong secret or modified body)`);
}

export function hubSignature(secret: string, raw: Buffer | string): string {
  return 'sha256=' + createHmac('sha256', secret).update(raw).digest('hex');
}

type Obj = Record<string, unknown>;
const obj = (v: unknown): Obj => (v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Obj) : {});
const str = (v: unknown): string | undefined => (typeof v === 'string' && v !== '' ? v : undefined);

export function mapGithubIssue(event: string | undefined, payload: unknown, m: GithubMapping): TrackerAction {
  if (event === 'ping') return { action: 'ignore', reason: 'ping' };
  if (event !== 'issues') return { action: 'ignore', reason: `event ${event ?? '(none)'} is not handled (subscribe to Issues)` };
  const p = obj(payload);
  const issue = obj(p.issue);
  const repo = str(obj(p.repository).full_name);
  const number = issue.number;
  if (!repo || typeof number !== 'number') throw new TaskgateError('input_invalid', 'GitHub issues payload lacks repository.full_name or issue.number');
  const id = (m.task_id ?? '{repo}#{number}').replaceAll('{repo}', repo).replaceAll('{number}', String(number));
  const action = str(p.action) ?? '';
  if (action === 'closed' || action === 'deleted' || issue.state === 'closed') {
    return { action: 'close', task_id: id, reason: `GitHub issue ${repo}#${number} ${action === 'deleted' ? 'deleted' : 'closed'}` };
  }
  const labels = (Array.isArray(issue.labels) ? issue.labels : []).map((l) => (typeof l === 'string' ? l : str(obj(l).name))).filter((l): l is string => !!l);
  const typePrefix = m.type_label_prefix ?? 'taskgate:type/';
  const reviewerPrefix = m.reviewer_label_prefix ?? 'taskgate:reviewer/';
  const types = labels.filter((l) => l.startsWith(typePrefix)).map((l) => l.slice(typePrefix.length));
  if (types.length === 0) return { action: 'ignore', reason: `issue has no ${typePrefix}<type> label` };
  if (types.length > 1) return { action: 'ignore', reason: `issue has several type labels (${types.join(', ')}); exactly one is needed` };
  const user = (login: string) => (login.startsWith('group:') ? login : (m.users?.[login] ?? (m.user_template ?? '{login}').replaceAll('{login}', login)));
  const assignees = (Array.isArray(issue.assignees) ? issue.assignees : [issue.assignee]).map((a) => str(obj(a).login)).filter((a): a is string => !!a);
  if (assignees.length !== 1) return { action: 'ignore', reason: `issue needs exactly one assignee (has ${assignees.length})` };
  const reviewers = labels.filter((l) => l.startsWith(reviewerPrefix)).map((l) => user(l.slice(reviewerPrefix.length)));
  const task: TaskInputBody = {
    id,
    type: types[0]!,
    assignee: user(assignees[0]!),
    reviewers: reviewers.length ? reviewers : (m.default_reviewers ?? []),
  };
  if (m.ttl_s) task.ttl_s = m.ttl_s;
  const url = str(issue.html_url);
  if (url) task.ticket = url;
  const title = str(issue.title);
  if (title) task.title = title;
  return { action: 'upsert', task };
}

/** Reads a dotted path (`customfield_10042.value`, `issuetype.name`). */
function at(o: unknown, path: string): unknown {
  let cur = o;
  for (const k of path.split('.')) cur = obj(cur)[k];
  return cur;
}

export function mapJiraIssue(payload: unknown, m: JiraMapping): TrackerAction {
  const p = obj(payload);
  const event = str(p.webhookEvent) ?? '';
  const issue = obj(p.issue);
  const key = str(issue.key);
  if (!key) throw new TaskgateError('input_invalid', 'Jira payload lacks issue.key');
  const fields = obj(issue.fields);
  if (event === 'jira:issue_deleted') return { action: 'close', task_id: key, reason: `Jira issue ${key} deleted` };
  const status = str(obj(fields.status).name);
  if (status && (m.closed_statuses ?? ['Done', 'Closed', 'Resolved']).includes(status)) {
    return { action: 'close', task_id: key, reason: `Jira issue ${key} moved to ${status}` };
  }
  if (event !== 'jira:issue_created' && event !== 'jira:issue_updated') return { action: 'ignore', reason: `event ${event || '(none)'} is not handled` };
  const attr = m.user_attribute ?? 'emailAddress';
  const users = (v: unknown): string[] => {
    const list = Array.isArray(v) ? v : v === undefined || v === null ? [] : [v];
    return list
      .map((u) => (typeof u === 'string' ? u : (str(obj(u)[attr]) ?? str(obj(u).value))))
      .filter((u): u is string => !!u)
      .flatMap((u) => u.split(/\s*,\s*/))
      .map((u) => (u.startsWith('group:') ? u : (m.users?.[u] ?? u)));
  };
  const rawType = at(fields, m.type_field ?? 'issuetype.name');
  const typeVal = str(rawType) ?? str(obj(rawType).value) ?? str(obj(rawType).name);
  if (!typeVal) return { action: 'ignore', reason: `issue has no value at ${m.type_field ?? 'issuetype.name'}` };
  const type = m.type_map ? m.type_map[typeVal] : typeVal;
  if (!type) return { action: 'ignore', reason: `Jira type ${JSON.stringify(typeVal)} is not mapped to a task type` };
  const assignee = users(at(fields, m.assignee_field ?? 'assignee'))[0];
  if (!assignee) return { action: 'ignore', reason: 'issue has no assignee' };
  const reviewers = m.reviewer_field ? users(at(fields, m.reviewer_field)) : [];
  const task: TaskInputBody = { id: key, type, assignee, reviewers: reviewers.length ? reviewers : (m.default_reviewers ?? []) };
  if (m.ttl_s) task.ttl_s = m.ttl_s;
  const self = str(issue.self);
  if (self) {
    try {
      task.ticket = `${new URL(self).origin}/browse/${key}`;
    } catch {
      /* no link */
    }
  }
  const title = str(fields.summary);
  if (title) task.title = title;
  return { action: 'upsert', task };
}
