/**
 * Approve-to-forward latency: 200 commands held through a real Gatekeeper
 * (fixture policy compiled to WASM) with ControlPlaneTasks/ControlPlaneReviews
 * connected to a real control plane (PGlite, then PostgreSQL), approved one
 * by one through the HTTP API with a real OIDC token. Measured: from the
 * approve call returning to the waiting gate.decide() resolving (and from the
 * call starting). Baseline in the same run: InProcessReviews (no network, no
 * storage). Target: p99 < 100 ms.
 *
 *   node --import tsx bench/approve-latency.ts        (BENCH_N=200)
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildBundle } from '../compiler/build.ts';
import { connectControlPlane } from '../control-plane/client/connect.ts';
import { ControlPlaneHttp } from '../control-plane/client/http.ts';
import { startControlPlane, type ControlPlaneOptions } from '../control-plane/server.ts';
import { MemoryAuditSink } from '../core/audit/event.ts';
import { PolicyEngine } from '../core/engine/engine.ts';
import { Gatekeeper, type GateOutcome, type SessionContext } from '../core/gate.ts';
import { OidcAuthenticator } from '../core/identity/oidc.ts';
import { InProcessReviews, type ReviewService } from '../core/reviews.ts';
import { StaticTaskRegistry, type TaskRegistry } from '../core/tasks.ts';
import { startOidcIssuer } from '../devenv/oidc-issuer.ts';
import { startPostgres } from '../devenv/postgres.ts';

const N = Number(process.env.BENCH_N ?? 200);
const SIDECAR = 'bench-sidecar-token-' + 'z'.repeat(20);

async function engine(): Promise<PolicyEngine> {
  const dir = await mkdtemp(join(tmpdir(), 'tg-bench-'));
  try {
    await buildBundle({ dir: new URL('../test/fixtures/control-plane/policy', import.meta.url).pathname, out: join(dir, 'b.tar.gz') });
    const e = new PolicyEngine();
    await e.load(await readFile(join(dir, 'b.tar.gz')));
    return e;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

const alice = { subject: 'alice@example.com', groups: [], issuer: 'bench', type: 'user' as const };
const session = (i: number): SessionContext => ({
  id: `s${i}`,
  started_at: new Date().toISOString(),
  identity: alice,
  task_id: 'BENCH-1',
  resource: { protocol: 'postgres', name: 'orders-db', labels: { timeout_s: '600' } },
});
const cmd = (i: number) => {
  const text = `UPDATE orders SET n = $1 WHERE id = ${i}`;
  return {
    request: { message: 'query' as const, statements: [{ command: 'UPDATE', class: 'write', tables: [], functions: [], fingerprint: `f${i}`, text, flags: [] }] },
    text,
    fingerprint: `f${i}`,
  };
};

interface Run {
  afterReturn: number[];
  fromCall: number[];
  beforeReturn: number;
}

/** Holds N commands, then approves them one at a time and times each forward. */
async function measure(tasks: TaskRegistry, reviews: ReviewService, eng: PolicyEngine, approve: (id: string) => Promise<void>): Promise<Run> {
  const gate = new Gatekeeper({ engine: eng, tasks, reviews, audit: new MemoryAuditSink() });
  const held: { id: string; done: Promise<GateOutcome> }[] = [];
  for (let i = 0; i < N; i++) {
    let hold!: (id: string) => void;
    const p = new Promise<string>((r) => (hold = r));
    const done = gate.decide(session(i), cmd(i), { onHold: (h) => hold(h.review_id) });
    held.push({ id: await p, done });
  }
  const run: Run = { afterReturn: [], fromCall: [], beforeReturn: 0 };
  for (const h of held) {
    let resolvedAt = 0;
    const resolved = h.done.then((o) => {
      resolvedAt = performance.now();
      if (!o.allowed) throw new Error(`not allowed: ${o.decision.reasons.join('; ')}`);
    });
    const t0 = performance.now();
    await approve(h.id);
    const t1 = performance.now();
    await resolved;
    if (resolvedAt <= t1) run.beforeReturn++;
    run.afterReturn.push(Math.max(0, resolvedAt - t1));
    run.fromCall.push(resolvedAt - t0);
  }
  return run;
}

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]!;
};

