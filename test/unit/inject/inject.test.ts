import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { parseAllDocuments } from 'yaml';
import { injectManifest } from '../../../inject/manifest.ts';
import { injectPod, rewriteEndpoint, SIDECAR_NAME, type PodLike } from '../../../inject/pod.ts';
import { review, startInjectionWebhook, type AdmissionReview } from '../../../inject/webhook.ts';

const OPTS = { image: 'taskgate/taskgate:0.1.0' };

const MANIFEST = `# orders service: owned by team-orders
apiVersion: apps/v1
kind: Deployment
metadata:
  name: orders-worker # the batch worker
  labels: {app: orders}
spec:
  replicas: 2
  selector:
    matchLabels: {app: orders}
  template:
    metadata:
      labels: {app: orders}
      annotations:
        taskgate.io/inject: "true"
        taskgate.io/endpoints: DATABASE_URL=127.0.0.1:15432,KUBE_API=127.0.0.1:18443
    spec:
      containers:
        - name: worker
          image: registry.example.com/orders-worker:1.4.2
          env:
            - name: DATABASE_URL
              value: postgres://orders@orders-db.prod.svc:5432/orders?sslmode=require
            - name: KUBE_API
              value: https://kubernetes.default.svc
            - name: LOG_LEVEL
              value: debug # keep while debugging OPS-123
      volumes:
        - name: scratch
          emptyDir: {}
---
apiVersion: v1
kind: Service
metadata:
  name: orders
spec:
  ports: [{port: 80}]
---
apiVersion: batch/v1
kind: CronJob
metadata:
  name: nightly-report
spec:
  schedule: "0 3 * * *"
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: OnFailure
          containers:
            - name: report
              image: registry.example.com/report:2
              env:
                - {name: PGHOST, value: reports-db.prod.svc}
`;

