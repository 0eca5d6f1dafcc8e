import { EventEmitter } from 'node:events';
import { createServer as createNetServer, type Server as NetServer, type Socket } from 'node:net';
import { createServer as createTlsServer } from 'node:tls';
import { gunzipSync, inflateSync } from 'node:zlib';
import { Metadata, status as Status, type MethodDefinition, type ServiceDefinition } from '@grpc/grpc-js';
import type { Logger } from '../../core/log.ts';
import { silentLogger } from '../../core/log.ts';
import { H2Connection, type H2ConnectionOptions, type H2Stream, type RequestHandler, type StreamListener } from './connection.ts';
import { hpackIndexed, hpackLiteral, hpackLiteralIndexedName } from './hpack.ts';

/**
 * gRPC (https://github.com/grpc/grpc/blob/master/doc/PROTOCOL-HTTP2.md) on
 * taskgate's HTTP/2 connection (./connection.ts), for the Envoy-facing server.
 *
 * Services are grpc-js ServiceDefinitions (from @grpc/proto-loader) and
 * handlers have grpc-js's shapes — `(call, callback)` for unary methods, a call
 * with write/end/events for streams — so the same service code runs on either
 * this server or a grpc-js Server. What differs is the cost: on the benchmark
 * VM grpc-js spent 68-128 µs of CPU to receive and answer a Check that does
 * nothing, this server 16-24 µs (docs/benchmarks.md).
 *
 * Supported: unary, server-streaming and bidirectional methods; deadlines
 * (grpc-timeout); cancellation (RST_STREAM, connection loss); identity, gzip
 * and deflate request messages; metadata in, trailing metadata out; TLS and
 * mTLS. Answers are never compressed.
 */
export interface GrpcServerOptions {
  /** Largest request message (after decompression). Default 4 MiB. */
  maxReceiveMessageLength?: number;
  h2?: H2ConnectionOptions;
  log?: Logger;
}

export interface GrpcTls {
  cert: Buffer | string;
  key: Buffer | string;
  /** mTLS: client certificates must chain to this CA. */
  clientCa?: Buffer | string;
}

/** A grpc-js-style error passed to a unary callback. */
export interface ServiceErrorLike {
  code?: number;
  details?: string;
  message?: string;
  metadata?: Metadata;
}

type Handler = (...args: any[]) => unknown;
type Kind = 'unary' | 'server-stream' | 'bidi';

interface Route {
  kind: Kind;
  method: MethodDefinition<unknown, unknown>;
  handler: Handler;
}

// ---- header blocks, built once --------------------------------------------------

const RESPONSE_HEADERS = Buffer.concat([
  hpackIndexed(8), // :status 200
  hpackLiteralIndexedName(31, 'application/grpc'), // content-type
  hpackLiteral('grpc-accept-encoding', 'identity,deflate,gzip'),
]);
const TRAILERS_OK = hpackLiteral('grpc-status', '0');
const STATUS_405 = hpackLiteralIndexedName(8, '405');
const STATUS_415 = hpackLiteralIndexedName(8, '415');
const TEXT_PLAIN = hpackLiteralIndexedName(31, 'text/plain');
const REFUSAL_TEXT = Buffer.from('this is a gRPC server (Envoy ext_authz / ext_proc): send gRPC\n');

/**
 * A request that is not gRPC gets an HTTP status with a short text body once
 * it has been sent whole (its body is read and dropped, within flow control);
 * answering before its end would leave the client's later frames on a stream
 * we had reset.
 */
function refuse(stream: H2Stream, status: Buffer, end: boolean): void {
  const answer = () => {
    stream.headers(Buffer.concat([status, TEXT_PLAIN]), false);
    stream.data(REFUSAL_TEXT, true);
  };
  if (end) return answer();
  stream.listener = { onData: (_c, e) => e && answer(), onReset() {} };
}

