/**
 * The sidecar process: builds the shared core once (policy engine + bundle
 * source, OIDC authenticator, task registry and review service, audit spool
 * and shipper, masking key, metrics) and starts every listener configured in
 * taskgate.yaml on top of it: PostgreSQL, SSH, HTTP proxies and the Envoy
 * ext_authz service. One Gatekeeper serves them all.
 */
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { SpoolAuditSink } from '../core/audit/spool-sink.ts';
import { SpoolRecordingSink } from '../core/audit/recordings.ts';
import { Shipper } from '../core/audit/shipper.ts';
import { ClickHouseStore } from '../core/audit/store.ts';
import type { AuditSink } from '../core/audit/event.ts';
import { configPath } from '../core/config/load.ts';
import type { TaskgateConfig } from '../core/config/schema.ts';
import { bundleSourceFor, type BundleSource } from '../core/engine/bundle-source.ts';
import { PolicyEngine } from '../core/engine/engine.ts';
import { TaskgateError } from '../core/errors.ts';
import { Gatekeeper } from '../core/gate.ts';
import type { Authenticator } from '../core/identity/identity.ts';
import { OidcAuthenticator } from '../core/identity/oidc.ts';
import { createLogger, type Logger } from '../core/log.ts';
import { createStreamMasker, compileMaskPlan, parseHashKey } from '../core/mask/index.ts';
import { Metrics } from '../core/metrics.ts';
import { InProcessReviews, type ReviewService } from '../core/reviews.ts';
import { StaticTaskRegistry, type TaskRegistry } from '../core/tasks.ts';
import { connectControlPlane, type ControlPlaneClient } from '../control-plane/client/connect.ts';
import { startExtAuthz } from '../ext-authz/server.ts';
import { envoyPolicyEngine } from '../ext-authz/envoy-decision.ts';
import { startHttpProxy } from './http/proxy.ts';
import { createSqlClassifier } from './postgres/classifier.ts';
import { createResultMasking } from './postgres/masking-rows.ts';
import { startPostgresProxy } from './postgres/proxy.ts';
import type { UpstreamConfig } from './postgres/upstream.ts';
import { startSshProxy } from './ssh/server.ts';

export interface SidecarDeps {
  /** Replace the OIDC authenticator (the demo and tests pass one bound to their issuer). */
  authenticator?: Authenticator;
  /** Replace the task registry / review service (the demo wires the in-process control plane). */
  tasks?: TaskRegistry;
  reviews?: ReviewService;
  log?: Logger;
}

export interface Listening {
  protocol: 'postgres' | 'ssh' | 'http' | 'ext_authz';
  name: string;
  address: string;
  /** SSH: the sidecar's host key line for users' known_hosts. */
  host_key?: string;
}

export interface Sidecar {
  gate: Gatekeeper;
  engine: PolicyEngine;
  metrics: Metrics;
  audit: AuditSink;
  listening: Listening[];
  metricsUrl: string;
  close(): Promise<void>;
}

