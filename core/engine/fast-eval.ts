import type { LoadedPolicy } from '@open-policy-agent/opa-wasm';

/**
 * A leaner call into an opa-wasm LoadedPolicy than LoadedPolicy.evaluate,
 * deciding exactly as it does (same module, data and builtins, including the
 * host builtins): only how one evaluation's bytes go in and out, and when the
 * module's heap is reset, differ.
 *
 *  - The input's JSON is encoded straight into WebAssembly memory
 *    (TextEncoder.encodeInto), with one TextEncoder instead of one per call;
 *    the result's end is found with Uint8Array.indexOf (native) instead of a
 *    byte-by-byte loop in JavaScript.
 *  - The heap is kept between evaluations ("warm heap"). LoadedPolicy.evaluate
 *    resets it before every evaluation (opa_eval calls opa_heap_ptr_set),
 *    and a reset also empties OPA's builtin cache (wasm/src/malloc.c:
 *    init_free), so `glob.match` and `regex.match` compile their pattern on
 *    every evaluation — a third to a half of a small policy's evaluation
 *    time. Here the result, input buffer and context are freed after each
 *    evaluation, and the heap is reset only when what stays allocated (parsed
 *    inputs, values the policy built) passes HEAP_RESET_BYTES, or after an
 *    evaluation that threw. Those caches hold compiled patterns only (pattern
 *    -> automaton), valid for as long as the heap is.
 *
 * It reads the LoadedPolicy fields evaluate() itself uses (mem, wasmInstance,
 * dataAddr, dataHeapPtr); when a future opa-wasm lacks any of them or an
 * export, undefined is returned and the engine uses evaluate().
 */
export type FastEvaluate = (input: unknown, entrypoint: number) => unknown;

/** Heap in use above the loaded data at which the next evaluation starts from a reset heap. */
export const HEAP_RESET_BYTES = 4 * 1024 * 1024;

/** The part of a WebAssembly.Memory used here (the tsconfig has no WebAssembly types). */
interface WasmMemory {
  readonly buffer: ArrayBuffer;
}

interface PolicyInternals {
  mem?: Partial<WasmMemory>;
  wasmInstance?: { exports?: Record<string, unknown> };
  dataAddr?: unknown;
  dataHeapPtr?: unknown;
}

/** The module's exports used here (OPA Wasm ABI 1.x). */
interface Exports {
  opa_heap_ptr_get(): number;
  opa_heap_ptr_set(ptr: number): void;
  opa_malloc(size: number): number;
  opa_free(ptr: number): void;
  opa_json_parse(addr: number, len: number): number;
  opa_json_dump(value: number): number;
  opa_eval_ctx_new(): number;
  opa_eval_ctx_set_input(ctx: number, value: number): void;
  opa_eval_ctx_set_data(ctx: number, value: number): void;
  opa_eval_ctx_set_entrypoint(ctx: number, entrypoint: number): void;
  opa_eval_ctx_get_result(ctx: number): number;
  eval(ctx: number): number;
}

const NEEDED: (keyof Exports)[] = [
  'opa_heap_ptr_get',
  'opa_heap_ptr_set',
  'opa_malloc',
  'opa_free',
  'opa_json_parse',
  'opa_json_dump',
  'opa_eval_ctx_new',
  'opa_eval_ctx_set_input',
  'opa_eval_ctx_set_data',
  'opa_eval_ctx_set_entrypoint',
  'opa_eval_ctx_get_result',
  'eval',
];

export function fastEvaluator(policy: LoadedPolicy, heapResetBytes = HEAP_RESET_BYTES): FastEvaluate | undefined {
  const p = policy as unknown as PolicyInternals;
  const exp = p.wasmInstance?.exports;
  if (
    !exp ||
    NEEDED.some((n) => typeof exp[n] !== 'function') ||
    !(p.mem?.buffer instanceof ArrayBuffer) ||
    typeof p.dataAddr !== 'number' ||
    typeof p.dataHeapPtr !== 'number'
  ) {
    return undefined;
  }
  const x = exp as unknown as Exports;
  const mem = p.mem as WasmMemory;
  const encoder = new TextEncoder();
  const decoder = new TextDecoder();
  // Where the heap above the data starts; -1 = reset before the next evaluation.
  let base = -1;
  return (input, entrypoint) => {
    const json = JSON.stringify(input);
    // setData() moves dataHeapPtr (and resets the heap itself).
    const dataHeapPtr = p.dataHeapPtr as number;
    if (base !== dataHeapPtr || x.opa_heap_ptr_get() - base > heapResetBytes) {
      x.opa_heap_ptr_set(dataHeapPtr);
      base = dataHeapPtr;
    }
    try {
      // UTF-8 takes at most 3 bytes per UTF-16 code unit. opa_malloc grows the memory: read buffer after it.
      const room = json.length * 3 + 1;
      const inputAddr = x.opa_malloc(room);
      const { written } = encoder.encodeInto(json, new Uint8Array(mem.buffer, inputAddr, room));
      const value = x.opa_json_parse(inputAddr, written);
      x.opa_free(inputAddr);
      if (!value) throw new Error('the policy module could not parse the input');
      const ctx = x.opa_eval_ctx_new();
      x.opa_eval_ctx_set_input(ctx, value);
      x.opa_eval_ctx_set_data(ctx, p.dataAddr as number);
      x.opa_eval_ctx_set_entrypoint(ctx, entrypoint);
      x.eval(ctx);
      const resultAddr = x.opa_json_dump(x.opa_eval_ctx_get_result(ctx));
      if (!resultAddr) throw new Error('the policy module returned no result');
      const bytes = new Uint8Array(mem.buffer);
      const end = bytes.indexOf(0, resultAddr);
      if (end < 0) throw new Error('the policy result is not terminated');
      const text = decoder.decode(bytes.subarray(resultAddr, end));
      x.opa_free(resultAddr);
      x.opa_free(ctx);
      return JSON.parse(text);
    } catch (e) {
      base = -1; // the heap may be mid-update: start the next evaluation from a reset heap
      throw e;
    }
  };
}
