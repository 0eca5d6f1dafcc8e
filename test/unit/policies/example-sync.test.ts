import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';

const REPO = join(import.meta.dirname, '../../..');

describe('examples/policy-repo', () => {
  it('ships the same Rego and constants as the reference policies (no drifted copy with old bugs)', async () => {
    for (const sub of ['', 'constants']) {
      const ref = (await readdir(join(REPO, 'policies', sub))).filter((f) => /\.(rego|yaml)$/.test(f));
      for (const f of ref) {
        const a = await readFile(join(REPO, 'policies', sub, f), 'utf8');
        const b = await readFile(join(REPO, 'examples/policy-repo/policies', sub, f), 'utf8').catch(() => '(missing)');
        assert.equal(b, a, `examples/policy-repo/policies/${sub ? sub + '/' : ''}${f} differs from policies/: cp policies/*.rego examples/policy-repo/policies/`);
      }
    }
  });
});
