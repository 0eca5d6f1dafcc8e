import { EventEmitter } from 'node:events';
import { loadPolicy, type LoadedPolicy } from '@open-policy-agent/opa-wasm';
import { errorMessage, TaskgateError } from '../errors.ts';
import { silentLogger, type Logger } from '../log.ts';
import type { Metrics } from '../metrics.ts';
import { DECISION_ENTRYPOINT, denyDecision, evaluated, type Decision, type EvaluatedDecision } from '../policy-contract.ts';
import { parseBundle, type PolicyBundle } from './bundle.ts';
import { validateDecision } from './decision-schema.ts';
import { fastEvaluator, type FastEvaluate } from './fast-eval.ts';
import { hostBuiltins, type Clock } from './host-builtins.ts';

export const NO_POLICY_REASON = 'no policy loaded';

export interface EngineOptions {
  entrypoint?: string;
  /** Clock for host builtins (time.now_ns); tests move it. */
  now?: Clock;
  /**
   * Evaluation budget. WASM evaluation is synchronous and Rego always
   * terminates, so this is checked after the fact: a decision that took longer
   * is replaced by a deny (and logged), so a pathological policy cannot slip
   * an allow through while the data path stalls unnoticed.
   */
  evalBudgetMs?: number;
  log?: Logger;
  metrics?: Metrics;
  /**
   * Turns the entrypoint's raw result into a decision, or a one-line reason it
   * is invalid (a deny). Default: the taskgate decision schema. ext-authz uses
   * another one for opa-envoy-plugin policies (`envoy/authz/allow` returning a
   * boolean or an object); fail-closed semantics are the same.
   */
  decisionAdapter?: (raw: unknown) => Decision | string;
  /**
   * Evaluate through the leaner opa_eval call (core/engine/fast-eval.ts) when
   * the module supports it (default true); false uses LoadedPolicy.evaluate.
   * Both give the same results; the benchmark compares them.
   */
  directEval?: boolean;
}

interface Loaded {
  policy: LoadedPolicy;
  bundle: PolicyBundle;
  entrypoint: number;
  fast: FastEvaluate | undefined;
  source: string;
  loadedAt: Date;
}

export interface EngineStatus {
  loaded: boolean;
  revision?: string;
  source?: string;
  loaded_at?: string;
  last_error?: string;
}

/**
 * The policy engine: holds the compiled bundle in force and evaluates the
 * decision entrypoint through @open-policy-agent/opa-wasm.
 *
 * - evaluate() never throws; every failure is a deny with a readable reason.
 * - load() swaps atomically: the new bundle is fully instantiated before it
 *   replaces the old one; on failure the last good bundle stays in force.
 *
 * Events: 'loaded' (status), 'load_error' (Error).
 */
export class PolicyEngine extends EventEmitter {
  private current: Loaded | undefined;
  private lastError: string | undefined;
  private readonly entrypointName: string;
  private readonly now: Clock;
  private readonly budgetNs: number;
  private readonly log: Logger;
  private readonly metrics: Metrics | undefined;
  private readonly adapt: (raw: unknown) => Decision | string;
  private readonly directEval: boolean;

  constructor(opts: EngineOptions = {}) {
    super();
    this.entrypointName = opts.entrypoint ?? DECISION_ENTRYPOINT;
    this.now = opts.now ?? Date.now;
    this.budgetNs = (opts.evalBudgetMs ?? 250) * 1e6;
    this.log = opts.log ?? silentLogger;
    this.metrics = opts.metrics;
    this.adapt = opts.decisionAdapter ?? validateDecision;
    this.directEval = opts.directEval ?? true;
  }

  get revision(): string | undefined {
    return this.current?.bundle.revision;
  }

  status(): EngineStatus {
    const s: EngineStatus = { loaded: this.current !== undefined };
    if (this.current) {
      s.revision = this.current.bundle.revision;
      s.source = this.current.source;
      s.loaded_at = this.current.loadedAt.toISOString();
    }
    if (this.lastError) s.last_error = this.lastError;
    return s;
  }

