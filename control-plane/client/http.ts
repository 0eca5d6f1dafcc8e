/** HTTP access to the control-plane API with a bearer credential; errors come back as TaskgateError with the server's code. */
import { errorMessage, TaskgateError, type ErrorCode } from '../../core/errors.ts';

/** A bearer token, or a function returning a current one (client-credentials tokens refresh). */
export type TokenSource = string | (() => Promise<string> | string);

export interface ControlPlaneHttpOptions {
  url: string;
  token: TokenSource;
  /** Per-request timeout (default 5000 ms). */
  timeoutMs?: number;
}

export class ControlPlaneHttp {
  readonly url: string;
  constructor(private readonly opts: ControlPlaneHttpOptions) {
    this.url = opts.url.replace(/\/$/, '');
  }

  async token(): Promise<string> {
    return typeof this.opts.token === 'string' ? this.opts.token : await this.opts.token();
  }

  /** The whole exchange, token acquisition included, is bounded by timeoutMs. */
  async request<T>(method: string, path: string, body?: unknown, timeoutMs = this.opts.timeoutMs ?? 5000): Promise<T> {
    const signal = AbortSignal.timeout(timeoutMs);
    let res: Response;
    try {
      const token = await Promise.race([
        this.token(),
        new Promise<never>((_, reject) => signal.addEventListener('abort', () => reject(new Error('timed out getting a service token')), { once: true })),
      ]);
      res = await fetch(this.url + path, {
        method,
        headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        signal,
      });
    } catch (e) {
      throw new TaskgateError('unavailable', `control plane ${this.url} unreachable: ${errorMessage(e)}`);
    }
    const text = await res.text();
    let json: unknown;
    try {
      json = text ? JSON.parse(text) : {};
    } catch {
      throw new TaskgateError('unavailable', `control plane answered ${res.status} with a non-JSON body`);
    }
    if (!res.ok) {
      const err = (json as { error?: { code?: string; message?: string } }).error;
      const code = (err?.code ?? (res.status >= 500 ? 'unavailable' : 'internal')) as ErrorCode;
      throw new TaskgateError(code, err?.message ?? `control plane answered HTTP ${res.status}`);
    }
    return json as T;
  }
}
