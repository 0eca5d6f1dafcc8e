import { Counter, Histogram, Gauge, Registry, collectDefaultMetrics } from 'prom-client';

/**
 * Prometheus metrics shared by every entry point. One registry per process;
 * the sidecar and ext-authz serve it on /metrics.
 */
export class Metrics {
  readonly registry: Registry;
  readonly decisions: Counter<'protocol' | 'result'>;
  readonly decisionSeconds: Histogram<'protocol'>;
  readonly bundleLoads: Counter<'outcome'>;
  readonly bundleInfo: Gauge<'revision'>;
  readonly cacheHits: Counter<'protocol'>;

  constructor(opts: { defaultMetrics?: boolean } = {}) {
    this.registry = new Registry();
    if (opts.defaultMetrics) collectDefaultMetrics({ register: this.registry, prefix: 'taskgate_process_' });
    this.decisions = new Counter({
      name: 'taskgate_decisions_total',
      help: 'Policy decisions by protocol and result',
      labelNames: ['protocol', 'result'],
      registers: [this.registry],
    });
    this.decisionSeconds = new Histogram({
      name: 'taskgate_decision_duration_seconds',
      help: 'Time to evaluate one decision through the WASM policy',
      labelNames: ['protocol'],
      buckets: [0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05],
      registers: [this.registry],
    });
    this.bundleLoads = new Counter({
      name: 'taskgate_bundle_loads_total',
      help: 'Policy bundle load attempts by outcome (ok | error | not_modified)',
      labelNames: ['outcome'],
      registers: [this.registry],
    });
    this.bundleInfo = new Gauge({
      name: 'taskgate_bundle_info',
      help: 'The policy bundle revision in force (value 1)',
      labelNames: ['revision'],
      registers: [this.registry],
    });
    this.cacheHits = new Counter({
      name: 'taskgate_decision_cache_hits_total',
      help: 'Decisions answered from the decision cache',
      labelNames: ['protocol'],
      registers: [this.registry],
    });
  }

  async render(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}
