/**
 * Kubernetes mutating admission webhook (admission.k8s.io/v1 AdmissionReview)
 * that injects the taskgate sidecar into pods annotated
 * `taskgate.io/inject: "true"`, with the same injectPod() as `taskgate inject`.
 *
 * Failure handling: a malformed review gets HTTP 400; an injection error is an
 * AdmissionResponse with allowed=false and the reason (the pod is refused
 * rather than started without its gate), unless `failOpen` is set.
 */
import { createServer as createHttpsServer } from 'node:https';
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { errorMessage } from '../core/errors.ts';
import { silentLogger, type Logger } from '../core/log.ts';
import { ANNOTATION_INJECT, injectPod, type InjectOptions, type PodLike } from './pod.ts';

export interface AdmissionReview {
  apiVersion: string;
  kind: 'AdmissionReview';
  request?: {
    uid: string;
    kind?: { group: string; version: string; kind: string };
    operation?: string;
    namespace?: string;
    object?: unknown;
    dryRun?: boolean;
  };
  response?: AdmissionResponse;
}

export interface AdmissionResponse {
  uid: string;
  allowed: boolean;
  patchType?: 'JSONPatch';
  patch?: string;
  status?: { code: number; message: string };
  warnings?: string[];
}

export interface JsonPatchOp {
  op: 'add' | 'replace';
  path: string;
  value: unknown;
}

export interface WebhookOptions extends InjectOptions {
  /** Inject every pod the webhook sees, not only annotated ones (scope it with the webhook's selectors instead). */
  injectAll?: boolean;
  /** Admit the pod unmodified when injection fails (default: refuse it). */
  failOpen?: boolean;
}

/** Computes the AdmissionResponse for one review. Pure: no I/O. */
export function review(ar: AdmissionReview, opts: WebhookOptions): AdmissionResponse {
  const req = ar.request;
  if (!req?.uid) throw new Error('AdmissionReview has no request.uid');
  const allow = (extra: Partial<AdmissionResponse> = {}): AdmissionResponse => ({ uid: req.uid, allowed: true, ...extra });
  if (req.kind && req.kind.kind !== 'Pod') return allow();
  if (req.operation && req.operation !== 'CREATE') return allow();
  const pod = req.object as PodLike | undefined;
  if (!pod || typeof pod !== 'object' || !pod.spec || !Array.isArray(pod.spec.containers)) {
    return { uid: req.uid, allowed: false, status: { code: 400, message: 'taskgate injector: request.object is not a pod' } };
  }
  if (!opts.injectAll && pod.metadata?.annotations?.[ANNOTATION_INJECT] !== 'true') return allow();
  const before = structuredClone(pod);
  try {
    const r = injectPod(pod, opts);
    if (!r.changed) return allow({ warnings: [`taskgate: ${r.skipped}`] });
  } catch (e) {
    const message = `taskgate injector: ${errorMessage(e)}`;
    if (opts.failOpen) return allow({ warnings: [message + ' (admitted without the sidecar: failOpen)'] });
    return { uid: req.uid, allowed: false, status: { code: 422, message } };
  }
  const patch: JsonPatchOp[] = [];
  patch.push({ op: 'replace', path: '/spec/containers', value: pod.spec.containers });
  if (before.spec.initContainers) patch.push({ op: 'replace', path: '/spec/initContainers', value: pod.spec.initContainers });
  patch.push({ op: before.spec.volumes ? 'replace' : 'add', path: '/spec/volumes', value: pod.spec.volumes });
  patch.push({ op: before.metadata?.annotations ? 'replace' : 'add', path: '/metadata/annotations', value: pod.metadata!.annotations });
  return allow({ patchType: 'JSONPatch', patch: Buffer.from(JSON.stringify(patch)).toString('base64') });
}

const MAX_BODY = 8 * 1024 * 1024;

export async function startInjectionWebhook(
  opts: WebhookOptions & { listen?: { host?: string; port?: number }; tls?: { cert: Buffer | string; key: Buffer | string }; log?: Logger },
): Promise<{ url: string; close: () => Promise<void> }> {
  const log = opts.log ?? silentLogger;
  const handler = (req: IncomingMessage, res: ServerResponse) => {
    const send = (code: number, body: unknown) => {
      res.writeHead(code, { 'content-type': 'application/json' }).end(JSON.stringify(body));
    };
    if (req.method === 'GET' && (req.url === '/healthz' || req.url === '/readyz')) return send(200, { ok: true });
    if (req.method !== 'POST' || !req.url?.startsWith('/mutate')) return send(404, { error: 'POST /mutate' });
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY) req.destroy();
      else chunks.push(c);
    });
    req.on('end', () => {
      let ar: AdmissionReview;
      try {
        ar = JSON.parse(Buffer.concat(chunks).toString('utf8')) as AdmissionReview;
        if (ar?.kind !== 'AdmissionReview') throw new Error('body is not an AdmissionReview');
      } catch (e) {
        return send(400, { error: errorMessage(e) });
      }
      try {
        const response = review(ar, opts);
        log.info('admission review', { uid: response.uid, allowed: response.allowed, patched: response.patch !== undefined, namespace: ar.request?.namespace });
        send(200, { apiVersion: ar.apiVersion || 'admission.k8s.io/v1', kind: 'AdmissionReview', response });
      } catch (e) {
        send(400, { error: errorMessage(e) });
      }
    });
  };
  const server: Server = opts.tls ? createHttpsServer({ cert: opts.tls.cert, key: opts.tls.key }, handler) : createHttpServer(handler);
  await new Promise<void>((r) => server.listen(opts.listen?.port ?? 0, opts.listen?.host ?? '127.0.0.1', () => r()));
  const a = server.address() as AddressInfo;
  return {
    url: `${opts.tls ? 'https' : 'http'}://${a.address.includes(':') ? `[${a.address}]` : a.address}:${a.port}`,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}
