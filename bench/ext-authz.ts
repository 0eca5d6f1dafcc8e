/**
 * ext_authz Check throughput and latency: taskgate vs opa-envoy-plugin, same
 * policy (opa-envoy-plugin style, entrypoint envoy/authz/allow), same
 * CheckRequest, same load generator (ghz), loopback, in one run.
 *
 *   bash bench/setup-tools.sh                 # once: ghz + opa-envoy-plugin
 *   node --import tsx bench/ext-authz.ts      # ~4 min
 *
 * Every target first gets an unmeasured warm-up (WARMUP_S, default 2 s, in
 * each scenario's shape). ghz runs with its own garbage collector off
 * (GHZ_GOGC, see bench/lib/ext-authz-load.ts). The Node.js targets run with
 * the V8 settings of `taskgate ext-authz` (core/serving-runtime.ts).
 * Scenarios per server: max throughput (50 workers, no rate limit) and a fixed
 * 2,000 RPS, each for DURATION_S seconds; with a repeated request and with a
 * unique path per request (taskgate's decision cache cannot answer those).
 * At the fixed rate the unique requests are encoded beforehand into a file ghz
 * sends in turn (bench/lib/ext-authz-load.ts uniqueRequestsFile: ghz's per-call
 * path template costs it enough CPU to show in every server's latency), and
 * the first 1,000 calls (half a second) of every fixed-rate run are not
 * tallied (--skipFirst; RPS and CPU per Check still count them).
 * taskgate writes every decision to its durable audit spool (real disk);
 * opa-envoy-plugin runs with decision logs off. Before measuring, a real gRPC
 * client checks that both allow the request and deny a variant.
 *
 * Context rows, same run: taskgate on the grpc-js transport (the fallback,
 * `transport: grpc-js`), and two "floors": a server on each transport whose
 * Check answers a constant OK without looking at the request — what this
 * machine gives a Node.js ext_authz server that does no work at all, so the
 * distance between a floor and taskgate is taskgate's own per-Check cost.
 *
 * Every target runs in a process of its own (bench/lib/ext-authz-target.ts;
 * the driver only runs ghz and prints), from JavaScript compiled for the run
 * (bench/tsconfig.targets.json, into .tools/bench-js) as a deployment runs
 * taskgate from its build: run through tsx, a Node.js server also carries
 * tsx's loader thread, whose collections land on the server's one core.
 * FROM_SOURCE=1 runs the targets through tsx instead. CPU µs per Check is each server
 * process's CPU time (all threads, from /proc) over the requests of a run.
 * PIN=1 runs the servers on CPU 0 and ghz on the other CPUs (taskset): each
 * server then has exactly one core and the load generator none of it.
 *
 * The machine's own floor, same run, just before and just after the 2,000 RPS
 * scenarios: bench/echo-latency sends 64-byte messages at 2,000/s to a TCP echo
 * server (Go, and Node.js), same CPUs — no HTTP/2, no gRPC, no work. Its p99
 * and share over 1 ms say whether a 1 ms p99 at this rate can be told apart
 * from the machine's noise at all: on a shared 2-vCPU VM the echo itself
 * often has more than 1 % of its round trips over 1 ms (docs/benchmarks.md).
 */
import { type ChildProcess } from 'node:child_process';
import { BIN, echoLatency, ghz, uniqueRequestsFile, GHZ_CPUS, pct, POLICY, processCpuUs, request, run, SERVER_CPUS, slowerThan, spawnServer, WARMUP_S, DURATION_S, type CallData, type EchoReport, type GhzReport } from './lib/ext-authz-load.ts';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { buildBundle } from '../compiler/build.ts';
import { freePort, waitFor } from '../devenv/net.ts';
import { envoyServices } from '../ext-authz/protos.ts';
import { credentials } from '@grpc/grpc-js';

/**
 * Calls ghz counts as errors only because they were in flight when its duration ran out and it closed its
 * connections ("the client connection is closing", "transport is closing"): at most one per worker.
 */
function atClose(r: GhzReport): number {
  let n = 0;
  for (const [msg, count] of Object.entries(r.errorDistribution ?? {})) {
    if (/client connection is closing|transport is closing/.test(msg)) n += count;
  }
  return n;
}

