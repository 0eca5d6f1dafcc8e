/** Small HTTP helpers for the control plane's API: JSON bodies, errors as JSON with a code, Server-Sent Events. */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { errorMessage, isTaskgateError, TaskgateError, type ErrorCode } from '../core/errors.ts';

const STATUS: Partial<Record<ErrorCode, number>> = {
  input_invalid: 400,
  config_invalid: 400,
  auth_failed: 401,
  forbidden: 403,
  not_found: 404,
  conflict: 409,
  unavailable: 503,
};

export function statusOf(e: unknown): number {
  return isTaskgateError(e) ? (STATUS[e.code] ?? 500) : 500;
}

export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const buf = Buffer.from(JSON.stringify(body));
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': buf.length, 'cache-control': 'no-store' });
  res.end(buf);
}

export function sendError(res: ServerResponse, e: unknown): void {
  const code = isTaskgateError(e) ? e.code : 'internal';
  const headers = statusOf(e) === 401 ? { 'www-authenticate': 'Bearer realm="taskgate"' } : {};
  if (res.headersSent) {
    res.destroy();
    return;
  }
  for (const [k, v] of Object.entries(headers)) res.setHeader(k, v);
  sendJson(res, statusOf(e), { error: { code, message: errorMessage(e) } });
}

/** Reads the raw body (bounded). */
export async function readBody(req: IncomingMessage, limit = 1 << 20): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const c of req) {
    n += (c as Buffer).length;
    if (n > limit) throw new TaskgateError('input_invalid', `request body exceeds ${limit} bytes`);
    chunks.push(c as Buffer);
  }
  return Buffer.concat(chunks);
}

export function parseJson(buf: Buffer): Record<string, unknown> {
  if (buf.length === 0) return {};
  let v: unknown;
  try {
    v = JSON.parse(buf.toString('utf8'));
  } catch (e) {
    throw new TaskgateError('input_invalid', `request body is not valid JSON: ${errorMessage(e)}`);
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new TaskgateError('input_invalid', 'request body must be a JSON object');
  return v as Record<string, unknown>;
}

/** An open Server-Sent Events response with a heartbeat comment so proxies and clients notice a dead stream. */
export class SseStream {
  private readonly timer: NodeJS.Timeout;
  closed = false;

  constructor(
    private readonly res: ServerResponse,
    heartbeatMs: number,
    onClose: () => void,
  ) {
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-store',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
    });
    res.flushHeaders();
    res.socket?.setNoDelay(true);
    this.timer = setInterval(() => this.comment('ping'), heartbeatMs);
    this.timer.unref();
    res.on('close', () => {
      this.closed = true;
      clearInterval(this.timer);
      onClose();
    });
  }

  send(event: string, data: unknown, id?: string): void {
    if (this.closed) return;
    const lines = JSON.stringify(data);
    this.res.write(`${id ? `id: ${id}\n` : ''}event: ${event}\ndata: ${lines}\n\n`);
  }

  comment(text: string): void {
    if (!this.closed) this.res.write(`: ${text}\n\n`);
  }

  end(): void {
    clearInterval(this.timer);
    this.res.end();
  }
}
