/**
 * bench/policy-eval: the reference policy on a realistic mix of inputs
 * (PostgreSQL, SSH, HTTP/Kubernetes), evaluated
 *   1. through taskgate's engine (compiled WASM via @open-policy-agent/opa-wasm), one core,
 *      and the same engine calling opa-wasm's LoadedPolicy.evaluate instead of
 *      its direct opa_eval call (directEval: false);
 *   2. through `opa bench` (OPA's own Go evaluator on the same Rego and inputs),
 * in the same run. Prints decisions/s and p50/p99 latency for both and the ratios.
 *
 *   node --import tsx bench/policy-eval.ts [--seconds 5] [--policies policies]
 */
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { buildBundle } from '../compiler/build.ts';
import { PolicyEngine } from '../core/engine/engine.ts';
import { runOpa } from '../compiler/opa.ts';
import { policyMix } from './policy-mix.ts';

const { values } = parseArgs({ options: { seconds: { type: 'string', default: '5' }, policies: { type: 'string', default: 'policies' } } });
const seconds = Number(values.seconds);
const dir = resolve(values.policies!);
const tmp = await mkdtemp(join(tmpdir(), 'taskgate-bench-'));
const out = join(tmp, 'bundle.tar.gz');
const built = await buildBundle({ dir, out });
const engine = new PolicyEngine();
await engine.load(await readFile(out));
// The same bundle through opa-wasm's own LoadedPolicy.evaluate (no direct
// opa_eval call): what the engine's call path saves, measured in this run.
const plain = new PolicyEngine({ directEval: false });
await plain.load(await readFile(out));
const mix = policyMix();

const pct = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
const median = (a: number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)]!;

console.log(`policy ${dir} revision ${built.revision}, ${mix.length} inputs, ${seconds}s per engine\n`);
console.log('decisions per input (taskgate WASM):');
for (const m of mix) {
  const d = engine.evaluate(m.input);
  console.log(`  ${m.name.padEnd(48)} ${d.result}${d.synthetic ? ' (engine: ' + d.reasons[0] + ')' : ''}`);
}

// 1) throughput: tight loop over the mix; the two engines alternate in
// ROUNDS slices of seconds/ROUNDS each (the machine is shared: alternating
// exposes both to the same noise), median slice reported.
const ROUNDS = 5;
function slice(e: PolicyEngine, s: number): number {
  let n = 0;
  const tEnd = process.hrtime.bigint() + BigInt(Math.round(s * 1e9));
  const t0 = process.hrtime.bigint();
  while (process.hrtime.bigint() < tEnd) {
    for (let i = 0; i < mix.length; i++) e.evaluate(mix[i]!.input);
    n += mix.length;
  }
  return n / (Number(process.hrtime.bigint() - t0) / 1e9);
}
for (let i = 0; i < 20_000; i++) {
  engine.evaluate(mix[i % mix.length]!.input); // warm-up (JIT)
  plain.evaluate(mix[i % mix.length]!.input);
}
const rates = { engine: [] as number[], plain: [] as number[] };
for (let r = 0; r < ROUNDS; r++) {
  rates.engine.push(slice(engine, seconds / ROUNDS));
  rates.plain.push(slice(plain, seconds / ROUNDS));
}
// 2) latency: per-evaluation timing
function latency(e: PolicyEngine): { p50: number; p99: number } {
  const lat: number[] = [];
  for (let i = 0; i < 50_000; i++) {
    const a = process.hrtime.bigint();
    e.evaluate(mix[i % mix.length]!.input);
    lat.push(Number(process.hrtime.bigint() - a));
  }
  lat.sort((a, b) => a - b);
  return { p50: pct(lat, 50), p99: pct(lat, 99) };
}
const tg = { rate: median(rates.engine), ...latency(engine) };
const tgPlain = { rate: median(rates.plain), ...latency(plain) };

// 3) opa bench (Go evaluator) on each input of the same mix
const opa: { p50: number[]; p99: number[]; nsPerOp: number[] } = { p50: [], p99: [], nsPerOp: [] };
for (const [i, m] of mix.entries()) {
  const f = join(tmp, `input-${i}.json`);
  await writeFile(f, JSON.stringify(m.input));
  const r = await runOpa(['bench', '--format', 'json', '-d', dir, '--ignore', '*_test.rego', '--ignore', 'tests', '-i', f, 'data.taskgate.decision'], { timeoutMs: 120_000 });
  if (r.code !== 0) throw new Error(`opa bench failed on ${m.name}: ${r.stderr || r.stdout}`);
  const j = JSON.parse(r.stdout) as { N: number; T: number; Extra: Record<string, number> };
  opa.nsPerOp.push(j.T / j.N);
  opa.p50.push(j.Extra['histogram_timer_rego_query_eval_ns_median']!);
  opa.p99.push(j.Extra['histogram_timer_rego_query_eval_ns_99%']!);
}
const mean = (a: number[]) => a.reduce((x, y) => x + y, 0) / a.length;
const opaRate = 1e9 / mean(opa.nsPerOp);
const opaP50 = median(opa.p50);
const opaP99 = median(opa.p99);

const us = (ns: number) => (ns / 1000).toFixed(1).padStart(8) + ' µs';
console.log(`
                              decisions/s      p50          p99
taskgate (opa-wasm, 1 core)   ${Math.round(tg.rate).toLocaleString('en').padStart(11)}  ${us(tg.p50)}  ${us(tg.p99)}
  via LoadedPolicy.evaluate   ${Math.round(tgPlain.rate).toLocaleString('en').padStart(11)}  ${us(tgPlain.p50)}  ${us(tgPlain.p99)}
opa bench (Go evaluator)      ${Math.round(opaRate).toLocaleString('en').padStart(11)}  ${us(opaP50)}  ${us(opaP99)}

ratio taskgate/opa: throughput ${(tg.rate / opaRate).toFixed(2)}x, p50 latency ${(tg.p50 / opaP50).toFixed(2)}x (lower is better)
target: p50 <= OPA's own (${tg.p50 <= opaP50 ? 'met' : 'NOT met'}), >= 50,000 decisions/s on one core (${tg.rate >= 50_000 ? 'met' : 'NOT met'})
(taskgate throughput: median of ${ROUNDS} alternating slices, all slices ${rates.engine.map((r) => Math.round(r / 1000) + 'k').join(' ')}; via evaluate ${rates.plain.map((r) => Math.round(r / 1000) + 'k').join(' ')})
(opa figures: per input, median over the ${mix.length} inputs of opa bench's eval-time histogram; opa's throughput from its ns/op including query setup)`);
