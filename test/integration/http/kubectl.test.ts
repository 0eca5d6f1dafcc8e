import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { request } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { MemoryAuditSink } from '../../../core/audit/event.ts';
import { PolicyEngine } from '../../../core/engine/engine.ts';
import { Gatekeeper } from '../../../core/gate.ts';
import { OidcAuthenticator } from '../../../core/identity/oidc.ts';
import { InProcessReviews } from '../../../core/reviews.ts';
import { StaticTaskRegistry } from '../../../core/tasks.ts';
import { startOidcIssuer, type OidcIssuer } from '../../../devenv/oidc-issuer.ts';
import { startHttpProxy, type HttpProxyHandle } from '../../../sidecar/http/proxy.ts';
import { compileAt, K8S_POLICY } from '../ext-authz/fixtures.ts';
import { makePki } from './tls.ts';

/**
 * The HTTP proxy driven by the real kubectl binary. A small Node server
 * stands in for the API server: discovery, pods (list, get, delete, watch,
 * exec upgrade) and a Secret. It records what reached it, so the tests see
 * the credential swap and the masking from the upstream's side too.
 */
const SA_TOKEN = 'upstream-sa-token';
const POD = (name: string) => ({ apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace: 'shop', uid: `uid-${name}`, resourceVersion: '7' }, spec: { containers: [{ name: 'app', image: 'shop:1' }] }, status: { phase: 'Running' } });
const SECRET = { apiVersion: 'v1', kind: 'Secret', type: 'Opaque', metadata: { name: 'db', namespace: 'shop', resourceVersion: '3' }, data: { password: 'aHVudGVyMg==', username: 'YWRtaW4=' } };
const API_RESOURCES = {
  kind: 'APIResourceList',
  apiVersion: 'v1',
  groupVersion: 'v1',
  resources: [
    { name: 'pods', singularName: 'pod', namespaced: true, kind: 'Pod', verbs: ['create', 'delete', 'deletecollection', 'get', 'list', 'patch', 'update', 'watch'], shortNames: ['po'] },
    { name: 'pods/exec', singularName: '', namespaced: true, kind: 'PodExecOptions', verbs: ['create', 'get'] },
    { name: 'pods/log', singularName: '', namespaced: true, kind: 'Pod', verbs: ['get'] },
    { name: 'secrets', singularName: 'secret', namespaced: true, kind: 'Secret', verbs: ['create', 'delete', 'get', 'list', 'patch', 'update', 'watch'] },
  ],
};

interface Seen {
  method: string;
  url: string;
  authorization?: string;
  task?: string;
}

const upgraded = new Set<Socket>();

