/**
 * One benchmark target in a process of its own (bench/ext-authz.ts starts it),
 * so that no target's heap, JIT state or garbage collector shares a process
 * with another's or with the bench driver's:
 *
 *   node --import tsx bench/lib/ext-authz-target.ts taskgate <bundle.tar.gz> <spool dir> [taskgate|grpc-js]
 *   node --import tsx bench/lib/ext-authz-target.ts floor [taskgate|grpc-js]
 *   node --import tsx bench/lib/ext-authz-target.ts echo
 *
 * Prints `READY <host:port>` when it serves; SIGTERM closes it (taskgate
 * flushes its audit spool first).
 *
 * taskgate: the product's ext_authz server (ext-authz/server.ts) in
 * opa-envoy-plugin-compatible entrypoint mode, decisions written to the real
 * durable audit spool, on the transport named last (default: taskgate's own
 * HTTP/2 server). floor: a server on the same protos whose Check answers a
 * constant OK without reading the request — what a Node.js ext_authz server
 * doing no work costs on this machine, on that transport. echo: a TCP echo
 * server (node:net), no HTTP/2 or gRPC at all, for bench/echo-latency's
 * client: the round trip this machine gives any Node.js server.
 */
import { readFile } from 'node:fs/promises';
import { createServer, type AddressInfo } from 'node:net';
import { Server, ServerCredentials, type sendUnaryData, type ServerUnaryCall } from '@grpc/grpc-js';
import { GrpcServer } from '../../ext-authz/h2/grpc-server.ts';
import { SpoolAuditSink } from '../../core/audit/spool-sink.ts';
import { tuneRuntimeForServing } from '../../core/serving-runtime.ts';
import { envoyServices } from '../../ext-authz/protos.ts';
import { startExtAuthz, type ExtAuthzTransport } from '../../ext-authz/server.ts';
import { benchGate, FLOOR_OK } from './ext-authz-load.ts';

const [kind, ...rest] = process.argv.slice(2);
const transport = (rest[rest.length - 1] === 'grpc-js' ? 'grpc-js' : 'taskgate') as ExtAuthzTransport;
const [bundlePath, spoolDir] = rest;
// The V8 settings `taskgate ext-authz` runs with (cli/main.ts), for the floor too: same runtime.
tuneRuntimeForServing();
let close: () => Promise<void>;

if (kind === 'floor' && transport === 'taskgate') {
  const floor = new GrpcServer();
  floor.addService(envoyServices().authorization, { Check: (_c: unknown, cb: (e: null, v: unknown) => void) => cb(null, FLOOR_OK) });
  const port = await floor.listen('127.0.0.1', 0);
  close = async () => floor.forceShutdown();
  console.log(`READY 127.0.0.1:${port}`);
} else if (kind === 'floor') {
  const floor = new Server({ 'grpc.enable_channelz': 0 });
  floor.addService(envoyServices().authorization, { Check: (_c: ServerUnaryCall<unknown, unknown>, cb: sendUnaryData<unknown>) => cb(null, FLOOR_OK) });
  const port = await new Promise<number>((res, rej) => floor.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (e, p) => (e ? rej(e) : res(p))));
  close = async () => floor.forceShutdown();
  console.log(`READY 127.0.0.1:${port}`);
} else if (kind === 'echo') {
  const echo = createServer((c) => {
    c.setNoDelay(true);
    c.on('data', (d) => c.write(d));
    c.on('error', () => c.destroy());
  });
  await new Promise<void>((res) => echo.listen(0, '127.0.0.1', res));
  close = () => new Promise<void>((res) => echo.close(() => res()));
  console.log(`READY 127.0.0.1:${(echo.address() as AddressInfo).port}`);
} else if (kind === 'taskgate' && bundlePath && spoolDir) {
  const audit = await SpoolAuditSink.open({ dir: spoolDir });
  const tg = await startExtAuthz({ gate: await benchGate(await readFile(bundlePath), audit), resources: [{ name: 'people-api' }], transport });
  close = async () => {
    await tg.close();
    await audit.close();
  };
  console.log(`READY ${tg.address}`);
} else {
  console.error('usage: ext-authz-target.ts taskgate <bundle.tar.gz> <spool dir> [taskgate|grpc-js] | floor [taskgate|grpc-js] | echo');
  process.exit(2);
}

process.once('SIGTERM', () => {
  void close().finally(() => process.exit(0));
});