  /** Loads a bundle (.tar.gz bytes). Throws TaskgateError; the previous bundle stays in force on failure. */
  async load(buf: Buffer, source = 'memory'): Promise<PolicyBundle> {
    try {
      const bundle = parseBundle(buf, this.entrypointName);
      if (this.current && this.current.bundle.digest === bundle.digest) return bundle;
      let policy: LoadedPolicy;
      try {
        policy = await loadPolicy(bundle.wasm, undefined, hostBuiltins(this.now));
      } catch (e) {
        throw new TaskgateError('bundle_invalid', `policy.wasm failed to instantiate: ${errorMessage(e)}`);
      }
      const eps = policy.entrypoints as Record<string, number>;
      if (!(this.entrypointName in eps)) {
        throw new TaskgateError(
          'bundle_invalid',
          `policy.wasm has no entrypoint "${this.entrypointName}" (has: ${Object.keys(eps).join(', ') || 'none'})`,
        );
      }
      try {
        policy.setData(bundle.data as object);
      } catch (e) {
        throw new TaskgateError('bundle_invalid', `bundle data could not be loaded into the policy: ${errorMessage(e)}`);
      }
      const fast = this.directEval ? fastEvaluator(policy) : undefined;
      this.current = { policy, bundle, entrypoint: eps[this.entrypointName] as number, fast, source, loadedAt: new Date() };
      this.lastError = undefined;
      this.metrics?.bundleLoads.inc({ outcome: 'ok' });
      this.metrics?.bundleInfo.reset();
      this.metrics?.bundleInfo.set({ revision: bundle.revision }, 1);
      this.log.info('policy bundle loaded', { revision: bundle.revision, source });
      this.emit('loaded', this.status());
      return bundle;
    } catch (e) {
      const err = e instanceof TaskgateError ? e : new TaskgateError('bundle_invalid', errorMessage(e));
      this.lastError = err.message;
      this.metrics?.bundleLoads.inc({ outcome: 'error' });
      this.log.error('policy bundle rejected; keeping the last good bundle', {
        source,
        error: err.message,
        revision_in_force: this.current?.bundle.revision ?? null,
      });
      this.emit('load_error', err);
      throw err;
    }
  }

  /** Evaluates the decision entrypoint. Never throws: failures are denies with a reason. */
  evaluate(input: unknown, protocol = 'unknown'): EvaluatedDecision {
    const cur = this.current;
    if (!cur) return this.count(denyDecision(NO_POLICY_REASON), protocol);
    if (input === null || typeof input !== 'object' || Array.isArray(input)) {
      return this.count(denyDecision('policy input is not an object', cur.bundle.revision), protocol);
    }
    const t0 = process.hrtime.bigint();
    let raw: unknown;
    try {
      raw = cur.fast ? cur.fast(input, cur.entrypoint) : cur.policy.evaluate(input, cur.entrypoint);
    } catch (e) {
      this.log.warn('policy evaluation error', { error: errorMessage(e), revision: cur.bundle.revision });
      return this.count(denyDecision(`policy evaluation error: ${errorMessage(e)}`, cur.bundle.revision), protocol);
    }
    const evalNs = Number(process.hrtime.bigint() - t0);
    this.metrics?.decisionSeconds.observe({ protocol }, evalNs / 1e9);
    if (evalNs > this.budgetNs) {
      this.log.warn('policy evaluation exceeded its budget', { eval_ms: evalNs / 1e6, revision: cur.bundle.revision });
      return this.count(
        denyDecision(`policy evaluation exceeded ${this.budgetNs / 1e6} ms`, cur.bundle.revision),
        protocol,
      );
    }
    const results = raw as { result?: unknown }[] | null;
    if (!Array.isArray(results) || results.length === 0 || results[0]?.result === undefined) {
      return this.count(denyDecision('policy produced no decision (undefined)', cur.bundle.revision), protocol);
    }
    const checked = this.adapt(results[0].result);
    if (typeof checked === 'string') {
      return this.count(denyDecision(`policy returned an invalid decision: ${checked}`, cur.bundle.revision), protocol);
    }
    return this.count(evaluated(checked, cur.bundle.revision, evalNs), protocol);
  }

  private count(d: EvaluatedDecision, protocol: string): EvaluatedDecision {
    this.metrics?.decisions.inc({ protocol, result: d.result });
    return d;
  }
}