/** Headers a call's metadata does not carry (transport and gRPC protocol fields; grpc-js's Server drops the same). */
const RESERVED = new Set(['te', 'content-type', 'grpc-timeout', 'grpc-encoding', 'grpc-accept-encoding', 'accept-encoding', 'content-length']);
/** The longest a Node timer can wait (longer delays fire after 1 ms). */
const MAX_TIMER_MS = 0x7fff_ffff;

/** grpc-message: percent-encoded outside printable ASCII (and '%' itself). */
export function encodeGrpcMessage(m: string): string {
  let safe = true;
  for (let i = 0; i < m.length; i++) {
    const c = m.charCodeAt(i);
    if (c < 0x20 || c > 0x7e || c === 0x25) {
      safe = false;
      break;
    }
  }
  if (safe) return m;
  let out = '';
  for (const b of Buffer.from(m, 'utf8')) out += b < 0x20 || b > 0x7e || b === 0x25 ? `%${b.toString(16).toUpperCase().padStart(2, '0')}` : String.fromCharCode(b);
  return out;
}

function statusBlock(code: number, message: string, metadata: Metadata | undefined, trailersOnly: boolean): Buffer {
  const parts: Buffer[] = [];
  if (trailersOnly) parts.push(RESPONSE_HEADERS);
  parts.push(hpackLiteral('grpc-status', String(code)));
  if (message) parts.push(hpackLiteral('grpc-message', encodeGrpcMessage(message)));
  if (metadata) parts.push(metadataBlock(metadata));
  return Buffer.concat(parts);
}

function metadataBlock(md: Metadata): Buffer {
  const parts: Buffer[] = [];
  const h = md.toHttp2Headers();
  for (const name of Object.keys(h)) {
    const lower = name.toLowerCase();
    if (lower.startsWith(':') || lower.startsWith('grpc-') || RESERVED.has(lower)) continue;
    const v = h[name];
    for (const one of Array.isArray(v) ? v : [v]) if (one !== undefined) parts.push(hpackLiteral(lower, String(one)));
  }
  return Buffer.concat(parts);
}

/** grpc-timeout (1-8 digits and a unit) in ms; NaN when malformed. */
export function parseGrpcTimeout(v: string): number {
  const m = /^(\d{1,8})([HMSmun])$/.exec(v);
  if (!m) return NaN;
  const n = Number(m[1]);
  switch (m[2]) {
    case 'H':
      return n * 3_600_000;
    case 'M':
      return n * 60_000;
    case 'S':
      return n * 1000;
    case 'm':
      return n;
    case 'u':
      return n / 1000;
    default:
      return n / 1e6;
  }
}

/** The request headers a call needs, from one pass over the list. */
interface RequestHead {
  method: string;
  path: string;
  contentType: string;
  timeout: string;
  encoding: string;
}

function readHead(h: string[]): RequestHead {
  const r: RequestHead = { method: '', path: '', contentType: '', timeout: '', encoding: '' };
  for (let i = 0; i < h.length; i += 2) {
    const n = h[i]!;
    if (n === ':method') r.method = h[i + 1]!;
    else if (n === ':path') r.path = h[i + 1]!;
    else if (n === 'content-type') r.contentType = h[i + 1]!;
    else if (n === 'grpc-timeout') r.timeout = h[i + 1]!;
    else if (n === 'grpc-encoding') r.encoding = h[i + 1]!;
  }
  return r;
}

// ---- calls ------------------------------------------------------------------------

/**
 * Reassembles length-prefixed messages (1-byte compressed flag, 4-byte length)
 * from DATA chunks cut anywhere.
 */
class Deframer {
  private parts: Buffer[] = [];
  private have = 0;