describe('sidecar injection', () => {
  it('rewrites endpoints in URLs, libpq strings and bare hosts', () => {
    assert.equal(rewriteEndpoint('postgres://u:p@db.svc:5432/x?a=b', '127.0.0.1:15432'), 'postgres://u:p@127.0.0.1:15432/x?a=b');
    assert.equal(rewriteEndpoint('https://kubernetes.default.svc', '127.0.0.1:18443'), 'https://127.0.0.1:18443');
    assert.equal(rewriteEndpoint('host=db.svc port=5432 dbname=x', '127.0.0.1:15432'), 'host=127.0.0.1 port=15432 dbname=x');
    assert.equal(rewriteEndpoint('db.svc', '127.0.0.1:15432'), '127.0.0.1');
    assert.equal(rewriteEndpoint('db.svc:5432', '127.0.0.1:15432'), '127.0.0.1:15432');
    assert.equal(rewriteEndpoint('!!!', '127.0.0.1:1'), undefined);
  });

  it('injects every workload of a manifest, preserving comments and untouched documents', () => {
    const { text, report } = injectManifest(MANIFEST, { ...OPTS, endpoints: { PGHOST: '127.0.0.1:15433' } });
    assert.deepEqual(
      report.map((r) => [r.kind, r.name, r.result]),
      [
        ['Deployment', 'orders-worker', 'injected'],
        ['Service', 'orders', 'not a workload'],
        ['CronJob', 'nightly-report', 'injected'],
      ],
    );
    for (const c of ['# orders service: owned by team-orders', '# the batch worker', '# keep while debugging OPS-123']) assert.ok(text.includes(c), `comment kept: ${c}`);
    const docs = parseAllDocuments(text).map((d) => d.toJSON());
    const dep = docs[0];
    const pod = dep.spec.template;
    assert.equal(pod.metadata.annotations['taskgate.io/status'], 'injected');
    const worker = pod.spec.containers[0];
    assert.equal(worker.env[0].value, 'postgres://orders@127.0.0.1:15432/orders?sslmode=require');
    assert.equal(worker.env[1].value, 'https://127.0.0.1:18443');
    assert.equal(worker.env[2].value, 'debug');
    assert.ok(!JSON.stringify(worker).includes('taskgate-credentials'), 'the application does not mount the upstream credentials');
    const side = pod.spec.containers[1];
    assert.equal(side.name, SIDECAR_NAME);
    assert.deepEqual(side.args, ['sidecar', '--config', '/etc/taskgate/taskgate.yaml']);
    assert.deepEqual(side.ports.map((p: { containerPort: number }) => p.containerPort), [15432, 15433, 18443, 9464]);
    assert.equal(side.securityContext.readOnlyRootFilesystem, true);
    assert.deepEqual(pod.spec.volumes.map((v: { name: string }) => v.name), ['scratch', 'taskgate-config', 'taskgate-credentials', 'taskgate-spool']);
    assert.deepEqual(docs[1], parseAllDocuments(MANIFEST)[1]!.toJSON(), 'the Service is unchanged');
    assert.equal(dep.spec.replicas, 2);
    const cron = docs[2].spec.jobTemplate.spec.template.spec;
    assert.equal(cron.containers[0].env[0].value, '127.0.0.1');
    assert.equal(cron.containers[1].name, SIDECAR_NAME);
  });

  it('is idempotent: injecting an injected manifest changes nothing', () => {
    const once = injectManifest(MANIFEST, OPTS).text;
    const twice = injectManifest(once, OPTS);
    assert.equal(twice.text, once);
    assert.ok(twice.report.filter((r) => r.kind !== 'Service').every((r) => r.result === 'skipped' && r.detail === 'already injected'));
  });

  it('--only-annotated leaves unannotated workloads alone; opt-out is honoured', () => {
    const { report } = injectManifest(MANIFEST, { ...OPTS, onlyAnnotated: true });
    assert.deepEqual(report.map((r) => r.result), ['injected', 'not a workload', 'skipped']);
    const pod: PodLike = { metadata: { annotations: { 'taskgate.io/inject': 'false' } }, spec: { containers: [{ name: 'a' }] } };
    assert.equal(injectPod(pod, OPTS).changed, false);
  });

  it('bad input is one clear error', () => {
    assert.throws(() => injectManifest('a: [', OPTS), /document 1 is not valid YAML/);
    const pod: PodLike = { metadata: { annotations: { 'taskgate.io/endpoints': 'DATABASE_URL' } }, spec: { containers: [{ name: 'a' }] } };
    assert.throws(() => injectPod(pod, OPTS), /"DATABASE_URL" is not ENV_VAR=host:port/);
  });

  describe('mutating admission webhook', () => {
    const admission = (object: unknown, extra: Partial<NonNullable<AdmissionReview['request']>> = {}): AdmissionReview => ({
      apiVersion: 'admission.k8s.io/v1',
      kind: 'AdmissionReview',
      request: {
        uid: '705ab4f5-6393-11e8-b7cc-42010a800002',
        kind: { group: '', version: 'v1', kind: 'Pod' },
        resource: { group: '', version: 'v1', resource: 'pods' },
        requestKind: { group: '', version: 'v1', kind: 'Pod' },
        requestResource: { group: '', version: 'v1', resource: 'pods' },
        name: '',
        namespace: 'shop',
        operation: 'CREATE',
        userInfo: { username: 'system:serviceaccount:kube-system:replicaset-controller', uid: 'x', groups: ['system:serviceaccounts'] },
        object,
        oldObject: null,
        dryRun: false,
        options: { apiVersion: 'meta.k8s.io/v1', kind: 'CreateOptions' },
        ...extra,
      } as NonNullable<AdmissionReview['request']>,
    });
    const pod = () => ({
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { generateName: 'orders-worker-7d9f-', namespace: 'shop', annotations: { 'taskgate.io/inject': 'true', 'taskgate.io/endpoints': 'DATABASE_URL=127.0.0.1:15432' } },
      spec: { containers: [{ name: 'worker', image: 'w:1', env: [{ name: 'DATABASE_URL', value: 'postgres://db.svc:5432/x' }] }] },
    });

    function applyPatch(obj: Record<string, unknown>, ops: { op: string; path: string; value: unknown }[]) {
      for (const o of ops) {
        const parts = o.path.split('/').slice(1);
        let cur = obj as Record<string, unknown>;
        for (const p of parts.slice(0, -1)) cur = cur[p] as Record<string, unknown>;
        cur[parts.at(-1)!] = o.value;
      }
      return obj;
    }

    it('answers a real AdmissionReview over HTTP with a JSONPatch equal to the CLI injection', async () => {
      const hook = await startInjectionWebhook(OPTS);
      try {
        const res = await fetch(`${hook.url}/mutate`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(admission(pod())) });
        assert.equal(res.status, 200);
        const body = (await res.json()) as AdmissionReview;
        assert.equal(body.kind, 'AdmissionReview');
        assert.equal(body.response!.uid, '705ab4f5-6393-11e8-b7cc-42010a800002');
        assert.equal(body.response!.allowed, true);
        assert.equal(body.response!.patchType, 'JSONPatch');
        const patched = applyPatch(pod(), JSON.parse(Buffer.from(body.response!.patch!, 'base64').toString()));
        const expected = pod() as unknown as PodLike;
        injectPod(expected, OPTS);
        assert.deepEqual(patched, expected);
        const bad = await fetch(`${hook.url}/mutate`, { method: 'POST', body: '{"kind":"nope"}' });
        assert.equal(bad.status, 400);
      } finally {
        await hook.close();
      }
    });

    it('leaves unannotated pods and non-CREATE operations alone; refuses a pod it cannot inject', () => {
      const plain = pod();
      delete (plain.metadata.annotations as Record<string, string>)['taskgate.io/inject'];
      assert.deepEqual(review(admission(plain), OPTS), { uid: '705ab4f5-6393-11e8-b7cc-42010a800002', allowed: true });
      assert.equal(review(admission(pod(), { operation: 'UPDATE' }), OPTS).patch, undefined);
      const broken = pod();
      broken.metadata.annotations['taskgate.io/endpoints'] = 'oops';
      const r = review(admission(broken), OPTS);
      assert.equal(r.allowed, false);
      assert.match(r.status!.message, /not ENV_VAR=host:port/);
      assert.equal(review(admission(broken), { ...OPTS, failOpen: true }).allowed, true);
    });
  });
});
