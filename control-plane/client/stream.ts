/**
 * The sidecar's push channel: a long-lived Server-Sent Events stream from the
 * control plane, read with fetch, re-established by itself with exponential
 * backoff (and jitter) whenever it drops or goes quiet past the heartbeat.
 *
 * Events: 'open' (connected; anything may have been missed before, reconcile),
 * 'down' (lost), and each server event by its name with its parsed data.
 */
import { EventEmitter } from 'node:events';
import { errorMessage } from '../../core/errors.ts';
import { silentLogger, type Logger } from '../../core/log.ts';
import type { ControlPlaneHttp } from './http.ts';

export interface StreamOptions {
  path: string;
  log?: Logger;
  /** Backoff bounds (default 100 ms .. 5 s). */
  minBackoffMs?: number;
  maxBackoffMs?: number;
  /** Reconnect when nothing (not even a heartbeat) arrived for this long; default from the server's hello x 3, else 45 s. */
  idleMs?: number;
}

export class EventStream extends EventEmitter {
  private ctl: AbortController | undefined;
  private stopped = false;
  private loop: Promise<void> | undefined;
  connected = false;

  constructor(
    private readonly http: ControlPlaneHttp,
    private readonly opts: StreamOptions,
  ) {
    super();
    this.setMaxListeners(0);
  }

  start(): void {
    this.loop ??= this.run();
  }

  /** Resolves once connected (or rejects after timeoutMs). */
  ready(timeoutMs = 5000): Promise<void> {
    if (this.connected) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => {
        this.off('open', ok);
        reject(new Error(`control-plane stream not connected after ${timeoutMs} ms`));
      }, timeoutMs);
      const ok = () => {
        clearTimeout(t);
        resolve();
      };
      this.once('open', ok);
    });
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.ctl?.abort();
    await this.loop;
  }

  private async run(): Promise<void> {
    const log = this.opts.log ?? silentLogger;
    const min = this.opts.minBackoffMs ?? 100;
    let delay = min;
    while (!this.stopped) {
      const ctl = new AbortController();
      this.ctl = ctl;
      let idleMs = this.opts.idleMs ?? 45_000;
      let idle: NodeJS.Timeout | undefined;
      const touch = () => {
        clearTimeout(idle);
        idle = setTimeout(() => ctl.abort(new Error('stream idle past heartbeat')), idleMs);
        idle.unref();
      };
      try {
        const res = await fetch(this.http.url + this.opts.path, {
          headers: { authorization: `Bearer ${await this.http.token()}`, accept: 'text/event-stream' },
          signal: ctl.signal,
        });
        if (!res.ok || !res.body) {
          const body = await res.text().catch(() => '');
          throw new Error(`HTTP ${res.status} ${body.slice(0, 200)}`);
        }
        touch();
        const decoder = new TextDecoder();
        let buf = '';
        for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
          touch();
          buf += decoder.decode(chunk, { stream: true });
          let i: number;
          while ((i = buf.indexOf('\n\n')) >= 0) {
            const block = buf.slice(0, i);
            buf = buf.slice(i + 2);
            const ev = parseBlock(block);
            if (!ev) continue;
            if (ev.event === 'hello') {
              const hb = (ev.data as { heartbeat_ms?: number }).heartbeat_ms;
              if (!this.opts.idleMs && typeof hb === 'number') idleMs = hb * 3;
              touch();
              this.connected = true;
              delay = min;
              this.emit('open', ev.data);
            } else {
              this.emit(ev.event, ev.data);
            }
          }
        }
        throw new Error('stream ended');
      } catch (e) {
        if (this.stopped) break;
        log.warn('control-plane stream down; reconnecting', { error: errorMessage(ctl.signal.reason ?? e), retry_ms: delay });
      } finally {
        clearTimeout(idle);
        if (this.connected) {
          this.connected = false;
          this.emit('down');
        }
      }
      if (this.stopped) break;
      await new Promise((r) => setTimeout(r, delay + Math.random() * delay * 0.2));
      delay = Math.min(delay * 2, this.opts.maxBackoffMs ?? 5000);
    }
  }
}

function parseBlock(block: string): { event: string; data: unknown } | undefined {
  let event = 'message';
  const data: string[] = [];
  for (const line of block.split('\n')) {
    if (line.startsWith(':')) continue;
    if (line.startsWith('event:')) event = line.slice(6).trim();
    else if (line.startsWith('data:')) data.push(line.slice(5).trimStart());
  }
  if (data.length === 0) return undefined;
  try {
    return { event, data: JSON.parse(data.join('\n')) };
  } catch {
    return undefined;
  }
}