  /** Calls `each` per whole message; returns an error message when one is too large. */
  push(chunk: Buffer, max: number, each: (msg: Buffer, compressed: boolean) => void): string | undefined {
    if (chunk.length === 0) return undefined;
    this.parts.push(chunk);
    this.have += chunk.length;
    while (this.have >= 5) {
      // A prefix cut across chunks is joined once (not again at every chunk of a large message).
      if (this.parts[0]!.length < 5) this.parts = [Buffer.concat(this.parts, this.have)];
      const len = this.parts[0]!.readUInt32BE(1);
      if (len > max) return `request message of ${len} bytes exceeds the limit of ${max}`;
      if (this.have < 5 + len) return undefined;
      const all = this.parts.length === 1 ? this.parts[0]! : Buffer.concat(this.parts, this.have);
      const compressed = all[0] === 1;
      const msg = all.subarray(5, 5 + len);
      const rest = all.subarray(5 + len);
      this.parts = rest.length ? [rest] : [];
      this.have = rest.length;
      each(msg, compressed);
    }
    return undefined;
  }

  /** Bytes of an unfinished message held. */
  get bytes(): number {
    return this.have;
  }
}

abstract class BaseCall implements StreamListener {
  cancelled = false;
  protected done = false;
  protected headersSent = false;
  protected timer: NodeJS.Timeout | undefined;
  private md: Metadata | undefined;
  /** Request bytes this call holds in unfinished messages, counted on the connection (H2Connection.hold). */
  private heldBytes = 0;

  constructor(
    protected readonly server: GrpcServer,
    protected readonly stream: H2Stream,
    protected readonly route: Route,
    private readonly headerList: string[],
    protected readonly encoding: string,
    readonly deadline: number,
  ) {}

  /** The request's metadata (custom headers), as grpc-js Metadata; built when first read. */
  get metadata(): Metadata {
    if (!this.md) {
      const h: Record<string, string | string[]> = {};
      const l = this.headerList;
      for (let i = 0; i < l.length; i += 2) {
        const n = l[i]!;
        if (n.charCodeAt(0) === 0x3a || RESERVED.has(n)) continue;
        const prev = h[n];
        h[n] = prev === undefined ? l[i + 1]! : Array.isArray(prev) ? [...prev, l[i + 1]!] : [prev, l[i + 1]!];
      }
      this.md = Metadata.fromHttp2Headers(h);
    }
    return this.md;
  }

  /** Tells the connection how many request bytes this call now holds (0 once it ends). */
  protected setHeld(n: number): void {
    const d = n - this.heldBytes;
    if (d === 0) return;
    this.heldBytes = n;
    this.stream.connection.hold(d);
  }

  getDeadline(): number {
    return this.deadline;
  }

  getPeer(): string {
    return this.stream.peer;
  }

  getPath(): string {
    return this.route.method.path;
  }

  /** Arms the deadline timer if the call is still open (the server calls this at the end of the turn it started in). */
  armDeadline(): void {
    if (this.done || this.timer || !Number.isFinite(this.deadline)) return;
    const left = Math.max(0, this.deadline - Date.now());
    // A deadline beyond one timer's reach (~24.8 days, e.g. grpc-timeout 1000H) is waited for in steps.
    this.timer = left <= MAX_TIMER_MS ? setTimeout(() => this.expire(), left) : setTimeout(() => ((this.timer = undefined), this.armDeadline()), MAX_TIMER_MS);
  }

  private expire(): void {
    this.timer = undefined;
    this.abort(Status.DEADLINE_EXCEEDED, 'deadline exceeded');
  }

  /** Ends an open call with a status of the server's own; the handler is told 'cancelled' (as grpc-js tells it). */
  protected abort(code: number, message: string): void {
    if (this.done) return;
    this.sendStatus(code, message);
    this.markCancelled();
  }

  protected markCancelled(): void {
    if (this.cancelled) return;
    this.cancelled = true;
    this.onCancelled();
  }

  abstract onData(chunk: Buffer, end: boolean): void;

  /**
   * The client reset the stream or the connection went: the call is cancelled,
   * even after the handler ended it, when its answer had not all gone out yet
   * (a stream ends here only while it is still open: answer blocked on flow control).
   */
  onReset(_code: number): void {
    this.done = true;
    this.clearTimer();
    this.setHeld(0);
    this.markCancelled();
  }

  protected abstract onCancelled(): void;

  protected clearTimer(): void {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
  }

