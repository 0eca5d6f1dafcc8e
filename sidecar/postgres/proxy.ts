/**
 * The PostgreSQL sidecar listener: accepts clients (TLS or loopback
 * plaintext), authenticates them by OIDC token, binds each session to a task,
 * logs in to the real server with the sidecar's own credential and relays
 * the session through PgSession. CancelRequests are routed by sidecar-issued
 * keys to the right upstream backend.
 */
import { randomInt, randomUUID } from 'node:crypto';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { createSecureContext, type SecureContext } from 'node:tls';
import { errorMessage } from '../../core/errors.ts';
import type { Gatekeeper, SessionContext } from '../../core/gate.ts';
import type { Authenticator } from '../../core/identity/identity.ts';
import { silentLogger, type Logger } from '../../core/log.ts';
import type { PgStatement } from '../../core/policy-contract.ts';
import type { SqlClassifier } from './classifier-port.ts';
import { backendKeyData, errorResponse, parameterStatus, readyForQuery, authenticationOk } from './codec/backend.ts';
import { sessionFields } from './audit-events.ts';
import { createSqlClassifier } from './classifier.ts';
import type { ResultMasking } from './masking-port.ts';
import { createResultMasking } from './masking-rows.ts';
import type { Duplex } from './message-pump.ts';
import { PgSession, type Recordings } from './session.ts';
import { clientHandshake, StartupError, type ClientHandshake } from './startup.ts';
import { cancelUpstream, connectUpstream, type UpstreamConfig } from './upstream.ts';

export interface PostgresProxyOptions {
  /** Listen address (default 127.0.0.1, port 0 = any free port). */
  host?: string;
  port?: number;
  gate: Gatekeeper;
  authenticator: Authenticator;
  upstream: UpstreamConfig;
  /** The resource as policies see it (`resource.name`, `resource.labels`). */
  resource: { name: string; labels?: Record<string, string> };
  /** Client-side TLS: PEM certificate chain and key. Without it SSLRequest is answered 'N'. */
  tls?: { cert: string | Buffer; key: string | Buffer };
  /** Accept unencrypted connections from non-loopback addresses (default false). */
  allowPlaintext?: boolean;
  /** SQL classifier; default: libpg-query classifier + lineage (classifier.ts). */
  classify?: SqlClassifier;
  /** Result masking; default: core/mask with catalog resolution over a service connection. */
  masking?: ResultMasking;
  /** Key for the `hash` mask strategy (default masking only). */
  maskHashKey?: string;
  recordings?: Recordings;
  log?: Logger;
  handshakeTimeoutMs?: number;
}

export interface PostgresProxy {
  address: { host: string; port: number };
  /** Sessions currently open. */
  sessions(): number;
  close(): Promise<void>;
}

const REPLICATION_OFF = new Set(['false', 'off', 'no', '0']);