async function readSecret(baseDir: string, file: string | undefined, what: string): Promise<string | undefined> {
  if (!file) return undefined;
  try {
    return (await readFile(configPath(baseDir, file), 'utf8')).trim();
  } catch (e) {
    throw new TaskgateError('config_invalid', `cannot read ${what} from ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
}

function splitHostPort(hp: string): { host: string; port: number } {
  const i = hp.lastIndexOf(':');
  return { host: hp.slice(0, i).replace(/^\[|\]$/g, '') || '127.0.0.1', port: Number(hp.slice(i + 1)) };
}

export async function startSidecar(config: TaskgateConfig, baseDir: string, deps: SidecarDeps = {}): Promise<Sidecar> {
  const log = deps.log ?? createLogger();
  const metrics = new Metrics({ defaultMetrics: true });
  const closers: (() => Promise<void> | void)[] = [];
  const closeAll = async () => {
    for (const c of closers.reverse()) {
      try {
        await c();
      } catch (e) {
        log.warn('shutdown step failed', { error: (e as Error).message });
      }
    }
  };

  try {
    // ---- policy --------------------------------------------------------------
    const engine = new PolicyEngine({ evalBudgetMs: config.policy.eval_budget_ms, log: log.child({ component: 'policy' }), metrics });
    const source: BundleSource = bundleSourceFor(engine, configPath(baseDir, config.policy.bundle), {
      log,
      minDelaySeconds: config.policy.poll_min_s,
      maxDelaySeconds: config.policy.poll_max_s,
    });
    await source.start();
    closers.push(() => source.stop());

    // ---- identity --------------------------------------------------------------
    const id = config.identity;
    const authenticator =
      deps.authenticator ??
      (await OidcAuthenticator.discover({
        issuer: id.issuer,
        audience: id.audience,
        subjectClaim: id.subject_claim,
        groupsClaim: id.groups_claim,
        ...(id.acting_for_claim ? { actingForClaim: id.acting_for_claim } : {}),
        clockToleranceSec: id.clock_tolerance_s,
        allowInsecureLoopback: id.allow_insecure_loopback,
      }));

    // ---- tasks and reviews -------------------------------------------------------
    let tasks = deps.tasks;
    let reviews = deps.reviews;
    if (!tasks || !reviews) {
      if (config.control_plane) {
        const cp = config.control_plane;
        const staticToken = await readSecret(baseDir, cp.token_file, 'the control-plane token');
        if (!staticToken) throw new TaskgateError('config_invalid', 'control_plane.token_file is required (the sidecar service token)');
        const client: ControlPlaneClient = connectControlPlane({ url: cp.url, token: staticToken, log: log.child({ component: 'control-plane' }) });
        closers.push(() => client.close());
        tasks ??= client.tasks;
        reviews ??= client.reviews;
      } else {
        tasks ??= new StaticTaskRegistry(
          config.tasks.map((t) => ({
            id: t.id,
            type: t.type,
            assignee: t.assignee,
            reviewers: t.reviewers,
            state: t.state,
            expires_at: t.expires_at,
            ...(t.ticket ? { ticket: t.ticket } : {}),
            ...(t.title ? { title: t.title } : {}),
          })),
        );
        const inproc = new InProcessReviews();
        closers.push(() => inproc.close());
        // A task that ends takes its held commands with it.
        const registry = tasks;
        closers.push(registry.onEnded((ev) => inproc.cancelTask(ev.task_id, `task ${ev.task_id} is ${ev.state}`)));
        reviews ??= inproc;
        log.warn('no control_plane configured: reviews are held in this process only (single-process mode)');
      }
    }

    // ---- audit -------------------------------------------------------------------
    const a = config.audit;
    const spoolDir = configPath(baseDir, a.spool_dir);
    const spoolOpts = {
      fsync: a.fsync,
      fsyncIntervalMs: a.fsync_interval_ms,
      batchWindowMs: a.batch_window_ms,
      maxBytes: a.max_spool_bytes,
      onFull: a.on_full,
      log: log.child({ component: 'audit' }),
    };
    const audit = await SpoolAuditSink.open({ dir: join(spoolDir, 'events'), ...spoolOpts });
    closers.push(() => audit.close());
    const recordings = a.recordings ? await SpoolRecordingSink.open({ dir: join(spoolDir, 'recordings'), ...spoolOpts }) : undefined;
    if (recordings) closers.push(() => recordings.flush());
    if (a.clickhouse) {
      const ch = a.clickhouse;
      const password = await readSecret(baseDir, ch.password_file, 'the ClickHouse password');
      const store = new ClickHouseStore({ url: ch.url, database: ch.database, username: ch.username, ...(password ? { password } : {}) });
      for (const [table, dir] of [
        ['events', join(spoolDir, 'events')],
        ['recordings', join(spoolDir, 'recordings')],
      ] as const) {
        if (table === 'recordings' && !recordings) continue;
        const shipper = new Shipper({ dir, store, table, migrate: ch.migrate, log: log.child({ component: `shipper-${table}` }) });
        shipper.start();
        closers.push(() => shipper.stop());
      }
    }
    engine.on('loaded', (s: { revision?: string; source?: string }) =>
      audit.emit({ type: 'policy_loaded', policy_revision: s.revision ?? '', details: { source: s.source ?? '' } }),
    );
    if (engine.revision) audit.emit({ type: 'policy_loaded', policy_revision: engine.revision, details: { source: config.policy.bundle } });

    const gate = new Gatekeeper({ engine, tasks, reviews, audit, log: log.child({ component: 'gate' }), metrics });

    // ---- masking ---------------------------------------------------------------------
    const hashKey = (await readSecret(baseDir, config.masking.hash_key_file, 'the masking hash key')) ?? `hex:${randomBytes(32).toString('hex')}`;
    parseHashKey(hashKey); // a bad key fails the start, not every masked query
    if (!config.masking.hash_key_file) log.warn('masking.hash_key_file not set: hash tokens use a random per-process key and do not join across restarts');

    // ---- listeners -------------------------------------------------------------------
    const listening: Listening[] = [];
    if (config.postgres.length > 0) {
      const classify = await createSqlClassifier();
      for (const l of config.postgres) {
        const password = (await readSecret(baseDir, l.upstream.password_file, `the upstream password of ${l.name}`)) ?? '';
        const upstream: UpstreamConfig = {
          host: l.upstream.host,
          port: l.upstream.port,
          user: l.upstream.user,
          password,
          database: l.upstream.database ?? 'postgres',
        };
        if (l.upstream.tls && l.upstream.tls.mode !== 'disable') {
          const ca = l.upstream.tls.ca_file ? await readFile(configPath(baseDir, l.upstream.tls.ca_file)) : undefined;
          upstream.tls = { mode: l.upstream.tls.mode, ...(ca ? { ca } : {}) } as UpstreamConfig['tls'];
        }
        const { host, port } = splitHostPort(l.listen);
        const proxy = await startPostgresProxy({
          host,
          port,
          gate,
          authenticator,
          upstream,
          resource: { name: l.name, labels: l.labels },
          ...(l.tls ? { tls: { cert: await readFile(configPath(baseDir, l.tls.cert_file)), key: await readFile(configPath(baseDir, l.tls.key_file)) } } : {}),
          allowPlaintext: l.allow_plaintext,
          classify,
          masking: createResultMasking({ upstream, hashKey, log }),
          ...(recordings
            ? { recordings: { append: (sid: string, rec: object) => recordings.append(sid, { kind: 'pg_transcript', seq: nextSeq(sid), data: JSON.stringify(rec) }) } }
            : {}),
          log: log.child({ listener: l.name }),
        });
        closers.push(() => proxy.close());
        listening.push({ protocol: 'postgres', name: l.name, address: `${proxy.address.host}:${proxy.address.port}` });
      }
    }
    for (const l of config.ssh) {
      const { host, port } = splitHostPort(l.listen);
      const proxy = await startSshProxy({
        gate,
        authenticator,
        resource: { protocol: 'ssh', name: l.name, labels: l.labels },
        hostKeyPath: configPath(baseDir, l.host_key_file),
        upstream: {
          host: l.upstream.host,
          port: l.upstream.port,
          username: l.upstream.user,
          privateKeyPath: configPath(baseDir, l.upstream.key_file),
          knownHostsPath: configPath(baseDir, l.upstream.known_hosts_file),
        },
        listen: { host, port },
        ...(recordings ? { recordings } : {}),
        masker: (rules) => {
          const m = createStreamMasker(compileMaskPlan(rules, { hashKey }));
          return Object.assign(m, { end: () => m.flush('end') });
        },
        ...(l.banner ? { banner: l.banner } : {}),
        log: log.child({ listener: l.name }),
      });
      closers.push(() => proxy.close());
      listening.push({ protocol: 'ssh', name: l.name, address: `${proxy.address.host}:${proxy.address.port}`, host_key: proxy.hostKeyPublic });
    }
    for (const l of config.http) {
      const { host, port } = splitHostPort(l.listen);
      const token = await readSecret(baseDir, l.upstream.token_file, `the upstream token of ${l.name}`);
      const ca = l.upstream.ca_file ? await readFile(configPath(baseDir, l.upstream.ca_file)) : undefined;
      const proxy = await startHttpProxy({
        gate,
        authenticator,
        resources: [{ name: l.name, labels: l.labels, kubernetes: l.kubernetes, ...(token ? { upstream_authorization: `Bearer ${token}` } : {}) }],
        upstream: l.upstream.url,
        upstreamTls: { ...(ca ? { ca } : {}), rejectUnauthorized: !l.upstream.insecure_skip_tls_verify },
        host,
        port,
        ...(l.tls ? { tls: { cert: await readFile(configPath(baseDir, l.tls.cert_file)), key: await readFile(configPath(baseDir, l.tls.key_file)) } } : {}),
        maskMaxBytes: l.max_body_bytes,
        maskHashKey: hashKey,
        log: log.child({ listener: l.name }),
        metrics,
      });
      closers.push(() => proxy.close());
      listening.push({ protocol: 'http', name: l.name, address: proxy.address });
    }
    if (config.ext_authz) {
      const x = config.ext_authz;
      const { host, port } = splitHostPort(x.listen);
      let authzGate = gate;
      if (x.envoy_entrypoint) {
        // opa-envoy-plugin policies: their own entrypoint and decision shapes, the same bundle,
        // tasks, reviews and audit.
        const envoyEngine = envoyPolicyEngine({ entrypoint: x.envoy_entrypoint, evalBudgetMs: config.policy.eval_budget_ms, log, metrics });
        const envoySource = bundleSourceFor(envoyEngine, configPath(baseDir, config.policy.bundle), {
          log,
          minDelaySeconds: config.policy.poll_min_s,
          maxDelaySeconds: config.policy.poll_max_s,
        });
        await envoySource.start();
        closers.push(() => envoySource.stop());
        authzGate = new Gatekeeper({ engine: envoyEngine, tasks, reviews, audit, log: log.child({ component: 'gate-envoy' }), metrics });
      }
      const resources = [];
      for (const r of x.resources) {
        const token = await readSecret(baseDir, r.upstream_token_file, `the upstream token of ${r.name}`);
        resources.push({ name: r.name, labels: r.labels, kubernetes: r.kubernetes, ...(token ? { upstream_authorization: `Bearer ${token}` } : {}) });
      }
      const srv = await startExtAuthz({
        gate: authzGate,
        authenticator,
        resources,
        extProc: { maxBytes: x.ext_proc.max_body_bytes, errorStatus: x.ext_proc.error_status, hashKey },
        host,
        port,
        maxHoldMs: x.max_hold_ms,
        transport: x.transport,
        ...(x.tls
          ? {
              tls: {
                cert: await readFile(configPath(baseDir, x.tls.cert_file)),
                key: await readFile(configPath(baseDir, x.tls.key_file)),
                ...(x.tls.client_ca_file ? { clientCa: await readFile(configPath(baseDir, x.tls.client_ca_file)) } : {}),
              },
            }
          : {}),
        log: log.child({ listener: 'ext_authz' }),
        metrics,
      });
      closers.push(() => srv.close());
      listening.push({ protocol: 'ext_authz', name: 'ext_authz', address: srv.address });
    }

    // ---- metrics and health ----------------------------------------------------------------
    const m = splitHostPort(config.metrics.listen);
    const server: Server = createServer((req, res) => {
      if (req.url === '/metrics') {
        void metrics.render().then(({ contentType, body }) => res.writeHead(200, { 'content-type': contentType }).end(body));
      } else if (req.url === '/healthz') {
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ ok: true }));
      } else if (req.url === '/readyz') {
        const s = engine.status();
        const ready = s.loaded && audit.writable();
        res.writeHead(ready ? 200 : 503, { 'content-type': 'application/json' }).end(JSON.stringify({ ready, policy: s, audit_writable: audit.writable() }));
      } else {
        res.writeHead(404).end();
      }
    });
    await new Promise<void>((r, j) => server.once('error', j).listen(m.port, m.host, () => r()));
    closers.push(() => new Promise<void>((r) => server.close(() => r())));
    const ma = server.address() as AddressInfo;

    return {
      gate,
      engine,
      metrics,
      audit,
      listening,
      metricsUrl: `http://${ma.address}:${ma.port}`,
      close: closeAll,
    };
  } catch (e) {
    await closeAll();
    throw e;
  }
}

const seqs = new Map<string, number>();
function nextSeq(sessionId: string): number {
  const n = seqs.get(sessionId) ?? 0;
  seqs.set(sessionId, n + 1);
  if (seqs.size > 10_000) seqs.delete(seqs.keys().next().value as string);
  return n;
}
