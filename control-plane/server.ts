/**
 * The control-plane server: HTTP JSON API (tasks, reviews, grants), the
 * sidecar push stream and the reviewer inbox stream (Server-Sent Events),
 * tracker webhooks in, the web inbox, the expiry sweeper and the webhook
 * dispatcher. `startControlPlane(opts) => { url, close() }`.
 *
 * Several replicas may share one PostgreSQL: changes travel between them by
 * LISTEN/NOTIFY (events.ts), sweeps and webhook deliveries use SKIP LOCKED.
 */
import { createHash, randomUUID, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { MemoryAuditSink, type AuditSink } from '../core/audit/event.ts';
import { errorMessage, TaskgateError } from '../core/errors.ts';
import type { Authenticator } from '../core/identity/identity.ts';
import { silentLogger, type Logger } from '../core/log.ts';
import type { ReviewRequestSpec } from '../core/reviews.ts';
import { EventHub, type ChangeEvent } from './events.ts';
import { parseJson, readBody, sendError, sendJson, SseStream } from './http.ts';
import { serveInbox } from './inbox/assets.ts';
import { ControlPlaneService, type Caller, type TaskInputBody } from './service.ts';
import { openDatabase, type Database, type StorageConfig } from './storage/db.ts';
import { migrate } from './storage/migrations.ts';
import { mapGithubIssue, mapJiraIssue, verifyHubSignature, type GithubMapping, type JiraMapping, type TrackerAction } from './webhooks/inbound.ts';
import { WebhookDispatcher, type WebhookTarget } from './webhooks/outbound.ts';

export interface ServiceToken {
  /** Subject the token acts as (e.g. `sidecar-orders`). */
  name: string;
  /** The token itself, or its SHA-256 hex (preferred in config files). */
  token?: string;
  sha256?: string;
}

export interface ControlPlaneOptions {
  host?: string;
  /** 0 (default) = a free port. */
  port?: number;
  /** Default: PGlite in memory. */
  storage?: StorageConfig;
  /** Verifies users' OIDC bearer tokens (and client-credentials tokens of sidecars). */
  authenticator: Authenticator;
  /** Static bearer tokens for sidecars. */
  serviceTokens?: ServiceToken[];
  /** Subjects of OIDC service identities (client-credentials) accepted as sidecars. */
  sidecars?: string[];
  /** Subjects or `group:<name>` that administer tasks and see every review. */
  admins?: string[];
  webhooks?: WebhookTarget[];
  github?: GithubMapping;
  jira?: JiraMapping;
  audit?: AuditSink;
  log?: Logger;
  now?: () => number;
  /** Expiry sweep interval (default 1000 ms). */
  sweepIntervalMs?: number;
  /** SSE heartbeat interval (default 15 s). */
  heartbeatMs?: number;
  maxGrantS?: number;
  defaultTaskTtlS?: number;
  /** Public base URL (links in webhooks); default the listening URL. */
  publicUrl?: string;
  /** Webhook retry tuning (tests). */
  webhookBackoffMs?: number;
}

export interface ControlPlane {
  url: string;
  service: ControlPlaneService;
  db: Database;
  close(): Promise<void>;
}

const sha256 = (s: string) => createHash('sha256').update(s).digest();

export async function startControlPlane(opts: ControlPlaneOptions): Promise<ControlPlane> {
  const log = opts.log ?? silentLogger;
  const db = await openDatabase(opts.storage ?? { kind: 'pglite' }, log);
  let server: Server | undefined;
  let hub: EventHub | undefined;
  try {
    await migrate(db);
    hub = await EventHub.start(db, log);
    const replica = randomUUID();
    const tokenHashes = (opts.serviceTokens ?? []).map((t) => {
      const h = t.sha256 ? Buffer.from(t.sha256, 'hex') : t.token ? sha256(t.token) : undefined;
      if (!h || h.length !== 32) throw new TaskgateError('config_invalid', `service token ${t.name} needs token or sha256 (64 hex digits)`);
      return { name: t.name, hash: h };
    });
    server = createServer();
    const listening = new Promise<void>((resolve, reject) => {
      server!.once('error', reject);
      server!.listen(opts.port ?? 0, opts.host ?? '127.0.0.1', () => resolve());
    });
    await listening;
    const addr = server.address() as AddressInfo;
    const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
    const url = `http://${host}:${addr.port}`;
    const publicUrl = (opts.publicUrl ?? url).replace(/\/$/, '');
    const service = new ControlPlaneService(db, {
      audit: opts.audit ?? new MemoryAuditSink(),
      log,
      ...(opts.now ? { now: opts.now } : {}),
      webhooks: (opts.webhooks ?? []).map((w) => ({ name: w.name, ...(w.events ? { events: w.events } : {}) })),
      admins: opts.admins ?? [],
      ...(opts.maxGrantS ? { maxGrantS: opts.maxGrantS } : {}),
      ...(opts.defaultTaskTtlS ? { defaultTaskTtlS: opts.defaultTaskTtlS } : {}),
      inboxUrl: `${publicUrl}/inbox`,
    });
    const dispatcher = new WebhookDispatcher(db, {
      targets: opts.webhooks ?? [],
      log,
      ...(opts.now ? { now: opts.now } : {}),
      ...(opts.webhookBackoffMs ? { baseBackoffMs: opts.webhookBackoffMs, pollMs: Math.min(1000, opts.webhookBackoffMs) } : {}),
    });
    const unsubOutbox = hub.subscribe((ev) => ev.k === 'outbox' && dispatcher.kick());
    dispatcher.start();

    let sweeping = false;
    const sweeper = setInterval(() => {
      if (sweeping) return;
      sweeping = true;
      service
        .sweep()
        .catch((e) => log.warn('expiry sweep failed', { error: errorMessage(e) }))
        .finally(() => (sweeping = false));
    }, opts.sweepIntervalMs ?? 1000);
    sweeper.unref();

    const streams = new Set<SseStream>();
    const heartbeatMs = opts.heartbeatMs ?? 15_000;

    const authenticate = async (req: IncomingMessage): Promise<Caller> => {
      const h = req.headers.authorization;
      const m = h ? /^Bearer\s+(\S+)\s*$/i.exec(h) : null;
      if (!m) throw new TaskgateError('auth_failed', 'missing bearer token (Authorization: Bearer <OIDC access token>)');
      const token = m[1]!;
      const digest = sha256(token);
      for (const t of tokenHashes) if (timingSafeEqual(digest, t.hash)) return { subject: t.name, groups: [], type: 'service' };
      const id = await opts.authenticator.authenticate(token);
      const c: Caller = { subject: id.subject, groups: id.groups, type: id.type };
      if (id.acting_for) c.acting_for = id.acting_for;
      return c;
    };
    const requireSidecar = (c: Caller): void => {
      if (c.type !== 'service' || !(tokenHashes.some((t) => t.name === c.subject) || (opts.sidecars ?? []).includes(c.subject))) {
        throw new TaskgateError('forbidden', `${c.subject} is not a sidecar service identity (configure it under sidecars or service_tokens)`);
      }
    };
    const requireTaskWriter = (c: Caller): void => {
      if (!service.isAdmin(c) && !(c.type === 'service' && (opts.sidecars ?? []).concat(tokenHashes.map((t) => t.name)).includes(c.subject))) {
        throw new TaskgateError('forbidden', `${c.subject} may not create tasks (admins only)`);
      }
    };

    const sidecarStream = (req: IncomingMessage, res: ServerResponse): void => {
      let unsub = () => {};
      const s = new SseStream(res, heartbeatMs, () => {
        unsub();
        streams.delete(s);
      });
      streams.add(s);
      unsub = hub!.subscribe((ev: ChangeEvent) => {
        if (ev.k === 'review' && ev.state !== 'pending') s.send('review', ev);
        else if (ev.k === 'task') s.send(ev.state === 'open' ? 'task_changed' : 'task_ended', { task_id: ev.id, state: ev.state });
        else if (ev.k === 'resync') s.send('resync', {});
      });
      s.send('hello', { replica, heartbeat_ms: heartbeatMs });
    };

    const inboxStream = async (caller: Caller, res: ServerResponse): Promise<void> => {
      let unsub = () => {};
      const s = new SseStream(res, heartbeatMs, () => {
        unsub();
        streams.delete(s);
      });
      streams.add(s);
      const pushOne = async (id: string) => {
        const r = await service.getReview(id).catch(() => undefined);
        if (r && service.canSee(caller, r)) s.send('review', r);
      };
      const snapshot = async () => s.send('snapshot', { reviews: await service.listReviews(caller, { state: 'pending' }) });
      // Subscribe first so nothing falls between the snapshot and the live feed.
      unsub = hub!.subscribe((ev) => {
        if (ev.k === 'review') void pushOne(ev.id);
        else if (ev.k === 'resync') void snapshot().catch(() => undefined);
      });
      await snapshot();
    };

    const tracker = async (caller: string, action: TrackerAction, res: ServerResponse) => {
      if (action.action === 'ignore') return sendJson(res, 202, { ignored: action.reason });
      if (action.action === 'close') {
        const t = await service.getTask(action.task_id);
        if (!t) return sendJson(res, 202, { ignored: `task ${action.task_id} is unknown` });
        return sendJson(res, 200, { task: await service.endTask(action.task_id, 'closed', undefined, action.reason) });
      }
      try {
        const out = await service.upsertTask(action.task, caller);
        return sendJson(res, out.created ? 201 : 200, out);
      } catch (e) {
        if (e instanceof TaskgateError && e.code === 'conflict') return sendJson(res, 202, { ignored: e.message });
        throw e;
      }
    };

    const route = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
      const u = new URL(req.url ?? '/', 'http://x');
      const path = u.pathname;
      const method = req.method ?? 'GET';
      if (path === '/healthz') return sendJson(res, 200, { ok: true, replica, storage: db.engine });
      if (path === '/' && method === 'GET') {
        res.writeHead(302, { location: '/inbox' }).end();
        return;
      }
      if (path === '/inbox' || path.startsWith('/inbox/')) return serveInbox(path, res);

      if (path === '/hooks/github' && method === 'POST') {
        if (!opts.github) throw new TaskgateError('not_found', 'GitHub webhooks are not configured');
        const raw = await readBody(req);
        verifyHubSignature(opts.github.secret, raw, header(req, 'x-hub-signature-256'), 'X-Hub-Signature-256');
        return tracker('github', mapGithubIssue(header(req, 'x-github-event'), parseJson(raw), opts.github), res);
      }
      if (path === '/hooks/jira' && method === 'POST') {
        if (!opts.jira) throw new TaskgateError('not_found', 'Jira webhooks are not configured');
        const raw = await readBody(req);
        verifyHubSignature(opts.jira.secret, raw, header(req, 'x-hub-signature'), 'X-Hub-Signature');
        return tracker('jira', mapJiraIssue(parseJson(raw), opts.jira), res);
      }

      if (!path.startsWith('/api/v1/')) throw new TaskgateError('not_found', `no route ${method} ${path}`);
      const caller = await authenticate(req);
      const seg = path.slice('/api/v1/'.length).split('/').map(decodeURIComponent);
      const [a, b, c] = seg;

      if (a === 'whoami' && method === 'GET') return sendJson(res, 200, { ...caller, admin: service.isAdmin(caller) });
      if (a === 'stream' && method === 'GET') {
        requireSidecar(caller);
        return sidecarStream(req, res);
      }
      if (a === 'inbox' && b === 'stream' && method === 'GET') {
        if (caller.type !== 'user') throw new TaskgateError('forbidden', 'the inbox stream is for reviewers (user tokens)');
        return inboxStream(caller, res);
      }

      if (a === 'tasks') {
        if (b === undefined && method === 'GET') {
          const f: { state?: string; assignee?: string } = {};
          const st = u.searchParams.get('state');
          const as = u.searchParams.get('assignee');
          if (st) f.state = st;
          if (as) f.assignee = as;
          return sendJson(res, 200, { tasks: await service.listTasks(f) });
        }
        if (b === undefined && method === 'POST') {
          requireTaskWriter(caller);
          return sendJson(res, 201, { task: await service.createTask(parseJson(await readBody(req)) as unknown as TaskInputBody, caller) });
        }
        if (b !== undefined && c === undefined && method === 'GET') {
          const t = await service.getTask(b);
          if (!t) throw new TaskgateError('not_found', `task ${b} does not exist`);
          return sendJson(res, 200, { task: t });
        }
        if (b !== undefined && c === 'close' && method === 'POST') {
          const body = parseJson(await readBody(req));
          const reason = typeof body.reason === 'string' ? body.reason : undefined;
          return sendJson(res, 200, { task: await service.endTask(b, 'closed', caller, reason) });
        }
      }

      if (a === 'reviews') {
        if (b === undefined && method === 'POST') {
          requireSidecar(caller);
          const r = await service.requestReview(parseJson(await readBody(req)) as unknown as ReviewRequestSpec, caller);
          return sendJson(res, 201, { review: r });
        }
        if (b === undefined && method === 'GET') {
          const f: { state?: string; task_id?: string } = {};
          const st = u.searchParams.get('state') ?? 'pending';
          if (st !== 'all') f.state = st;
          const tid = u.searchParams.get('task_id');
          if (tid) f.task_id = tid;
          return sendJson(res, 200, { reviews: await service.listReviews(caller, f) });
        }
        if (b !== undefined && c === undefined && method === 'GET') {
          const r = await service.getReview(b);
          if (!r || !service.canSee(caller, r)) throw new TaskgateError('not_found', `review ${b} does not exist (or is not yours to see)`);
          return sendJson(res, 200, { review: r });
        }
        if (b !== undefined && (c === 'approve' || c === 'deny') && method === 'POST') {
          const body = parseJson(await readBody(req));
          const reason = typeof body.reason === 'string' && body.reason.trim() ? body.reason.trim() : undefined;
          const out =
            c === 'approve'
              ? await service.approve(b, caller, { ...(reason ? { reason } : {}), ...(body.grant_s !== undefined ? { grant_s: body.grant_s as number } : {}) })
              : await service.deny(b, caller, reason);
          return sendJson(res, 200, out);
        }
        if (b !== undefined && c === 'cancel' && method === 'POST') {
          requireSidecar(caller);
          return sendJson(res, 200, { review: await service.cancel(b, caller) });
        }
      }

      if (a === 'grants' && b === 'active' && method === 'GET') {
        requireSidecar(caller);
        const q = { task_id: u.searchParams.get('task_id') ?? '', subject: u.searchParams.get('subject') ?? '', resource: u.searchParams.get('resource') ?? '' };
        if (!q.task_id || !q.subject || !q.resource) throw new TaskgateError('input_invalid', 'task_id, subject and resource are required');
        return sendJson(res, 200, { grant: (await service.activeGrant(q)) ?? null });
      }
      throw new TaskgateError('not_found', `no route ${method} ${path}`);
    };

    server.on('request', (req, res) => {
      route(req, res).catch((e) => {
        if (!(e instanceof TaskgateError)) log.error('control-plane request failed', { path: req.url, error: errorMessage(e) });
        sendError(res, e);
      });
    });

    log.info('control plane listening', { url, storage: db.engine, replica });
    let closing: Promise<void> | undefined;
    return {
      url,
      service,
      db,
      close: () =>
        (closing ??= (async () => {
          clearInterval(sweeper);
          unsubOutbox();
          await dispatcher.stop();
          for (const s of streams) s.end();
          server!.closeAllConnections();
          await new Promise<void>((r) => server!.close(() => r()));
          await hub!.close();
          await db.close();
        })()),
    };
  } catch (e) {
    server?.close();
    await hub?.close().catch(() => undefined);
    await db.close().catch(() => undefined);
    throw e;
  }
}

function header(req: IncomingMessage, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v[0] : v;
}
