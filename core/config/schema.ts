import { z } from 'zod';

/**
 * taskgate.yaml: one file for the sidecar (PostgreSQL / SSH / HTTP listeners),
 * the Envoy ext_authz service and the control plane. Every object is strict:
 * unknown keys are errors naming their path. Documented in docs/configuration.md.
 */

const hostPort = z.string().regex(/^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]*):\d{1,5}$/, 'expected host:port (e.g. 127.0.0.1:15432)');
const duration = z.number().positive();
const labels = z.record(z.string(), z.string()).default({});
const tlsServer = z.strictObject({ cert_file: z.string(), key_file: z.string(), client_ca_file: z.string().optional() });

export const PolicySection = z.strictObject({
  /** File path (hot-reloaded) or http(s) URL (OPA bundle protocol, ETag polling). */
  bundle: z.string().min(1),
  poll_min_s: duration.default(10),
  poll_max_s: duration.default(20),
  eval_budget_ms: duration.default(250),
});

export const IdentitySection = z.strictObject({
  issuer: z.string().url(),
  audience: z.union([z.string(), z.array(z.string()).min(1)]),
  subject_claim: z.string().default('sub'),
  groups_claim: z.string().default('groups'),
  acting_for_claim: z.string().optional(),
  clock_tolerance_s: z.number().min(0).max(300).default(30),
  /** http:// issuers are accepted only on loopback and only with this set (tests, demo). */
  allow_insecure_loopback: z.boolean().default(false),
});

export const StaticTask = z.strictObject({
  id: z.string().min(1),
  type: z.string().min(1),
  assignee: z.string().min(1),
  reviewers: z.array(z.string()).default([]),
  expires_at: z.string().datetime({ offset: true }),
  state: z.enum(['open', 'closed', 'expired']).default('open'),
  ticket: z.string().optional(),
  title: z.string().optional(),
});

export const ControlPlaneClientSection = z.strictObject({
  url: z.string().url(),
  /** File with the sidecar's service token (bearer), re-read on change. */
  token_file: z.string().optional(),
  /** Or: OIDC client credentials for the sidecar's service identity. */
  client_id: z.string().optional(),
  client_secret_file: z.string().optional(),
  ca_file: z.string().optional(),
});

export const AuditSection = z.strictObject({
  spool_dir: z.string().default('.taskgate/spool'),
  fsync: z.enum(['always', 'interval', 'none']).default('interval'),
  fsync_interval_ms: duration.default(100),
  /** How long an event may wait for others before they are sealed and written together (0 = at once). */
  batch_window_ms: z.number().nonnegative().max(1000).default(5),
  max_spool_bytes: z.number().int().positive().default(1024 ** 3),
  /** fail_closed: deny new commands until the spool drains; drop: drop new events (counted in an `error` event). */
  on_full: z.enum(['fail_closed', 'drop']).default('fail_closed'),
  clickhouse: z
    .strictObject({
      url: z.string().url(),
      database: z.string().default('taskgate'),
      username: z.string().default('default'),
      password_file: z.string().optional(),
      migrate: z.boolean().default(true),
    })
    .optional(),
  /** Record sessions (PostgreSQL transcripts, SSH asciicast). */
  recordings: z.boolean().default(true),
});

export const MaskingSection = z.strictObject({
  /** Key for the deterministic `hash` strategy (HMAC). Without it a random per-process key is used and tokens do not join across restarts. */
  hash_key_file: z.string().optional(),
});

export const PostgresListener = z.strictObject({
  name: z.string().min(1),
  listen: hostPort,
  labels,
  tls: tlsServer.optional(),
  allow_plaintext: z.boolean().default(false),
  upstream: z.strictObject({
    host: z.string(),
    port: z.number().int().min(1).max(65535).default(5432),
    database: z.string().optional(),
    user: z.string(),
    password_file: z.string().optional(),
    tls: z
      .strictObject({
        mode: z.enum(['disable', 'require', 'verify-ca', 'verify-full']).default('verify-full'),
        ca_file: z.string().optional(),
      })
      .optional(),
  }),
});

