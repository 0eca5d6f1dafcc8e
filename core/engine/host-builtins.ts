/**
 * Builtins that OPA's WebAssembly target does not compile natively and that
 * @open-policy-agent/opa-wasm does not implement in JavaScript either: the host
 * provides them. The compiler declares them in the capabilities it passes to
 * `opa build` (compiler/capabilities.ts) so that a policy using them compiles,
 * and any other unsupported builtin is refused at build time with file:line.
 */

export type Clock = () => number; // milliseconds since the epoch

export interface HostBuiltinDecl {
  name: string;
  decl: { type: 'function'; args: { type: string }[]; result: { type: string } };
}

export const HOST_BUILTIN_DECLS: HostBuiltinDecl[] = [
  { name: 'time.now_ns', decl: { type: 'function', args: [], result: { type: 'number' } } },
  { name: 'time.parse_rfc3339_ns', decl: { type: 'function', args: [{ type: 'string' }], result: { type: 'number' } } },
];

/**
 * Builtin implementations for loadPolicy(). `now` is injectable so tests can move time.
 *
 * Results are returned as the bytes of their JSON text (an ArrayBuffer, which
 * opa-wasm copies into the module as is) rather than as numbers it would
 * JSON.stringify and encode with a new TextEncoder on every call; both are
 * cached (the clock per millisecond, parsed times per string), so the host
 * side of a call is a lookup. Every evaluation calls both (task expiry).
 */
export function hostBuiltins(now: Clock = Date.now): Record<string, (...args: unknown[]) => unknown> {
  let lastMs = Number.NaN;
  let lastNs: ArrayBuffer = jsonBytes(0);
  const parsed = new Map<string, ArrayBuffer>();
  return {
    'time.now_ns': () => {
      const ms = now();
      if (ms !== lastMs) {
        lastMs = ms;
        lastNs = jsonBytes(nsText(ms));
      }
      return lastNs;
    },
    'time.parse_rfc3339_ns': (s: unknown) => {
      if (typeof s !== 'string') throw new Error('time.parse_rfc3339_ns: operand must be a string');
      let out = parsed.get(s);
      if (out === undefined) {
        const ms = Date.parse(s);
        if (!/^\d{4}-\d{2}-\d{2}T/.test(s) || Number.isNaN(ms)) throw new Error(`time.parse_rfc3339_ns: invalid RFC 3339 time ${JSON.stringify(s)}`);
        out = jsonBytes(nsText(ms));
        if (parsed.size >= PARSED_CACHE_MAX) parsed.clear();
        parsed.set(s, out);
      }
      return out;
    },
  };
}

const PARSED_CACHE_MAX = 4096;
const encoder = new TextEncoder();

/** Nanoseconds for a millisecond time, as an exact integer literal. */
function nsText(ms: number): string {
  return Number.isInteger(ms) ? `${BigInt(ms) * 1_000_000n}` : JSON.stringify(ms * 1e6);
}

/** The JSON text of a value as its own ArrayBuffer (opa-wasm loads an ArrayBuffer result verbatim). */
function jsonBytes(text: string | number): ArrayBuffer {
  const bytes = encoder.encode(typeof text === 'string' ? text : JSON.stringify(text));
  return bytes.byteLength === bytes.buffer.byteLength ? (bytes.buffer as ArrayBuffer) : (bytes.slice().buffer as ArrayBuffer);
}