  /** Ends the call with a status (Trailers-Only when nothing was sent yet). */
  sendStatus(code: number, message: string, metadata?: Metadata): void {
    if (this.done) return;
    this.done = true;
    this.clearTimer();
    this.setHeld(0);
    this.stream.headers(code === Status.OK && !message && !metadata && this.headersSent ? TRAILERS_OK : statusBlock(code, message, metadata, !this.headersSent), true);
  }

  /**
   * Ends the call with a handler's error, coded as grpc-js codes it: an integer code, else UNKNOWN (an Error
   * with a Node code such as 'ENOENT' is not a gRPC status); its details, else its message.
   */
  protected fail(err: ServiceErrorLike): void {
    const code = typeof err.code === 'number' && Number.isInteger(err.code) ? err.code : Status.UNKNOWN;
    const details = typeof err.details === 'string' ? err.details : typeof err.message === 'string' ? err.message : '';
    this.sendStatus(code, details, typeof err.metadata?.toHttp2Headers === 'function' ? err.metadata : undefined);
  }

  /** A request message, decompressed and decoded; undefined after ending the call with the reason. */
  protected decode(msg: Buffer, compressed: boolean): { value: unknown } | undefined {
    let bytes = msg;
    if (compressed) {
      const max = this.server.maxReceiveMessageLength;
      try {
        if (this.encoding === 'gzip') bytes = gunzipSync(msg, { maxOutputLength: max });
        else if (this.encoding === 'deflate') bytes = inflateSync(msg, { maxOutputLength: max });
        else {
          this.sendStatus(Status.INTERNAL, 'compressed message without a grpc-encoding');
          return undefined;
        }
      } catch (e) {
        const tooLarge = (e as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE' || e instanceof RangeError;
        this.sendStatus(tooLarge ? Status.RESOURCE_EXHAUSTED : Status.INTERNAL, tooLarge ? `request message exceeds the limit of ${max} bytes once decompressed` : `request message could not be decompressed (${this.encoding})`);
        return undefined;
      }
    }
    try {
      return { value: this.route.method.requestDeserialize(bytes) };
    } catch (e) {
      this.sendStatus(Status.INTERNAL, `request message could not be parsed: ${(e as Error)?.message ?? String(e)}`);
      return undefined;
    }
  }

  /** The response message as a length-prefixed gRPC message; undefined after ending the call with the reason. */
  protected encode(value: unknown): Buffer | undefined {
    let payload: Buffer;
    try {
      payload = this.route.method.responseSerialize(value);
    } catch (e) {
      this.sendStatus(Status.INTERNAL, `response message could not be serialized: ${(e as Error)?.message ?? String(e)}`);
      return undefined;
    }
    const out = Buffer.allocUnsafe(5 + payload.length);
    out[0] = 0;
    out.writeUInt32BE(payload.length, 1);
    payload.copy(out, 5);
    return out;
  }

  protected invoke(...args: unknown[]): void {
    try {
      this.route.handler(...args);
    } catch (e) {
      this.server.log.error('gRPC handler threw', { method: this.route.method.path, error: (e as Error)?.message ?? String(e) });
      this.sendStatus(Status.INTERNAL, 'internal error');
    }
  }
}

type UnaryCallback = (err: ServiceErrorLike | null | undefined, value?: unknown, trailer?: Metadata) => void;

/** A unary call: the handler runs once the request (one message) has fully arrived. */
export class UnaryCall extends BaseCall {
  request: unknown = undefined;
  private msg: Buffer | undefined;
  private compressed = false;
  private deframer: Deframer | undefined;
  private cancelListeners: (() => void)[] | undefined;
  private readonly callback: UnaryCallback = (err, value, trailer) => this.answer(err, value, trailer);

  /** Only 'cancelled' is emitted. */
  on(event: string, fn: () => void): this {
    if (event === 'cancelled') (this.cancelListeners ??= []).push(fn);
    return this;
  }

  once(event: string, fn: () => void): this {
    return this.on(event, fn);
  }

