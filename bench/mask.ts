/**
 * Masking hot paths: ns per column value (no match / match / column rule) and
 * MB/s of stream masking (text without and with secrets), each beside a baseline
 * measured in the same run.
 *
 *   node --import tsx bench/mask.ts
 *
 * Bounded: about 10 s in total.
 */
import { compileMaskPlan, createStreamMasker, type RowMasker } from '../core/mask/index.ts';
import { DETECTORS, type MaskRule } from '../core/policy-contract.ts';

const ALL_DETECTORS: MaskRule[] = DETECTORS.map((d) => ({ detector: d, strategy: 'redact' }));

/** Runs fn repeatedly for ~ms milliseconds (after a warm-up); returns ns per call of `per` units. */
function measure(fn: () => number, ms = 700): { nsPerOp: number; ops: number } {
  const warm = Date.now() + 150;
  while (Date.now() < warm) fn();
  let ops = 0;
  const t0 = process.hrtime.bigint();
  const end = Date.now() + ms;
  while (Date.now() < end) ops += fn();
  const ns = Number(process.hrtime.bigint() - t0);
  return { nsPerOp: ns / ops, ops };
}

// Typical column values: names, dates, ids, amounts, free text; none contains a secret.
const NO_MATCH = [
  'Alice Martin', '2024-01-15 10:30:00+00', '42', '1700000000000', '123e4567-e89b-12d3-a456-426614174000',
  '129.99', 'shipped', 'Order 1234567890123456 was delayed by the carrier', 'FR', 'v1.22.2', 'true',
  '192.168.10.20', '{"sku":"A-100","qty":2}', 'Rue de la Paix 12, 75002 Paris', '', 'pending review',
];
const MATCH = [
  'jane.doe@example.com', '4111 1111 1111 1111', 'call +1 415 555 2671', 'paid with 5500-0000-0000-0004 today',
  '123-45-6789', 'DE89 3704 0044 0532 0130 00', 'AKIAIOSFODNN7EXAMPLE', 'bob@example.org',
];

function rowBench(rm: RowMasker, values: string[], cols: number): () => number {
  return () => {
    let n = 0;
    for (let i = 0; i < values.length; i++) {
      const r = rm.mask(i % cols, values[i]!);
      if (r.masked) n++;
    }
    return values.length + (n & 0);
  };
}

const results: string[] = [];
function report(name: string, ns: number, base: number): void {
  const line = `${name.padEnd(58)} ${ns.toFixed(1).padStart(8)} ns/value   ${(ns / base).toFixed(2).padStart(6)}x baseline`;
  results.push(line);
  console.log(line);
}

// ---- values ----------------------------------------------------------------
{
  const cols = [{ name: 'c0' }, { name: 'c1' }, { name: 'c2' }, { name: 'c3' }];
  const empty = compileMaskPlan([]).forColumns(cols);
  const detect = compileMaskPlan(ALL_DETECTORS).forColumns(cols);
  const partial = compileMaskPlan([{ detector: 'card', strategy: 'partial' }, { detector: 'email', strategy: 'partial' }]).forColumns(cols);
  const byColumn = compileMaskPlan([{ column: 'c*', strategy: 'redact' }, ...ALL_DETECTORS]).forColumns(cols);
  const hashColumn = compileMaskPlan([{ column: 'c*', strategy: 'hash' }], { hashKey: 'hex:' + '42'.repeat(32) }).forColumns(cols);

  const base = measure(rowBench(empty, NO_MATCH, 4)).nsPerOp;
  console.log(`baseline: RowMasker with no rules (call + result object)   ${base.toFixed(1)} ns/value\n`);
  report('all 8 detectors, typical values, no match', measure(rowBench(detect, NO_MATCH, 4)).nsPerOp, base);
  report('all 8 detectors, values with a finding (redact)', measure(rowBench(detect, MATCH, 4)).nsPerOp, base);
  report('card+email partial, values with a finding', measure(rowBench(partial, MATCH, 4)).nsPerOp, base);
  report('column rule redact (detectors skipped)', measure(rowBench(byColumn, MATCH, 4)).nsPerOp, base);
  report('column rule hash (HMAC-SHA256 per value)', measure(rowBench(hashColumn, MATCH, 4)).nsPerOp, base);
}

// ---- streams ---------------------------------------------------------------
function makeText(withSecrets: boolean, bytes: number): Buffer {
  const lines = [
    '2024-01-15T10:30:00.123Z INFO  request id=123e4567-e89b-12d3-a456-426614174000 path=/api/v1/orders status=200 dur=12ms\n',
    'drwxr-xr-x  2 deploy deploy 4096 Jan 15 10:30 releases\n',
    '  PID TTY          TIME CMD\n 4242 pts/0    00:00:01 bash\n',
    'Zoë bought 3 items for 129.99 EUR \u2713\n',
  ];
  const secret = [
    'customer jane.doe@example.com paid with 4111 1111 1111 1111\n',
    'export AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE\n',
  ];
  const parts: string[] = [];
  let n = 0;
  let i = 0;
  while (n < bytes) {
    const l = withSecrets && i % 5 === 4 ? secret[i % 2]! : lines[i % lines.length]!;
    parts.push(l);
    n += Buffer.byteLength(l);
    i++;
  }
  return Buffer.from(parts.join(''));
}

function streamBench(text: Buffer, chunk: number, run: (c: Buffer) => number): number {
  const chunks: Buffer[] = [];
  for (let i = 0; i < text.length; i += chunk) chunks.push(text.subarray(i, i + chunk));
  const r = measure(() => {
    let n = 0;
    for (const c of chunks) n += run(c);
    return text.length + (n & 0);
  }, 1200);
  return 1e3 / r.nsPerOp; // bytes/ns * 1e3 = MB/s
}

{
  console.log('');
  const plan = compileMaskPlan(ALL_DETECTORS);
  const clean = makeText(false, 4 << 20);
  const dirty = makeText(true, 4 << 20);
  const CHUNK = 32 * 1024; // ssh2 channel data arrives in chunks up to ~32 KiB
  // baseline: copying each chunk (what any proxy does at minimum)
  const base = streamBench(clean, CHUNK, (c) => Buffer.from(c).length);
  const row = (name: string, mbs: number) => {
    const line = `${name.padEnd(58)} ${mbs.toFixed(0).padStart(8)} MB/s      ${(mbs / base).toFixed(3).padStart(6)}x baseline`;
    results.push(line);
    console.log(line);
  };
  console.log(`baseline: copy each 32 KiB chunk                          ${base.toFixed(0)} MB/s\n`);
  let sm = createStreamMasker(plan);
  row('stream, all 8 detectors, text without secrets', streamBench(clean, CHUNK, (c) => sm.push(c).length));
  sm = createStreamMasker(plan);
  row('stream, all 8 detectors, text with secrets every 5th line', streamBench(dirty, CHUNK, (c) => sm.push(c).length));
  const cardOnly = createStreamMasker(compileMaskPlan([{ detector: 'card', strategy: 'redact' }]));
  row('stream, card detector only, text without secrets', streamBench(clean, CHUNK, (c) => cardOnly.push(c).length));
  sm = createStreamMasker(plan);
  row('stream, all detectors, 1 KiB chunks (interactive-sized)', streamBench(clean, 1024, (c) => sm.push(c).length));
}

console.log('\nnote: shared 2-core machine with other engineers running tests; expect +-20% noise.');
