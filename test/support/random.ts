/**
 * Small seeded PRNGs for property and fuzz tests: the same seed gives the same
 * sequence on every run, so a failure reproduces. Both return floats in [0, 1).
 */

/** mulberry32. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** xorshift32 (a zero seed, which would stay zero, becomes `zeroSeed`). */
export function xorshift32(seed: number, zeroSeed = 1): () => number {
  let s = seed >>> 0 || zeroSeed;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 4294967296;
  };
}