function fakeApiServer(seen: Seen[], openStreams: Set<IncomingMessage>): Server {
  const json = (res: import('node:http').ServerResponse, code: number, body: unknown) =>
    res.writeHead(code, { 'content-type': 'application/json' }).end(JSON.stringify(body));
  const srv = createServer((req, res) => {
    seen.push({ method: req.method!, url: req.url!, ...(req.headers.authorization ? { authorization: req.headers.authorization } : {}), ...(req.headers['x-taskgate-task'] ? { task: String(req.headers['x-taskgate-task']) } : {}) });
    if (req.headers.authorization !== `Bearer ${SA_TOKEN}`) return json(res, 401, { kind: 'Status', apiVersion: 'v1', status: 'Failure', code: 401, reason: 'Unauthorized', message: 'Unauthorized' });
    const u = new URL(req.url!, 'http://x');
    const p = u.pathname;
    if (p === '/api') return json(res, 200, { kind: 'APIVersions', versions: ['v1'], serverAddressByClientCIDRs: [{ clientCIDR: '0.0.0.0/0', serverAddress: '127.0.0.1' }] });
    if (p === '/apis') return json(res, 200, { kind: 'APIGroupList', apiVersion: 'v1', groups: [] });
    if (p === '/api/v1') return json(res, 200, API_RESOURCES);
    if (p === '/api/v1/namespaces/shop/pods' && req.method === 'GET') {
      if (u.searchParams.get('watch') === 'true') {
        res.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked' });
        res.write(JSON.stringify({ type: 'ADDED', object: POD('web-3') }) + '\n');
        openStreams.add(req);
        req.on('close', () => openStreams.delete(req));
        return; // stays open, like a real watch
      }
      return json(res, 200, { kind: 'PodList', apiVersion: 'v1', metadata: { resourceVersion: '7' }, items: [POD('web-1'), POD('web-2')] });
    }
    const pod = /^\/api\/v1\/namespaces\/shop\/pods\/([^/]+)$/.exec(p);
    if (pod && req.method === 'GET') return json(res, 200, POD(pod[1]!));
    if (pod && req.method === 'DELETE') return json(res, 200, POD(pod[1]!));
    if (p === '/api/v1/namespaces/shop/secrets/db') return json(res, 200, SECRET);
    return json(res, 404, { kind: 'Status', apiVersion: 'v1', status: 'Failure', code: 404, reason: 'NotFound', message: `${p} not found` });
  });
  // exec: a WebSocket-style upgrade that echoes what it receives.
  srv.on('upgrade', (req: IncomingMessage, socket: Socket) => {
    upgraded.add(socket);
    seen.push({ method: `UPGRADE ${req.method}`, url: req.url!, ...(req.headers.authorization ? { authorization: req.headers.authorization } : {}) });
    socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n');
    socket.on('data', (d) => socket.write(Buffer.concat([Buffer.from('echo:'), d])));
  });
  return srv;
}

