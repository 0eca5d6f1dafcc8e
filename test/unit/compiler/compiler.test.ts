import assert from 'node:assert/strict';
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { buildBundle } from '../../../compiler/build.ts';
import { validateCatalogText } from '../../../compiler/catalog.ts';
import { fmtPolicies, lintPolicies } from '../../../compiler/lint.ts';
import { loadTables, runTables } from '../../../compiler/tables.ts';
import { runPolicyTests } from '../../../compiler/test.ts';
import { PolicyEngine } from '../../../core/engine/engine.ts';
import { TaskgateError } from '../../../core/errors.ts';

const POLICIES = join(import.meta.dirname, '..', '..', '..', 'policies');
let tmp: string;

before(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'taskgate-compiler-test-'));
});
after(async () => {
  await rm(tmp, { recursive: true, force: true });
});

/** A copy of the reference policies to break on purpose. */
async function copyPolicies(name: string): Promise<string> {
  const dir = join(tmp, name);
  await cp(POLICIES, dir, { recursive: true });
  return dir;
}

const inputFor = (expires: string) => ({
  version: 1,
  identity: { subject: 'alice@example.com', groups: [], issuer: 'https://idp', type: 'user' },
  task: { id: 'OPS-7', type: 'read-only', assignee: 'alice@example.com', reviewers: ['bob@example.com'], state: 'open', expires_at: expires },
  resource: { protocol: 'postgres', name: 'db', labels: {} },
  request: { message: 'query', statements: [{ command: 'SELECT', class: 'read', tables: [{ schema: 'public', name: 'orders', access: 'read' }], functions: [], flags: [], fingerprint: 'f', text: 'SELECT 1' }] },
  review: { status: 'none', by: [] },
  session: { id: 's', started_at: '2026-06-01T00:00:00Z' },
  now: '2026-06-01T00:00:00Z',
});

describe('taskgate build', () => {
  test('the reference policies build and the bundle loads with the decision entrypoint', async () => {
    const r = await buildBundle({ dir: POLICIES, out: join(tmp, 'ref.tar.gz') });
    assert.match(r.revision, /^sha256:[0-9a-f]{24}$/);
    assert.ok(r.files.includes('task_types/data.yaml'));
    const engine = new PolicyEngine({ now: () => Date.parse('2026-06-01T00:00:00Z') });
    await engine.load(await readFile(r.out));
    const d = engine.evaluate(inputFor('2026-12-01T00:00:00Z'));
    assert.equal(d.result, 'allow', d.reasons.join('; '));
    assert.equal(d.obligations.max_rows, 10000);
  });

  test('an expired task is denied through the WASM path with an injected clock', async () => {
    const r = await buildBundle({ dir: POLICIES, out: join(tmp, 'clock.tar.gz') });
    let now = Date.parse('2026-11-30T23:59:59Z');
    const engine = new PolicyEngine({ now: () => now });
    await engine.load(await readFile(r.out));
    const input = inputFor('2026-12-01T00:00:00Z');
    assert.equal(engine.evaluate(input).result, 'allow');
    now = Date.parse('2026-12-01T00:00:00Z');
    const d = engine.evaluate(input);
    assert.equal(d.result, 'deny');
    assert.deepEqual(d.reasons, ['task OPS-7 expired at 2026-12-01T00:00:00Z']);
    assert.notEqual(d.synthetic, true, 'the policy itself denied, not the engine');
  });

  test('invalid Rego fails with file:line[:column] as OPA reports it', async () => {
    const dir = await copyPolicies('bad-rego');
    await writeFile(join(dir, 'broken.rego'), 'package taskgate.broken\n\nx := {\n');
    await assert.rejects(buildBundle({ dir, out: join(tmp, 'x.tar.gz') }), (e: unknown) => {
      assert.ok(e instanceof TaskgateError);
      assert.equal(e.code, 'policy_compile');
      assert.match(e.message, /bad-rego\/broken\.rego:\d+(:\d+)?: rego_parse_error/);
      return true;
    });
  });

  test('a builtin the WASM target lacks (http.send) is refused with the builtin and file:line', async () => {
    const dir = await copyPolicies('bad-builtin');
    await writeFile(join(dir, 'fetch.rego'), 'package taskgate.fetch\n\nr := http.send({"method": "GET", "url": "http://x"})\n');
    await assert.rejects(buildBundle({ dir, out: join(tmp, 'y.tar.gz') }), (e: unknown) => {
      assert.ok(e instanceof TaskgateError);
      assert.equal(e.code, 'policy_unsupported_builtin');
      assert.match(e.message, /http\.send at .*fetch\.rego:3/);
      return true;
    });
  });
});

