import type { CommandSpec, DecideOptions, Gatekeeper, GateOutcome, SessionContext } from '../../core/gate.ts';

/**
 * The decision step for one HTTP request, shared by ext_authz and the HTTP
 * proxy. It calls the Gatekeeper (task, policy, cache, review, audit) and adds
 * what HTTP needs on top: a bound on how long a review may hold the request.
 *
 * An HTTP client (or Envoy, whose ext_authz call has a deadline) cannot wait
 * fifteen minutes. When the reviewer has not answered by `waitMs`, the request
 * is answered with `pending` and the review id; the review itself stays open.
 * A retry of the same request (same task, subject, resource and fingerprint)
 * joins that pending review instead of opening another one, and a retry after
 * the approval picks up the approved outcome (once) or, for a time-boxed
 * grant, goes through the gate's grant check.
 */
export type HttpDecision =
  | { kind: 'decided'; outcome: GateOutcome }
  | { kind: 'pending'; review_id: string; approvers: string[]; expires_at: string; reasons: string[] }
  | { kind: 'timeout' };

interface Hold {
  promise: Promise<GateOutcome>;
  review_id: string;
  approvers: string[];
  expires_at: string;
  reasons: string[];
  settled?: GateOutcome;
  timer?: NodeJS.Timeout;
}

export interface HttpDeciderOptions {
  /** How long an approved outcome waits for the retry that collects it. Default 120 s. */
  keepApprovedMs?: number;
}

export class HttpDecider {
  private readonly holds = new Map<string, Hold>();
  private readonly keepMs: number;

  constructor(
    readonly gate: Gatekeeper,
    opts: HttpDeciderOptions = {},
  ) {
    this.keepMs = opts.keepApprovedMs ?? 120_000;
  }

  /** Pending and recently approved reviews being tracked (for tests and metrics). */
  get tracked(): number {
    return this.holds.size;
  }

  async decide(session: SessionContext, cmd: CommandSpec, waitMs: number, signal?: SignalSource): Promise<HttpDecision> {
    const started = Date.now();
    const key = `${session.task_id}\u0000${session.identity.subject}\u0000${session.resource.name}\u0000${cmd.fingerprint}`;
    const existing = this.holds.get(key);
    if (existing?.settled) {
      // An approval that arrived after the first request was answered: this retry collects it, once.
      this.drop(key, existing);
      if (existing.settled.allowed) return { kind: 'decided', outcome: existing.settled };
    } else if (existing) {
      return this.waitHeld(key, existing, waitMs, signal);
    }

    let hold: Hold | undefined;
    let onHeld!: () => void;
    const held = new Promise<void>((r) => (onHeld = r));
    // Callbacks are assigned, not declared as named consts or properties: the TypeScript loader
    // (tsx, esbuild keepNames) would wrap each in a defineProperty call, on every request.
    const opts: DecideOptions = {};
    opts.onHold = (n) => {
      hold = { promise, review_id: n.review_id, approvers: n.approvers, expires_at: n.expires_at, reasons: n.reasons };
      this.holds.set(key, hold);
      onHeld();
    };
    const promise = this.gate.decide(session, cmd, opts);
    promise.then(
      (o) => {
        const h = hold;
        if (!h || this.holds.get(key) !== h) return;
        if (!o.allowed) return this.drop(key, h);
        h.settled = o;
        h.timer = setTimeout(() => this.drop(key, h), this.keepMs);
        h.timer.unref();
      },
      () => hold && this.drop(key, hold),
    );
    const first = await race(promise, held, waitMs, signal);
    if (first === 'decided') {
      const o = await promise;
      if (hold) this.drop(key, hold);
      return { kind: 'decided', outcome: o };
    }
    if (first === 'held' && hold) return this.waitHeld(key, hold, waitMs - (Date.now() - started), signal);
    return { kind: 'timeout' };
  }

  private async waitHeld(key: string, h: Hold, waitMs: number, signal?: SignalSource): Promise<HttpDecision> {
    if ((await race(h.promise, undefined, waitMs, signal)) === 'decided') {
      const o = await h.promise;
      this.drop(key, h);
      return { kind: 'decided', outcome: o };
    }
    return { kind: 'pending', review_id: h.review_id, approvers: h.approvers, expires_at: h.expires_at, reasons: h.reasons };
  }

  private drop(key: string, h: Hold): void {
    if (h.timer) clearTimeout(h.timer);
    if (this.holds.get(key) === h) this.holds.delete(key);
  }

  close(): void {
    for (const [k, h] of this.holds) this.drop(k, h);
  }
}

/**
 * The caller going away: an AbortSignal, or a function that makes one. The
 * function is only called when the answer has to wait (see race()), so a
 * request answered at once never subscribes to its transport's cancellation
 * (for a grpc-js call that subscription alone cost ~18 µs per Check).
 */
export type SignalSource = AbortSignal | (() => AbortSignal);

/**
 * Which comes first: the decision, the hold notice, the wait bound, or the
 * caller going away. Most decisions settle within the current turn of the
 * event loop (decision cache, local policy), so the timer and the
 * cancellation listener are armed one turn later, and only if still needed;
 * the wait bound counts from the call.
 */
function race(
  decided: Promise<unknown>,
  held: Promise<void> | undefined,
  waitMs: number,
  signal?: SignalSource,
): Promise<RaceResult> {
  return new Promise((resolve) => new Race(resolve, decided, held, waitMs, signal));
}

type RaceResult = 'decided' | 'held' | 'timeout';

/** race()'s state. A class rather than closures: no per-request function objects beyond the promise callbacks. */
class Race {
  private readonly started = Date.now();
  private done = false;
  private timer: NodeJS.Timeout | undefined;
  private sig: AbortSignal | undefined;

  constructor(
    private readonly resolve: (r: RaceResult) => void,
    decided: Promise<unknown>,
    held: Promise<void> | undefined,
    private readonly waitMs: number,
    private readonly signal: SignalSource | undefined,
  ) {
    decided.then(
      () => this.finish('decided'),
      () => this.finish('decided'),
    );
    held?.then(() => this.finish('held'));
    if (typeof signal === 'object' && signal.aborted) this.finish('timeout');
    else setImmediate(() => this.arm());
  }

  private arm(): void {
    if (this.done) return;
    this.timer = setTimeout(() => this.finish('timeout'), Math.max(0, this.waitMs - (Date.now() - this.started)));
    const sig = (this.sig = typeof this.signal === 'function' ? this.signal() : this.signal);
    if (sig?.aborted) this.finish('timeout');
    else sig?.addEventListener('abort', this, { once: true });
  }

  /** The caller went away (EventListener object: `this` is the listener). */
  handleEvent(): void {
    this.finish('timeout');
  }

  private finish(r: RaceResult): void {
    if (this.done) return;
    this.done = true;
    if (this.timer) clearTimeout(this.timer);
    this.sig?.removeEventListener('abort', this);
    this.resolve(r);
  }
}
