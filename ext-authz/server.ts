import { createServer, type Server as HttpServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Server, ServerCredentials, status as grpcStatus, type ServiceDefinition } from '@grpc/grpc-js';
import { HealthImplementation } from 'grpc-health-check';
import { errorMessage, TaskgateError } from '../core/errors.ts';
import { silentLogger } from '../core/log.ts';
import { HttpAuthorizer, type AuthzResult, type HttpAuthorizerOptions, type HttpAuthzRequest } from '../sidecar/http/authorize.ts';
import { checkInput } from './check-input.ts';
import { checkResponse } from './check-response.ts';
import { withDirectCheckEncoding } from './check-response-codec.ts';
import { MaskPlans, processHandler, type ExtProcOptions } from './ext-proc.ts';
import { GrpcServer } from './h2/grpc-server.ts';
import { envoyServices } from './protos.ts';

/**
 * The Envoy-facing server: envoy.service.auth.v3.Authorization/Check,
 * envoy.service.ext_proc.v3.ExternalProcessor/Process and grpc.health.v1 on
 * one gRPC port (plaintext, TLS or mTLS), Prometheus /metrics on an HTTP port.
 * The server loop only: input and response shaping live beside it.
 *
 * Two transports serve the same services with the same handlers: taskgate's
 * own HTTP/2 gRPC server (ext-authz/h2/, the default) and @grpc/grpc-js's
 * Server. On the first a whole Check costs about a third of the CPU it costs
 * on the second (docs/benchmarks.md); the second is there to fall back on.
 */
export type ExtAuthzTransport = 'taskgate' | 'grpc-js';
export interface ExtAuthzOptions extends HttpAuthorizerOptions {
  host?: string;
  /** 0 (default) = a free port. */
  port?: number;
  tls?: {
    cert: Buffer | string;
    key: Buffer | string;
    /** mTLS: client certificates must chain to this CA. */
    clientCa?: Buffer | string;
  };
  /** Serve /metrics (and /healthz) over HTTP on this port (0 = free port); omitted = off. */
  metricsPort?: number;
  /** Longest review hold when Envoy sends no deadline. Default 25 s. */
  maxHoldMs?: number;
  /**
   * Answer this long before Envoy's deadline so the answer arrives in time.
   * Default: 10% of the time left, at least 20 ms and at most 250 ms.
   */
  deadlineMarginMs?: number;
  /** ext_proc response masking (served on the same port). */
  extProc?: ExtProcOptions;
  /** The gRPC server: 'taskgate' (default, ext-authz/h2/) or 'grpc-js'. */
  transport?: ExtAuthzTransport;
}

export interface ExtAuthzHandle {
  /** host:port of the gRPC server. */
  address: string;
  metricsAddress?: string;
  authorizer: HttpAuthorizer;
  health: HealthImplementation;
  close(): Promise<void>;
}

const AUTH_SERVICE = 'envoy.service.auth.v3.Authorization';
const PROC_SERVICE = 'envoy.service.ext_proc.v3.ExternalProcessor';

interface Cancellation {
  answered: boolean;
  ac?: AbortController;
}

/** What the Check handler uses of a unary call: a grpc-js ServerUnaryCall and the h2 server's UnaryCall both are one. */
interface CheckCall {
  readonly request: unknown;
  readonly cancelled: boolean;
  getDeadline(): Date | number;
  on(event: 'cancelled', fn: () => void): unknown;
}
type CheckCallback = (err: { code: number; details: string } | null, value?: unknown) => void;

/** What the server needs of either transport once it is listening. */
interface Transport {
  addService(service: ServiceDefinition, implementation: Record<string, unknown>): void;
  tryShutdown(done: () => void): void;
  forceShutdown(): void;
}

/**
 * The Check's cancellation as a signal, made only when the answer has to wait
 * (a review hold): subscribing to a grpc-js call's 'cancelled' costs more than
 * the rest of a cached Check. grpc-js also reports 'cancelled' when a finished
 * call's stream closes: only an unanswered Check is cancelled.
 */
function cancellationSignal(call: CheckCall, st: Cancellation): () => AbortSignal {
  return () => {
    if (!st.ac) {
      const c = (st.ac = new AbortController());
      if (call.cancelled) c.abort();
      else call.on('cancelled', () => st.answered || c.abort());
    }
    return st.ac.signal;
  };
}

