/**
 * A realistic mix of policy inputs (PostgreSQL, SSH, HTTP/Kubernetes) for the
 * policy-evaluation benchmark, in the documented input shape (docs/policy-input.md).
 */
import type { PolicyInput, PgStatement, RequestInput, ResourceInput } from '../core/policy-contract.ts';

const future = new Date(Date.now() + 7 * 86400_000).toISOString();

function base(taskType: string, resource: ResourceInput, request: RequestInput): PolicyInput {
  return {
    version: 1,
    identity: { subject: 'alice@example.com', groups: ['engineering', 'dba'], issuer: 'https://idp.example.com', type: 'user' },
    task: {
      id: 'OPS-123',
      type: taskType,
      assignee: 'alice@example.com',
      reviewer: 'bob@example.com',
      reviewers: ['bob@example.com'],
      state: 'open',
      expires_at: future,
    },
    resource,
    request,
    review: { status: 'none', by: [] },
    session: { id: 'sess-1', started_at: new Date().toISOString() },
    now: new Date().toISOString(),
  };
}

const pgRes: ResourceInput = { protocol: 'postgres', name: 'orders-db', labels: { env: 'prod' } };
const sshRes: ResourceInput = { protocol: 'ssh', name: 'web-1', labels: { env: 'prod' } };
const k8sRes: ResourceInput = { protocol: 'http', name: 'k8s-prod', labels: { env: 'prod', kind: 'kubernetes' } };

function stmt(command: string, cls: string, tables: [string, 'read' | 'write'][], extra: Partial<PgStatement> = {}): PgStatement {
  return {
    command,
    class: cls,
    tables: tables.map(([name, access]) => ({ schema: 'public', name, access })),
    functions: [],
    fingerprint: `fp-${command}-${tables.map((t) => t[0]).join('-')}`,
    text: `${command} ... $1`,
    has_where: true,
    flags: [],
    ...extra,
  };
}

const pg = (s: PgStatement[]): RequestInput => ({ message: 'query', statements: s });
const ssh = (command: string, programs: string[][]): RequestInput => ({
  kind: 'exec',
  command,
  argv: programs[0] ?? [],
  programs: programs.map((argv) => ({ name: argv[0]!, argv, via: ['top'] })),
});
const k8s = (method: string, path: string, verb: string, resource: string, ns: string, name = '', sub = ''): RequestInput => ({
  method,
  path,
  query: {},
  headers: { 'user-agent': 'kubectl/v1.32.4' },
  host: 'k8s.example.com',
  kubernetes: { verb, api_group: resource === 'deployments' ? 'apps' : '', version: 'v1', resource, subresource: sub, namespace: ns, name },
});

export function policyMix(): { name: string; input: PolicyInput }[] {
  return [
    { name: 'pg select (read-only)', input: base('read-only', pgRes, pg([stmt('SELECT', 'read', [['orders', 'read'], ['customers', 'read']])])) },
    { name: 'pg update with where (data-fix, review)', input: base('data-fix', pgRes, pg([stmt('UPDATE', 'write', [['orders', 'write']])])) },
    { name: 'pg drop table (read-only, deny)', input: base('read-only', pgRes, pg([stmt('DROP TABLE', 'ddl', [['orders', 'write']])])) },
    {
      name: 'pg data-modifying CTE (read-only, deny)',
      input: base('read-only', pgRes, pg([stmt('SELECT', 'write', [['orders', 'write']], { flags: ['data_modifying_cte'] })])),
    },
    { name: 'pg alter table (schema-migration, review)', input: base('schema-migration', pgRes, pg([stmt('ALTER TABLE', 'ddl', [['orders', 'write']])])) },
    {
      name: 'pg select pg_read_file (incident-debug, deny)',
      input: base('incident-debug', pgRes, pg([stmt('SELECT', 'read', [], { functions: ['pg_read_file'] })])),
    },
    { name: 'ssh tail log (read-only)', input: base('read-only', sshRes, ssh('tail -n 100 /var/log/app.log', [['tail', '-n', '100', '/var/log/app.log']])) },
    { name: 'ssh restart (incident-debug, review)', input: base('incident-debug', sshRes, ssh('systemctl restart app', [['systemctl', 'restart', 'app']])) },
    { name: 'ssh rm via pipe (read-only, deny)', input: base('read-only', sshRes, ssh('ls | xargs rm', [['ls'], ['xargs', 'rm'], ['rm']])) },
    { name: 'k8s list pods (read-only)', input: base('read-only', k8sRes, k8s('GET', '/api/v1/namespaces/shop/pods', 'list', 'pods', 'shop')) },
    {
      name: 'k8s rollout restart (deploy)',
      input: base('deploy', k8sRes, k8s('PATCH', '/apis/apps/v1/namespaces/shop/deployments/web', 'patch', 'deployments', 'shop', 'web')),
    },
    { name: 'k8s exec (read-only, deny)', input: base('read-only', k8sRes, k8s('POST', '/api/v1/namespaces/shop/pods/web-1/exec', 'create', 'pods', 'shop', 'web-1', 'exec')) },
  ];
}