  onData(chunk: Buffer, end: boolean): void {
    if (this.done) return;
    // A whole message in one DATA frame ending the stream (what Envoy and grpc clients send).
    if (end && !this.deframer && this.msg === undefined && chunk.length >= 5 && chunk.readUInt32BE(1) === chunk.length - 5) {
      if (chunk.length - 5 > this.server.maxReceiveMessageLength) {
        return this.sendStatus(Status.RESOURCE_EXHAUSTED, `request message of ${chunk.length - 5} bytes exceeds the limit of ${this.server.maxReceiveMessageLength}`);
      }
      this.msg = chunk.subarray(5);
      this.compressed = chunk[0] === 1;
    } else {
      const err = (this.deframer ??= new Deframer()).push(chunk, this.server.maxReceiveMessageLength, (m, c) => {
        if (this.msg !== undefined) {
          this.sendStatus(Status.INTERNAL, 'more than one request message on a unary call');
          return;
        }
        this.msg = m;
        this.compressed = c;
      });
      if (err) return this.sendStatus(Status.RESOURCE_EXHAUSTED, err);
      if (this.done) return;
      if (!end) return this.setHeld(this.deframer.bytes + (this.msg?.length ?? 0));
      if (this.deframer.bytes > 0) return this.sendStatus(Status.INTERNAL, 'request ended inside a message');
      this.setHeld(0);
    }
    if (!end) return;
    if (this.msg === undefined) return this.sendStatus(Status.INTERNAL, 'request without a message on a unary call');
    const d = this.decode(this.msg, this.compressed);
    this.msg = undefined;
    if (!d) return;
    this.request = d.value;
    this.invoke(this, this.callback);
  }

  private answer(err: ServiceErrorLike | null | undefined, value: unknown, trailer?: Metadata): void {
    if (this.done) return;
    if (err) return this.fail(err);
    const data = this.encode(value);
    if (!data) return;
    this.done = true;
    this.clearTimer();
    this.stream.respond(RESPONSE_HEADERS, data, trailer && trailer.getMap && Object.keys(trailer.getMap()).length ? statusBlock(Status.OK, '', trailer, false) : TRAILERS_OK);
  }

  protected onCancelled(): void {
    const ls = this.cancelListeners;
    if (ls) for (const fn of ls) fn();
  }
}

/**
 * Server-streaming and bidirectional calls: grpc-js-like events ('data', 'end', 'cancelled' — also when the
 * server ends the call itself: deadline, a request message too large or undecodable) and write/end/emit('error').
 */
export class StreamingCall extends BaseCall {
  request: unknown = undefined;
  private readonly events = new EventEmitter();
  private deframer: Deframer | undefined;
  private started = false;

  on(event: string, fn: (...a: any[]) => void): this {
    this.events.on(event, fn);
    return this;
  }

  once(event: string, fn: (...a: any[]) => void): this {
    this.events.once(event, fn);
    return this;
  }

  removeListener(event: string, fn: (...a: any[]) => void): this {
    this.events.removeListener(event, fn);
    return this;
  }

  /**
   * Emits to the call's listeners. `emit('error', {code, details, metadata})` is also how a grpc-js handler
   * fails a streaming call: the call ends with that status, after the messages written before it.
   */
  emit(event: string, ...args: unknown[]): boolean {
    if (event !== 'error') return this.events.emit(event, ...args);
    const err = args[0];
    this.fail(err !== null && typeof err === 'object' ? (err as ServiceErrorLike) : { message: String(err) });
    return this.events.listenerCount('error') > 0 ? this.events.emit('error', ...args) : true;
  }

  /** Bidi: the handler runs at the request headers; server-streaming: once its request message is in. */
  start(end: boolean): void {
    if (this.route.kind === 'bidi') {
      this.started = true;
      this.invoke(this);
      if (end) this.onData(Buffer.alloc(0), true);
    } else if (end) this.sendStatus(Status.INTERNAL, 'request without a message');
  }

