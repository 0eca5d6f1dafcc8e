import type { Command } from 'commander';
import { readFile } from 'node:fs/promises';
import { SpoolAuditSink } from '../../core/audit/spool-sink.ts';
import { PolicyEngine } from '../../core/engine/engine.ts';
import { TaskgateError } from '../../core/errors.ts';
import { Gatekeeper } from '../../core/gate.ts';
import { OidcAuthenticator } from '../../core/identity/oidc.ts';
import { createLogger } from '../../core/log.ts';
import { Metrics } from '../../core/metrics.ts';
import { InProcessReviews } from '../../core/reviews.ts';
import { StaticTaskRegistry } from '../../core/tasks.ts';
import { envoyPolicyEngine } from '../../ext-authz/envoy-decision.ts';
import { startExtAuthz } from '../../ext-authz/server.ts';
import { buildHttpRequest, taskFromRequest } from '../../sidecar/http/request-input.ts';

/**
 * `taskgate ext-authz`: the Envoy ext_authz + ext_proc service on its own, from
 * flags (a drop-in for `opa-envoy-plugin run` with a WASM bundle). With tasks,
 * reviews and several listeners, use `taskgate sidecar` and the `ext_authz`
 * section of taskgate.yaml instead.
 *
 * `taskgate input http`: the `request` block both the HTTP proxy and ext_authz build.
 */
export function registerExtAuthzCommands(program: Command): void {
  program
    .command('ext-authz')
    .description('serve Envoy ext_authz (Check) and ext_proc (Process) with a policy bundle; grpc.health.v1 on the same port')
    .requiredOption('--bundle <file>', 'policy bundle (.tar.gz from `taskgate build`)')
    .option('--listen <host:port>', 'gRPC address', '127.0.0.1:9191')
    .option('--metrics-listen <host:port>', 'serve /metrics and /healthz here')
    .option('--envoy-entrypoint <path>', 'evaluate an opa-envoy-plugin policy at this entrypoint (e.g. envoy/authz/allow) instead of taskgate/decision')
    .option('--resource <name>', 'resource name in the policy input and audit', 'http')
    .option('--kubernetes', 'the upstream is a Kubernetes API server: parse request.kubernetes')
    .option('--upstream-token-file <file>', 'bearer token presented upstream on allow (the user token is removed)')
    .option('--issuer <url>', 'OIDC issuer: verify bearer tokens (identity); without it requests are anonymous')
    .option('--audience <aud>', 'accepted token audience (with --issuer)')
    .option('--tls-cert <file>')
    .option('--tls-key <file>')
    .option('--tls-client-ca <file>', 'require client certificates from this CA (mTLS)')
    .option('--audit-spool <dir>', 'durable audit spool directory', 'taskgate-spool')
    .option('--transport <name>', 'gRPC server: taskgate (its own HTTP/2 server) or grpc-js (@grpc/grpc-js, a fallback)', 'taskgate')
    .option('--mask-max-bytes <n>', 'ext_proc: largest body masked; larger is replaced by an error', (v) => Number(v), 8 * 1024 * 1024)
    .action(async (o: ServeFlags) => {
      if (o.transport !== 'taskgate' && o.transport !== 'grpc-js') throw new TaskgateError('config_invalid', `--transport must be taskgate or grpc-js, not ${JSON.stringify(o.transport)}`);
      const log = createLogger();
      const metrics = new Metrics({ defaultMetrics: true });
      const engine = o.envoyEntrypoint ? envoyPolicyEngine({ entrypoint: o.envoyEntrypoint, metrics, log }) : new PolicyEngine({ metrics, log });
      await engine.load(await readFile(o.bundle), o.bundle);
      if ((o.issuer === undefined) !== (o.audience === undefined)) throw new TaskgateError('config_invalid', '--issuer and --audience go together');
      if ((o.tlsCert === undefined) !== (o.tlsKey === undefined)) throw new TaskgateError('config_invalid', '--tls-cert and --tls-key go together');
      const authenticator = o.issuer ? await OidcAuthenticator.discover({ issuer: o.issuer, audience: o.audience! }) : undefined;
      const audit = await SpoolAuditSink.open({ dir: o.auditSpool, log });
      const gate = new Gatekeeper({ engine, tasks: new StaticTaskRegistry(), reviews: new InProcessReviews(), audit, log, metrics });
      const token = o.upstreamTokenFile ? (await readFile(o.upstreamTokenFile, 'utf8')).trim() : undefined;
      const [host, port] = splitHostPort(o.listen);
      const srv = await startExtAuthz({
        gate,
        ...(authenticator ? { authenticator } : {}),
        resources: [{ name: o.resource, kubernetes: o.kubernetes === true, ...(token ? { upstream_authorization: `Bearer ${token}` } : {}) }],
        host,
        port,
        ...(o.metricsListen ? { metricsPort: splitHostPort(o.metricsListen)[1] } : {}),
        ...(o.tlsCert && o.tlsKey
          ? { tls: { cert: await readFile(o.tlsCert), key: await readFile(o.tlsKey), ...(o.tlsClientCa ? { clientCa: await readFile(o.tlsClientCa) } : {}) } }
          : {}),
        extProc: { maxBytes: o.maskMaxBytes },
        transport: o.transport,
        log,
        metrics,
      });
      log.info('ext-authz ready', { address: srv.address, metrics: srv.metricsAddress ?? null, policy_revision: engine.revision ?? null });
      await new Promise<void>((resolve) => {
        process.once('SIGTERM', resolve);
        process.once('SIGINT', resolve);
      });
      await srv.close();
      await audit.flush();
    });
}