describe('catalog validation', () => {
  const text = async () => readFile(join(POLICIES, 'task_types', 'data.yaml'), 'utf8');

  test('the reference catalog is valid', async () => {
    assert.deepEqual(validateCatalogText(await text(), 'data.yaml'), []);
  });

  test('an unknown key is an error naming its path and line', async () => {
    const bad = (await text()).replace(/(data-fix:[\s\S]*?)commands:/, '$1comands:');
    const problems = validateCatalogText(bad, 'data.yaml');
    assert.equal(problems.length, 1);
    assert.match(problems[0] as string, /^data\.yaml:\d+: task_types\.data-fix\.postgres\.comands: unknown key/);
  });

  test('mask rules without a selector or with an unknown strategy are refused', () => {
    const problems = validateCatalogText(
      't:\n  description: x\n  postgres: { classes: { read: allow } }\n  mask:\n    - { strategy: redact }\n    - { column: "*.email", strategy: scramble }\n',
      'c.yaml',
    );
    assert.equal(problems.length, 2, problems.join('\n'));
    assert.match(problems[0] as string, /c\.yaml:5: task_types\.t\.mask\[0\]: mask rule needs exactly one of column, field, detector/);
    assert.match(problems[1] as string, /c\.yaml:6: task_types\.t\.mask\[1\]: mask strategy must be one of/);
  });

  test('rules that can never fire and unknown effects are refused', () => {
    const problems = validateCatalogText(
      [
        't:',
        '  description: x',
        '  review: { approvers: [carol], min_approvals: 2 }',
        '  ssh: { kinds: { sftp: allow }, programs: { ls: allow } }',
        '  http: { kubernetes: [{ verbs: [get], effect: allow }], routes: [{ methods: [GET], paths: [/], effect: maybe }] }',
      ].join('\n'),
      'c.yaml',
    );
    const joined = problems.join('\n');
    assert.match(joined, /review\.min_approvals: 2 approvals can never be reached with 1 named approver/);
    assert.match(joined, /ssh\.programs: can never apply: kinds allows neither exec nor shell_line/);
    assert.match(joined, /http\.kubernetes\[0\]: can never match: give resources or non_resource_urls/);
    assert.match(joined, /http\.routes\[0\]\.effect: unknown effect "maybe"/);
  });

  test('taskgate build refuses a broken catalog with one line per problem', async () => {
    const dir = await copyPolicies('bad-catalog');
    const file = join(dir, 'task_types', 'data.yaml');
    await writeFile(file, (await readFile(file, 'utf8')).replace('write_effect: review', 'write_efect: review'));
    await assert.rejects(buildBundle({ dir, out: join(tmp, 'z.tar.gz') }), (e: unknown) => {
      assert.ok(e instanceof TaskgateError);
      assert.equal(e.code, 'catalog_invalid');
      assert.match(e.message, /task_types\.schema-migration\.postgres\.write_efect: unknown key/);
      return true;
    });
  });

  test('a decision table naming an unknown task type is an error', async () => {
    const dir = await copyPolicies('bad-table-type');
    await writeFile(join(dir, 'tests', 'typo.yaml'), 'cases:\n  - name: typo\n    input: { task: { type: reed-only } }\n    expect: { result: deny }\n');
    await assert.rejects(loadTables(dir, (await import('yaml')).parse(await readFile(join(dir, 'task_types', 'data.yaml'), 'utf8'))), /case "typo": unknown task type "reed-only"/);
  });
});