  onData(chunk: Buffer, end: boolean): void {
    if (this.done) return;
    const err = (this.deframer ??= new Deframer()).push(chunk, this.server.maxReceiveMessageLength, (m, c) => this.message(m, c));
    if (err) return this.abort(Status.RESOURCE_EXHAUSTED, err);
    if (!this.done) this.setHeld(this.deframer.bytes);
    if (!end || this.cancelled) return;
    if (this.deframer.bytes > 0) return this.abort(Status.INTERNAL, 'request ended inside a message');
    if (!this.started && !this.done) this.sendStatus(Status.INTERNAL, 'request without a message');
    else if (this.route.kind === 'bidi') this.safeEmit('end');
  }

  private message(m: Buffer, compressed: boolean): void {
    if (this.done) return;
    const d = this.decode(m, compressed);
    // Not decodable: the call has ended with the reason.
    if (!d) return this.markCancelled();
    if (this.route.kind === 'bidi') return this.safeEmit('data', d.value);
    if (this.started) return this.abort(Status.INTERNAL, 'more than one request message on a server-streaming call');
    this.started = true;
    this.request = d.value;
    this.invoke(this);
  }

  /**
   * Sends one response message (response headers first). False once the call has ended. A callback (grpc-js's
   * `write(msg, cb)` or `write(msg, flags, cb)`) runs on the next tick: with an error if the call had ended.
   */
  write(value: unknown, flagsOrCb?: unknown, cb?: (err?: Error | null) => void): boolean {
    const ok = this.send(value);
    const done = typeof flagsOrCb === 'function' ? (flagsOrCb as typeof cb) : cb;
    if (done) process.nextTick(done, ok ? null : new Error('write after the call ended'));
    return ok;
  }

  private send(value: unknown): boolean {
    if (this.done) return false;
    const data = this.encode(value);
    if (!data) return false;
    if (!this.headersSent) {
      this.headersSent = true;
      this.stream.headers(RESPONSE_HEADERS, false);
    }
    return this.stream.data(data, false);
  }

  /** Ends the call with OK (and trailing metadata, if given). */
  end(metadata?: Metadata): void {
    this.sendStatus(Status.OK, '', metadata && Object.keys(metadata.getMap()).length ? metadata : undefined);
  }

  protected onCancelled(): void {
    this.safeEmit('cancelled');
  }

  private safeEmit(event: string, arg?: unknown): void {
    try {
      this.events.emit(event, arg);
    } catch (e) {
      this.server.log.error('gRPC stream listener threw', { method: this.route.method.path, event, error: (e as Error)?.message ?? String(e) });
      this.sendStatus(Status.INTERNAL, 'internal error');
    }
  }
}

// ---- the server -------------------------------------------------------------------

export class GrpcServer implements RequestHandler {
  readonly maxReceiveMessageLength: number;
  readonly log: Logger;
  private readonly routes = new Map<string, Route>();
  private readonly connections = new Set<H2Connection>();
  private listener: NetServer | undefined;
  /** Calls started this turn that have a deadline: their timers are armed at the end of the turn, if still open. */
  private toArm: BaseCall[] = [];
  private armScheduled = false;
  private readonly armBound = () => this.armDeadlines();

  constructor(private readonly opts: GrpcServerOptions = {}) {
    this.maxReceiveMessageLength = opts.maxReceiveMessageLength ?? 4 * 1024 * 1024;
    this.log = opts.log ?? silentLogger;
  }

  /** Registers a service: handlers looked up by method name, then by the proto's original name (as grpc-js does). */
  addService(service: ServiceDefinition, implementation: Record<string, unknown>): void {
    for (const [name, def] of Object.entries(service) as [string, MethodDefinition<unknown, unknown> & { originalName?: string }][]) {
      let handler = implementation[name];
      if (handler === undefined && typeof def.originalName === 'string') handler = implementation[def.originalName];
      if (typeof handler !== 'function') continue;
      if (def.requestStream && !def.responseStream) throw new Error(`${def.path}: client-streaming methods are not supported`);
      const kind: Kind = def.requestStream ? 'bidi' : def.responseStream ? 'server-stream' : 'unary';
      this.routes.set(def.path, { kind, method: def, handler: handler as Handler });
    }
  }

