/**
 * Sidecar injection into a pod template: one pure function shared by
 * `taskgate inject` (manifests on disk) and the mutating admission webhook.
 *
 * What it does to a pod:
 *  - adds the `taskgate-sidecar` container (config, policy bundle and upstream
 *    credentials mounted only into it: the application never sees them);
 *  - adds the volumes those mounts need;
 *  - points the application's endpoints at the sidecar: env vars named in
 *    `taskgate.io/endpoints` get their host:port rewritten to the sidecar's
 *    loopback listener;
 *  - marks the pod `taskgate.io/status: injected` so injecting twice is a no-op.
 * Everything else in the pod is left exactly as it was.
 */
import { TaskgateError } from '../core/errors.ts';

export const ANNOTATION_INJECT = 'taskgate.io/inject';
export const ANNOTATION_STATUS = 'taskgate.io/status';
export const ANNOTATION_ENDPOINTS = 'taskgate.io/endpoints';
export const ANNOTATION_CONFIG = 'taskgate.io/config';
export const ANNOTATION_CREDENTIALS = 'taskgate.io/credentials-secret';
export const ANNOTATION_BUNDLE = 'taskgate.io/bundle-configmap';
export const SIDECAR_NAME = 'taskgate-sidecar';

export interface InjectOptions {
  image: string;
  /** ConfigMap holding taskgate.yaml (default taskgate-config). */
  configMap?: string;
  /** Secret holding the upstream credentials (default taskgate-upstream-credentials). */
  credentialsSecret?: string;
  /** ConfigMap holding the compiled policy bundle (optional; else the config's bundle URL is used). */
  bundleConfigMap?: string;
  /** Endpoint rewrites `ENV_VAR=host:port`, merged with the pod's annotation. */
  endpoints?: Record<string, string>;
  metricsPort?: number;
  imagePullPolicy?: string;
}

type Obj = Record<string, unknown>;

export interface PodLike {
  metadata?: Obj & { annotations?: Record<string, string>; labels?: Record<string, string> };
  spec: Obj & { containers: Obj[]; volumes?: Obj[]; initContainers?: Obj[] };
}

export interface InjectResult {
  changed: boolean;
  /** Why nothing changed (already injected, opted out). */
  skipped?: string;
  rewrites: { container: string; env: string; from: string; to: string }[];
}

