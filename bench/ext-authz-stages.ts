/**
 * Where a Check's CPU goes: the ext_authz Check handler built up stage by
 * stage on one gRPC server (same protos, same request, ghz at max
 * throughput), CPU per Check of this process for each. The last rows are the
 * product's own server (ext-authz/server.ts), with the audit spool and with
 * a no-op audit sink.
 *
 *   bash bench/setup-tools.sh                        # once: ghz
 *   DURATION_S=6 node --import tsx bench/ext-authz-stages.ts
 *   UNIQUE=1 ...                                    # a new path per request (no decision cache hits)
 *   TRANSPORT=grpc-js ...                           # on @grpc/grpc-js's Server instead of taskgate's (ext-authz/h2/)
 *
 * Each row is preceded by an unmeasured warm-up run (WARMUP_S, default 2 s).
 * ghz runs as a child process; its CPU is not counted. The machine's other
 * load shows up in the numbers: compare rows of one run.
 */
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Server, ServerCredentials, type sendUnaryData, type ServerUnaryCall, type ServiceDefinition, type UntypedServiceImplementation } from '@grpc/grpc-js';
import type { AuditSink } from '../core/audit/event.ts';
import { SpoolAuditSink } from '../core/audit/spool-sink.ts';
import { buildBundle } from '../compiler/build.ts';
import { checkInput } from '../ext-authz/check-input.ts';
import { checkResponse } from '../ext-authz/check-response.ts';
import { withDirectCheckEncoding } from '../ext-authz/check-response-codec.ts';
import { envoyServices } from '../ext-authz/protos.ts';
import { GrpcServer } from '../ext-authz/h2/grpc-server.ts';
import { startExtAuthz } from '../ext-authz/server.ts';
import { HttpAuthorizer } from '../sidecar/http/authorize.ts';
import { benchGate, BIN, DURATION_S, FLOOR_OK, ghz, pct, POLICY, request, WARMUP_S } from './lib/ext-authz-load.ts';

if (!existsSync(join(BIN, 'ghz'))) throw new Error('ghz missing: run bash bench/setup-tools.sh');
const data = request(process.env.UNIQUE ? '/people/{{.RequestNumber}}' : '/people/alice');
const dir = await mkdtemp(join(tmpdir(), 'taskgate-bench-stages-'));
const TRANSPORT = process.env.TRANSPORT === 'grpc-js' ? 'grpc-js' : 'taskgate';
const NOOP_AUDIT: AuditSink = { emit() {}, writable: () => true, flush: async () => {}, close: async () => {} } as unknown as AuditSink;

try {
  await writeFile(join(dir, 'policy.rego'), POLICY);
  const built = await buildBundle({ dir, out: join(dir, 'bundle.tar.gz'), entrypoint: 'envoy/authz/allow' });
  const bundle = await readFile(built.out);
  const spool = await SpoolAuditSink.open({ dir: join(dir, 'spool') });
  async function authorizerWith(audit: AuditSink): Promise<HttpAuthorizer> {
    return new HttpAuthorizer({ gate: await benchGate(bundle, audit), resources: [{ name: 'people-api' }] });
  }

  const services = envoyServices();
  type Stage = (call: ServerUnaryCall<unknown, unknown>, cb: sendUnaryData<unknown>) => void;
  /** One handler per stage; each adds one step to the previous. */
  /** Label, handler, and whether responses go through the product's direct CheckResponse encoder. */
  const stages: [string, (a: HttpAuthorizer) => Stage, boolean?][] = [
    [`constant OK (${TRANSPORT} floor)`, () => (_c, cb) => cb(null, FLOOR_OK)],
    ['+ CheckRequest -> input', () => (c, cb) => {
      checkInput(c.request);
      cb(null, FLOOR_OK);
    }],
    ['+ authorize (constant response)', (a) => (c, cb) => {
      const input = checkInput(c.request);
      if (!input.ok) return cb(null, FLOOR_OK);
      void a.authorize({ raw: input.raw, extra: input.extra, fingerprint_extra: input.fingerprint_extra, waitMs: 1000, refuseMergedSlashes: true, entry: 'ext_authz' }).then(() => cb(null, FLOOR_OK));
    }],
    ['+ CheckResponse', (a) => (c, cb) => {
      const input = checkInput(c.request);
      if (!input.ok) return cb(null, FLOOR_OK);
      void a.authorize({ raw: input.raw, extra: input.extra, fingerprint_extra: input.fingerprint_extra, waitMs: 1000, refuseMergedSlashes: true, entry: 'ext_authz' }).then((r) => cb(null, checkResponse(r)));
    }, true],
  ];

  async function measure(label: string, address: string): Promise<void> {
    await ghz(address, data, ['-c', '50', '--connections', '4'], WARMUP_S); // JIT warm-up, not measured
    const c0 = process.cpuUsage();
    const r = await ghz(address, data, ['-c', '50', '--connections', '4']);
    const cu = process.cpuUsage(c0);
    const us = (cu.user + cu.system) / r.count;
    console.log(`| ${label} | ${r.rps.toFixed(0)} | ${pct(r, 50).toFixed(2)} | ${pct(r, 99).toFixed(2)} | ${us.toFixed(0)} |`);
  }

  /** One stage's server on the transport under test. */
  async function serve(service: ServiceDefinition, impl: Record<string, unknown>): Promise<{ address: string; close(): void }> {
    if (TRANSPORT === 'taskgate') {
      const server = new GrpcServer();
      server.addService(service, impl);
      const port = await server.listen('127.0.0.1', 0);
      return { address: `127.0.0.1:${port}`, close: () => server.forceShutdown() };
    }
    const server = new Server({ 'grpc.enable_channelz': 0 });
    server.addService(service, impl as UntypedServiceImplementation);
    const port = await new Promise<number>((res, rej) => server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (e, p) => (e ? rej(e) : res(p))));
    return { address: `127.0.0.1:${port}`, close: () => server.forceShutdown() };
  }

  console.log(`\n${process.env.UNIQUE ? 'unique path per request' : 'repeated request'}, ${TRANSPORT} transport, ${DURATION_S} s per row\n`);
  console.log('| stage | RPS | p50 ms | p99 ms | CPU µs/Check |');
  console.log('| --- | ---: | ---: | ---: | ---: |');
  for (const [label, make, directEncoding] of stages) {
    const server = await serve(directEncoding ? withDirectCheckEncoding(services.authorization) : services.authorization, { Check: make(await authorizerWith(spool)) });
    await measure(label, server.address);
    server.close();
  }
  for (const [label, audit] of [['taskgate ext_authz server (audit spool)', spool], ['taskgate ext_authz server (audit no-op)', NOOP_AUDIT]] as const) {
    const a = await authorizerWith(audit);
    const tg = await startExtAuthz({ gate: a.decider.gate, resources: [{ name: 'people-api' }], transport: TRANSPORT });
    await measure(label, tg.address);
    await tg.close();
  }
  await spool.close();
} finally {
  await rm(dir, { recursive: true, force: true });
}
