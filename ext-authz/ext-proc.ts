import { brotliDecompressSync, gunzipSync, inflateSync } from 'node:zlib';
import type { ServerDuplexStream } from '@grpc/grpc-js';
import { errorMessage } from '../core/errors.ts';
import type { Logger } from '../core/log.ts';
import type { MaskRule } from '../core/policy-contract.ts';
import { deny, type AllowResult, type HttpAuthorizer } from '../sidecar/http/authorize.ts';
import { BodyMasker } from '../sidecar/http/response-mask.ts';
import { structToJson } from './check-input.ts';
import { UuidSet } from './uuid-set.ts';

/**
 * envoy.service.ext_proc.v3.ExternalProcessor/Process: response masking where
 * Envoy is the proxy. Per HTTP stream:
 *
 * 1. request headers: the decision id that ext_authz put on the request
 *    (`x-taskgate-decision-id`) names the decision and its mask rules, read
 *    from ext_authz's dynamic metadata when Envoy forwards it
 *    (`metadata_options.forwarding_namespaces`), else from this process's
 *    recent decisions. No decision id, or one nobody knows, is a 403: the
 *    request did not go through taskgate's ext_authz. With rules, the request
 *    loses Accept-Encoding so the body comes back readable.
 * 2. response headers: the content type picks the masking mode
 *    (sidecar/http/response-mask.ts); Content-Length goes (the length changes).
 * 3. response body: BUFFERED mode masks the whole body in one message; STREAMED
 *    mode withholds chunks of a JSON document until the end (bounded by
 *    `maxBytes`) and passes watch/NDJSON/text lines through as they complete.
 *    Above the limit, or for a body that cannot be masked, the response is
 *    replaced by an error (fail closed).
 */
export interface ExtProcOptions {
  /** Largest JSON body (or streamed line) that is masked; larger is replaced by an error. Default 8 MiB. */
  maxBytes?: number;
  /** Key for the `hash` mask strategy. */
  hashKey?: string;
  /** Status of the replacement response when a body cannot be masked. Default 502. */
  errorStatus?: number;
}

export const EXT_AUTHZ_NAMESPACE = 'envoy.filters.http.ext_authz';

interface Plan {
  decision_id: string;
  mask: MaskRule[];
  session?: AllowResult['session'];
}

/**
 * Recent allowed decisions of this process (decision id -> mask rules), kept
 * 10-20 s: ext_proc's request-headers message follows the Check within
 * milliseconds (forwarded ext_authz metadata carries the rules regardless of
 * age). Two generations, so expiry is O(1). Most decisions have no mask rules:
 * their ids go into a typed-array set (ext-authz/uuid-set.ts), not a Map, so
 * remembering them creates nothing for the garbage collector to copy or
 * promote. Decisions with rules (and any id that is not a canonical UUID) are
 * Map entries.
 */
class Generation {
  readonly plans = new Map<string, Plan>();
  readonly unmasked = new UuidSet();

  clear(): void {
    this.plans.clear();
    this.unmasked.clear();
  }
}

export class MaskPlans {
  private cur = new Generation();
  private old = new Generation();
  private rotated = Date.now();

  constructor(private readonly ttlMs = 10_000) {}

  put(r: AllowResult): void {
    this.rotate();
    if (r.mask.length > 0) this.cur.plans.set(r.decision_id, { decision_id: r.decision_id, mask: r.mask, session: r.session });
    else if (!this.cur.unmasked.add(r.decision_id)) this.cur.plans.set(r.decision_id, { decision_id: r.decision_id, mask: [] });
  }

  get(id: string): Plan | undefined {
    this.rotate();
    const p = this.cur.plans.get(id) ?? this.old.plans.get(id);
    if (p) return p;
    return this.cur.unmasked.has(id) || this.old.unmasked.has(id) ? { decision_id: id, mask: [] } : undefined;
  }

  clear(): void {
    this.cur.clear();
    this.old.clear();
  }

  private rotate(): void {
    const now = Date.now();
    if (now - this.rotated < this.ttlMs) return;
    // The older generation's tables are emptied and reused (their capacity stays).
    const spare = this.old;
    spare.clear();
    if (now - this.rotated < 2 * this.ttlMs) {
      this.old = this.cur;
      this.cur = spare;
    } else this.cur.clear();
    this.rotated = now;
  }
}