interface ServeFlags {
  bundle: string;
  listen: string;
  metricsListen?: string;
  envoyEntrypoint?: string;
  resource: string;
  kubernetes?: boolean;
  upstreamTokenFile?: string;
  issuer?: string;
  audience?: string;
  tlsCert?: string;
  tlsKey?: string;
  tlsClientCa?: string;
  auditSpool: string;
  transport: string;
  maskMaxBytes: number;
}

export function registerHttpInputCommand(input: Command): void {
  input
    .command('http')
    .description('build the HTTP request block (with `kubernetes` parsed) as the HTTP proxy and ext_authz do, and print it as JSON')
    .requiredOption('--method <method>', 'HTTP method')
    .requiredOption('--path <target>', 'request target: path and query, e.g. "/api/v1/namespaces/shop/pods?watch=1"')
    .option('-H, --header <name:value...>', 'request header (repeatable)')
    .option('--host <host>', 'Host / :authority')
    .option('--no-kubernetes', 'do not parse Kubernetes API paths')
    .action((o: { method: string; path: string; header?: string[]; host?: string; kubernetes: boolean }) => {
      const headers: Record<string, string> = {};
      for (const h of o.header ?? []) {
        const i = h.indexOf(':');
        if (i <= 0) throw new TaskgateError('input_invalid', `header ${JSON.stringify(h)} is not name:value`);
        headers[h.slice(0, i).trim().toLowerCase()] = h.slice(i + 1).trim();
      }
      const { task_id, target } = taskFromRequest(o.path, headers);
      const r = buildHttpRequest({ method: o.method, target, headers, ...(o.host ? { host: o.host } : {}) }, { kubernetes: o.kubernetes });
      if (!r.ok) throw new TaskgateError('input_invalid', `the request would be denied before the policy: ${r.reason}`);
      process.stdout.write(JSON.stringify(r.request, null, 2) + '\n');
      if (task_id) process.stderr.write(`task: ${task_id}\n`);
    });
}

function splitHostPort(s: string): [string, number] {
  const m = /^(\[[^\]]+\]|[^:]*):(\d{1,5})$/.exec(s);
  if (!m) throw new TaskgateError('config_invalid', `expected host:port, got ${JSON.stringify(s)}`);
  return [m[1]!.replace(/^\[|\]$/g, '') || '127.0.0.1', Number(m[2])];
}
