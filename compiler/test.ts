import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { TaskgateError } from '../core/errors.ts';
import { buildBundle, IGNORED } from './build.ts';
import { loadCatalog } from './catalog.ts';
import { runOpa } from './opa.ts';
import { formatFailure, loadTables, runTables, type TablesReport } from './tables.ts';

/**
 * `taskgate test [dir]`: the policy's own `opa test` suite with coverage,
 * then the decision tables evaluated by the compiled WASM bundle and by
 * `opa eval`. Output goes through `out` (the CLI passes stdout).
 */
export interface PolicyTestOptions {
  dir: string;
  /** Minimum coverage of the policy (non-test) Rego files, percent. */
  threshold?: number;
  out?: (line: string) => void;
}

export interface PolicyTestReport {
  ok: boolean;
  coverage: number | undefined;
  opaTestsPassed: boolean;
  tables: TablesReport | undefined;
}

export interface CoverageReport {
  /** Percent of lines covered in the policy files (test files excluded). */
  coverage: number;
  files: { file: string; coverage: number; not_covered: { start: number; end: number }[] }[];
}

interface OpaCoverage {
  files: Record<string, { covered_lines?: number; not_covered_lines?: number; not_covered?: { start: { row: number }; end: { row: number } }[] }>;
}

/** Runs `opa test --coverage`; returns the failure output or the coverage of the policy files. */
export async function opaTest(dir: string): Promise<{ passed: true; report: CoverageReport | undefined } | { passed: false; output: string }> {
  const args = ['test', '.', '--coverage'];
  for (const ig of IGNORED.filter((i) => i !== '*_test.rego')) args.push('--ignore', ig);
  const r = await runOpa(args, { cwd: resolve(dir) });
  if (r.code !== 0) return { passed: false, output: (r.stdout + r.stderr).trim() };
  const cov = JSON.parse(r.stdout) as OpaCoverage;
  let covered = 0;
  let total = 0;
  const files: CoverageReport['files'] = [];
  for (const [file, f] of Object.entries(cov.files ?? {})) {
    if (file.endsWith('_test.rego')) continue;
    const c = f.covered_lines ?? 0;
    const n = f.not_covered_lines ?? 0;
    covered += c;
    total += c + n;
    files.push({
      file,
      coverage: c + n === 0 ? 100 : (100 * c) / (c + n),
      not_covered: (f.not_covered ?? []).map((x) => ({ start: x.start.row, end: x.end.row })),
    });
  }
  if (total === 0) return { passed: true, report: undefined };
  return { passed: true, report: { coverage: (100 * covered) / total, files } };
}

export async function runPolicyTests(opts: PolicyTestOptions): Promise<PolicyTestReport> {
  const out = opts.out ?? ((l: string) => process.stdout.write(`${l}\n`));
  const dir = opts.dir;
  const threshold = opts.threshold ?? 90;
  if (!(await stat(dir).catch(() => undefined))?.isDirectory()) {
    throw new TaskgateError('policy_compile', `policy directory ${dir} does not exist`);
  }
  const catalog = await loadCatalog(dir);
  const cases = await loadTables(dir, catalog?.catalog);
  let ok = true;

  // 1. opa test with coverage
  const t = await opaTest(dir);
  let coverage: number | undefined;
  if (!t.passed) {
    ok = false;
    out(`opa test: FAILED\n${t.output}`);
  } else if (!t.report) {
    out('opa test: no policy files with test coverage (no *_test.rego?)');
    if (threshold > 0) ok = false;
  } else {
    coverage = t.report.coverage;
    const verdict = coverage >= threshold ? 'ok' : 'BELOW THRESHOLD';
    out(`opa test: passed; coverage ${coverage.toFixed(1)}% (threshold ${threshold}%) ${verdict}`);
    for (const f of t.report.files) {
      const gaps = [...new Set(f.not_covered.map((g) => (g.start === g.end ? `${g.start}` : `${g.start}-${g.end}`)))].join(',');
      out(`  ${f.file.padEnd(28)} ${f.coverage.toFixed(1).padStart(5)}%${gaps ? `  not covered: lines ${gaps}` : ''}`);
    }
    if (coverage < threshold) ok = false;
  }

  // 2. decision tables: compiled WASM vs opa eval vs expectation
  let tables: TablesReport | undefined;
  if (cases.length === 0) {
    out(`decision tables: none (add YAML files under ${join(dir, 'tests')}/)`);
  } else {
    const tmp = await mkdtemp(join(tmpdir(), 'taskgate-test-'));
    try {
      const built = await buildBundle({ dir, out: join(tmp, 'bundle.tar.gz') });
      const bundle = await readFile(built.out);
      tables = await runTables(dir, bundle, cases);
    } finally {
      await rm(tmp, { recursive: true, force: true });
    }
    for (const f of tables.failed) out(formatFailure(f));
    const files = new Set(cases.map((c) => c.file)).size;
    out(
      `decision tables: ${cases.length - tables.failed.length}/${cases.length} cases passed (${files} files); ` +
        `WASM bundle and opa eval ${tables.disagreements === 0 ? 'agree on every case' : `DISAGREE on ${tables.disagreements} case(s)`}`,
    );
    if (tables.failed.length > 0) ok = false;
  }
  return { ok, coverage, opaTestsPassed: t.passed, tables };
}
