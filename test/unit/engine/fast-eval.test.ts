import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { PolicyEngine } from '../../../core/engine/engine.ts';
import { buildBundle } from '../../../compiler/build.ts';
import { loadTables } from '../../../compiler/tables.ts';
import { compileRego } from '../../support/bundles.ts';
import { loadPolicy } from '@open-policy-agent/opa-wasm';
import { fastEvaluator } from '../../../core/engine/fast-eval.ts';
import { parseBundle } from '../../../core/engine/bundle.ts';
import { hostBuiltins } from '../../../core/engine/host-builtins.ts';
import type { EvaluatedDecision } from '../../../core/policy-contract.ts';

// The engine's direct opa_eval call (core/engine/fast-eval.ts) and cached host
// builtins must decide exactly as opa-wasm's LoadedPolicy.evaluate does.

const POLICIES = resolve(import.meta.dirname, '../../../policies');
const strip = ({ eval_ns: _n, ...d }: EvaluatedDecision) => d;

// glob.match and regex.match keep compiled patterns in OPA's builtin cache, which lives as long as the heap.
const PATTERN_POLICY = `package taskgate
decision := {"result": r, "reasons": [input.path], "mask": [], "obligations": {"glob": g, "re": x, "dyn": d}} if {
  g := glob.match("/people/*", ["/"], input.path)
  x := regex.match("^/people/[0-9]+$", input.path)
  d := glob.match(input.pattern, [], input.path)
  r := "allow"
}
`;

const ECHO_POLICY = `package taskgate
decision := {"result": "deny", "reasons": [input.text, sprintf("%d", [count(input.text)])], "mask": [], "obligations": {"now": time.now_ns(), "exp": time.parse_rfc3339_ns(input.exp)}}
`;

