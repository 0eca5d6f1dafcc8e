import { randomUUID } from 'node:crypto';
import { Histogram } from 'prom-client';
import type { CommandSpec, Gatekeeper, GateOutcome, InputExtra, SessionContext } from '../../core/gate.ts';
import { errorMessage } from '../../core/errors.ts';
import type { Authenticator, Identity } from '../../core/identity/identity.ts';
import { silentLogger, type Logger } from '../../core/log.ts';
import type { Metrics } from '../../core/metrics.ts';
import type { MaskRule, ResourceInput } from '../../core/policy-contract.ts';
import { HttpDecider, type SignalSource } from './decide.ts';
import { bearerToken, buildHttpRequest, taskFromRequest, TASK_HEADER, type RawHttpRequest } from './request-input.ts';

/**
 * Authorization of one HTTP request, shared by Envoy ext_authz and the HTTP
 * proxy: identity from the bearer token, task from `x-taskgate-task` or a
 * `/task/<id>` prefix, the request block, the gate (with a bounded review
 * hold), and a protocol-neutral result each entry point renders its own way.
 */
export interface HttpResource {
  /** `resource.name` in the policy input and the audit. */
  name: string;
  labels?: Record<string, string>;
  /** The upstream is a Kubernetes API server: parse `request.kubernetes`. */
  kubernetes?: boolean;
  /**
   * Credential presented upstream on the user's behalf (the full Authorization
   * value, e.g. `Bearer <service-account token>`). The user's own token is
   * always removed when this is set.
   */
  upstream_authorization?: string;
  /** Remove the user's Authorization header even without an upstream credential. Default true. */
  strip_user_token?: boolean;
}

export interface HttpAuthorizerOptions {
  gate: Gatekeeper;
  /**
   * Verifies bearer tokens (OIDC). Without one, requests are anonymous
   * (`identity.subject` "anonymous") and the policy decides alone: the mode
   * for opa-envoy-plugin policies that read the token themselves.
   */
  authenticator?: Authenticator;
  /** The first is the default; Envoy selects another with context extension `taskgate_resource`. */
  resources: HttpResource[];
  /** Deny requests that name no task before evaluating. Default: true when an authenticator is set. */
  requireTask?: boolean;
  decisionHeader?: string;
  log?: Logger;
  metrics?: Metrics;
}

export interface HttpAuthzRequest {
  raw: RawHttpRequest;
  /** Extra top-level policy input (ext_authz: opa-envoy-plugin fields), or a function building it when evaluated. */
  extra?: InputExtra;
  fingerprint_extra?: string;
  /** Resource name (Envoy: context extension `taskgate_resource`). */
  resource?: string;
  client_address?: string;
  request_id?: string;
  /** How long a review may hold this request before `pending` is answered. */
  waitMs: number;
  /** The caller went away (a function: made only if the answer has to wait). */
  signal?: SignalSource;
  /** Refuse paths with duplicate slashes instead of merging them (ext_authz cannot rewrite Envoy's path). */
  refuseMergedSlashes?: boolean;
  entry: 'ext_authz' | 'proxy';
}

export type Header = [name: string, value: string];

export interface AllowResult {
  allowed: true;
  decision_id: string;
  /** Request headers to set (overwrite) upstream. */
  set_headers: Header[];
  remove_headers: string[];
  response_headers: Header[];
  query_set: Header[];
  query_remove: string[];
  dynamic_metadata?: Record<string, unknown>;
  /** Normalised target to forward (the HTTP proxy). */
  forward_target: string;
  resource: HttpResource;
  /** Response masking rules from the decision (ext_proc, the proxy). */
  mask: MaskRule[];
  max_bytes?: number;
  session: SessionContext;
  kubernetes_verb?: string;
}

export interface DenyResult {
  allowed: false;
  status: number;
  headers: Header[];
  body: string;
  decision_id?: string;
  review_id?: string;
  dynamic_metadata?: Record<string, unknown>;
}

export type AuthzResult = AllowResult | DenyResult;

const ANONYMOUS: Identity = { subject: 'anonymous', groups: [], issuer: '', type: 'user' };

export class HttpAuthorizer {
  readonly decider: HttpDecider;
  readonly decisionHeader: string;
  private readonly gate: Gatekeeper;
  private readonly opts: HttpAuthorizerOptions;
  private readonly byName: Map<string, HttpResource>;
  private readonly log: Logger;
  private readonly seconds: Histogram<'entry' | 'result'> | undefined;