async function main() {
  const eng = await engine();
  const idp = await startOidcIssuer();
  const auth = await OidcAuthenticator.discover({ issuer: idp.issuer, audience: idp.audience, allowInsecureLoopback: true });
  const results: [string, Run][] = [];

  // Baseline: in-process reviews, no network, no storage.
  {
    const reviews = new InProcessReviews();
    const tasks = new StaticTaskRegistry([{ id: 'BENCH-1', type: 't', assignee: alice.subject, reviewers: ['bob@example.com'], state: 'open', expires_at: new Date(Date.now() + 3600_000).toISOString() }]);
    results.push(['in-process (baseline)', await measure(tasks, reviews, eng, async (id) => void reviews.approve(id, { subject: 'bob@example.com', groups: [] }))]);
  }

  const pg = await startPostgres();
  const storages: [string, ControlPlaneOptions['storage']][] = [
    ['control plane, PGlite', { kind: 'pglite' }],
    ['control plane, PostgreSQL', { kind: 'postgres', url: pg.url() }],
  ];
  for (const [name, storage] of storages) {
    const cp = await startControlPlane({ authenticator: auth, storage: storage!, serviceTokens: [{ name: 'bench', token: SIDECAR }], admins: ['carol@example.com'] });
    const client = connectControlPlane({ url: cp.url, token: SIDECAR });
    await client.ready();
    await new ControlPlaneHttp({ url: cp.url, token: await idp.token('carol@example.com') }).request('POST', '/api/v1/tasks', {
      id: 'BENCH-1',
      type: 't',
      assignee: alice.subject,
      reviewers: ['bob@example.com'],
      ttl_s: 3600,
    });
    const bob = new ControlPlaneHttp({ url: cp.url, token: await idp.token('bob@example.com') });
    results.push([name, await measure(client.tasks, client.reviews, eng, async (id) => void (await bob.request('POST', `/api/v1/reviews/${id}/approve`, {})))]);
    await client.close();
    await cp.close();
  }
  // Replicas: approve on A, the sidecar is connected to B (LISTEN/NOTIFY hop).
  {
    const opts = { authenticator: auth, storage: { kind: 'postgres' as const, url: pg.url() }, serviceTokens: [{ name: 'bench', token: SIDECAR }], admins: ['carol@example.com'] };
    const a = await startControlPlane(opts);
    const b = await startControlPlane(opts);
    const client = connectControlPlane({ url: b.url, token: SIDECAR });
    await client.ready();
    await new ControlPlaneHttp({ url: a.url, token: await idp.token('carol@example.com') }).request('POST', '/api/v1/tasks/BENCH-1/close', {});
    await pg.psql("DELETE FROM approvals; DELETE FROM grants; DELETE FROM webhook_deliveries; DELETE FROM review_requests; DELETE FROM tasks");
    await new ControlPlaneHttp({ url: a.url, token: await idp.token('carol@example.com') }).request('POST', '/api/v1/tasks', {
      id: 'BENCH-1',
      type: 't',
      assignee: alice.subject,
      reviewers: ['bob@example.com'],
      ttl_s: 3600,
    });
    const bob = new ControlPlaneHttp({ url: a.url, token: await idp.token('bob@example.com') });
    results.push(['2 replicas on PostgreSQL (approve on A, sidecar on B)', await measure(client.tasks, client.reviews, eng, async (id) => void (await bob.request('POST', `/api/v1/reviews/${id}/approve`, {})))]);
    await client.close();
    await a.close();
    await b.close();
  }
  await pg.stop();
  await idp.stop();

  const base = results[0]![1];
  console.log(`approve-to-forward over ${N} held commands (ms; "after return" = approve API call returned -> gate.decide resolved)`);
  console.log('| setup | after return p50 | p99 | max | from call p50 | p99 | resolved before the call returned | p99 vs baseline |');
  console.log('| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
  for (const [name, r] of results) {
    const f = (x: number) => x.toFixed(2);
    console.log(
      `| ${name} | ${f(pct(r.afterReturn, 50))} | ${f(pct(r.afterReturn, 99))} | ${f(Math.max(...r.afterReturn))} | ${f(pct(r.fromCall, 50))} | ${f(pct(r.fromCall, 99))} | ${r.beforeReturn}/${N} | ${(pct(r.fromCall, 99) / pct(base.fromCall, 99)).toFixed(1)}x |`,
    );
  }
  const worst = Math.max(...results.slice(1).map(([, r]) => pct(r.fromCall, 99)));
  console.log(`target p99 < 100 ms (from the approve call): ${worst < 100 ? 'met' : 'NOT met'} (worst ${worst.toFixed(1)} ms)`);
}

await main();
