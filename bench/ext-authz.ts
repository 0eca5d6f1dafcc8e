/**
 * ext_authz Check throughput and latency: taskgate vs opa-envoy-plugin, same
 * policy (opa-envoy-plugin style, entrypoint envoy/authz/allow), same
 * CheckRequest, same load generator (ghz), loopback, in one run.
 *
 *   bash bench/setup-tools.sh                 # once: ghz + opa-envoy-plugin
 *   node --import tsx bench/ext-authz.ts      # ~80 s
 *
 * Every target first gets an unmeasured warm-up (WARMUP_S, default 2 s, per
 * max-throughput scenario). Scenarios per server: max throughput (50 workers, no rate limit) and a fixed
 * 2,000 RPS, each for DURATION_S seconds; with a repeated request and with a
 * unique path per request (taskgate's decision cache cannot answer those).
 * taskgate writes every decision to its durable audit spool (real disk);
 * opa-envoy-plugin runs with decision logs off. Before measuring, a real gRPC
 * client checks that both allow the request and deny a variant.
 *
 * A third target, "grpc-js floor", is a grpc-js server on the same Envoy protos
 * whose Check answers a constant OK without looking at the request: what this
 * machine gives a Node.js ext_authz server that does no work at all, so the
 * distance between it and taskgate is taskgate's own per-Check cost.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { BIN, ghz, pct, POLICY, request, WARMUP_S, type GhzReport } from './lib/ext-authz-load.ts';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SpoolAuditSink } from '../core/audit/spool-sink.ts';
import { Gatekeeper } from '../core/gate.ts';
import { InProcessReviews } from '../core/reviews.ts';
import { StaticTaskRegistry } from '../core/tasks.ts';
import { buildBundle } from '../compiler/build.ts';
import { freePort, waitFor } from '../devenv/net.ts';
import { envoyPolicyEngine } from '../ext-authz/envoy-decision.ts';
import { envoyServices } from '../ext-authz/protos.ts';
import { credentials, Server, ServerCredentials, type sendUnaryData, type ServerUnaryCall } from '@grpc/grpc-js';
import { startExtAuthz } from '../ext-authz/server.ts';

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

async function main(): Promise<void> {
  for (const b of ['ghz', 'opa-envoy-plugin']) {
    if (!existsSync(join(BIN, b))) throw new Error(`${b} missing: run bash bench/setup-tools.sh`);
  }
  const dir = await mkdtemp(join(tmpdir(), 'taskgate-bench-extauthz-'));
  let opa: ChildProcess | undefined;
  let stop: (() => Promise<void>) | undefined;
  try {
    await writeFile(join(dir, 'policy.rego'), POLICY);
    const built = await buildBundle({ dir, out: join(dir, 'bundle.tar.gz'), entrypoint: 'envoy/authz/allow' });
    const engine = envoyPolicyEngine({ entrypoint: 'envoy/authz/allow' });
    await engine.load(await import('node:fs/promises').then((f) => f.readFile(built.out)));
    const audit = await SpoolAuditSink.open({ dir: join(dir, 'spool') });
    const gate = new Gatekeeper({ engine, tasks: new StaticTaskRegistry(), reviews: new InProcessReviews(), audit });
    const tg = await startExtAuthz({ gate, resources: [{ name: 'people-api' }] });
    stop = async () => {
      await tg.close();
      await audit.flush();
    };

    const grpcPort = await freePort();
    const httpPort = await freePort();
    const diagPort = await freePort();
    opa = spawn(
      join(BIN, 'opa-envoy-plugin'),
      [
        'run', '--server', '--log-level', 'error',
        '--addr', `127.0.0.1:${httpPort}`,
        '--diagnostic-addr', `127.0.0.1:${diagPort}`,
        '--set', `plugins.envoy_ext_authz_grpc.addr=127.0.0.1:${grpcPort}`,
        '--set', 'plugins.envoy_ext_authz_grpc.path=envoy/authz/allow',
        '--set', 'decision_logs.console=false',
        join(dir, 'policy.rego'),
      ],
      { stdio: ['ignore', 'ignore', 'inherit'] },
    );
    await waitFor(async () => (await fetch(`http://127.0.0.1:${diagPort}/health`).catch(() => undefined))?.ok === true, 20_000);

    const floor = new Server();
    const OK = { status: { code: 0 }, okResponse: { headers: [{ header: { key: 'x-taskgate-decision-id', value: 'floor' }, append: { value: false } }] } };
    floor.addService(envoyServices().authorization, { Check: (_c: ServerUnaryCall<unknown, unknown>, cb: sendUnaryData<unknown>) => cb(null, OK) });
    const floorPort = await new Promise<number>((res, rej) => floor.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (e, p) => (e ? rej(e) : res(p))));
    const prevStop = stop;
    stop = async () => {
      floor.forceShutdown();
      await prevStop();
    };

    const targets: Record<string, string> = { taskgate: tg.address, 'opa-envoy-plugin': `127.0.0.1:${grpcPort}` };
    const floorTarget = `127.0.0.1:${floorPort}`;
    // Sanity: both allow the request and deny a variant (a benchmark of errors is worthless).
    for (const [name, addr] of Object.entries(targets)) {
      const allowed = await checkCode(addr, request('/people/alice'));
      const denied = await checkCode(addr, request('/admin/alice'));
      if (allowed !== 0 || denied !== 7) throw new Error(`${name}: expected allow (0) then deny (7), got ${allowed}, ${denied}`);
    }

    const scenarios: [string, string, string[]][] = [
      ['max throughput, repeated request', request('/people/alice'), ['-c', '50', '--connections', '4']],
      ['max throughput, unique path per request', request('/people/{{.RequestNumber}}'), ['-c', '50', '--connections', '4']],
      ['2,000 RPS, repeated request', request('/people/alice'), ['-c', '20', '--rps', '2000']],
      ['2,000 RPS, unique path per request', request('/people/{{.RequestNumber}}'), ['-c', '20', '--rps', '2000']],
    ];
    // Unmeasured warm-up of every target (Node's JIT; the Go server needs none but gets the same).
    for (const addr of [...Object.values(targets), floorTarget]) {
      for (const [, data, extra] of scenarios.slice(0, 2)) await ghz(addr, data, extra, WARMUP_S);
    }
    const rows: string[] = [];
    const cpuPerCheck: Record<string, number> = {};
    for (const [label, data, extra] of scenarios) {
      const res: Record<string, GhzReport> = {};
      for (const [name, addr] of Object.entries(targets)) {
        const cpu0 = name === 'taskgate' ? process.cpuUsage() : undefined;
        res[name] = await ghz(addr, data, extra);
        if (cpu0) {
          const cu = process.cpuUsage(cpu0);
          cpuPerCheck[label] = (cu.user + cu.system) / res[name]!.count;
        }
        const r = res[name]!;
        const errs = r.count - (r.statusCodeDistribution.OK ?? 0);
        console.log(
          `${label.padEnd(42)} ${name.padEnd(17)} rps=${r.rps.toFixed(0).padStart(6)} p50=${pct(r, 50).toFixed(3)}ms p99=${pct(r, 99).toFixed(3)}ms errors=${errs}`,
        );
      }
      res.floor = await ghz(floorTarget, data, extra);
      const f = res.floor;
      console.log(`${label.padEnd(42)} ${'grpc-js floor'.padEnd(17)} rps=${f.rps.toFixed(0).padStart(6)} p50=${pct(f, 50).toFixed(3)}ms p99=${pct(f, 99).toFixed(3)}ms`);
      const t = res.taskgate!;
      const o = res['opa-envoy-plugin']!;
      rows.push(
        `| ${label} | ${t.rps.toFixed(0)} | ${pct(t, 50).toFixed(3)} | ${pct(t, 99).toFixed(3)} | ${o.rps.toFixed(0)} | ${pct(o, 50).toFixed(3)} | ${pct(o, 99).toFixed(3)} | ${(t.rps / o.rps).toFixed(2)} | ${(pct(t, 99) / pct(o, 99)).toFixed(2)} | ${f.rps.toFixed(0)} | ${pct(f, 99).toFixed(3)} | ${cpuPerCheck[label]!.toFixed(0)} |`,
      );
    }
    console.log(
      '\n| scenario | taskgate RPS | p50 ms | p99 ms | opa-envoy-plugin RPS | p50 ms | p99 ms | RPS ratio | p99 ratio | grpc-js floor RPS | floor p99 ms | taskgate CPU µs/Check |',
    );
    console.log('| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
    for (const r of rows) console.log(r);
  } finally {
    opa?.kill('SIGTERM');
    await stop?.();
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