  constructor(opts: HttpAuthorizerOptions) {
    if (opts.resources.length === 0) throw new Error('at least one HTTP resource is required');
    this.opts = opts;
    this.gate = opts.gate;
    this.decider = new HttpDecider(opts.gate);
    this.decisionHeader = opts.decisionHeader ?? 'x-taskgate-decision-id';
    this.byName = new Map(opts.resources.map((r) => [r.name, r]));
    this.log = opts.log ?? silentLogger;
    const reg = opts.metrics?.registry;
    if (reg) {
      this.seconds =
        (reg.getSingleMetric('taskgate_http_authorize_duration_seconds') as Histogram<'entry' | 'result'> | undefined) ??
        new Histogram({
          name: 'taskgate_http_authorize_duration_seconds',
          help: 'Time to answer one HTTP authorization (ext_authz Check or proxy request), review holds included',
          labelNames: ['entry', 'result'],
          buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1, 5, 30],
          registers: [reg],
        });
    }
  }

  async authorize(req: HttpAuthzRequest): Promise<AuthzResult> {
    const t0 = process.hrtime.bigint();
    let r: AuthzResult;
    try {
      r = await this.authorizeInner(req);
    } catch (e) {
      this.log.error('HTTP authorization failed; denying', { error: errorMessage(e) });
      r = deny(500, `internal error: ${errorMessage(e)}`, {});
    }
    this.seconds?.observe({ entry: req.entry, result: r.allowed ? 'allow' : r.review_id ? 'pending' : 'deny' }, Number(process.hrtime.bigint() - t0) / 1e9);
    return r;
  }

  private async authorizeInner(req: HttpAuthzRequest): Promise<AuthzResult> {
    const resource = req.resource ? this.byName.get(req.resource) : this.opts.resources[0];
    if (!resource) return this.refuse(req, undefined, `unknown resource ${JSON.stringify(req.resource)}`, 403);
    const { task_id, target } = taskFromRequest(req.raw.target, req.raw.headers);
    const raw: RawHttpRequest = { method: req.raw.method, target, headers: req.raw.headers };
    if (req.raw.host !== undefined) raw.host = req.raw.host;
    const built = buildHttpRequest(
      raw,
      req.fingerprint_extra !== undefined ? { kubernetes: resource.kubernetes === true, fingerprint_extra: req.fingerprint_extra } : { kubernetes: resource.kubernetes === true },
    );
    if (!built.ok) return this.refuse(req, resource, built.reason, 400, task_id);
    if (req.refuseMergedSlashes && built.merged_slashes) {
      return this.refuse(req, resource, 'path contains duplicate slashes; enable merge_slashes in Envoy (the upstream would parse another path)', 400, task_id);
    }

    let identity = ANONYMOUS;
    if (this.opts.authenticator) {
      const token = bearerToken(req.raw.headers);
      if (!token) return this.refuse(req, resource, 'no bearer token (send Authorization: Bearer <OIDC token>)', 401, task_id);
      try {
        identity = await this.opts.authenticator.authenticate(token);
      } catch (e) {
        return this.refuse(req, resource, `authentication failed: ${errorMessage(e)}`, 401, task_id);
      }
    }
    if (!task_id && (this.opts.requireTask ?? this.opts.authenticator !== undefined)) {
      return this.refuse(req, resource, `no task: send the ${TASK_HEADER} header or use a /task/<id> URL prefix`, 403, undefined, identity);
    }

    const session: SessionContext = {
      id: req.request_id ?? randomUUID(),
      started_at: new Date().toISOString(),
      identity,
      task_id: task_id ?? '',
      resource: resourceInput(resource),
    };
    if (req.client_address) session.client_address = req.client_address;
    const cmd: CommandSpec = {
      request: built.request,
      text: built.text,
      fingerprint: built.fingerprint,
      summary: built.request.kubernetes ?? { method: built.request.method, path: built.request.path },
    };
    if (req.extra) cmd.input_extra = req.extra;
    const d = await this.decider.decide(session, cmd, req.waitMs, req.signal);

    if (d.kind === 'pending') {
      const msg = `review ${d.review_id} is pending (approvers: ${d.approvers.join(', ')}); retry after approval`;
      return { ...deny(403, msg, { task: session.task_id, review_id: d.review_id, reasons: d.reasons }), review_id: d.review_id };
    }
    if (d.kind === 'timeout') return deny(504, 'no decision within the deadline', { task: session.task_id });
    return this.render(d.outcome, resource, session, built.forward_target);
  }

  private render(o: GateOutcome, resource: HttpResource, session: SessionContext, forward_target: string): AuthzResult {
    const envoy = o.decision.obligations.envoy as
      | { headers: Header[]; response_headers_to_add: Header[]; request_headers_to_remove: string[]; query_parameters_to_set: Header[]; query_parameters_to_remove: string[]; body?: string; http_status?: number; dynamic_metadata?: Record<string, unknown> }
      | undefined;
    const idHeader: Header = [this.decisionHeader, o.decision_id];
    if (!o.allowed) {
      const r = deny(envoy?.http_status ?? 403, o.decision.reasons.join('; ') || 'denied by policy', {
        task: session.task_id,
        decision_id: o.decision_id,
        reasons: o.decision.reasons,
        ...(o.review ? { review_id: o.review.id } : {}),
      });
      r.decision_id = o.decision_id;
      r.headers.push(idHeader);
      if (envoy) {
        // opa-envoy-plugin semantics: the policy's body and headers are the denied response.
        if (envoy.body !== undefined) r.body = envoy.body;
        r.headers.push(...envoy.headers);
        if (envoy.dynamic_metadata) r.dynamic_metadata = envoy.dynamic_metadata;
      }
      return r;
    }
    const set: Header[] = [idHeader];
    const remove: string[] = [TASK_HEADER];
    if (resource.upstream_authorization) set.push(['authorization', resource.upstream_authorization]);
    else if (resource.strip_user_token !== false && this.opts.authenticator) remove.push('authorization');
    const r: AllowResult = {
      allowed: true,
      decision_id: o.decision_id,
      set_headers: envoy ? [...set, ...envoy.headers] : set,
      remove_headers: envoy ? [...remove, ...envoy.request_headers_to_remove] : remove,
      response_headers: envoy?.response_headers_to_add ?? [],
      query_set: envoy?.query_parameters_to_set ?? [],
      query_remove: envoy?.query_parameters_to_remove ?? [],
      forward_target,
      resource,
      mask: resource.kubernetes ? kubernetesMaskRules(o.decision.mask) : o.decision.mask,
      session,
    };
    if (typeof o.decision.obligations.max_bytes === 'number') r.max_bytes = o.decision.obligations.max_bytes;
    if (envoy?.dynamic_metadata) r.dynamic_metadata = envoy.dynamic_metadata;
    return r;
  }

  /** A request that could not even be read (malformed CheckRequest): audited, then denied. */
  malformed(entry: HttpAuthzRequest['entry'], reason: string, client_address?: string): DenyResult {
    const req: HttpAuthzRequest = { raw: { method: '', target: '', headers: {} }, waitMs: 0, entry };
    if (client_address) req.client_address = client_address;
    return this.refuse(req, undefined, reason, 400);
  }

  /** A request refused before the policy (malformed, unauthenticated, no task): audited, then denied. */
  private refuse(req: HttpAuthzRequest, resource: HttpResource | undefined, reason: string, status: number, task?: string, identity?: Identity): DenyResult {
    const decision_id = randomUUID();
    this.gate.audit.emit({
      type: 'decision',
      session_id: req.request_id ?? decision_id,
      task_id: task ?? '',
      subject: identity?.subject ?? '',
      resource: resource?.name ?? req.resource ?? '',
      protocol: 'http',
      command: `${req.raw.method} ${req.raw.target.slice(0, 512)}`,
      decision: 'deny',
      reasons: [reason],
      ...(req.client_address ? { client_addr: req.client_address } : {}),
      details: { decision_id, entry: req.entry, status },
    });
    const r = deny(status, reason, { task: task ?? '', decision_id });
    r.decision_id = decision_id;
    r.headers.push([this.decisionHeader, decision_id]);
    if (status === 401) r.headers.push(['www-authenticate', 'Bearer realm="taskgate"']);
    return r;
  }

  close(): void {
    this.decider.close();
  }
}