export function parseEndpoints(s: string | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  if (!s) return out;
  for (const part of s.split(',').map((x) => x.trim()).filter(Boolean)) {
    const m = /^([A-Za-z_][A-Za-z0-9_]*)=((?:\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d{1,5})$/.exec(part);
    if (!m) throw new TaskgateError('input_invalid', `${ANNOTATION_ENDPOINTS}: "${part}" is not ENV_VAR=host:port`);
    out[m[1]!] = m[2]!;
  }
  return out;
}

/** Rewrites the host:port of a URL or a bare host/host:port value to `target` (host:port). */
export function rewriteEndpoint(value: string, target: string): string | undefined {
  const [thost, tport] = splitHostPort(target);
  // URL form: scheme://[user[:pass]@]host[:port][/...]
  const url = /^([a-zA-Z][a-zA-Z0-9+.-]*:\/\/)([^@/]*@)?(\[[^\]]+\]|[^:/?#]+)(:\d+)?(.*)$/.exec(value);
  if (url) return `${url[1]}${url[2] ?? ''}${thost}:${tport}${url[5]}`;
  // libpq keyword/value form: host=... port=...
  if (/\bhost=/.test(value)) {
    let v = value.replace(/\bhost=\S+/, `host=${thost}`);
    v = /\bport=/.test(v) ? v.replace(/\bport=\S+/, `port=${tport}`) : `${v} port=${tport}`;
    return v;
  }
  // bare host or host:port
  if (/^(\[[^\]]+\]|[A-Za-z0-9.-]+)(:\d+)?$/.test(value)) return value.includes(':') && !value.startsWith('[') ? `${thost}:${tport}` : thost;
  return undefined;
}

function splitHostPort(hp: string): [string, string] {
  const i = hp.lastIndexOf(':');
  return [hp.slice(0, i), hp.slice(i + 1)];
}

export function sidecarContainer(opts: InjectOptions, endpoints: Record<string, string>): Obj {
  const metricsPort = opts.metricsPort ?? 9464;
  const ports = [...new Set(Object.values(endpoints).map((e) => Number(splitHostPort(e)[1])))].sort((a, b) => a - b);
  const mounts: Obj[] = [
    { name: 'taskgate-config', mountPath: '/etc/taskgate', readOnly: true },
    { name: 'taskgate-credentials', mountPath: '/var/run/taskgate/credentials', readOnly: true },
    { name: 'taskgate-spool', mountPath: '/var/lib/taskgate' },
  ];
  if (opts.bundleConfigMap) mounts.push({ name: 'taskgate-bundle', mountPath: '/etc/taskgate/bundle', readOnly: true });
  return {
    name: SIDECAR_NAME,
    image: opts.image,
    imagePullPolicy: opts.imagePullPolicy ?? 'IfNotPresent',
    args: ['sidecar', '--config', '/etc/taskgate/taskgate.yaml'],
    env: [{ name: 'TASKGATE_LOG_FORMAT', value: 'json' }],
    ports: [...ports.map((p) => ({ name: `tg-${p}`, containerPort: p, protocol: 'TCP' })), { name: 'tg-metrics', containerPort: metricsPort, protocol: 'TCP' }],
    readinessProbe: { httpGet: { path: '/readyz', port: metricsPort }, periodSeconds: 5 },
    livenessProbe: { httpGet: { path: '/healthz', port: metricsPort }, periodSeconds: 10 },
    resources: { requests: { cpu: '50m', memory: '96Mi' }, limits: { memory: '512Mi' } },
    securityContext: {
      runAsNonRoot: true,
      runAsUser: 65532,
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      capabilities: { drop: ['ALL'] },
    },
    volumeMounts: mounts,
  };
}

function sidecarVolumes(opts: InjectOptions): Obj[] {
  const v: Obj[] = [
    { name: 'taskgate-config', configMap: { name: opts.configMap ?? 'taskgate-config' } },
    { name: 'taskgate-credentials', secret: { secretName: opts.credentialsSecret ?? 'taskgate-upstream-credentials', defaultMode: 0o400 } },
    { name: 'taskgate-spool', emptyDir: { sizeLimit: '1Gi' } },
  ];
  if (opts.bundleConfigMap) v.push({ name: 'taskgate-bundle', configMap: { name: opts.bundleConfigMap } });
  return v;
}

/**
 * Injects into `pod` in place (a plain object: YAML-parsed or from an
 * AdmissionReview). Idempotent; pods annotated `taskgate.io/inject: "false"` are left alone.
 */
export function injectPod(pod: PodLike, base: InjectOptions): InjectResult {
  const ann = (pod.metadata ??= {}).annotations ?? {};
  if (ann[ANNOTATION_STATUS] === 'injected' || pod.spec.containers.some((c) => c.name === SIDECAR_NAME)) {
    return { changed: false, skipped: 'already injected', rewrites: [] };
  }
  if (ann[ANNOTATION_INJECT] === 'false') return { changed: false, skipped: `opted out (${ANNOTATION_INJECT}: "false")`, rewrites: [] };
  const opts: InjectOptions = { ...base };
  if (ann[ANNOTATION_CONFIG]) opts.configMap = ann[ANNOTATION_CONFIG];
  if (ann[ANNOTATION_CREDENTIALS]) opts.credentialsSecret = ann[ANNOTATION_CREDENTIALS];
  if (ann[ANNOTATION_BUNDLE]) opts.bundleConfigMap = ann[ANNOTATION_BUNDLE];
  const endpoints = { ...(base.endpoints ?? {}), ...parseEndpoints(ann[ANNOTATION_ENDPOINTS]) };

  const rewrites: InjectResult['rewrites'] = [];
  for (const c of [...(pod.spec.initContainers ?? []), ...pod.spec.containers]) {
    const env = c.env as { name: string; value?: string }[] | undefined;
    if (!Array.isArray(env)) continue;
    for (const e of env) {
      const target = endpoints[e.name];
      if (target === undefined || typeof e.value !== 'string') continue;
      const next = rewriteEndpoint(e.value, target);
      if (next === undefined) throw new TaskgateError('input_invalid', `container ${String(c.name)}: env ${e.name}="${e.value}" has no host:port to point at the sidecar`);
      rewrites.push({ container: String(c.name), env: e.name, from: e.value, to: next });
      e.value = next;
    }
  }
  pod.spec.containers.push(sidecarContainer(opts, endpoints));
  const names = new Set((pod.spec.volumes ?? []).map((v) => v.name));
  for (const v of sidecarVolumes(opts)) {
    if (names.has(v.name)) throw new TaskgateError('conflict', `pod already has a volume named ${String(v.name)}`);
  }
  pod.spec.volumes = [...(pod.spec.volumes ?? []), ...sidecarVolumes(opts)];
  pod.metadata.annotations = { ...ann, [ANNOTATION_STATUS]: 'injected' };
  return { changed: true, rewrites };
}