export async function startExtAuthz(opts: ExtAuthzOptions): Promise<ExtAuthzHandle> {
  const log = opts.log ?? silentLogger;
  const services = envoyServices();
  const authorizer = new HttpAuthorizer(opts);
  const plans = new MaskPlans();
  const maxHold = opts.maxHoldMs ?? 25_000;
  const marginFor = (left: number) => opts.deadlineMarginMs ?? Math.min(250, Math.max(20, left * 0.1));
  const maxMessage = 8 * 1024 * 1024;
  const transport = opts.transport ?? 'taskgate';
  const server: Transport =
    transport === 'grpc-js'
      ? // channelz (per-call statistics for grpc debugging tools) is not used: off, it saves ~2 µs per Check.
        (new Server({ 'grpc.max_receive_message_length': maxMessage, 'grpc.enable_channelz': 0 }) as unknown as Transport)
      : new GrpcServer({ maxReceiveMessageLength: maxMessage, log });

  server.addService(services.externalProcessor, { Process: processHandler({ authorizer, plans, log, ...opts.extProc }) });
  server.addService(withDirectCheckEncoding(services.authorization), {
    Check: (call: CheckCall, callback: CheckCallback) => {
      const cancel: Cancellation = { answered: false };
      const dl = call.getDeadline();
      const deadline = dl instanceof Date ? dl.getTime() : dl;
      const left = deadline - Date.now();
      const waitMs = Number.isFinite(deadline) ? Math.max(0, left - marginFor(left)) : maxHold;
      const input = checkInput(call.request);
      let pending: Promise<AuthzResult>;
      if (input.ok) {
        const req: HttpAuthzRequest = {
          raw: input.raw,
          extra: input.extra,
          fingerprint_extra: input.fingerprint_extra,
          waitMs,
          signal: cancellationSignal(call, cancel),
          refuseMergedSlashes: true,
          entry: 'ext_authz',
        };
        if (input.context_extensions.taskgate_resource) req.resource = input.context_extensions.taskgate_resource;
        if (input.client_address) req.client_address = input.client_address;
        if (input.request_id) req.request_id = input.request_id;
        pending = authorizer.authorize(req);
      } else pending = Promise.resolve(authorizer.malformed('ext_authz', input.reason));
      pending.then(
        (r) => {
          if (cancel.ac?.signal.aborted || call.cancelled) return;
          cancel.answered = true;
          if (r.allowed) plans.put(r);
          callback(null, checkResponse(r));
        },
        (e: unknown) => {
          cancel.answered = true;
          callback({ code: grpcStatus.INTERNAL, details: errorMessage(e) });
        },
      );
    },
  });

  const health = new HealthImplementation({ '': 'SERVING', [AUTH_SERVICE]: 'SERVING', [PROC_SERVICE]: 'SERVING' });
  const engine = opts.gate.engine;
  const setHealth = () => {
    const st = engine.status().loaded ? 'SERVING' : 'NOT_SERVING';
    for (const s of ['', AUTH_SERVICE, PROC_SERVICE]) health.setStatus(s, st);
  };
  setHealth();
  engine.on('loaded', setHealth);
  // grpc-health-check registers itself through addService, which both transports have.
  health.addToServer(server as unknown as Server);

  const host = opts.host ?? '127.0.0.1';
  const cannotListen = (err: Error) => new TaskgateError('unavailable', `ext-authz cannot listen on ${host}:${opts.port ?? 0}: ${err.message}`);
  let port: number;
  if (server instanceof GrpcServer) {
    port = await server.listen(host, opts.port ?? 0, opts.tls).catch((e: Error) => {
      throw cannotListen(e);
    });
  } else {
    const creds = opts.tls
      ? ServerCredentials.createSsl(
          opts.tls.clientCa ? Buffer.from(opts.tls.clientCa) : null,
          [{ cert_chain: Buffer.from(opts.tls.cert), private_key: Buffer.from(opts.tls.key) }],
          opts.tls.clientCa !== undefined,
        )
      : ServerCredentials.createInsecure();
    port = await new Promise<number>((resolve, reject) =>
      (server as unknown as Server).bindAsync(`${host.includes(':') ? `[${host}]` : host}:${opts.port ?? 0}`, creds, (err, p) => (err ? reject(cannotListen(err)) : resolve(p))),
    );
  }

  let metricsServer: HttpServer | undefined;
  let metricsAddress: string | undefined;
  if (opts.metricsPort !== undefined) {
    const metrics = opts.metrics;
    metricsServer = createServer((req, res) => {
      if (req.url === '/metrics' && metrics) {
        metrics.render().then(
          (m) => res.writeHead(200, { 'content-type': m.contentType }).end(m.body),
          () => res.writeHead(500).end(),
        );
      } else if (req.url === '/healthz') {
        const ok = engine.status().loaded;
        res.writeHead(ok ? 200 : 503, { 'content-type': 'text/plain' }).end(ok ? 'ok\n' : 'no policy loaded\n');
      } else res.writeHead(404).end();
    });
    await new Promise<void>((r) => metricsServer!.listen(opts.metricsPort, host, r));
    metricsAddress = `${host}:${(metricsServer.address() as AddressInfo).port}`;
  }
  log.info('ext-authz listening', { address: `${host}:${port}`, transport, tls: opts.tls ? (opts.tls.clientCa ? 'mtls' : 'tls') : 'off', metrics: metricsAddress });

  const handle: ExtAuthzHandle = {
    address: `${host}:${port}`,
    authorizer,
    health,
    close: async () => {
      engine.off('loaded', setHealth);
      authorizer.close();
      plans.clear();
      // Open ext_proc streams would keep a graceful shutdown waiting: give them a moment, then cut.
      await new Promise<void>((r) => {
        const t = setTimeout(() => (server.forceShutdown(), r()), 1000);
        server.tryShutdown(() => (clearTimeout(t), r()));
      });
      if (metricsServer) {
        metricsServer.closeAllConnections();
        await new Promise<void>((r) => metricsServer!.close(() => r()));
      }
    },
  };
  if (metricsAddress) handle.metricsAddress = metricsAddress;
  return handle;
}
