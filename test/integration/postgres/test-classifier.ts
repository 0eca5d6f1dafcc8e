/**
 * A deliberately small test double for the SQL classifier, used only until
 * sidecar/postgres/classify.ts (libpg-query) is in the tree: it recognises
 * the leading keyword(s) of the statements these tests send and splits on
 * semicolons outside quotes. It is not a classifier for production.
 */
import type { PgStatement } from '../../../core/policy-contract.ts';
import type { AnalyzedSql, SqlClassifier } from '../../../sidecar/postgres/classifier-port.ts';

const TWO_WORD = new Set(['DROP', 'CREATE', 'ALTER']);

function split(text: string): string[] {
  const out: string[] = [];
  let cur = '';
  let q: string | undefined;
  for (const ch of text) {
    if (q) {
      if (ch === q) q = undefined;
    } else if (ch === "'" || ch === '"') q = ch;
    else if (ch === ';') {
      if (cur.trim()) out.push(cur.trim());
      cur = '';
      continue;
    }
    cur += ch;
  }
  if (cur.trim()) out.push(cur.trim());
  return out;
}

function one(sql: string): PgStatement {
  const words = sql.replace(/^\s*(--[^\n]*\n|\/\*[\s\S]*?\*\/)\s*/g, '').split(/\s+/).map((w) => w.toUpperCase());
  const first = words[0] ?? '';
  const command = TWO_WORD.has(first) ? `${first} ${words[1] ?? ''}` : first;
  const tables = [...sql.matchAll(/\b(?:from|into|update|table|join)\s+([a-z_][\w.]*)/gi)].map((m) => {
    const [a, b] = m[1]!.toLowerCase().split('.');
    return b ? { schema: a!, name: b, access: 'read' as const } : { schema: 'public', name: a!, access: 'read' as const };
  });
  const text = sql.replace(/'(?:[^']|'')*'/g, '$1').replace(/\b\d+\b/g, '$n');
  return {
    command,
    class: /^(SELECT|SHOW)$/.test(command) ? 'read' : 'write',
    tables,
    functions: [],
    fingerprint: `test:${text.toLowerCase()}`,
    text,
    flags: /\bprogram\b/i.test(sql) ? ['copy_program'] : [],
  };
}

export const testClassifier: SqlClassifier = (text): AnalyzedSql => {
  const parts = split(text);
  const statements = parts.map(one);
  return { statements, lineage: statements.map(() => undefined) };
};
