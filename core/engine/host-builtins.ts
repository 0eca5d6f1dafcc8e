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

/** Builtin implementations for loadPolicy(). `now` is injectable so tests can move time. */
export function hostBuiltins(now: Clock = Date.now): Record<string, (...args: unknown[]) => unknown> {
  return {
    'time.now_ns': () => now() * 1e6,
    'time.parse_rfc3339_ns': (s: unknown) => {
      if (typeof s !== 'string') throw new Error('time.parse_rfc3339_ns: operand must be a string');
      const ms = Date.parse(s);
      if (!/^\d{4}-\d{2}-\d{2}T/.test(s) || Number.isNaN(ms)) throw new Error(`time.parse_rfc3339_ns: invalid RFC 3339 time ${JSON.stringify(s)}`);
      return ms * 1e6;
    },
  };
}