describe('direct evaluation', () => {
  let tmp: string;
  let reference: Buffer;
  before(async () => {
    tmp = await mkdtemp(join(tmpdir(), 'taskgate-fast-eval-'));
    reference = await readFile((await buildBundle({ dir: POLICIES, out: join(tmp, 'ref.tar.gz') })).out);
  });
  after(() => rm(tmp, { recursive: true, force: true }));

  it('is available for the opa-wasm version in use (else the engine silently falls back)', async () => {
    const b = parseBundle(reference, 'taskgate/decision');
    const policy = await loadPolicy(b.wasm, undefined, hostBuiltins(() => Date.parse('2026-06-01T00:00:00Z')));
    policy.setData(b.data as object);
    const fast = fastEvaluator(policy);
    assert.equal(typeof fast, 'function');
    const ep = (policy.entrypoints as Record<string, number>)['taskgate/decision'] as number;
    const input = { task: { id: 'OPS-1' } };
    assert.deepEqual(fast!(input, ep), policy.evaluate(input, ep));
  });

  it('agrees with LoadedPolicy.evaluate on every reference decision-table case, clock included', async () => {
    let now = 0;
    const direct = new PolicyEngine({ now: () => now });
    const plain = new PolicyEngine({ now: () => now, directEval: false });
    await direct.load(reference);
    await plain.load(reference);
    const cases = await loadTables(POLICIES);
    assert.ok(cases.length >= 100);
    const results = new Set<string>();
    for (const c of cases) {
      now = Date.parse(c.now);
      const a = direct.evaluate(c.input);
      const b = plain.evaluate(c.input);
      assert.deepEqual(strip(a), strip(b), c.name);
      assert.equal(a.synthetic, undefined, `${c.name}: ${a.reasons.join('; ')}`);
      results.add(a.result);
    }
    assert.deepEqual([...results].sort(), ['allow', 'deny', 'review']);
  });

  it('round-trips multi-byte text and inputs larger than the module memory, then keeps working', async () => {
    const e = new PolicyEngine({ now: () => Date.parse('2026-06-01T00:00:00.123Z'), evalBudgetMs: 10_000 });
    const plain = new PolicyEngine({ now: () => Date.parse('2026-06-01T00:00:00.123Z'), directEval: false, evalBudgetMs: 10_000 });
    const bundle = await compileRego(ECHO_POLICY);
    await e.load(bundle);
    await plain.load(bundle);
    for (const text of ['plain', 'ünïcödé ✓ 𝄞 emoji 🎉', '€'.repeat(400_000), 'x']) {
      const input = { text, exp: '2026-12-01T00:00:00Z' };
      const d = e.evaluate(input);
      assert.deepEqual(strip(d), strip(plain.evaluate(input)));
      assert.deepEqual(new Set(d.reasons), new Set([text, String([...text].length)]));
      // exact nanoseconds: no float rounding of ms * 1e6
      assert.equal(String(d.obligations.now), '1780272000123000000');
      assert.equal(String(d.obligations.exp), '1796083200000000000');
    }
  });

  it('an invalid time from a host builtin is a deny, and the engine keeps evaluating', async () => {
    const e = new PolicyEngine();
    await e.load(await compileRego(ECHO_POLICY));
    const bad = e.evaluate({ text: 'a', exp: 'not a time' });
    assert.equal(bad.result, 'deny');
    assert.match(bad.reasons[0] ?? '', /policy evaluation error: .*invalid RFC 3339 time/);
    assert.ok(e.evaluate({ text: 'b', exp: '2026-12-01T00:00:00Z' }).reasons.includes('b'));
  });

  it('keeps compiled patterns between evaluations, bounds its heap, and decides as evaluate() does', async () => {
    const b = parseBundle(await compileRego(PATTERN_POLICY), 'taskgate/decision');
    const load = async () => {
      const p = await loadPolicy(b.wasm, undefined, hostBuiltins(() => 0));
      p.setData(b.data as object);
      return p;
    };
    const policy = await load();
    const reference = await load(); // evaluate() resets its own module's heap on every call
    const ep = (policy.entrypoints as Record<string, number>)['taskgate/decision'] as number;
    const limit = 64 * 1024;
    const fast = fastEvaluator(policy, limit)!;
    const heap = () => (policy as unknown as { wasmInstance: { exports: { opa_heap_ptr_get(): number } } }).wasmInstance.exports.opa_heap_ptr_get();
    const base = (policy as unknown as { dataHeapPtr: number }).dataHeapPtr;
    let peak = 0;
    let resets = 0;
    let last = 0;
    let kept = 0;
    for (let i = 0; i < 3000; i++) {
      // unique paths and, every 7th, a new dynamic pattern (the cache grows until the heap is reset)
      const input = { path: i % 5 === 0 ? `/admin/${i}` : `/people/${i}`, pattern: i % 7 === 0 ? `/p*/${i}` : '/people/*' };
      assert.deepEqual(fast(input, ep), reference.evaluate(input, ep), JSON.stringify(input));
      const used = heap() - base;
      peak = Math.max(peak, used);
      if (used < last) resets++;
      else kept++;
      last = used;
    }
    assert.ok(peak < limit + 32 * 1024, `heap above the data peaked at ${peak} bytes`);
    // the heap (and with it the pattern cache) is kept between most evaluations, and reset when it passes the bound
    assert.ok(resets > 0 && kept > resets * 10, `${resets} resets, ${kept} evaluations on a kept heap`);
  });

  it('starts from a reset heap after an evaluation that threw, and decides the same afterwards', async () => {
    const b = parseBundle(await compileRego(ECHO_POLICY), 'taskgate/decision');
    const policy = await loadPolicy(b.wasm, undefined, hostBuiltins(() => 0));
    policy.setData(b.data as object);
    const ep = (policy.entrypoints as Record<string, number>)['taskgate/decision'] as number;
    const fast = fastEvaluator(policy)!;
    for (let i = 0; i < 50; i++) {
      assert.throws(() => fast({ text: `t${i}`, exp: 'not a time' }, ep), /invalid RFC 3339 time/);
      const ok = { text: `ok${i}`, exp: '2026-12-01T00:00:00Z' };
      assert.deepEqual(fast(ok, ep), policy.evaluate(ok, ep));
    }
  });
});
