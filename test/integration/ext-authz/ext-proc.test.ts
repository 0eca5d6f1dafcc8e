import assert from 'node:assert/strict';
import { gzipSync } from 'node:zlib';
import { after, before, describe, it } from 'node:test';
import { credentials } from '@grpc/grpc-js';
import { MemoryAuditSink } from '../../../core/audit/event.ts';
import { PolicyEngine } from '../../../core/engine/engine.ts';
import { Gatekeeper } from '../../../core/gate.ts';
import type { Authenticator } from '../../../core/identity/identity.ts';
import { InProcessReviews } from '../../../core/reviews.ts';
import { StaticTaskRegistry } from '../../../core/tasks.ts';
import { envoyServices } from '../../../ext-authz/protos.ts';
import { startExtAuthz, type ExtAuthzHandle } from '../../../ext-authz/server.ts';
import { authzClient, compileAt, envoyCheck, K8S_POLICY, okHeader, type Envoy } from './fixtures.ts';

type Msg = Record<string, any>;

/** A real bidi stream to ExternalProcessor/Process: send one message, read one answer. */
function processStream(address: string) {
  const { ExternalProcessorClient } = envoyServices();
  const client = new ExternalProcessorClient(address, credentials.createInsecure());
  const call = client.Process({ deadline: new Date(Date.now() + 10_000) });
  const queue: Msg[] = [];
  const waiters: ((m: Msg | undefined) => void)[] = [];
  let ended = false;
  call.on('data', (m: Msg) => (waiters.length ? waiters.shift()!(m) : queue.push(m)));
  call.on('end', () => {
    ended = true;
    for (const w of waiters.splice(0)) w(undefined);
  });
  call.on('error', () => undefined);
  return {
    send: (m: Msg): Promise<Msg | undefined> => {
      call.write(m);
      if (queue.length) return Promise.resolve(queue.shift());
      if (ended) return Promise.resolve(undefined);
      return new Promise((resolve, reject) => {
        const t = setTimeout(() => reject(new Error('no ext_proc answer within 5 s')), 5000);
        waiters.push((x) => (clearTimeout(t), resolve(x)));
      });
    },
    close: () => {
      call.end();
      client.close();
    },
  };
}

const hmap = (h: Record<string, string>) => ({ headers: Object.entries(h).map(([key, value]) => ({ key, rawValue: Buffer.from(value) })) });
const reqHeaders = (h: Record<string, string>, metadataContext?: Msg) => ({ requestHeaders: { headers: hmap(h) }, ...(metadataContext ? { metadataContext } : {}) });
const respHeaders = (h: Record<string, string>) => ({ responseHeaders: { headers: hmap({ ':status': '200', ...h }) } });
const body = (b: string | Buffer, end: boolean) => ({ responseBody: { body: Buffer.from(b), endOfStream: end } });
const replaced = (m: Msg | undefined) => {
  const bm = m?.responseBody?.response?.bodyMutation;
  if (!bm) return undefined;
  return bm.clearBody ? '' : Buffer.from(bm.body ?? []).toString();
};

