import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { mkdtemp, rename, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { PolicyEngine, NO_POLICY_REASON } from '../../../core/engine/engine.ts';
import { FileBundleSource, HttpBundleSource } from '../../../core/engine/bundle-source.ts';
import { Metrics } from '../../../core/metrics.ts';
import { compileRego, constantPolicy } from '../../support/bundles.ts';
import { waitFor } from '../../../devenv/net.ts';

const EXPIRY_POLICY = `package taskgate
import rego.v1
default decision := {"result": "deny", "reasons": ["task expired or unknown"], "mask": [], "obligations": {}}
decision := {"result": "allow", "reasons": ["task open"], "mask": [{"column": "*.card", "strategy": "partial"}], "obligations": {"max_rows": 10}} if {
  time.now_ns() < time.parse_rfc3339_ns(input.task.expires_at)
}
`;

describe('PolicyEngine', () => {
  let allow: Buffer;
  let deny: Buffer;
  let expiry: Buffer;
  before(async () => {
    [allow, deny, expiry] = await Promise.all([compileRego(constantPolicy('allow')), compileRego(constantPolicy('deny')), compileRego(EXPIRY_POLICY)]);
  });

  it('denies everything with "no policy loaded" before a bundle is loaded', () => {
    const e = new PolicyEngine();
    const d = e.evaluate({ review: { status: 'none' } });
    assert.equal(d.result, 'deny');
    assert.deepEqual(d.reasons, [NO_POLICY_REASON]);
    assert.equal(d.synthetic, true);
  });

  it('evaluates the compiled WASM decision', async () => {
    const e = new PolicyEngine();
    await e.load(allow);
    const d = e.evaluate({ review: { status: 'none' } });
    assert.equal(d.result, 'allow');
    assert.deepEqual(d.reasons, ['constant allow']);
    assert.match(d.policy_revision, /^sha256:/);
    assert.ok(d.eval_ns > 0);
  });

  it('denies an expired task through the WASM path with the host-provided time.now_ns', async () => {
    let now = Date.parse('2026-11-30T00:00:00Z');
    const e = new PolicyEngine({ now: () => now });
    await e.load(expiry);
    const input = { task: { expires_at: '2026-12-01T00:00:00Z' } };
    const open = e.evaluate(input);
    assert.equal(open.result, 'allow');
    assert.deepEqual(open.mask, [{ column: '*.card', strategy: 'partial' }]);
    assert.deepEqual(open.obligations, { max_rows: 10 });
    now = Date.parse('2026-12-01T00:00:01Z');
    const expired = e.evaluate(input);
    assert.equal(expired.result, 'deny');
    assert.deepEqual(expired.reasons, ['task expired or unknown']);
  });

  it('denies an input that is not an object', async () => {
    const e = new PolicyEngine();
    await e.load(allow);
    for (const bad of [null, 42, 'x', [1]]) {
      const d = e.evaluate(bad);
      assert.equal(d.result, 'deny');
      assert.match(d.reasons[0]!, /not an object/);
    }
  });

  it('keeps the last good bundle when a new one is corrupt, and reports why', async () => {
    const e = new PolicyEngine();
    await e.load(allow, 'good');
    const rev = e.revision;
    const cases: [Buffer, RegExp][] = [
      [Buffer.from('not gzip at all'), /not gzip/],
      [allow.subarray(0, allow.length >> 1), /truncated|corrupt/],
      [gzipSync(Buffer.alloc(1024)), /policy\.wasm|no /],
      [gzipSync(Buffer.from('garbage'.repeat(100))), /not a valid tar archive/],
    ];
    for (const [buf, re] of cases) {
      await assert.rejects(e.load(buf, 'bad'), (err: Error) => re.test(err.message));
      assert.equal(e.revision, rev);
      assert.equal(e.evaluate({ review: { status: 'none' } }).result, 'allow');
      assert.match(e.status().last_error!, re);
    }
  });

  it('denies when the policy returns something that is not a decision', async () => {
    const e = new PolicyEngine();
    await e.load(await compileRego('package taskgate\nimport rego.v1\ndecision := {"result": "maybe", "reasons": []}\n'));
    const d = e.evaluate({});
    assert.equal(d.result, 'deny');
    assert.match(d.reasons[0]!, /invalid decision: decision.result must be allow\|deny\|review/);
    const e2 = new PolicyEngine();
    await e2.load(await compileRego('package taskgate\nimport rego.v1\ndecision := {"result": "review", "reasons": ["x"]}\n'));
    assert.match(e2.evaluate({}).reasons[0]!, /decision.review is required when result is review/);
  });

  it('denies when the policy leaves the decision undefined', async () => {
    const e = new PolicyEngine();
    await e.load(await compileRego('package taskgate\nimport rego.v1\ndecision := {"result": "allow", "reasons": []} if input.never\n'));
    assert.match(e.evaluate({}).reasons[0]!, /no decision/);
  });

  it('turns an evaluation error into a deny', async () => {
    const e = new PolicyEngine();
    // Conflicting complete-rule values raise an evaluation error in OPA (and the WASM module).
    await e.load(await compileRego('package taskgate\nimport rego.v1\ndecision := {"result": "allow", "reasons": ["a"]} if input.x\ndecision := {"result": "deny", "reasons": ["b"]} if input.y\n'));
    const d = e.evaluate({ x: true, y: true });
    assert.equal(d.result, 'deny');
    assert.match(d.reasons[0]!, /evaluation error/);
  });

  it('counts decisions and latency in Prometheus metrics', async () => {
    const metrics = new Metrics();
    const e = new PolicyEngine({ metrics });
    e.evaluate({});
    await e.load(allow);
    e.evaluate({ review: { status: 'none' } }, 'postgres');
    const { body } = await metrics.render();
    assert.match(body, /taskgate_decisions_total\{protocol="unknown",result="deny"\} 1/);
    assert.match(body, /taskgate_decisions_total\{protocol="postgres",result="allow"\} 1/);
    assert.match(body, /taskgate_decision_duration_seconds_count\{protocol="postgres"\} 1/);
    assert.match(body, /taskgate_bundle_info\{revision="sha256:[0-9a-f]+"\} 1/);
  });

  describe('FileBundleSource', () => {
    it('starts with no file (deny), loads it when it appears, hot-reloads on atomic replace, keeps the last good on corruption', async () => {
      const dir = await mkdtemp(join(tmpdir(), 'tg-src-'));
      const path = join(dir, 'bundle.tar.gz');
      const e = new PolicyEngine();
      const src = new FileBundleSource(e, path, { intervalMs: 20 });
      await src.start();
      try {
        assert.equal(e.evaluate({ review: { status: 'none' } }).reasons[0], NO_POLICY_REASON);
        await writeFile(path + '.tmp', allow);
        await rename(path + '.tmp', path);
        await waitFor(() => e.evaluate({ review: { status: 'none' } }).result === 'allow', 5000);
        await writeFile(path + '.tmp', deny);
        await rename(path + '.tmp', path);
        await waitFor(() => e.evaluate({ review: { status: 'none' } }).result === 'deny', 5000);
        const rev = e.revision;
        await writeFile(path + '.tmp', Buffer.from('corrupt'));
        await rename(path + '.tmp', path);
        await waitFor(() => e.status().last_error !== undefined, 5000);
        assert.equal(e.revision, rev);
        assert.equal(e.evaluate({ review: { status: 'none' } }).reasons[0], 'constant deny');
      } finally {
        src.stop();
      }
    });
  });

  describe('HttpBundleSource (OPA bundle protocol)', () => {
    let server: Server;
    let url: string;
    let current: Buffer;
    let etag = '"v1"';
    const seen: (string | undefined)[] = [];
    before(async () => {
      current = allow;
      server = createServer((req, res) => {
        seen.push(req.headers['if-none-match'] as string | undefined);
        if (req.headers['if-none-match'] === etag) {
          res.writeHead(304).end();
          return;
        }
        res.writeHead(200, { etag, 'content-type': 'application/gzip' }).end(current);
      });
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
      const a = server.address();
      url = `http://127.0.0.1:${typeof a === 'object' && a ? a.port : 0}/bundles/taskgate.tar.gz`;
    });
    after(() => server.close());

    it('downloads, then polls with If-None-Match: 304 keeps the bundle, a new ETag loads the new one', async () => {
      const e = new PolicyEngine();
      const src = new HttpBundleSource(e, url, { minDelaySeconds: 3600, maxDelaySeconds: 3600 });
      try {
        await src.start();
        assert.equal(e.evaluate({ review: { status: 'none' } }).result, 'allow');
        assert.equal(await src.poll(), 'not_modified');
        assert.equal(seen.at(-1), '"v1"');
        current = deny;
        etag = '"v2"';
        assert.equal(await src.poll(), 'loaded');
        assert.equal(e.evaluate({ review: { status: 'none' } }).result, 'deny');
        current = Buffer.from('broken');
        etag = '"v3"';
        assert.equal(await src.poll(), 'error');
        assert.equal(e.evaluate({ review: { status: 'none' } }).result, 'deny');
        assert.match(e.status().last_error!, /not gzip/);
      } finally {
        src.stop();
      }
    });

    it('an unreachable bundle server leaves the engine denying with "no policy loaded"', async () => {
      const e = new PolicyEngine();
      const src = new HttpBundleSource(e, 'http://127.0.0.1:9/nope.tar.gz', { minDelaySeconds: 3600, maxDelaySeconds: 3600, timeoutMs: 2000 });
      try {
        assert.equal(await src.poll(), 'error');
        assert.equal(e.evaluate({}).reasons[0], NO_POLICY_REASON);
      } finally {
        src.stop();
      }
    });
  });
});
