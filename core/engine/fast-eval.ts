import type { LoadedPolicy } from '@open-policy-agent/opa-wasm';

/**
 * A leaner call into an opa-wasm LoadedPolicy for ABI >= 1.2 (`opa_eval`):
 * the same steps as LoadedPolicy.evaluate, minus its per-call allocations.
 *
 *  - the input's JSON is encoded straight into WebAssembly memory
 *    (TextEncoder.encodeInto) instead of into a fresh buffer that is then
 *    copied, with one TextEncoder instead of one per call;
 *  - the result's end is found with Uint8Array.indexOf (native) instead of a
 *    byte-by-byte loop in JavaScript, and decoded with one TextDecoder.
 *
 * Data, builtins (including the host builtins) and the module are
 * opa-wasm's: this only replaces how one evaluation's bytes go in and out.
 * It reads the LoadedPolicy fields that evaluate() itself uses (mem,
 * wasmInstance, dataAddr, dataHeapPtr, minorVersion); when a future opa-wasm
 * lacks any of them, undefined is returned and the engine uses evaluate().
 */
export type FastEvaluate = (input: unknown, entrypoint: number) => unknown;

/** The part of a WebAssembly.Memory used here (the tsconfig has no WebAssembly types). */
interface WasmMemory {
  readonly buffer: ArrayBuffer;
  grow(pages: number): number;
}

interface PolicyInternals {
  minorVersion?: unknown;
  mem?: Partial<WasmMemory>;
  wasmInstance?: { exports?: Record<string, unknown> };
  dataAddr?: unknown;
  dataHeapPtr?: unknown;
}

type OpaEval = (reserved: number, entrypoint: number, data: number, input: number, inputLen: number, heap: number, format: number) => number;

const PAGE = 64 * 1024;

export function fastEvaluator(policy: LoadedPolicy): FastEvaluate | undefined {
  const p = policy as unknown as PolicyInternals;
  const opaEval = p.wasmInstance?.exports?.opa_eval;
  if (
    typeof p.minorVersion !== 'number' ||
    p.minorVersion < 2 ||
    !(p.mem?.buffer instanceof ArrayBuffer) ||
    typeof p.mem.grow !== 'function' ||
    typeof opaEval !== 'function' ||
    typeof p.dataAddr !== 'number' ||
    typeof p.dataHeapPtr !== 'number'
  ) {
    return undefined;
  }
  const mem = p.mem as WasmMemory;
  const run = opaEval as OpaEval;
  const encoder = new TextEncoder();
  const decoder = new TextDecoder();
  return (input, entrypoint) => {
    const json = JSON.stringify(input);
    // Read per call: setData() moves both.
    const dataAddr = p.dataAddr as number;
    const inputAddr = p.dataHeapPtr as number;
    // UTF-8 takes at most 3 bytes per UTF-16 code unit.
    const room = json.length * 3;
    const short = inputAddr + room - mem.buffer.byteLength;
    if (short > 0) mem.grow(Math.ceil(short / PAGE));
    const { written } = encoder.encodeInto(json, new Uint8Array(mem.buffer, inputAddr, room));
    const resultAddr = run(0, entrypoint, dataAddr, inputAddr, written, inputAddr + written, 0);
    if (!resultAddr) throw new Error('opa_eval returned no result');
    const bytes = new Uint8Array(mem.buffer);
    const end = bytes.indexOf(0, resultAddr);
    if (end < 0) throw new Error('opa_eval result is not terminated');
    return JSON.parse(decoder.decode(bytes.subarray(resultAddr, end)));
  };
}
