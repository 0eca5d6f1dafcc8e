import { setFlagsFromString } from 'node:v8';

/**
 * V8 settings for a long-running taskgate server (sidecar, ext_authz, control
 * plane), applied at process start, before the servers allocate (calling it
 * again changes nothing).
 *
 * `--no-allocation-site-pretenuring`: V8 watches which allocation sites make
 * objects that survive a scavenge and, past a threshold, allocates that site's
 * objects directly in the old generation. A burst of concurrent requests (50
 * in flight at start-up load) is enough to trip it for the sites that build a
 * gRPC call. From then on every call is born old, and everything new it points
 * to survives each scavenge through the old-to-new references: measured at
 * 2,000 ext_authz Checks a second (bench/ext-authz.ts), 1.9 MB promoted per
 * scavenge instead of 30 KB, 4 ms scavenges instead of 0.7 ms, a 15 ms
 * mark-compact every two seconds, p99 5 ms instead of 2.5 ms. Whether it trips
 * depends on the load at start-up, so the same server was fast or slow from
 * one start to the next. A server's objects live for one request; none gain
 * from pretenuring.
 *
 * NODE_OPTIONS cannot carry this flag (Node allows only a few V8 flags there),
 * hence setFlagsFromString: the setting is read when V8 processes pretenuring
 * feedback, so it applies from here on.
 */
export function tuneRuntimeForServing(): void {
  setFlagsFromString('--no-allocation-site-pretenuring');
}