describe('HTTP proxy with the real kubectl', () => {
  let idp: OidcIssuer;
  let api: Server;
  let proxy: HttpProxyHandle;
  let dir: string;
  let pki: Awaited<ReturnType<typeof makePki>>;
  let alice: string;
  const seen: Seen[] = [];
  const streams = new Set<IncomingMessage>();
  const audit = new MemoryAuditSink();
  const reviews = new InProcessReviews();
  const tasks = new StaticTaskRegistry([
    { id: 'OPS-1', type: 'k8s-debug', assignee: 'alice@example.com', reviewers: ['bob@example.com'], state: 'open', expires_at: new Date(Date.now() + 3600_000).toISOString() },
    { id: 'OPS-9', type: 'k8s-exec', assignee: 'alice@example.com', reviewers: ['bob@example.com'], state: 'open', expires_at: new Date(Date.now() + 3600_000).toISOString() },
  ]);

  before(async () => {
    idp = await startOidcIssuer();
    const authenticator = await OidcAuthenticator.discover({ issuer: idp.issuer, audience: idp.audience, allowInsecureLoopback: true });
    const engine = new PolicyEngine();
    await engine.load(await compileAt(K8S_POLICY, 'taskgate/decision'));
    const gate = new Gatekeeper({ engine, tasks, reviews, audit });
    dir = await mkdtemp(join(tmpdir(), 'taskgate-kubectl-'));
    pki = await makePki(dir);
    api = fakeApiServer(seen, streams);
    await new Promise<void>((r) => api.listen(0, '127.0.0.1', r));
    proxy = await startHttpProxy({
      gate,
      authenticator,
      upstream: `http://127.0.0.1:${(api.address() as AddressInfo).port}`,
      resources: [{ name: 'k8s-prod', kubernetes: true, upstream_authorization: `Bearer ${SA_TOKEN}` }],
      maxHoldMs: 3000,
      // kubectl sends bearer tokens only over TLS.
      tls: { cert: pki.cert, key: pki.key },
    });
    alice = await idp.token('alice@example.com');
    await writeFile(join(dir, 'ca.pem'), pki.ca);
    for (const task of ['OPS-1', 'OPS-9']) {
      await writeFile(
        join(dir, `kubeconfig-${task}`),
        `apiVersion: v1
kind: Config
clusters:
- name: taskgate
  cluster:
    server: ${proxy.url}/task/${task}
    certificate-authority: ${join(dir, 'ca.pem')}
users:
- name: alice
  user:
    token: ${alice}
contexts:
- name: taskgate
  context: {cluster: taskgate, user: alice}
current-context: taskgate
`,
      );
    }
  });
  after(async () => {
    for (const p of reviews.list()) reviews.deny(p.id, { subject: 'bob@example.com', groups: [] }, 'test over');
    for (const s of streams) s.socket.destroy();
    for (const s of upgraded) s.destroy();
    await proxy?.close();
    api?.closeAllConnections();
    await new Promise<void>((r) => (api ? api.close(() => r()) : r()));
    await idp?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const kubectl = (args: string[], task = 'OPS-1') =>
    new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
      execFile(
        'kubectl',
        ['--kubeconfig', join(dir, `kubeconfig-${task}`), '--cache-dir', join(dir, `cache-${task}`), '--request-timeout', '10s', ...args],
        { timeout: 30_000, env: { PATH: process.env.PATH ?? '', HOME: dir } },
        (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
      );
    });

  it('kubectl get pods -n shop: allowed, upstream sees the service credential, never the user token or task header', async () => {
    const r = await kubectl(['get', 'pods', '-n', 'shop', '-o', 'name']);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(r.stdout.trim().split('\n'), ['pod/web-1', 'pod/web-2']);
    const list = seen.filter((s) => s.url.startsWith('/api/v1/namespaces/shop/pods'));
    assert.ok(list.length > 0);
    for (const s of seen) {
      assert.equal(s.authorization, `Bearer ${SA_TOKEN}`);
      assert.equal(s.task, undefined);
      assert.ok(!s.url.startsWith('/task/'), 'task prefix stripped before forwarding');
    }
    const ev = audit.ofType('decision').find((e) => e.command?.startsWith('GET /api/v1/namespaces/shop/pods'));
    assert.equal(ev?.decision, 'allow');
    assert.equal(ev?.subject, 'alice@example.com');
    assert.equal(ev?.task_id, 'OPS-1');
  });

  it('kubectl get pods -n kube-system: denied with the reason and the task, nothing reaches the API server', async () => {
    const before = seen.length;
    const r = await kubectl(['get', 'pods', '-n', 'kube-system', '-o', 'name']);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /Error from server \(Forbidden\): taskgate: not permitted for this task \(task OPS-1\)/);
    assert.ok(!seen.slice(before).some((s) => s.url.includes('kube-system')));
  });

  it('kubectl get secret -o json: data values are masked on the way back', async () => {
    const r = await kubectl(['get', 'secret', 'db', '-n', 'shop', '-o', 'json']);
    assert.equal(r.code, 0, r.stderr);
    const s = JSON.parse(r.stdout) as typeof SECRET;
    assert.equal(s.metadata.name, 'db');
    assert.notEqual(s.data.password, SECRET.data.password);
    assert.notEqual(s.data.username, SECRET.data.username);
    assert.ok(!r.stdout.includes('aHVudGVyMg=='));
    const m = audit.ofType('masking_applied').at(-1);
    assert.deepEqual(m?.masked, { 'data.password': 1, 'data.username': 1 });
  });

  it('kubectl delete pod: held for review, approved by the reviewer, then forwarded', async () => {
    const off = reviews.onRequest((id, spec) => {
      assert.match(spec.command, /^DELETE \/api\/v1\/namespaces\/shop\/pods\/web-1(\?|$)/);
      setTimeout(() => reviews.approve(id, { subject: 'bob@example.com', groups: [] }), 100);
    });
    try {
      const r = await kubectl(['delete', 'pod', 'web-1', '-n', 'shop', '--wait=false']);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /pod "web-1" deleted/);
      assert.ok(seen.some((s) => s.method === 'DELETE' && s.url.startsWith('/api/v1/namespaces/shop/pods/web-1')));
    } finally {
      off();
    }
  });

  it('kubectl delete pod with no reviewer answer: denied naming the pending review, nothing deleted', async () => {
    const r = await kubectl(['delete', 'pod', 'web-2', '-n', 'shop', '--wait=false']);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /Forbidden.*review rv_[0-9a-f-]+ is pending \(approvers: bob@example.com\); retry after approval/);
    assert.ok(!seen.some((s) => s.method === 'DELETE' && s.url.endsWith('/web-2')));
  });

  it('kubectl get pods -w streams: the first event arrives while the watch is still open', async () => {
    const child = spawn('kubectl', ['--kubeconfig', join(dir, 'kubeconfig-OPS-1'), '--cache-dir', join(dir, 'cache-OPS-1'), 'get', 'pods', '-n', 'shop', '-w', '-o', 'name'], {
      env: { PATH: process.env.PATH ?? '', HOME: dir },
    });
    try {
      const out = await new Promise<string>((resolve, reject) => {
        let buf = '';
        const t = setTimeout(() => reject(new Error(`no watch output within 15 s: ${buf}`)), 15_000);
        child.stdout.on('data', (d: Buffer) => {
          buf += d;
          // web-3 exists only in the watch stream (the initial list has web-1 and web-2).
          if (buf.includes('pod/web-3')) {
            clearTimeout(t);
            resolve(buf);
          }
        });
        child.on('exit', (c) => reject(new Error(`kubectl exited ${c} before the event`)));
      });
      assert.match(out, /pod\/web-3/);
      assert.equal(child.exitCode, null, 'kubectl is still watching');
      assert.ok(streams.size > 0, 'the upstream watch is still open');
    } finally {
      child.kill('SIGKILL');
    }
  });

  const upgradeReq = (task: string) =>
    new Promise<{ status: number; data: string }>((resolve, reject) => {
      const req = request(`${proxy.url}/task/${task}/api/v1/namespaces/shop/pods/web-1/exec?command=sh&stdin=true`, {
        headers: { authorization: `Bearer ${alice}`, connection: 'Upgrade', upgrade: 'websocket' },
        ca: pki.ca,
      });
      req.on('upgrade', (_res, socket) => {
        socket.write('hello');
        socket.once('data', (d) => {
          socket.destroy();
          resolve({ status: 101, data: d.toString() });
        });
      });
      req.on('response', (res) => {
        let b = '';
        res.on('data', (d) => (b += d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, data: b }));
      });
      req.on('error', reject);
      req.setTimeout(10_000, () => req.destroy(new Error('upgrade timed out')));
      req.end();
    });

  it('exec upgrades are denied unless the policy allows them, and then spliced to the upstream', async () => {
    const denied = await upgradeReq('OPS-1');
    assert.equal(denied.status, 403);
    assert.match(JSON.parse(denied.data).message, /not permitted for this task/);
    assert.ok(!seen.some((s) => s.method.startsWith('UPGRADE')));
    const ok = await upgradeReq('OPS-9');
    assert.equal(ok.status, 101);
    assert.equal(ok.data, 'echo:hello');
    const up = seen.find((s) => s.method.startsWith('UPGRADE'));
    assert.equal(up?.authorization, `Bearer ${SA_TOKEN}`);
  });

  it('an unreachable upstream is a 502, and the proxy keeps serving', async () => {
    const engine = new PolicyEngine();
    await engine.load(await compileAt(K8S_POLICY, 'taskgate/decision'));
    const gate = new Gatekeeper({ engine, tasks, reviews, audit });
    const dead = await startHttpProxy({ gate, upstream: 'http://127.0.0.1:1', resources: [{ name: 'k8s-prod', kubernetes: true }], authenticator: { authenticate: async () => ({ subject: 'alice@example.com', groups: [], issuer: 'x', type: 'user' }) } });
    try {
      const r = await fetch(`${dead.url}/task/OPS-1/api/v1/namespaces/shop/pods`, { headers: { authorization: 'Bearer x' } });
      assert.equal(r.status, 502);
      assert.match(await r.text(), /upstream unreachable/);
    } finally {
      await dead.close();
    }
  });
});
