/**
 * SQL classification cost on the hot path: libpg-query parse alone (the
 * baseline: the least any parser-based classifier pays), the full classifier
 * without its cache (parse + fingerprint + scanner redaction + tree walk), the
 * classifier on a cache hit, and lineage over an already-parsed tree.
 *
 *   node --import tsx bench/sql-classify.ts      # ~15 s
 */
import { parseSync } from 'libpg-query';
import { loadSqlParser, SqlClassifier } from '../sidecar/postgres/classify.ts';
import { lineageOf } from '../sidecar/postgres/lineage.ts';

const QUERIES: Record<string, string> = {
  'pgbench select': 'SELECT abalance FROM pgbench_accounts WHERE aid = 48213;',
  'pgbench update': 'UPDATE pgbench_accounts SET abalance = abalance + -4177 WHERE aid = 48213;',
  'join + cte (10 lines)': `WITH recent AS (SELECT customer_id, max(created_at) AS last FROM orders WHERE created_at > now() - interval '30 days' GROUP BY 1)
    SELECT c.id, upper(c.email), c.card_number || '' AS card, r.last, (SELECT count(*) FROM tickets t WHERE t.customer_id = c.id) AS tickets
    FROM customers c JOIN recent r ON r.customer_id = c.id LEFT JOIN regions g ON g.id = c.region_id
    WHERE c.status = 'active' AND g.code IN ('EU', 'US') ORDER BY r.last DESC LIMIT 50`,
};

const RUN_MS = 1000;

function measure(fn: (i: number) => void): number {
  for (let i = 0; i < 2000; i++) fn(i); // warm up
  let n = 0;
  const t0 = performance.now();
  let t = t0;
  while (t - t0 < RUN_MS) {
    for (let i = 0; i < 200; i++) fn(n++);
    t = performance.now();
  }
  return ((t - t0) * 1000) / n; // µs per call
}

await loadSqlParser();
const uncached = new SqlClassifier({ cacheEntries: 0 });
const cached = new SqlClassifier();
console.log('SQL classification, µs per statement (single thread, loopback-free, machine shared)');
console.log('query'.padEnd(24), 'parse'.padStart(8), 'classify'.padStart(10), 'ratio'.padStart(7), 'cached'.padStart(8), 'lineage'.padStart(9));
for (const [name, sql] of Object.entries(QUERIES)) {
  // a different literal each call, like pgbench in simple-query mode, defeats no cache here: both paths see new text
  const variants = Array.from({ length: 1024 }, (_, i) => sql.replace('48213', String(10000 + i)));
  const parse = measure((i) => parseSync(variants[i & 1023]!));
  const classify = measure((i) => uncached.classifySync(variants[i & 1023]!));
  const hit = measure(() => cached.classifySync(sql));
  const node = cached.classifySync(sql).statements[0]!.node;
  const lineage = measure(() => lineageOf(node));
  console.log(
    name.padEnd(24),
    parse.toFixed(1).padStart(8),
    classify.toFixed(1).padStart(10),
    `${(classify / parse).toFixed(2)}x`.padStart(7),
    hit.toFixed(2).padStart(8),
    lineage.toFixed(1).padStart(9),
  );
}
