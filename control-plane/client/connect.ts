/**
 * What a sidecar uses to reach the control plane: one HTTP client with the
 * sidecar's service identity and one push stream shared by the review service
 * and the task registry.
 *
 *   const cp = connectControlPlane({ url, token });
 *   new Gatekeeper({ engine, tasks: cp.tasks, reviews: cp.reviews, audit });
 */
import type { Logger } from '../../core/log.ts';
import { ControlPlaneHttp, type TokenSource } from './http.ts';
import { ControlPlaneReviews } from './reviews.ts';
import { EventStream } from './stream.ts';
import { ControlPlaneTasks } from './tasks.ts';

export interface ConnectOptions {
  url: string;
  /** The sidecar's service token, or a function returning a current client-credentials access token. */
  token: TokenSource;
  log?: Logger;
  timeoutMs?: number;
  /** Reconnect backoff bounds (default 100 ms .. 5 s). */
  minBackoffMs?: number;
  maxBackoffMs?: number;
  /** Task cache lifetime while the stream is up (default 5 s). */
  taskCacheMs?: number;
  /** Past a review's expiry, wait this long for the server's verdict before failing closed (default 1 s). */
  graceMs?: number;
}

export interface ControlPlaneClient {
  http: ControlPlaneHttp;
  stream: EventStream;
  reviews: ControlPlaneReviews;
  tasks: ControlPlaneTasks;
  /** Resolves when the push stream is connected. */
  ready(timeoutMs?: number): Promise<void>;
  close(): Promise<void>;
}

export function connectControlPlane(o: ConnectOptions): ControlPlaneClient {
  const http = new ControlPlaneHttp({ url: o.url, token: o.token, ...(o.timeoutMs ? { timeoutMs: o.timeoutMs } : {}) });
  const stream = new EventStream(http, {
    path: '/api/v1/stream',
    ...(o.log ? { log: o.log } : {}),
    ...(o.minBackoffMs ? { minBackoffMs: o.minBackoffMs } : {}),
    ...(o.maxBackoffMs ? { maxBackoffMs: o.maxBackoffMs } : {}),
  });
  const reviews = new ControlPlaneReviews(http, stream, { ...(o.log ? { log: o.log } : {}), ...(o.graceMs !== undefined ? { graceMs: o.graceMs } : {}) });
  const tasks = new ControlPlaneTasks(http, stream, { ...(o.log ? { log: o.log } : {}), ...(o.taskCacheMs !== undefined ? { cacheMs: o.taskCacheMs } : {}) });
  stream.start();
  return {
    http,
    stream,
    reviews,
    tasks,
    ready: (t) => stream.ready(t),
    close: async () => {
      await stream.stop();
      reviews.close();
    },
  };
}