  /** Listens on host:port (0 = a free port), plaintext or TLS/mTLS; resolves to the port. */
  listen(host: string, port: number, tls?: GrpcTls): Promise<number> {
    const accept = (socket: Socket) => this.accept(socket);
    const server = tls
      ? createTlsServer(
          {
            allowHalfOpen: true,
            cert: tls.cert,
            key: tls.key,
            ALPNProtocols: ['h2'],
            ...(tls.clientCa !== undefined ? { ca: tls.clientCa, requestCert: true, rejectUnauthorized: true } : {}),
          },
          accept,
        )
      : // A client that half-closes after its last request still gets the answers (the connection ends the socket when its streams are done).
        createNetServer({ allowHalfOpen: true }, accept);
    // A TLS handshake that fails (wrong client certificate, plaintext client) only ends that connection.
    server.on('tlsClientError', (e: Error) => this.log.debug('TLS handshake failed', { error: e.message }));
    this.listener = server;
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        server.on('error', (e) => this.log.error('gRPC listener error', { error: e.message }));
        const a = server.address();
        resolve(typeof a === 'object' && a ? a.port : port);
      });
    });
  }

  private accept(socket: Socket): void {
    const c = new H2Connection(socket, this, {
      ...this.opts.h2,
      onError: (message) => this.log.warn('HTTP/2 connection error', { peer: c.peer, error: message }),
    });
    this.connections.add(c);
    socket.once('close', () => this.connections.delete(c));
  }

  onRequest(stream: H2Stream, headers: string[], end: boolean): void {
    const head = readHead(headers);
    if (head.method !== 'POST') return refuse(stream, STATUS_405, end);
    if (!head.contentType.startsWith('application/grpc')) return refuse(stream, STATUS_415, end);
    const route = this.routes.get(head.path);
    if (!route) {
      stream.headers(statusBlock(Status.UNIMPLEMENTED, `method ${head.path} is not implemented`, undefined, true), true);
      return;
    }
    let deadline = Infinity;
    if (head.timeout) {
      const ms = parseGrpcTimeout(head.timeout);
      if (Number.isNaN(ms)) {
        stream.headers(statusBlock(Status.INTERNAL, `malformed grpc-timeout ${JSON.stringify(head.timeout)}`, undefined, true), true);
        return;
      }
      deadline = Date.now() + ms;
    }
    const encoding = head.encoding || 'identity';
    if (encoding !== 'identity' && encoding !== 'gzip' && encoding !== 'deflate') {
      stream.headers(statusBlock(Status.UNIMPLEMENTED, `grpc-encoding ${encoding} is not supported (identity, deflate, gzip)`, undefined, true), true);
      return;
    }
    const call = route.kind === 'unary' ? new UnaryCall(this, stream, route, headers, encoding, deadline) : new StreamingCall(this, stream, route, headers, encoding, deadline);
    stream.listener = call;
    if (deadline !== Infinity) {
      this.toArm.push(call);
      if (!this.armScheduled) {
        this.armScheduled = true;
        setImmediate(this.armBound);
      }
    }
    if (call instanceof StreamingCall) call.start(end);
    else if (end) call.onData(Buffer.alloc(0), true);
  }

  private armDeadlines(): void {
    this.armScheduled = false;
    const calls = this.toArm;
    this.toArm = [];
    for (const c of calls) c.armDeadline();
  }

  /** Graceful: no new connections, GOAWAY on those open; `done` once they have all closed. */
  tryShutdown(done: () => void): void {
    for (const c of this.connections) c.shutdown();
    // net.Server's close callback runs once every connection it accepted has closed.
    if (this.listener) this.listener.close(() => done());
    else done();
  }

  /** At once: every connection closed, every open call cancelled. */
  forceShutdown(): void {
    for (const c of this.connections) c.destroy();
    this.connections.clear();
    this.listener?.close();
  }
}