/** CheckResponse.status.code for one request, through a real gRPC client. */
function checkCode(address: string, json: string): Promise<number> {
  const { AuthorizationClient } = envoyServices();
  const c = new AuthorizationClient(address, credentials.createInsecure());
  return new Promise<number>((resolvePromise, reject) =>
    c.Check(JSON.parse(json), { deadline: new Date(Date.now() + 5000) }, (e: Error | null, r: { status?: { code?: number } }) => {
      c.close();
      if (e) reject(e);
      else resolvePromise(r.status?.code ?? 0);
    }),
  );
}

interface Target {
  name: string;
  address: string;
  pid: number;
}

async function main(): Promise<void> {
  for (const b of ['ghz', 'opa-envoy-plugin', 'echo-latency']) {
    if (!existsSync(join(BIN, b))) throw new Error(`${b} missing: run bash bench/setup-tools.sh`);
  }
  const dir = await mkdtemp(join(tmpdir(), 'taskgate-bench-extauthz-'));
  const procs: ChildProcess[] = [];
  try {
    await writeFile(join(dir, 'policy.rego'), POLICY);
    const built = await buildBundle({ dir, out: join(dir, 'bundle.tar.gz'), entrypoint: 'envoy/authz/allow' });
    console.log(`servers on CPUs: ${SERVER_CPUS ?? 'any'}; ghz on CPUs: ${GHZ_CPUS ?? 'any'} (PIN=1 pins them apart)`);
    await compileTargets();
    console.log(`Node.js targets run ${FROM_SOURCE ? 'from the TypeScript sources through tsx (FROM_SOURCE=1)' : 'from JavaScript compiled into .tools/bench-js'}`);

    const tg = await startNodeTarget(['taskgate', built.out, join(dir, 'spool'), 'taskgate']);
    procs.push(tg.proc);
    const tgGrpcJs = await startNodeTarget(['taskgate', built.out, join(dir, 'spool-grpc-js'), 'grpc-js']);
    procs.push(tgGrpcJs.proc);
    const floor = await startNodeTarget(['floor', 'taskgate']);
    procs.push(floor.proc);
    const floorGrpcJs = await startNodeTarget(['floor', 'grpc-js']);
    procs.push(floorGrpcJs.proc);
    const nodeEcho = await startNodeTarget(['echo']);
    procs.push(nodeEcho.proc);
    const goEchoProc = spawnServer(join(BIN, 'echo-latency'), ['serve', '127.0.0.1:0'], 'pipe');
    procs.push(goEchoProc);
    const echoes = [
      { name: 'Go echo server', address: await readyAddress(goEchoProc, 'Go echo') },
      { name: 'Node.js echo server', address: nodeEcho.address },
    ];
    for (const e of echoes) await echoLatency(e.address, 2000, WARMUP_S);
    const machine: string[] = [];
    const machineFloor = async (when: string) => {
      for (const e of echoes) {
        const r: EchoReport = await echoLatency(e.address, 2000);
        console.log(
          `${`machine floor (TCP echo, no gRPC), 2,000/s, ${when}`.padEnd(42)} ${e.name.padEnd(20)} rate=${r.rate.toFixed(0).padStart(5)} p50=${r.p50_ms.toFixed(3)}ms p90=${r.p90_ms.toFixed(3)}ms p99=${r.p99_ms.toFixed(3)}ms >1ms=${r.over_1ms_pct.toFixed(2)}% p99.9=${r.p999_ms.toFixed(3)}ms max=${r.max_ms.toFixed(3)}ms`,
        );
        machine.push(`| ${when} | ${e.name} | ${r.p50_ms.toFixed(3)} | ${r.p99_ms.toFixed(3)} | ${r.over_1ms_pct.toFixed(2)}% | ${r.max_ms.toFixed(2)} |`);
      }
    };

    const grpcPort = await freePort();
    const httpPort = await freePort();
    const diagPort = await freePort();
    const opa = spawnServer(join(BIN, 'opa-envoy-plugin'), [
      'run', '--server', '--log-level', 'error',
      '--addr', `127.0.0.1:${httpPort}`,
      '--diagnostic-addr', `127.0.0.1:${diagPort}`,
      '--set', `plugins.envoy_ext_authz_grpc.addr=127.0.0.1:${grpcPort}`,
      '--set', 'plugins.envoy_ext_authz_grpc.path=envoy/authz/allow',
      '--set', 'decision_logs.console=false',
      join(dir, 'policy.rego'),
    ]);
    procs.push(opa);
    await waitFor(async () => (await fetch(`http://127.0.0.1:${diagPort}/health`).catch(() => undefined))?.ok === true, 20_000);

    // Measured in this order, every scenario: the product, the baseline, then the context rows.
    const targets: Target[] = [
      { name: 'taskgate', address: tg.address, pid: tg.proc.pid! },
      { name: 'opa-envoy-plugin', address: `127.0.0.1:${grpcPort}`, pid: opa.pid! },
      { name: 'taskgate on grpc-js', address: tgGrpcJs.address, pid: tgGrpcJs.proc.pid! },
      { name: 'floor (taskgate h2)', address: floor.address, pid: floor.proc.pid! },
      { name: 'floor (grpc-js)', address: floorGrpcJs.address, pid: floorGrpcJs.proc.pid! },
    ];
    // Sanity: the deciding servers allow the request and deny a variant (a benchmark of errors is worthless).
    for (const t of targets.slice(0, 3)) {
      const allowed = await checkCode(t.address, request('/people/alice'));
      const denied = await checkCode(t.address, request('/admin/alice'));
      if (allowed !== 0 || denied !== 7) throw new Error(`${t.name}: expected allow (0) then deny (7), got ${allowed}, ${denied}`);
    }

    // At the fixed rate, unique paths come from a file of encoded requests, a new one for every ghz run
    // (no path repeats across runs or targets), and the first half second of every fixed-rate run is not
    // counted (ghz decodes its file then). At full load ghz executes a path template per call, which
    // costs it CPU but there only caps the throughput of servers faster than taskgate (the floors).
    let files = 0;
    const uniqueAtRate = (seconds: number) =>
      uniqueRequestsFile(join(dir, `requests-${files}.bin`), `r${files++}`, Math.ceil(2000 * (seconds + 1)));
    const atRate = ['-c', '20', '--rps', '2000', '--skipFirst', '1000'];
    type ScenarioData = CallData | ((seconds: number) => Promise<CallData>);
    const scenarios: [string, ScenarioData, string[]][] = [
      ['max throughput, repeated request', request('/people/alice'), ['-c', '50', '--connections', '4']],
      ['max throughput, unique path per request', request('/people/{{.RequestNumber}}'), ['-c', '50', '--connections', '4']],
      ['2,000 RPS, repeated request', request('/people/alice'), atRate],
      ['2,000 RPS, unique path per request', uniqueAtRate, atRate],
    ];
    const callData = async (d: ScenarioData, seconds: number) => (typeof d === 'function' ? d(seconds) : d);
    // Unmeasured warm-up of every target in every scenario's shape (Node's JIT; the Go server needs
    // none but gets the same). Warmed at full load only, a Node server met the fixed-rate scenarios
    // (one connection) with deoptimizations and a burst of recompilation (--trace-opt), which on its
    // one core held the event loop for 3-10 ms at a time during the measurement.
    for (const t of targets) {
      for (const [, data, extra] of scenarios) await ghz(t.address, await callData(data, WARMUP_S), extra, WARMUP_S);
    }
    const head: string[] = [];
    const context: string[] = [];
    for (const [label, data, extra] of scenarios) {
      if (label === scenarios.find(([l]) => l.startsWith('2,000'))?.[0]) await machineFloor('before');
      const res = new Map<string, { r: GhzReport; cpu: number }>();
      for (const t of targets) {
        const d = await callData(data, DURATION_S);
        const cpu0 = processCpuUs(t.pid);
        const r = await ghz(t.address, d, extra);
        const cpu = (processCpuUs(t.pid) - cpu0) / r.calls;
        res.set(t.name, { r, cpu });
        const errs = r.count - (r.statusCodeDistribution.OK ?? 0);
        const closing = atClose(r);
        console.log(
          `${label.padEnd(42)} ${t.name.padEnd(20)} rps=${r.rps.toFixed(0).padStart(6)} p50=${pct(r, 50).toFixed(3)}ms p90=${pct(r, 90).toFixed(3)}ms p99=${pct(r, 99).toFixed(3)}ms >1ms=${slowerThan(r, 1).toFixed(2)}% cpu/check=${cpu.toFixed(0)}µs errors=${errs - closing}${closing ? ` (and ${closing} in flight when ghz closed its connections at the end)` : ''}`,
        );
      }
      const t = res.get('taskgate')!;
      const o = res.get('opa-envoy-plugin')!;
      head.push(
        `| ${label} | ${t.r.rps.toFixed(0)} | ${pct(t.r, 50).toFixed(3)} | ${pct(t.r, 99).toFixed(3)} | ${o.r.rps.toFixed(0)} | ${pct(o.r, 50).toFixed(3)} | ${pct(o.r, 99).toFixed(3)} | ${(t.r.rps / o.r.rps).toFixed(2)} | ${(pct(t.r, 99) / pct(o.r, 99)).toFixed(2)} | ${t.cpu.toFixed(0)} | ${o.cpu.toFixed(0)} |`,
      );
      context.push(`| ${label} | ${targets.map((x) => { const v = res.get(x.name)!; return `${v.r.rps.toFixed(0)} / ${pct(v.r, 99).toFixed(2)} / ${slowerThan(v.r, 1).toFixed(1)}% / ${v.cpu.toFixed(0)}`; }).join(' | ')} |`);
    }
    await machineFloor('after');
    console.log('\n| scenario | taskgate RPS | p50 ms | p99 ms | opa-envoy-plugin RPS | p50 ms | p99 ms | RPS ratio | p99 ratio | CPU µs/Check taskgate | opa-envoy-plugin |');
    console.log('| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
    for (const r of head) console.log(r);
    console.log(`\nRPS / p99 ms / requests over 1 ms / CPU µs per Check:\n\n| scenario | ${targets.map((x) => x.name).join(' | ')} |`);
    console.log(`| --- | ${targets.map(() => '---:').join(' | ')} |`);
    for (const r of context) console.log(r);
    console.log('\nThe machine floor, a TCP echo at 2,000/s before and after the 2,000 RPS scenarios (ms):\n\n| when | server | p50 | p99 | over 1 ms | max |');
    console.log('| --- | --- | ---: | ---: | ---: | ---: |');
    for (const r of machine) console.log(r);
  } finally {
    for (const p of procs) p.kill('SIGTERM');
    await Promise.all(procs.map((p) => (p.exitCode === null && p.signalCode === null ? new Promise((r) => p.once('exit', r)) : undefined)));
    await rm(dir, { recursive: true, force: true });
  }
}

const FROM_SOURCE = process.env.FROM_SOURCE === '1';
const TARGETS_JS = resolve(import.meta.dirname, '..', '.tools', 'bench-js');

/** Compiles the targets to .tools/bench-js (tsc, about a second); node_modules resolve from the repository above it. */
async function compileTargets(): Promise<void> {
  if (FROM_SOURCE) return;
  await rm(TARGETS_JS, { recursive: true, force: true });
  const tsc = resolve(import.meta.dirname, '..', 'node_modules', '.bin', 'tsc');
  await run(tsc, ['-p', resolve(import.meta.dirname, 'tsconfig.targets.json')], 120_000).catch((e: Error) => {
    throw new Error(`compiling the benchmark targets failed (FROM_SOURCE=1 runs them through tsx): ${e.message}`);
  });
}

/** Starts bench/lib/ext-authz-target in its own process (compiled, or through tsx) and waits for its READY line. */
async function startNodeTarget(args: string[]): Promise<{ proc: ChildProcess; address: string }> {
  const argv = FROM_SOURCE
    ? ['--import', 'tsx', resolve(import.meta.dirname, 'lib', 'ext-authz-target.ts')]
    : [join(TARGETS_JS, 'bench', 'lib', 'ext-authz-target.js')];
  const proc = spawnServer(process.execPath, [...argv, ...args], 'pipe');
  return { proc, address: await readyAddress(proc, `${args[0]} target`) };
}

/** The address from a server's `READY <host:port>` line. */
function readyAddress(proc: ChildProcess, name: string): Promise<string> {
  const lines = createInterface({ input: proc.stdout! });
  return new Promise<string>((res, rej) => {
    const t = setTimeout(() => rej(new Error(`${name} did not start within 60 s`)), 60_000);
    proc.once('exit', (code) => rej(new Error(`${name} exited (${code}) before serving`)));
    lines.on('line', (l) => {
      if (l.startsWith('READY ')) {
        clearTimeout(t);
        res(l.slice(6));
      }
    });
  });
}

await main();