type Obj = Record<string, any>;

export function processHandler(deps: { authorizer: HttpAuthorizer; plans: MaskPlans; log: Logger } & ExtProcOptions) {
  const maxBytes = deps.maxBytes ?? 8 * 1024 * 1024;
  const errorStatus = deps.errorStatus ?? 502;
  const decisionHeader = deps.authorizer.decisionHeader;

  return (call: ServerDuplexStream<Obj, Obj>) => {
    let plan: Plan | undefined;
    let masker: BodyMasker | undefined;
    let encoding = 'identity';
    let encodedParts: Buffer[] = [];
    let encodedSize = 0;
    let done = false;

    const send = (m: Obj) => {
      if (!done) call.write(m);
    };
    const immediate = (status: number, message: string) => {
      send({
        immediateResponse: {
          status: { code: status },
          headers: { setHeaders: [{ header: { key: 'content-type', value: 'application/json' }, append: { value: false } }] },
          body: Buffer.from(deny(status, message, plan ? { decision_id: plan.decision_id } : {}).body),
          details: `taskgate: ${message}`,
        },
      });
      done = true;
      call.end();
    };

    const onRequestHeaders = (m: Obj) => {
      const headers = headerList(m.requestHeaders?.headers);
      const id = headers.get(decisionHeader);
      if (!id) return immediate(403, 'no taskgate decision on this request (ext_authz must run before ext_proc)');
      const fromMeta = metadataPlan(m.metadataContext, id);
      plan = fromMeta ?? deps.plans.get(id);
      if (!plan) return immediate(403, `decision ${id} is unknown here (forward ext_authz metadata to ext_proc, or route both to the same taskgate)`);
      const common: Obj = {};
      if (plan.mask.length > 0) common.headerMutation = { removeHeaders: ['accept-encoding'] };
      send({ requestHeaders: { response: common } });
    };

    const onResponseHeaders = (m: Obj) => {
      if (!plan) return immediate(403, 'response without request headers');
      const headers = headerList(m.responseHeaders?.headers);
      if (plan.mask.length === 0) return send({ responseHeaders: { response: {} } });
      const hashKey = deps.hashKey;
      masker = new BodyMasker(plan.mask, headers.get('content-type'), { maxBytes, ...(hashKey ? { hashKey } : {}) });
      if (masker.passthrough || m.responseHeaders?.endOfStream) {
        masker = undefined;
        return send({ responseHeaders: { response: {} } });
      }
      if (masker.mode === 'opaque') return immediate(errorStatus, `a ${headers.get('content-type') ?? 'untyped'} response cannot be masked, so it is withheld`);
      encoding = (headers.get('content-encoding') ?? 'identity').toLowerCase();
      if (encoding !== 'identity' && (masker.mode !== 'json' || !DECODERS[encoding])) {
        return immediate(errorStatus, `a ${encoding}-encoded ${masker.mode} response cannot be masked, so it is withheld`);
      }
      const remove = ['content-length', ...(encoding !== 'identity' ? ['content-encoding'] : [])];
      send({ responseHeaders: { response: { headerMutation: { removeHeaders: remove } } } });
    };

    const onResponseBody = (m: Obj) => {
      const chunk = m.responseBody?.body ? Buffer.from(m.responseBody.body as Uint8Array) : Buffer.alloc(0);
      const end = m.responseBody?.endOfStream === true;
      if (!masker) return send({ responseBody: { response: {} } });
      let out: Buffer;
      if (encoding !== 'identity') {
        encodedParts.push(chunk);
        encodedSize += chunk.length;
        if (encodedSize > maxBytes) return immediate(errorStatus, `response body exceeds the masking limit of ${maxBytes} bytes, so it is withheld`);
        if (!end) return send(bodyReplacement(Buffer.alloc(0)));
        let plain: Buffer;
        try {
          plain = DECODERS[encoding]!(Buffer.concat(encodedParts), maxBytes);
        } catch (e) {
          return immediate(errorStatus, `response could not be decoded (${errorMessage(e)}), so it is withheld`);
        }
        encodedParts = [];
        const a = masker.push(plain);
        if (!a.ok) return immediate(errorStatus, a.error);
        const b = masker.end();
        if (!b.ok) return immediate(errorStatus, b.error);
        out = Buffer.concat([a.out, b.out]);
      } else {
        const a = masker.push(chunk);
        if (!a.ok) return immediate(errorStatus, a.error);
        out = a.out;
        if (end) {
          const b = masker.end();
          if (!b.ok) return immediate(errorStatus, b.error);
          out = Buffer.concat([out, b.out]);
        }
      }
      send(bodyReplacement(out));
      if (end) audit(masker.counts);
    };

    const audit = (counts: Record<string, number>) => {
      if (!plan || Object.keys(counts).length === 0) return;
      const s = plan.session;
      deps.authorizer.decider.gate.audit.emit({
        type: 'masking_applied',
        protocol: 'http',
        masked: counts,
        ...(s ? { session_id: s.id, task_id: s.task_id, subject: s.identity.subject, resource: s.resource.name } : {}),
        details: { decision_id: plan.decision_id, entry: 'ext_proc' },
      });
    };

    call.on('data', (m: Obj) => {
      if (done) return;
      try {
        if (m.requestHeaders) onRequestHeaders(m);
        else if (m.responseHeaders) onResponseHeaders(m);
        else if (m.responseBody) onResponseBody(m);
        else if (m.requestBody) send({ requestBody: { response: {} } });
        else if (m.requestTrailers) send({ requestTrailers: {} });
        else if (m.responseTrailers) send({ responseTrailers: {} });
        else immediate(400, 'unknown ext_proc message');
      } catch (e) {
        deps.log.error('ext_proc message failed; replacing the response', { error: errorMessage(e) });
        immediate(500, `internal error: ${errorMessage(e)}`);
      }
    });
    call.on('end', () => {
      if (!done) {
        done = true;
        call.end();
      }
    });
    call.on('error', () => {
      done = true;
    });
    call.on('cancelled', () => {
      done = true;
    });
  };
}