describe('taskgate test (decision tables)', () => {
  test('the reference tables pass and the WASM bundle agrees with opa eval on every case', async () => {
    const lines: string[] = [];
    const r = await runPolicyTests({ dir: POLICIES, out: (l) => lines.push(l) });
    assert.ok(r.ok, lines.join('\n'));
    assert.ok((r.coverage ?? 0) >= 90, `coverage ${r.coverage}`);
    assert.ok((r.tables?.outcomes.length ?? 0) >= 60);
    assert.equal(r.tables?.disagreements, 0);
  });

  test('a wrong expectation fails with a per-case diff and the run fails', async () => {
    const dir = await copyPolicies('wrong-expectation');
    await writeFile(
      join(dir, 'tests', 'wrong.yaml'),
      [
        'defaults:',
        '  input:',
        '    identity: { subject: alice@example.com, groups: [], issuer: i, type: user }',
        '    task: { id: OPS-8, type: read-only, assignee: alice@example.com, reviewers: [bob@example.com], state: open, expires_at: "2026-12-01T00:00:00Z" }',
        '    resource: { protocol: postgres, name: db, labels: {} }',
        '    review: { status: none, by: [] }',
        'cases:',
        '  - name: drop table wrongly expected to pass',
        '    input: { request: { message: query, statements: [{ command: DROP TABLE, class: ddl, tables: [{ schema: public, name: orders, access: write }], functions: [], flags: [] }] } }',
        '    expect: { result: allow, reasons: "no such reason" }',
      ].join('\n'),
    );
    const lines: string[] = [];
    const r = await runPolicyTests({ dir, out: (l) => lines.push(l) });
    assert.equal(r.ok, false);
    const out = lines.join('\n');
    assert.match(out, /FAIL .*wrong\.yaml: drop table wrongly expected to pass/);
    assert.match(out, /result: expected allow, got deny/);
    assert.match(out, /reasons: none contains "no such reason"/);
    assert.equal(r.tables?.disagreements, 0, 'both evaluators agree; only the expectation is wrong');
  });

  test('a disagreement between the WASM bundle and opa eval is reported', async () => {
    // A bundle built from different Rego than the source opa eval reads stands in for an artifact that drifted.
    const dir = await copyPolicies('drift');
    const built = await buildBundle({ dir, out: join(tmp, 'drift.tar.gz') });
    const file = join(dir, 'lib.rego');
    await writeFile(file, (await readFile(file, 'utf8')).replace('"deny": "is not allowed"', '"deny": "is forbidden"'));
    const cases = (await loadTables(dir)).filter((c) => c.name === 'read-only DROP TABLE is denied');
    const r = await runTables(dir, await readFile(built.out), cases);
    assert.equal(r.disagreements, 1);
    assert.match((r.failed[0]?.problems ?? []).join('\n'), /WASM bundle and opa eval disagree:\n\s+reasons: opa eval .*is forbidden.* vs WASM .*is not allowed/);
  });
});

describe('taskgate fmt / lint', () => {
  test('the reference policies are formatted and lint clean', async () => {
    assert.equal((await fmtPolicies(POLICIES, 'check')).ok, true);
    const l = await lintPolicies(POLICIES);
    assert.deepEqual(l.problems, []);
  });

  test('fmt --check lists an unformatted file; lint reports strict-mode errors with file:line', async () => {
    const dir = await copyPolicies('unformatted');
    await writeFile(join(dir, 'extra.rego'), 'package taskgate.extra\nimport rego.v1\nf(x) := 1 if {  true }\n');
    const f = await fmtPolicies(dir, 'check');
    assert.equal(f.ok, false);
    assert.match(f.output, /extra\.rego/);
    const l = await lintPolicies(dir);
    assert.equal(l.ok, false);
    assert.match(l.problems.join('\n'), /extra\.rego:\d+: rego_compile_error: unused argument x/);
  });
});