describe('ext_proc response masking (real bidi gRPC stream)', () => {
  let srv: ExtAuthzHandle;
  let envoy: Envoy;
  const audit = new MemoryAuditSink();
  const auth: Authenticator = { authenticate: async (t) => ({ subject: t, groups: [], issuer: 'test', type: 'user' }) };

  before(async () => {
    const engine = new PolicyEngine();
    await engine.load(await compileAt(K8S_POLICY, 'taskgate/decision'));
    const tasks = new StaticTaskRegistry([
      { id: 'OPS-1', type: 'k8s-debug', assignee: 'alice@example.com', reviewers: ['bob@example.com'], state: 'open', expires_at: new Date(Date.now() + 3600_000).toISOString() },
    ]);
    const gate = new Gatekeeper({ engine, tasks, reviews: new InProcessReviews(), audit });
    srv = await startExtAuthz({
      gate,
      authenticator: auth,
      resources: [{ name: 'k8s', kubernetes: true }, { name: 'cards-api' }],
      extProc: { maxBytes: 4096 },
    });
    envoy = authzClient(srv.address);
  });
  after(async () => {
    envoy?.close();
    await srv?.close();
  });

  async function decision(method: string, path: string, resource?: string): Promise<{ id: string; res: Msg }> {
    const res = await envoy.check(envoyCheck(method, path, { authorization: 'Bearer alice@example.com', 'x-taskgate-task': 'OPS-1' }, resource ? { context: { taskgate_resource: resource } } : {}));
    assert.equal(res.status.code, 0);
    return { id: okHeader(res, 'x-taskgate-decision-id')!, res };
  }

  it('masks Kubernetes Secret data in a STREAMED body: chunks withheld until the end, then the masked document', async () => {
    const { id } = await decision('GET', '/api/v1/namespaces/shop/secrets/db');
    const s = processStream(srv.address);
    try {
      const rh = await s.send(reqHeaders({ ':path': '/api/v1/namespaces/shop/secrets/db', 'x-taskgate-decision-id': id, 'accept-encoding': 'gzip' }));
      assert.deepEqual(rh?.requestHeaders?.response?.headerMutation?.removeHeaders, ['accept-encoding']);
      const ph = await s.send(respHeaders({ 'content-type': 'application/json', 'content-length': '120' }));
      assert.deepEqual(ph?.responseHeaders?.response?.headerMutation?.removeHeaders, ['content-length']);
      const doc = JSON.stringify({ kind: 'Secret', apiVersion: 'v1', metadata: { name: 'db' }, data: { password: 'aHVudGVyMg==' } });
      assert.equal(replaced(await s.send(body(doc.slice(0, 40), false))), '');
      const last = replaced(await s.send(body(doc.slice(40), true)))!;
      const masked = JSON.parse(last);
      assert.equal(masked.metadata.name, 'db');
      assert.notEqual(masked.data.password, 'aHVudGVyMg==');
      assert.ok(!last.includes('aHVudGVyMg=='));
      assert.deepEqual(audit.ofType('masking_applied').at(-1)?.masked, { 'data.password': 1 });
    } finally {
      s.close();
    }
  });

  it('masks card numbers by detector in a BUFFERED body (one message) and a gzip-encoded one', async () => {
    const { id } = await decision('GET', '/v1/cards', 'cards-api');
    for (const gz of [false, true]) {
      const s = processStream(srv.address);
      try {
        await s.send(reqHeaders({ 'x-taskgate-decision-id': id }));
        const ph = await s.send(respHeaders({ 'content-type': 'application/json; charset=utf-8', ...(gz ? { 'content-encoding': 'gzip' } : {}) }));
        assert.deepEqual(ph?.responseHeaders?.response?.headerMutation?.removeHeaders, gz ? ['content-length', 'content-encoding'] : ['content-length']);
        const doc = JSON.stringify({ cards: [{ holder: 'A', number: '4111 1111 1111 1111' }] });
        const out = replaced(await s.send(body(gz ? gzipSync(doc) : doc, true)))!;
        assert.ok(!out.includes('4111 1111 1111 1111'), out);
        assert.match(JSON.parse(out).cards[0].number, /1111$/);
      } finally {
        s.close();
      }
    }
  });

  it('streams a Kubernetes watch line by line, masked', async () => {
    const { id } = await decision('GET', '/api/v1/namespaces/shop/secrets/db');
    const s = processStream(srv.address);
    try {
      await s.send(reqHeaders({ 'x-taskgate-decision-id': id }));
      await s.send(respHeaders({ 'content-type': 'application/json;stream=watch' }));
      // Lines are released as soon as they complete; each is masked on its own.
      const first = replaced(await s.send(body('{"type":"ADDED","object":{"kind":"Secret","data":{"a":"eA=="}}}\n{"type":"MOD', false)));
      assert.match(first!, /^\{"type":"ADDED"/);
      assert.ok(first!.endsWith('\n'));
      assert.ok(!first!.includes('eA=='), first);
      const second = replaced(await s.send(body('IFIED","object":{}}\n', true)));
      assert.equal(second, '{"type":"MODIFIED","object":{}}\n');
    } finally {
      s.close();
    }
  });

  it('a body over the limit is replaced by an error (fail closed)', async () => {
    const { id } = await decision('GET', '/api/v1/namespaces/shop/secrets/db');
    const s = processStream(srv.address);
    try {
      await s.send(reqHeaders({ 'x-taskgate-decision-id': id }));
      await s.send(respHeaders({ 'content-type': 'application/json' }));
      const r = await s.send(body('{"data":"' + 'x'.repeat(5000) + '"}', true));
      assert.equal(r?.immediateResponse?.status?.code, 'BadGateway');
      assert.match(Buffer.from(r!.immediateResponse.body).toString(), /exceeds the masking limit of 4096 bytes/);
    } finally {
      s.close();
    }
  });

  it('a response that cannot be masked (binary) is withheld', async () => {
    const { id } = await decision('GET', '/api/v1/namespaces/shop/secrets/db');
    const s = processStream(srv.address);
    try {
      await s.send(reqHeaders({ 'x-taskgate-decision-id': id }));
      const r = await s.send(respHeaders({ 'content-type': 'application/vnd.kubernetes.protobuf' }));
      assert.equal(r?.immediateResponse?.status?.code, 'BadGateway');
    } finally {
      s.close();
    }
  });

  it('a decision without mask rules passes the body through untouched', async () => {
    const { id } = await decision('GET', '/api/v1/namespaces/shop/pods');
    const s = processStream(srv.address);
    try {
      const rh = await s.send(reqHeaders({ 'x-taskgate-decision-id': id }));
      assert.equal(rh?.requestHeaders?.response?.headerMutation, undefined);
      await s.send(respHeaders({ 'content-type': 'application/json' }));
      const r = await s.send(body('{"items":[]}', true));
      assert.equal(r?.responseBody?.response?.bodyMutation, undefined);
    } finally {
      s.close();
    }
  });

  it('no decision id, or an unknown one, is a 403: the request did not pass ext_authz', async () => {
    for (const h of [{}, { 'x-taskgate-decision-id': '00000000-0000-0000-0000-000000000000' }] as Record<string, string>[]) {
      const s = processStream(srv.address);
      try {
        const r = await s.send(reqHeaders(h));
        assert.equal(r?.immediateResponse?.status?.code, 'Forbidden');
      } finally {
        s.close();
      }
    }
  });

  it('reads the mask rules from ext_authz dynamic metadata forwarded by Envoy (another replica decided)', async () => {
    const { res } = await decision('GET', '/api/v1/namespaces/shop/secrets/db');
    const md = res.dynamicMetadata;
    assert.equal(JSON.parse(md.fields.taskgate_mask.stringValue)[0].field, 'data.*');
    const foreignId = '11111111-2222-3333-4444-555555555555';
    md.fields.taskgate_decision_id = { stringValue: foreignId };
    const s = processStream(srv.address);
    try {
      const rh = await s.send(reqHeaders({ 'x-taskgate-decision-id': foreignId }, { filterMetadata: { 'envoy.filters.http.ext_authz': md } }));
      assert.deepEqual(rh?.requestHeaders?.response?.headerMutation?.removeHeaders, ['accept-encoding']);
      await s.send(respHeaders({ 'content-type': 'application/json' }));
      const out = replaced(await s.send(body('{"data":{"k":"c2VjcmV0"}}', true)));
      assert.ok(!out!.includes('c2VjcmV0'));
    } finally {
      s.close();
    }
  });
});