/** In STREAMED mode each chunk's replacement: empty while a JSON document is withheld. */
function bodyReplacement(out: Buffer): Obj {
  return { responseBody: { response: { bodyMutation: out.length ? { body: out } : { clearBody: true } } } };
}

const DECODERS: Record<string, (b: Buffer, max: number) => Buffer> = {
  gzip: (b, max) => gunzipSync(b, { maxOutputLength: max }),
  'x-gzip': (b, max) => gunzipSync(b, { maxOutputLength: max }),
  deflate: (b, max) => inflateSync(b, { maxOutputLength: max }),
  br: (b, max) => brotliDecompressSync(b, { maxOutputLength: max }),
};

/** HeaderMap (value or raw_value) -> lower-cased names; first value wins. */
function headerList(hm: Obj | undefined): Map<string, string> {
  const out = new Map<string, string>();
  for (const h of (hm?.headers as Obj[] | undefined) ?? []) {
    const k = String(h.key ?? '').toLowerCase();
    const v = h.rawValue && (h.rawValue as Uint8Array).length ? Buffer.from(h.rawValue as Uint8Array).toString('utf8') : String(h.value ?? '');
    if (k && !out.has(k)) out.set(k, v);
  }
  return out;
}

/** ext_authz's dynamic metadata, forwarded by Envoy: `taskgate_decision_id` and `taskgate_mask` (JSON). */
function metadataPlan(md: Obj | undefined, id: string): Plan | undefined {
  const ns = md?.filterMetadata?.[EXT_AUTHZ_NAMESPACE];
  if (!ns) return undefined;
  const m = structToJson(ns) as { taskgate_decision_id?: unknown; taskgate_mask?: unknown };
  if (m.taskgate_decision_id !== id || typeof m.taskgate_mask !== 'string') return undefined;
  try {
    const mask = JSON.parse(m.taskgate_mask) as MaskRule[];
    return Array.isArray(mask) ? { decision_id: id, mask } : undefined;
  } catch {
    return undefined;
  }
}