/**
 * For a Kubernetes API, a field rule is about each object, however it is
 * fetched: `data.*` also masks `items[*].data.*` (lists) and `object.data.*`
 * (watch events).
 */
export function kubernetesMaskRules(rules: MaskRule[]): MaskRule[] {
  const out: MaskRule[] = [];
  for (const r of rules) {
    out.push(r);
    if (r.field && !r.field.startsWith('items[') && !r.field.startsWith('object.')) {
      out.push({ ...r, field: `items[*].${r.field}` }, { ...r, field: `object.${r.field}` });
    }
  }
  return out;
}

function resourceInput(r: HttpResource): ResourceInput {
  return { protocol: 'http', name: r.name, labels: r.labels ?? {} };
}

const REASON: Record<number, string> = { 400: 'BadRequest', 401: 'Unauthorized', 403: 'Forbidden', 500: 'InternalError', 502: 'BadGateway', 504: 'Timeout' };

/**
 * A denial body that kubectl prints as `Error from server (Forbidden): <message>`
 * (a Kubernetes Status object) and that any other client can read as JSON:
 * the reason, the task, the decision and review ids under `taskgate`.
 */
export function deny(status: number, message: string, details: Record<string, unknown>): DenyResult {
  const task = typeof details.task === 'string' && details.task ? ` (task ${details.task})` : '';
  const body = JSON.stringify({
    kind: 'Status',
    apiVersion: 'v1',
    metadata: {},
    status: 'Failure',
    message: `taskgate: ${message}${task}`,
    reason: REASON[status] ?? 'Forbidden',
    code: status,
    taskgate: { reason: message, ...details },
  });
  return { allowed: false, status, headers: [['content-type', 'application/json']], body };
}
