import { createServer as createHttpServer, request as httpRequest, type IncomingHttpHeaders, type IncomingMessage, type OutgoingHttpHeaders, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer, request as httpsRequest } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { pipeline, type Transform } from 'node:stream';
import { createBrotliDecompress, createGunzip, createInflate } from 'node:zlib';
import { errorMessage, TaskgateError } from '../../core/errors.ts';
import { silentLogger, type Logger } from '../../core/log.ts';
import { deny, HttpAuthorizer, type AllowResult, type DenyResult, type HttpAuthorizerOptions } from './authorize.ts';
import { BodyMasker } from './response-mask.ts';

/**
 * The HTTP proxy without Envoy: same input, same decisions (through the gate),
 * same masking as ext_authz/ext_proc, forwarding to one upstream (HTTP or
 * HTTPS, e.g. a Kubernetes API server) with the upstream credential injected
 * and the user's token removed. kubectl points at it directly (server URL
 * `http(s)://proxy/task/<task-id>`).
 *
 * Unmasked responses stream as they arrive (watch, logs -f). Upgrades
 * (exec/attach/port-forward over SPDY or WebSocket) go through the same
 * decision and, when allowed, are spliced to the upstream.
 */
export interface HttpProxyOptions extends HttpAuthorizerOptions {
  /** Base URL of the upstream, e.g. https://10.0.0.1:6443 (a path prefix is kept). */
  upstream: string;
  upstreamTls?: { ca?: string | Buffer; rejectUnauthorized?: boolean; servername?: string };
  host?: string;
  /** 0 (default) = a free port. */
  port?: number;
  /** Serve HTTPS to clients. */
  tls?: { cert: string | Buffer; key: string | Buffer };
  /** Longest review hold before the client gets a deny naming the pending review. Default 25 s. */
  maxHoldMs?: number;
  /** Masking limit for a buffered JSON body or a streamed line. Default 8 MiB. */
  maskMaxBytes?: number;
  maskHashKey?: string;
  /** Upstream response header timeout. Default 30 s. */
  upstreamTimeoutMs?: number;
}

export interface HttpProxyHandle {
  /** host:port */
  address: string;
  /** http(s)://host:port */
  url: string;
  authorizer: HttpAuthorizer;
  close(): Promise<void>;
}

const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'proxy-authenticate', 'proxy-authorization', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'host']);

