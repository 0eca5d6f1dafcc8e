import { readFile, stat } from 'node:fs/promises';
import { watchFile, unwatchFile } from 'node:fs';
import { errorMessage, TaskgateError } from '../errors.ts';
import { silentLogger, type Logger } from '../log.ts';
import type { PolicyEngine } from './engine.ts';

export interface BundleSource {
  /** First load; resolves whether or not it succeeded (the engine then denies with "no policy loaded"). */
  start(): Promise<void>;
  stop(): void;
}

/**
 * A bundle on disk, hot-reloaded when the file changes (stat polling, so it
 * works across atomic renames and on network filesystems). A missing or bad
 * file keeps the last good bundle in force.
 */
export class FileBundleSource implements BundleSource {
  private lastKey = '';
  private stopped = false;
  private readonly listener = () => void this.reload();

  constructor(
    private readonly engine: PolicyEngine,
    private readonly path: string,
    private readonly opts: { intervalMs?: number; log?: Logger } = {},
  ) {}

  async start(): Promise<void> {
    await this.reload();
    watchFile(this.path, { interval: this.opts.intervalMs ?? 1000, persistent: false }, this.listener);
  }

  stop(): void {
    this.stopped = true;
    unwatchFile(this.path, this.listener);
  }

  async reload(): Promise<void> {
    if (this.stopped) return;
    const log = this.opts.log ?? silentLogger;
    let key: string;
    try {
      const s = await stat(this.path);
      key = `${s.mtimeMs}:${s.size}:${s.ino}`;
    } catch {
      if (!this.engine.revision) log.error('policy bundle not found; denying every request', { path: this.path });
      return;
    }
    if (key === this.lastKey) return;
    this.lastKey = key;
    try {
      await this.engine.load(await readFile(this.path), this.path);
    } catch (e) {
      // engine.load already logged and kept the last good bundle
      if (!(e instanceof TaskgateError)) log.error('bundle read failed', { path: this.path, error: errorMessage(e) });
    }
  }
}

/**
 * OPA's bundle HTTP protocol: GET the bundle URL, send If-None-Match with the
 * last ETag, 304 keeps the bundle in force, 200 loads the new one. Polls with a
 * random delay between min and max seconds, as OPA does.
 */
export class HttpBundleSource implements BundleSource {
  private etag: string | undefined;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(
    private readonly engine: PolicyEngine,
    private readonly url: string,
    private readonly opts: {
      minDelaySeconds?: number;
      maxDelaySeconds?: number;
      headers?: Record<string, string>;
      timeoutMs?: number;
      log?: Logger;
    } = {},
  ) {}

  async start(): Promise<void> {
    await this.poll();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
  }

  /** One poll; schedules the next. Returns the HTTP outcome for tests and CLI. */
  async poll(): Promise<'loaded' | 'not_modified' | 'error'> {
    const log = this.opts.log ?? silentLogger;
    let outcome: 'loaded' | 'not_modified' | 'error' = 'error';
    try {
      const headers: Record<string, string> = { ...(this.opts.headers ?? {}) };
      if (this.etag) headers['if-none-match'] = this.etag;
      const res = await fetch(this.url, { headers, signal: AbortSignal.timeout(this.opts.timeoutMs ?? 10_000) });
      if (res.status === 304) {
        outcome = 'not_modified';
      } else if (res.ok) {
        const buf = Buffer.from(await res.arrayBuffer());
        await this.engine.load(buf, this.url);
        this.etag = res.headers.get('etag') ?? undefined;
        outcome = 'loaded';
      } else {
        log.error('bundle download failed', { url: this.url, status: res.status });
      }
    } catch (e) {
      if (!(e instanceof TaskgateError)) log.error('bundle download failed', { url: this.url, error: errorMessage(e) });
    }
    this.schedule();
    return outcome;
  }

  private schedule(): void {
    if (this.stopped) return;
    const min = this.opts.minDelaySeconds ?? 10;
    const max = Math.max(min, this.opts.maxDelaySeconds ?? 20);
    const delay = (min + Math.random() * (max - min)) * 1000;
    this.timer = setTimeout(() => void this.poll(), delay);
    this.timer.unref();
  }
}

export function bundleSourceFor(
  engine: PolicyEngine,
  location: string,
  opts: { log?: Logger; intervalMs?: number; minDelaySeconds?: number; maxDelaySeconds?: number } = {},
): BundleSource {
  if (/^https?:\/\//.test(location)) return new HttpBundleSource(engine, location, opts);
  return new FileBundleSource(engine, location, opts);
}
