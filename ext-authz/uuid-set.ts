/**
 * A set of canonical UUID strings (`xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`,
 * lowercase hex, as `crypto.randomUUID()` makes them) stored as 128-bit keys in
 * one typed array: adding an id allocates nothing on the JavaScript heap.
 *
 * Why: ext_authz remembers every allowed decision for ext_proc for seconds. As
 * Map entries, thousands a second of decision-id strings outlive the young
 * generation, get promoted, and make every scavenge copy them: at 2,000 Checks
 * a second that was 1.8 MB of survivors per scavenge (4 ms pauses instead of
 * 1 ms) and a 15 ms mark-compact every few seconds (measured, bench/ext-authz.ts).
 *
 * Open addressing, linear probing; UUIDs are random, so the first 32 bits are
 * the hash. An all-zero slot is empty (the nil UUID is not accepted). The table
 * doubles at half full, up to `maxEntries`; `add` returns false beyond that.
 */
export class UuidSet {
  private slots: Int32Array;
  private mask: number;
  private count = 0;

  constructor(
    private readonly maxEntries = 1 << 20,
    initialEntries = 1024,
  ) {
    const n = pow2AtLeast(Math.max(16, initialEntries * 2));
    this.slots = new Int32Array(n * 4);
    this.mask = n - 1;
  }

  get size(): number {
    return this.count;
  }

  /** Adds a canonical UUID; false if `id` is not one or the set is full. */
  add(id: string): boolean {
    if (!parseUuid(id, key)) return false;
    if (this.find(key) >= 0) return true;
    if (this.count >= this.maxEntries) return false;
    if ((this.count + 1) * 2 > this.mask + 1) this.grow();
    this.insert(key);
    this.count++;
    return true;
  }

  has(id: string): boolean {
    return parseUuid(id, key) && this.find(key) >= 0;
  }

  /** Empties the set, keeping its capacity (no allocation). */
  clear(): void {
    if (this.count === 0) return;
    this.slots.fill(0);
    this.count = 0;
  }

  private find(k: Int32Array): number {
    const s = this.slots;
    for (let i = k[0]! & this.mask; ; i = (i + 1) & this.mask) {
      const o = i * 4;
      if (s[o] === k[0] && s[o + 1] === k[1] && s[o + 2] === k[2] && s[o + 3] === k[3]) return o;
      if (s[o] === 0 && s[o + 1] === 0 && s[o + 2] === 0 && s[o + 3] === 0) return -1;
    }
  }

  private insert(k: Int32Array): void {
    const s = this.slots;
    let i = k[0]! & this.mask;
    while (s[i * 4] !== 0 || s[i * 4 + 1] !== 0 || s[i * 4 + 2] !== 0 || s[i * 4 + 3] !== 0) i = (i + 1) & this.mask;
    s.set(k, i * 4);
  }

  private grow(): void {
    const old = this.slots;
    this.slots = new Int32Array(old.length * 2);
    this.mask = old.length / 2 - 1;
    for (let o = 0; o < old.length; o += 4) {
      if (old[o] === 0 && old[o + 1] === 0 && old[o + 2] === 0 && old[o + 3] === 0) continue;
      this.insert(old.subarray(o, o + 4));
    }
  }
}

const key = new Int32Array(4);

const HEX = new Int8Array(128).fill(-1);
for (let i = 0; i < 10; i++) HEX[48 + i] = i;
for (let i = 0; i < 6; i++) HEX[97 + i] = 10 + i;

/** Parses a canonical lowercase UUID into four 32-bit words; false (and `out` unspecified) otherwise, or for the nil UUID. */
export function parseUuid(s: string, out: Int32Array): boolean {
  if (s.length !== 36) return false;
  let w = 0;
  let word = 0;
  let digits = 0;
  let nonZero = 0;
  for (let i = 0; i < 36; i++) {
    const c = s.charCodeAt(i);
    if (i === 8 || i === 13 || i === 18 || i === 23) {
      if (c !== 45) return false;
      continue;
    }
    const v = c < 128 ? HEX[c]! : -1;
    if (v < 0) return false;
    word = (word << 4) | v;
    if (++digits === 8) {
      out[w++] = word;
      nonZero |= word;
      word = 0;
      digits = 0;
    }
  }
  return nonZero !== 0;
}

function pow2AtLeast(n: number): number {
  let p = 1;
  while (p < n) p *= 2;
  return p;
}