export async function startPostgresProxy(opts: PostgresProxyOptions): Promise<PostgresProxy> {
  const log = opts.log ?? silentLogger;
  const classify = opts.classify ?? (await createSqlClassifier());
  const masking =
    opts.masking ?? createResultMasking({ upstream: opts.upstream, log, ...(opts.maskHashKey !== undefined ? { hashKey: opts.maskHashKey } : {}) });
  const tls: SecureContext | undefined = opts.tls ? createSecureContext({ cert: opts.tls.cert, key: opts.tls.key }) : undefined;
  const byKey = new Map<string, PgSession>();
  const live = new Set<PgSession>();
  const sockets = new Set<Socket>();

  const onConnection = (sock: Socket) => {
    sockets.add(sock);
    sock.on('close', () => sockets.delete(sock));
    sock.setNoDelay(true);
    sock.on('error', () => undefined);
    void serve(sock).catch((e) => {
      log.warn('postgres session failed', { error: errorMessage(e) });
      sock.destroy();
    });
  };

  async function serve(sock: Socket): Promise<void> {
    const timer = setTimeout(() => sock.destroy(), opts.handshakeTimeoutMs ?? 60_000);
    let hs;
    try {
      hs = await clientHandshake(sock, {
        authenticator: opts.authenticator,
        ...(tls ? { tls } : {}),
        allowPlaintext: opts.allowPlaintext ?? false,
        database: opts.upstream.database,
      });
    } catch (e) {
      clearTimeout(timer);
      if (e instanceof StartupError) {
        log.info('postgres connection refused', { client: sock.remoteAddress, code: e.sqlstate, reason: e.message });
        // The client may have switched to TLS: the error goes out on whatever socket it has.
        const target: Duplex = e.socket ?? sock;
        target.end(errorResponse({ severity: 'FATAL', code: e.sqlstate, message: e.message }));
      } else sock.destroy();
      return;
    }
    if (hs.kind === 'cancel') {
      clearTimeout(timer);
      sock.destroy();
      const s = byKey.get(`${hs.pid}:${hs.secret}`);
      if (s) s.cancel();
      return;
    }
    try {
      await openSession(hs, sock);
    } finally {
      clearTimeout(timer);
    }
  }

  async function openSession(hs: ClientHandshake, sock: Socket): Promise<void> {
    const client = hs.socket;
    const ctx: SessionContext = {
      id: randomUUID(),
      started_at: new Date().toISOString(),
      identity: hs.identity,
      task_id: hs.task_id,
      resource: { protocol: 'postgres', name: opts.resource.name, labels: opts.resource.labels ?? {} },
    };
    if (sock.remoteAddress) ctx.client_address = sock.remoteAddress;
    const refuse = (code: string, message: string) => client.end(errorResponse({ severity: 'FATAL', code, message }));

    const params = { ...hs.forward };
    if (hs.replication !== undefined && !REPLICATION_OFF.has(hs.replication.toLowerCase())) {
      // A replication connection streams the whole database: only when policy says so.
      const st: PgStatement = {
        command: 'REPLICATION',
        class: 'admin',
        tables: [],
        functions: [],
        fingerprint: `replication:${hs.replication}`,
        text: `<replication connection: replication=${hs.replication}>`,
        flags: [`replication_${hs.replication === 'database' ? 'logical' : 'physical'}`],
      };
      const o = await opts.gate.decide(ctx, { request: { message: 'replication', statements: [st] }, text: st.text, fingerprint: st.fingerprint });
      if (!o.allowed) {
        refuse('42501', `taskgate denied a replication connection for task ${ctx.task_id}: ${o.decision.reasons.join('; ')}`);
        return;
      }
      params.replication = hs.replication;
    }

    let up;
    try {
      up = await connectUpstream(opts.upstream, params);
    } catch (e) {
      log.warn('upstream login failed', { error: errorMessage(e) });
      refuse('08006', `taskgate could not connect to the database: ${errorMessage(e)}`);
      return;
    }
    const pid = randomInt(1, 0x7fffffff);
    const secret = randomInt(-0x7fffffff, 0x7fffffff);
    const key = `${pid}:${secret}`;
    const session = new PgSession(client, hs.reader, up.socket, up.reader, ctx, {
      gate: opts.gate,
      classify,
      masking,
      ...(opts.recordings ? { recordings: opts.recordings } : {}),
      log,
      cancelUpstream: () => cancelUpstream(opts.upstream, up.pid, up.secret),
    });
    byKey.set(key, session);
    live.add(session);

    const hello = [authenticationOk()];
    for (const [k, v] of up.parameters) hello.push(parameterStatus(k, v));
    hello.push(backendKeyData(pid, secret), readyForQuery(up.status));
    client.write(Buffer.concat(hello));

    const started = performance.now();
    const id = ctx.identity;
    const base = sessionFields(ctx);
    opts.gate.audit.emit({ ...base, details: { tls: hs.tls, user: hs.user, database: hs.database, ...(params.replication ? { replication: params.replication } : {}) } });
    // Access ends with the task (closed / expired) and with the token.
    const stopTask = opts.gate.tasks.onEnded((ev) => {
      if (ev.task_id === ctx.task_id) session.fatal('57P01', `taskgate ended the session: task ${ctx.task_id} is ${ev.state}`);
    });
    const ttl = id.expires_at_ms === undefined ? undefined : id.expires_at_ms - Date.now();
    const expiry =
      ttl === undefined ? undefined : setTimeout(() => session.fatal('57P01', 'taskgate ended the session: the OIDC token expired (reconnect with a fresh token)'), Math.max(0, Math.min(ttl, 2 ** 31 - 1)));
    expiry?.unref();
    try {
      await session.run();
    } finally {
      stopTask();
      if (expiry) clearTimeout(expiry);
      byKey.delete(key);
      live.delete(session);
      opts.gate.audit.emit({
        ...base,
        type: 'session_end',
        duration_us: Math.round((performance.now() - started) * 1000),
        details: { statements: session.statementCount },
      });
    }
  }

  const server: Server = createServer({ allowHalfOpen: true }, onConnection);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, opts.host ?? '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const addr = server.address() as AddressInfo;
  log.info('postgres sidecar listening', { host: addr.address, port: addr.port, tls: Boolean(tls), upstream: `${opts.upstream.host}:${opts.upstream.port}` });
  return {
    address: { host: addr.address, port: addr.port },
    sessions: () => live.size,
    close: async () => {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const s of sockets) s.destroy();
      });
      await masking.close();
    },
  };
}