export const SshListener = z.strictObject({
  name: z.string().min(1),
  listen: hostPort,
  labels,
  host_key_file: z.string(),
  banner: z.string().optional(),
  upstream: z.strictObject({
    host: z.string(),
    port: z.number().int().min(1).max(65535).default(22),
    user: z.string(),
    key_file: z.string(),
    known_hosts_file: z.string(),
  }),
});

export const HttpListener = z.strictObject({
  name: z.string().min(1),
  listen: hostPort,
  labels,
  kubernetes: z.boolean().default(false),
  tls: tlsServer.optional(),
  upstream: z.strictObject({
    url: z.string().url(),
    ca_file: z.string().optional(),
    insecure_skip_tls_verify: z.boolean().default(false),
    /** Credential injected upstream (bearer token file); the user's token is removed. */
    token_file: z.string().optional(),
  }),
  max_body_bytes: z.number().int().positive().default(8 * 1024 * 1024),
});

export const ExtAuthzSection = z.strictObject({
  listen: hostPort,
  tls: tlsServer.optional(),
  resources: z
    .array(
      z.strictObject({
        name: z.string(),
        kubernetes: z.boolean().default(false),
        labels,
        /** Credential injected upstream (bearer token file); the user's token is removed. */
        upstream_token_file: z.string().optional(),
      }),
    )
    .min(1),
  max_hold_ms: duration.default(25_000),
  /** Policies written for opa-envoy-plugin: evaluate this entrypoint (e.g. envoy/authz/allow) instead of taskgate/decision. */
  envoy_entrypoint: z.string().optional(),
  /** The gRPC server: taskgate's own HTTP/2 server, or @grpc/grpc-js's (same services; a fallback). */
  transport: z.enum(['taskgate', 'grpc-js']).default('taskgate'),
  /** ext_proc response masking, served on the same port. */
  ext_proc: z
    .strictObject({
      max_body_bytes: z.number().int().positive().default(8 * 1024 * 1024),
      /** Status of the replacement response when a body cannot be masked (fail closed). */
      error_status: z.number().int().min(400).max(599).default(502),
    })
    .prefault({}),
});

export const MetricsSection = z.strictObject({ listen: hostPort.default('127.0.0.1:9464') });

export const TaskgateConfig = z
  .strictObject({
    policy: PolicySection,
    identity: IdentitySection,
    control_plane: ControlPlaneClientSection.optional(),
    /** Without a control plane: a fixed task list (single process; reviews are held in-process). */
    tasks: z.array(StaticTask).default([]),
    audit: AuditSection.prefault({}),
    masking: MaskingSection.prefault({}),
    metrics: MetricsSection.prefault({}),
    postgres: z.array(PostgresListener).default([]),
    ssh: z.array(SshListener).default([]),
    http: z.array(HttpListener).default([]),
    ext_authz: ExtAuthzSection.optional(),
  })
  .superRefine((c, ctx) => {
    const names = new Map<string, string>();
    for (const [section, list] of [['postgres', c.postgres], ['ssh', c.ssh], ['http', c.http]] as const) {
      list.forEach((l, i) => {
        const prev = names.get(l.name);
        if (prev) ctx.addIssue({ code: 'custom', path: [section, i, 'name'], message: `resource name "${l.name}" is already used by ${prev}` });
        names.set(l.name, `${section}[${i}]`);
      });
    }
    if (c.control_plane && c.tasks.length > 0) {
      ctx.addIssue({ code: 'custom', path: ['tasks'], message: 'static tasks and control_plane are exclusive: tasks come from the control plane' });
    }
    if (c.postgres.length + c.ssh.length + c.http.length === 0 && !c.ext_authz) {
      ctx.addIssue({ code: 'custom', path: [], message: 'nothing to serve: configure at least one of postgres, ssh, http, ext_authz' });
    }
  });

export type TaskgateConfig = z.output<typeof TaskgateConfig>;
