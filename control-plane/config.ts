/**
 * The control plane's YAML configuration, validated strictly: unknown keys
 * are errors, secrets may be written `env:NAME` to read them from the
 * environment. Documented in docs/control-plane.md.
 */
import { readFile } from 'node:fs/promises';
import { parse } from 'yaml';
import { TaskgateError } from '../core/errors.ts';
import type { OidcOptions } from '../core/identity/oidc.ts';
import type { ControlPlaneOptions } from './server.ts';
import { WEBHOOK_EVENTS, type WebhookEvent } from './service.ts';
import type { StorageConfig } from './storage/db.ts';
import type { GithubMapping, JiraMapping } from './webhooks/inbound.ts';
import type { WebhookTarget } from './webhooks/outbound.ts';

export interface ControlPlaneConfig {
  host: string;
  port: number;
  storage: StorageConfig;
  oidc: OidcOptions;
  options: Omit<ControlPlaneOptions, 'authenticator' | 'host' | 'port' | 'storage'>;
}

type Obj = Record<string, unknown>;

function fail(path: string, msg: string): never {
  throw new TaskgateError('config_invalid', `${path}: ${msg}`);
}
function object(v: unknown, path: string, keys: readonly string[]): Obj {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) fail(path, 'must be a mapping');
  for (const k of Object.keys(v as Obj)) if (!keys.includes(k)) fail(`${path}.${k}`, `unknown key (known: ${keys.join(', ')})`);
  return v as Obj;
}
function str(v: unknown, path: string, env: NodeJS.ProcessEnv): string {
  if (typeof v !== 'string' || v === '') fail(path, 'must be a non-empty string');
  if (v.startsWith('env:')) {
    const val = env[v.slice(4)];
    if (!val) fail(path, `environment variable ${v.slice(4)} is not set`);
    return val;
  }
  return v;
}
function optStr(v: unknown, path: string, env: NodeJS.ProcessEnv): string | undefined {
  return v === undefined ? undefined : str(v, path, env);
}
function strList(v: unknown, path: string): string[] {
  if (v === undefined) return [];
  if (!Array.isArray(v) || !v.every((x) => typeof x === 'string' && x !== '')) fail(path, 'must be a list of strings');
  return v as string[];
}
function posInt(v: unknown, path: string): number | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) fail(path, 'must be a positive integer');
  return v;
}
function strMap(v: unknown, path: string): Record<string, string> | undefined {
  if (v === undefined) return undefined;
  const o = object(v, path, Object.keys((v ?? {}) as Obj));
  for (const [k, x] of Object.entries(o)) if (typeof x !== 'string') fail(`${path}.${k}`, 'must be a string');
  return o as Record<string, string>;
}

