/**
 * Shared by the ext_authz benchmarks: the opa-envoy-plugin-style policy and
 * CheckRequest they all use, the gate that decides it, the constant response
 * of a server doing no work, and a ghz runner.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { join, resolve } from 'node:path';
import protobuf from 'protobufjs';
import type { AuditSink } from '../../core/audit/event.ts';
import { Gatekeeper } from '../../core/gate.ts';
import { InProcessReviews } from '../../core/reviews.ts';
import { StaticTaskRegistry } from '../../core/tasks.ts';
import { envoyPolicyEngine } from '../../ext-authz/envoy-decision.ts';
import { envoyProtoIncludeDirs, envoyServices } from '../../ext-authz/protos.ts';

export const BIN = resolve(import.meta.dirname, '..', '..', '.tools', 'bin');
export const DURATION_S = Number(process.env.DURATION_S ?? 8);
/** An unmeasured run before each measured one, so Node's JIT has compiled the hot path (Go needs none; both get it). */
export const WARMUP_S = Number(process.env.WARMUP_S ?? 2);

/**
 * PIN=1: every server under test runs on CPU 0 and the load generator on the
 * others (taskset), so they do not take CPU from each other and each server
 * gets exactly one core. Unset: no pinning, the scheduler decides (ghz then
 * takes CPU from whichever server it drives). SERVER_CPUS / GHZ_CPUS set
 * the lists explicitly.
 */
const pinned = process.env.PIN === '1' && availableParallelism() >= 2;
export const SERVER_CPUS = process.env.SERVER_CPUS ?? (pinned ? '0' : undefined);
export const GHZ_CPUS = process.env.GHZ_CPUS ?? (pinned ? `1-${availableParallelism() - 1}` : undefined);

/** cmd and args to run cmd on the given CPUs (taskset execs cmd: the pid is cmd's), or as is. */
function onCpus(cpus: string | undefined, cmd: string, args: string[]): [string, string[]] {
  return cpus ? ['taskset', ['-c', cpus, cmd, ...args]] : [cmd, args];
}

/** Starts cmd (on SERVER_CPUS when set). */
export function spawnServer(cmd: string, args: string[], stdout: 'pipe' | 'ignore' = 'ignore'): ChildProcess {
  const [c, a] = onCpus(SERVER_CPUS, cmd, args);
  return spawn(c, a, { stdio: ['ignore', stdout, 'inherit'] });
}

// USER_HZ: 100 on every Linux ABI Node.js runs on.
const CLOCK_TICKS = 100;

/** CPU time (user + system, all threads) a process has used, in µs; NaN where /proc is not available. */
export function processCpuUs(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // fields 14 and 15 (utime, stime) counted from the state field (3): indexes 11 and 12
    return ((Number(f[11]) + Number(f[12])) * 1e6) / CLOCK_TICKS;
  } catch {
    return NaN;
  }
}

export const POLICY = `package envoy.authz

import rego.v1

import input.attributes.request.http as http_request

default allow := false

allow if {
	http_request.method == "GET"
	glob.match("/people/*", ["/"], http_request.path)
	http_request.headers["x-team"] == "payments"
}
`;

/** The gate every taskgate target uses: POLICY's bundle at its opa-envoy-plugin entrypoint, no tasks or reviewers. */
export async function benchGate(bundle: Buffer, audit: AuditSink): Promise<Gatekeeper> {
  const engine = envoyPolicyEngine({ entrypoint: 'envoy/authz/allow' });
  await engine.load(bundle);
  return new Gatekeeper({ engine, tasks: new StaticTaskRegistry(), reviews: new InProcessReviews(), audit });
}

/** The CheckResponse of a server that answers OK without looking at the request (the grpc-js floor). */
export const FLOOR_OK = {
  status: { code: 0 },
  okResponse: { headers: [{ header: { key: 'x-taskgate-decision-id', value: 'floor' }, append: { value: false } }] },
};

export function request(path: string): string {
  return JSON.stringify({
    attributes: {
      source: { address: { socketAddress: { address: '10.1.2.3', portValue: 51234 } } },
      request: {
        http: {
          method: 'GET',
          path,
          host: 'people.svc',
          scheme: 'http',
          protocol: 'HTTP/1.1',
          headers: { ':authority': 'people.svc', ':method': 'GET', ':path': path, 'user-agent': 'curl/8.5', 'x-team': 'payments' },
        },
      },
    },
  });
}

/**
 * Writes `count` CheckRequests with the paths /people/<prefix>-0, -1, … as
 * ghz's binary call data (each message prefixed with its length, a varint) and
 * returns it as CallData. ghz decodes such a file once and sends its messages
 * in turn: a unique path per request without the per-call template of
 * request('/people/{{.RequestNumber}}'), which ghz executes and decodes from
 * JSON on every call, on its own one core at a fixed rate, and which put that
 * work into every server's measured latency (the no-op floor's requests over
 * 1 ms at 2,000 RPS: 4.6-6.7 % with the template, 0.9-2.1 % from the file).
 */
