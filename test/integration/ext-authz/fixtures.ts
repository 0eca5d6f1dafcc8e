import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { credentials, Metadata, type ChannelCredentials } from '@grpc/grpc-js';
import { buildBundle } from '../../../compiler/build.ts';
import { envoyServices } from '../../../ext-authz/protos.ts';

/** Compiles Rego with the real compiler at the given entrypoint. */
export async function compileAt(rego: string, entrypoint: string, data?: unknown): Promise<Buffer> {
  const dir = await mkdtemp(join(tmpdir(), 'taskgate-envoy-fixture-'));
  try {
    await writeFile(join(dir, 'policy.rego'), rego);
    if (data !== undefined) await writeFile(join(dir, 'data.json'), JSON.stringify(data));
    const out = join(dir, 'bundle.tar.gz');
    await buildBundle({ dir, out, entrypoint });
    return await readFile(out);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * A Kubernetes fixture policy in the taskgate contract: reads in shop for
 * `k8s-read` tasks, secrets masked, pod deletion under review, everything
 * else denied.
 */
export const K8S_POLICY = `package taskgate
import rego.v1

k := input.request.kubernetes
own if { input.task.assignee == input.identity.subject; input.task.state == "open" }

default decision := {"result": "deny", "reasons": ["not permitted for this task"], "mask": [], "obligations": {}}

decision := {"result": "allow", "reasons": ["read in shop"], "mask": [], "obligations": {}} if {
  own
  k.verb in {"get", "list", "watch"}
  k.namespace == "shop"
  k.resource == "pods"
  k.subresource in {"", "log"}
}

decision := {"result": "allow", "reasons": ["discovery"], "mask": [], "obligations": {}} if {
  own
  k.non_resource
  k.verb == "get"
}

decision := {"result": "allow", "reasons": ["secret read, values masked"], "mask": [{"field": "data.*", "strategy": "redact"}], "obligations": {}} if {
  own
  k.verb == "get"
  k.namespace == "shop"
  k.resource == "secrets"
}

decision := {"result": "review", "reasons": ["deleting a pod needs review"], "mask": [], "obligations": {},
             "review": {"approvers": ["bob@example.com"], "min_approvals": 1, "timeout_s": 30}} if {
  own
  k.verb == "delete"
  k.resource == "pods"
  input.review.status == "none"
}

decision := {"result": "allow", "reasons": ["approved"], "mask": [], "obligations": {}} if {
  own
  k.verb == "delete"
  k.resource == "pods"
  input.review.status == "approved"
}

decision := {"result": "allow", "reasons": ["exec for an exec task"], "mask": [], "obligations": {}} if {
  own
  input.task.type == "k8s-exec"
  k.resource == "pods"
  k.subresource == "exec"
  k.namespace == "shop"
}

decision := {"result": "allow", "reasons": ["http api read"], "mask": [{"detector": "card", "strategy": "partial", "keep": 4}], "obligations": {}} if {
  own
  not input.request.kubernetes
  input.request.method == "GET"
  startswith(input.request.path, "/v1/")
}
`;

export type Envoy = {
  check(req: unknown, opts?: { deadlineMs?: number }): Promise<Record<string, any>>;
  close(): void;
};

/** A real gRPC client for envoy.service.auth.v3.Authorization. */
export function authzClient(address: string, creds: ChannelCredentials = credentials.createInsecure(), options: object = {}): Envoy {
  const { AuthorizationClient } = envoyServices();
  const c = new AuthorizationClient(address, creds, options);
  return {
    check: (req, opts = {}) =>
      new Promise((resolve, reject) => {
        const deadline = new Date(Date.now() + (opts.deadlineMs ?? 5000));
        c.Check(req, new Metadata(), { deadline }, (err: Error | null, res: Record<string, any>) => (err ? reject(err) : resolve(res)));
      }),
    close: () => c.close(),
  };
}

/** An Envoy-shaped CheckRequest (what Envoy 1.3x sends for an HTTP request). */
export function envoyCheck(
  method: string,
  path: string,
  headers: Record<string, string> = {},
  more: { body?: string; context?: Record<string, string>; host?: string } = {},
): unknown {
  const host = more.host ?? 'kubernetes.default.svc';
  return {
    attributes: {
      source: { address: { socketAddress: { address: '10.1.2.3', portValue: 51234 } }, principal: 'spiffe://cluster.local/ns/dev/sa/alice' },
      destination: { address: { socketAddress: { address: '10.0.0.1', portValue: 443 } } },
      request: {
        time: { seconds: '1767225600', nanos: 5000 },
        http: {
          id: String(Math.floor(Math.random() * 1e12)),
          method,
          path,
          host,
          scheme: 'https',
          protocol: 'HTTP/1.1',
          headers: { ':authority': host, ':method': method, ':path': path, 'user-agent': 'kubectl/v1.32.0', 'x-request-id': 'r-' + Math.random(), ...headers },
          ...(more.body !== undefined ? { body: more.body, size: String(Buffer.byteLength(more.body)) } : {}),
        },
      },
      contextExtensions: more.context ?? {},
      metadataContext: { filterMetadata: { 'envoy.filters.http.jwt_authn': { fields: { role: { stringValue: 'dev' } } } } },
    },
  };
}

/** Header value set by an OkHttpResponse. */
export function okHeader(res: Record<string, any>, name: string): string | undefined {
  const h = (res.okResponse?.headers ?? []).find((x: any) => x.header.key === name);
  return h?.header.value;
}

/** grpc.health.v1 Health/Check with a client built from grpc-health-check's own proto. */
export async function healthStatus(address: string, service: string): Promise<string> {
  const { protoPath } = await import('grpc-health-check');
  const { loadSync } = await import('@grpc/proto-loader');
  const { loadPackageDefinition } = await import('@grpc/grpc-js');
  const pkg = loadPackageDefinition(loadSync(protoPath, { enums: String })) as any;
  const c = new pkg.grpc.health.v1.Health(address, credentials.createInsecure());
  try {
    return await new Promise((resolve, reject) =>
      c.Check({ service }, { deadline: new Date(Date.now() + 3000) }, (e: Error | null, v: { status: string }) => (e ? reject(e) : resolve(v.status))),
    );
  } finally {
    c.close();
  }
}