export function parseConfig(raw: unknown, env: NodeJS.ProcessEnv = process.env): ControlPlaneConfig {
  const top = object(raw ?? {}, 'config', [
    'listen', 'public_url', 'storage', 'oidc', 'admins', 'sidecars', 'service_tokens', 'webhooks', 'github', 'jira', 'max_grant_s', 'default_task_ttl_s', 'sweep_interval_ms',
  ]);
  const listen = typeof top.listen === 'string' ? top.listen : '127.0.0.1:8181';
  const m = /^(.*):(\d+)$/.exec(listen);
  if (!m) fail('config.listen', 'must be host:port');
  let storage: StorageConfig = { kind: 'pglite' };
  if (top.storage !== undefined) {
    const s = object(top.storage, 'config.storage', ['pglite', 'postgres']);
    if (s.pglite !== undefined && s.postgres !== undefined) fail('config.storage', 'choose one of pglite, postgres');
    if (s.postgres !== undefined) {
      const p = object(s.postgres, 'config.storage.postgres', ['url', 'pool_size']);
      storage = { kind: 'postgres', url: str(p.url, 'config.storage.postgres.url', env), ...(p.pool_size ? { poolSize: posInt(p.pool_size, 'config.storage.postgres.pool_size')! } : {}) };
    } else if (s.pglite !== undefined) {
      const p = object(s.pglite ?? {}, 'config.storage.pglite', ['data_dir']);
      storage = { kind: 'pglite', ...(p.data_dir ? { dataDir: str(p.data_dir, 'config.storage.pglite.data_dir', env) } : {}) };
    }
  }
  const o = object(top.oidc, 'config.oidc', ['issuer', 'audience', 'subject_claim', 'groups_claim', 'allow_insecure_loopback']);
  const oidc: OidcOptions = { issuer: str(o.issuer, 'config.oidc.issuer', env), audience: str(o.audience, 'config.oidc.audience', env) };
  if (o.subject_claim) oidc.subjectClaim = str(o.subject_claim, 'config.oidc.subject_claim', env);
  if (o.groups_claim) oidc.groupsClaim = str(o.groups_claim, 'config.oidc.groups_claim', env);
  if (o.allow_insecure_loopback === true) oidc.allowInsecureLoopback = true;

  const serviceTokens = (Array.isArray(top.service_tokens) ? top.service_tokens : top.service_tokens === undefined ? [] : fail('config.service_tokens', 'must be a list')).map(
    (t: unknown, i: number) => {
      const p = `config.service_tokens[${i}]`;
      const x = object(t, p, ['name', 'token', 'sha256']);
      const out = { name: str(x.name, `${p}.name`, env) } as { name: string; token?: string; sha256?: string };
      const token = optStr(x.token, `${p}.token`, env);
      const sha = optStr(x.sha256, `${p}.sha256`, env);
      if (!token === !sha) fail(p, 'needs exactly one of token, sha256');
      if (sha && !/^[0-9a-f]{64}$/i.test(sha)) fail(`${p}.sha256`, 'must be 64 hex digits');
      if (token) out.token = token;
      if (sha) out.sha256 = sha;
      return out;
    },
  );
  const webhooks: WebhookTarget[] = (Array.isArray(top.webhooks) ? top.webhooks : top.webhooks === undefined ? [] : fail('config.webhooks', 'must be a list')).map(
    (w: unknown, i: number) => {
      const p = `config.webhooks[${i}]`;
      const x = object(w, p, ['name', 'url', 'secret', 'format', 'events', 'timeout_ms']);
      const url = str(x.url, `${p}.url`, env);
      if (!/^https?:\/\//.test(url)) fail(`${p}.url`, 'must be an http(s) URL');
      const t: WebhookTarget = { name: str(x.name, `${p}.name`, env), url, secret: str(x.secret, `${p}.secret`, env) };
      if (x.format !== undefined) {
        if (x.format !== 'json' && x.format !== 'slack') fail(`${p}.format`, 'must be json or slack');
        t.format = x.format;
      }
      if (x.events !== undefined) {
        const ev = strList(x.events, `${p}.events`);
        for (const e of ev) if (!WEBHOOK_EVENTS.includes(e as WebhookEvent)) fail(`${p}.events`, `unknown event ${e} (known: ${WEBHOOK_EVENTS.join(', ')})`);
        if (ev.length === 0) fail(`${p}.events`, 'an empty list would never fire; omit it for all events');
        t.events = ev as WebhookEvent[];
      }
      const tm = posInt(x.timeout_ms, `${p}.timeout_ms`);
      if (tm) t.timeout_ms = tm;
      return t;
    },
  );
  let github: GithubMapping | undefined;
  if (top.github !== undefined) {
    const g = object(top.github, 'config.github', ['secret', 'task_id', 'type_label_prefix', 'reviewer_label_prefix', 'users', 'user_template', 'default_reviewers', 'ttl_s']);
    github = { secret: str(g.secret, 'config.github.secret', env) };
    for (const k of ['task_id', 'type_label_prefix', 'reviewer_label_prefix', 'user_template'] as const) {
      const v = optStr(g[k], `config.github.${k}`, env);
      if (v) github[k] = v;
    }
    const users = strMap(g.users, 'config.github.users');
    if (users) github.users = users;
    if (g.default_reviewers) github.default_reviewers = strList(g.default_reviewers, 'config.github.default_reviewers');
    const ttl = posInt(g.ttl_s, 'config.github.ttl_s');
    if (ttl) github.ttl_s = ttl;
  }
  let jira: JiraMapping | undefined;
  if (top.jira !== undefined) {
    const j = object(top.jira, 'config.jira', ['secret', 'type_field', 'type_map', 'assignee_field', 'reviewer_field', 'user_attribute', 'users', 'closed_statuses', 'default_reviewers', 'ttl_s']);
    jira = { secret: str(j.secret, 'config.jira.secret', env) };
    for (const k of ['type_field', 'assignee_field', 'reviewer_field'] as const) {
      const v = optStr(j[k], `config.jira.${k}`, env);
      if (v) jira[k] = v;
    }
    if (j.user_attribute !== undefined) {
      if (!['emailAddress', 'accountId', 'name'].includes(j.user_attribute as string)) fail('config.jira.user_attribute', 'must be emailAddress, accountId or name');
      jira.user_attribute = j.user_attribute as JiraMapping['user_attribute'];
    }
    const tm = strMap(j.type_map, 'config.jira.type_map');
    if (tm) jira.type_map = tm;
    const users = strMap(j.users, 'config.jira.users');
    if (users) jira.users = users;
    if (j.closed_statuses) jira.closed_statuses = strList(j.closed_statuses, 'config.jira.closed_statuses');
    if (j.default_reviewers) jira.default_reviewers = strList(j.default_reviewers, 'config.jira.default_reviewers');
    const ttl = posInt(j.ttl_s, 'config.jira.ttl_s');
    if (ttl) jira.ttl_s = ttl;
  }
  const options: ControlPlaneConfig['options'] = {
    admins: strList(top.admins, 'config.admins'),
    sidecars: strList(top.sidecars, 'config.sidecars'),
    serviceTokens,
    webhooks,
  };
  if (github) options.github = github;
  if (jira) options.jira = jira;
  const pu = optStr(top.public_url, 'config.public_url', env);
  if (pu) options.publicUrl = pu;
  const mg = posInt(top.max_grant_s, 'config.max_grant_s');
  if (mg) options.maxGrantS = mg;
  const dt = posInt(top.default_task_ttl_s, 'config.default_task_ttl_s');
  if (dt) options.defaultTaskTtlS = dt;
  const sw = posInt(top.sweep_interval_ms, 'config.sweep_interval_ms');
  if (sw) options.sweepIntervalMs = sw;
  if (options.sidecars!.length === 0 && serviceTokens.length === 0) fail('config', 'no sidecar can connect: configure sidecars (OIDC service subjects) or service_tokens');
  return { host: m[1]!, port: Number(m[2]), storage, oidc, options };
}

export async function loadConfig(file: string, env: NodeJS.ProcessEnv = process.env): Promise<ControlPlaneConfig> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    throw new TaskgateError('config_invalid', `cannot read ${file}: ${(e as Error).message}`);
  }
  let raw: unknown;
  try {
    raw = parse(text);
  } catch (e) {
    throw new TaskgateError('config_invalid', `${file} is not valid YAML: ${(e as Error).message.split('\n')[0]}`);
  }
  return parseConfig(raw, env);
}