export async function startHttpProxy(opts: HttpProxyOptions): Promise<HttpProxyHandle> {
  const log = opts.log ?? silentLogger;
  const authorizer = new HttpAuthorizer(opts);
  const upstream = new URL(opts.upstream);
  if (upstream.protocol !== 'http:' && upstream.protocol !== 'https:') throw new TaskgateError('config_invalid', `upstream must be http(s)://, got ${opts.upstream}`);
  const ctx: Ctx = { opts, authorizer, upstream, log, maxHold: opts.maxHoldMs ?? 25_000, maxBytes: opts.maskMaxBytes ?? 8 * 1024 * 1024, tunnels: new Set() };

  const handler = (req: IncomingMessage, res: ServerResponse) => {
    handle(ctx, req, res).catch((e: unknown) => {
      log.error('HTTP proxy request failed', { error: errorMessage(e) });
      if (!res.headersSent) writeDeny(res, deny(502, `upstream error: ${errorMessage(e)}`, {}));
      else res.destroy();
    });
  };
  const server: Server = opts.tls ? createHttpsServer({ cert: opts.tls.cert, key: opts.tls.key }, handler) : createHttpServer(handler);
  server.requestTimeout = 0; // watches and log streams are long-lived responses
  server.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => {
    upgrade(ctx, req, socket, head).catch((e: unknown) => {
      log.error('HTTP proxy upgrade failed', { error: errorMessage(e) });
      socket.destroy();
    });
  });
  server.on('clientError', (_e, socket) => {
    if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\r\n');
  });
  const host = opts.host ?? '127.0.0.1';
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e) => reject(new TaskgateError('unavailable', `HTTP proxy cannot listen on ${host}:${opts.port ?? 0}: ${e.message}`)));
    server.listen(opts.port ?? 0, host, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  const address = `${host}:${port}`;
  log.info('HTTP proxy listening', { address, upstream: upstream.origin });
  return {
    address,
    url: `${opts.tls ? 'https' : 'http'}://${address}`,
    authorizer,
    close: async () => {
      authorizer.close();
      for (const t of ctx.tunnels) t.destroy();
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

interface Ctx {
  opts: HttpProxyOptions;
  authorizer: HttpAuthorizer;
  upstream: URL;
  log: Logger;
  maxHold: number;
  maxBytes: number;
  /** Upgraded connections (exec, attach, port-forward): closeAllConnections() does not see them. */
  tunnels: Set<Socket>;
}

async function decide(ctx: Ctx, req: IncomingMessage, signal: AbortSignal) {
  const r = await ctx.authorizer.authorize({
    raw: { method: req.method ?? 'GET', target: req.url ?? '/', headers: req.headers, ...(req.headers.host ? { host: req.headers.host } : {}) },
    ...(req.socket.remoteAddress ? { client_address: req.socket.remoteAddress } : {}),
    waitMs: ctx.maxHold,
    signal,
    entry: 'proxy',
  });
  return r;
}

async function handle(ctx: Ctx, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const ac = new AbortController();
  res.on('close', () => ac.abort());
  const r = await decide(ctx, req, ac.signal);
  if (ac.signal.aborted) return;
  if (!r.allowed) {
    req.resume();
    return writeDeny(res, r);
  }
  const masking = r.mask.length > 0;
  const up = upstreamRequest(ctx, req, r, masking);
  req.pipe(up);
  up.on('error', (e) => {
    if (!res.headersSent) writeDeny(res, deny(502, `upstream unreachable: ${e.message}`, {}));
    else res.destroy();
  });
  res.on('close', () => up.destroy());
  up.on('response', (ures) => {
    const headers = responseHeaders(ures.headers, r);
    if (!masking) {
      res.writeHead(ures.statusCode ?? 502, headers);
      res.flushHeaders();
      ures.pipe(res);
      return;
    }
    maskResponse(ctx, r, ures, res, headers);
  });
}

function maskResponse(ctx: Ctx, r: AllowResult, ures: IncomingMessage, res: ServerResponse, headers: OutgoingHttpHeaders): void {
  const masker = new BodyMasker(r.mask, ures.headers['content-type'], { maxBytes: ctx.maxBytes, ...(ctx.opts.maskHashKey ? { hashKey: ctx.opts.maskHashKey } : {}) });
  const status = ures.statusCode ?? 502;
  if (masker.passthrough) {
    res.writeHead(status, headers);
    res.flushHeaders();
    ures.pipe(res);
    return;
  }
  delete headers['content-length'];
  delete headers['content-encoding'];
  let source: NodeJS.ReadableStream = ures;
  const enc = String(ures.headers['content-encoding'] ?? 'identity').toLowerCase();
  if (enc !== 'identity') {
    const dec: Transform | undefined = enc === 'gzip' ? createGunzip() : enc === 'deflate' ? createInflate() : enc === 'br' ? createBrotliDecompress() : undefined;
    if (!dec) {
      ures.resume();
      return writeDeny(res, withheld(`response content-encoding ${enc} cannot be masked, so it is withheld`));
    }
    pipeline(ures, dec, () => undefined);
    source = dec;
  }
  const streaming = masker.mode !== 'json';
  if (streaming) {
    res.writeHead(status, headers);
    res.flushHeaders();
  }
  const fail = (error: string) => {
    ures.destroy();
    if (!res.headersSent) writeDeny(res, withheld(error));
    else res.destroy();
  };
  source.on('data', (chunk: Buffer) => {
    const s = masker.push(chunk);
    if (!s.ok) return fail(s.error);
    if (s.out.length) res.write(s.out);
  });
  source.on('end', () => {
    const s = masker.end();
    if (!s.ok) return fail(s.error);
    if (!streaming) {
      headers['content-length'] = String(s.out.length);
      res.writeHead(status, headers);
    }
    res.end(s.out);
    auditMasking(ctx, r, masker.counts);
  });
  source.on('error', (e: Error) => fail(`response could not be read for masking: ${e.message}`));
}

function auditMasking(ctx: Ctx, r: AllowResult, counts: Record<string, number>): void {
  if (Object.keys(counts).length === 0) return;
  const s = r.session;
  ctx.opts.gate.audit.emit({
    type: 'masking_applied',
    session_id: s.id,
    task_id: s.task_id,
    subject: s.identity.subject,
    resource: s.resource.name,
    protocol: 'http',
    masked: counts,
    details: { decision_id: r.decision_id },
  });
}

function withheld(message: string): DenyResult {
  return deny(502, message, {});
}

function upstreamRequest(ctx: Ctx, req: IncomingMessage, r: AllowResult, masking: boolean) {
  const u = ctx.upstream;
  const target = new URL(u.pathname.replace(/\/$/, '') + r.forward_target, u.origin);
  for (const k of r.query_remove) target.searchParams.delete(k);
  for (const [k, v] of r.query_set) target.searchParams.set(k, v);
  const headers = forwardHeaders(req.headers, r);
  headers.host = u.host;
  if (masking) {
    // The body must be readable to be masked: no compression, JSON rather than protobuf.
    delete headers['accept-encoding'];
    if (typeof headers.accept === 'string' && headers.accept.includes('protobuf')) headers.accept = 'application/json';
  }
  const options = {
    method: req.method ?? 'GET',
    headers,
    timeout: ctx.opts.upstreamTimeoutMs ?? 30_000,
    ...(u.protocol === 'https:'
      ? {
          ...(ctx.opts.upstreamTls?.ca ? { ca: ctx.opts.upstreamTls.ca } : {}),
          rejectUnauthorized: ctx.opts.upstreamTls?.rejectUnauthorized ?? true,
          ...(ctx.opts.upstreamTls?.servername ? { servername: ctx.opts.upstreamTls.servername } : {}),
        }
      : {}),
  };
  const up = (u.protocol === 'https:' ? httpsRequest : httpRequest)(target, options);
  up.on('timeout', () => up.destroy(new Error('upstream did not answer in time')));
  return up;
}

function forwardHeaders(h: IncomingHttpHeaders, r: AllowResult): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  const remove = new Set(r.remove_headers.map((x) => x.toLowerCase()));
  for (const [k, v] of Object.entries(h)) {
    if (v === undefined || HOP_BY_HOP.has(k) || remove.has(k)) continue;
    out[k] = v;
  }
  for (const [k, v] of r.set_headers) out[k.toLowerCase()] = v;
  return out;
}

function responseHeaders(h: IncomingHttpHeaders, r: AllowResult): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  for (const [k, v] of Object.entries(h)) if (v !== undefined && !HOP_BY_HOP.has(k)) out[k] = v;
  for (const [k, v] of r.response_headers) out[k.toLowerCase()] = v;
  return out;
}

function writeDeny(res: ServerResponse, d: DenyResult): void {
  const headers: OutgoingHttpHeaders = {};
  for (const [k, v] of d.headers) headers[k] = v;
  headers['content-length'] = String(Buffer.byteLength(d.body));
  res.writeHead(d.status, headers).end(d.body);
}

/** exec / attach / port-forward (SPDY, WebSocket): decided like any request, then spliced. */
async function upgrade(ctx: Ctx, req: IncomingMessage, socket: Socket, head: Buffer): Promise<void> {
  const ac = new AbortController();
  ctx.tunnels.add(socket);
  socket.on('close', () => (ac.abort(), ctx.tunnels.delete(socket)));
  socket.on('error', () => ac.abort());
  const r = await decide(ctx, req, ac.signal);
  if (ac.signal.aborted) return;
  if (!r.allowed) {
    socket.end(`HTTP/1.1 ${r.status} ${r.status === 401 ? 'Unauthorized' : r.status === 400 ? 'Bad Request' : 'Forbidden'}\r\n` + r.headers.map(([k, v]) => `${k}: ${v}\r\n`).join('') + `content-length: ${Buffer.byteLength(r.body)}\r\nconnection: close\r\n\r\n${r.body}`);
    return;
  }
  const up = upstreamRequest(ctx, req, r, false);
  up.setHeader('connection', 'Upgrade');
  up.setHeader('upgrade', String(req.headers.upgrade ?? ''));
  up.on('upgrade', (ures, usocket, uhead) => {
    ctx.tunnels.add(usocket);
    usocket.on('close', () => ctx.tunnels.delete(usocket));
    const lines = [`HTTP/1.1 101 Switching Protocols`];
    for (let i = 0; i < ures.rawHeaders.length; i += 2) lines.push(`${ures.rawHeaders[i]}: ${ures.rawHeaders[i + 1]}`);
    socket.write(lines.join('\r\n') + '\r\n\r\n');
    if (uhead.length) socket.write(uhead);
    if (head.length) usocket.write(head);
    usocket.pipe(socket);
    socket.pipe(usocket);
    usocket.on('error', () => socket.destroy());
    socket.on('error', () => usocket.destroy());
    usocket.on('close', () => socket.destroy());
    socket.on('close', () => usocket.destroy());
  });
  up.on('response', (ures) => {
    // The upstream refused the upgrade: relay its answer.
    const lines = [`HTTP/1.1 ${ures.statusCode} ${ures.statusMessage ?? ''}`];
    for (let i = 0; i < ures.rawHeaders.length; i += 2) lines.push(`${ures.rawHeaders[i]}: ${ures.rawHeaders[i + 1]}`);
    socket.write(lines.join('\r\n') + '\r\n\r\n');
    ures.pipe(socket);
  });
  up.on('error', () => socket.end('HTTP/1.1 502 Bad Gateway\r\nconnection: close\r\ncontent-length: 0\r\n\r\n'));
  up.end();
}