export async function uniqueRequestsFile(file: string, prefix: string, count: number): Promise<CallData> {
  const serialize = envoyServices().authorization.Check!.requestSerialize;
  // Writer.bytes: protobuf's length-delimited framing (a varint length, then the message), ghz's format.
  const out = protobuf.Writer.create();
  for (let i = 0; i < count; i++) out.bytes(serialize(JSON.parse(request(`/people/${prefix}-${i}`))));
  await writeFile(file, out.finish());
  return { binaryFile: file };
}

export interface GhzReport {
  /** Calls a second, counting the calls --skipFirst left out of the tally (ghz's own figure does not). */
  rps: number;
  /** Calls tallied (not those skipped with --skipFirst). */
  count: number;
  /** Every call made: count plus the skipped ones. */
  calls: number;
  /** The run's duration, ns. */
  total: number;
  options?: { skipFirst?: number };
  latencyDistribution: { percentage: number; latency: number }[] | null;
  statusCodeDistribution: Record<string, number>;
  errorDistribution?: Record<string, number>;
  /** One entry per request (ghz's JSON report), latency in ns. */
  details?: { latency: number }[] | null;
}

/** ghz's call data: one JSON request (a template is executed per call), or a file of binary requests. */
export type CallData = string | { binaryFile: string };

export async function ghz(target: string, data: CallData, extra: string[], seconds = DURATION_S): Promise<GhzReport> {
  const includes = envoyProtoIncludeDirs();
  const args = [
    '--insecure',
    '--proto', 'envoy/service/auth/v3/external_auth.proto',
    '--import-paths', includes.join(','),
    '--call', 'envoy.service.auth.v3.Authorization.Check',
    ...(typeof data === 'string' ? ['-d', data] : ['-B', data.binaryFile]),
    '-z', `${seconds}s`,
    '--format', 'json',
    ...extra,
    target,
  ];
  const out = await run(...onCpus(GHZ_CPUS, join(BIN, 'ghz'), args), (seconds + 30) * 1000, GHZ_ENV);
  const r = JSON.parse(out) as GhzReport;
  r.calls = r.count + (r.options?.skipFirst ?? 0);
  if (r.calls !== r.count && r.total > 0) r.rps = r.calls / (r.total / 1e9);
  return r;
}

/**
 * ghz's own garbage collector off (up to a 2 GiB heap): with Go's default
 * GOGC=100, ghz collects every ~1.3 s at 2,000 RPS, and each collection, on
 * ghz's one core, delays the requests in flight by several ms. That showed as
 * clusters of ~20 slow requests in every target's latency, opa-envoy-plugin's
 * too (its p99.9 at 2,000 RPS: 3.6 ms with, 1.4 ms without). The latency
 * measured should be the server's. GHZ_GOGC=100 restores Go's default.
 */
const GHZ_ENV = { ...process.env, GOGC: process.env.GHZ_GOGC ?? 'off', GOMEMLIMIT: process.env.GOMEMLIMIT ?? '2GiB' };

/** bench/echo-latency's report: a TCP echo round trip at a fixed rate, in ms. */
export interface EchoReport {
  count: number;
  rate: number;
  p50_ms: number;
  p90_ms: number;
  p99_ms: number;
  p999_ms: number;
  max_ms: number;
  over_1ms_pct: number;
}

/** bench/echo-latency's client (on GHZ_CPUS, like ghz) against the echo server at address. */
export async function echoLatency(address: string, rate: number, seconds = DURATION_S): Promise<EchoReport> {
  const out = await run(...onCpus(GHZ_CPUS, join(BIN, 'echo-latency'), ['client', address, String(rate), String(seconds)]), (seconds + 30) * 1000);
  return JSON.parse(out) as EchoReport;
}

export function run(cmd: string, args: string[], timeoutMs: number, env: NodeJS.ProcessEnv = process.env): Promise<string> {
  return new Promise((resolvePromise, reject) => {
    const p = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env });
    let out = '';
    let err = '';
    p.stdout.on('data', (d: Buffer) => (out += d));
    p.stderr.on('data', (d: Buffer) => (err += d));
    const t = setTimeout(() => p.kill('SIGKILL'), timeoutMs);
    p.on('close', (code) => {
      clearTimeout(t);
      if (code === 0 || out.trim().startsWith('{')) resolvePromise(out);
      else reject(new Error(`${cmd} exited ${code}: ${(err.trim() || out.trim()).slice(0, 500)}`)); // tsc reports on stdout
    });
  });
}

/** Percent of a run's requests slower than ms (from ghz's per-request details; NaN without them). */
export function slowerThan(r: GhzReport, ms: number): number {
  const d = r.details ?? [];
  if (d.length === 0) return NaN;
  let n = 0;
  for (const x of d) if (x.latency > ms * 1e6) n++;
  return (100 * n) / d.length;
}

export const pct = (r: GhzReport, p: number) => ((r.latencyDistribution ?? []).find((d) => d.percentage === p)?.latency ?? NaN) / 1e6;

