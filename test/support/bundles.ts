import { mkdtemp, writeFile, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildBundle } from '../../compiler/build.ts';

/** Compiles a Rego source (and optional data) into a bundle with the real compiler; returns the bundle bytes. */
export async function compileRego(rego: string, data?: unknown): Promise<Buffer> {
  const dir = await mkdtemp(join(tmpdir(), 'taskgate-fixture-'));
  try {
    await writeFile(join(dir, 'policy.rego'), rego);
    if (data !== undefined) await writeFile(join(dir, 'data.json'), JSON.stringify(data));
    const out = join(dir, 'bundle.tar.gz');
    await buildBundle({ dir, out });
    return await readFile(out);
  } finally {
    await rm(dir, { recursive: true, force: true }).catch(() => undefined);
  }
}

/** A policy whose decision is `result` for every input, with a reason naming it. */
export function constantPolicy(result: 'allow' | 'deny' | 'review', extra = ''): string {
  return `package taskgate
import rego.v1
decision := {"result": "${result}", "reasons": ["constant ${result}${extra}"], "mask": [], "obligations": {}${
    result === 'review' ? ', "review": {"approvers": ["bob@example.com"], "min_approvals": 1, "timeout_s": 30}' : ''
  }} if { input.review.status == "none" }
decision := {"result": "allow", "reasons": ["approved"], "mask": [], "obligations": {}} if { input.review.status == "approved" }
decision := {"result": "deny", "reasons": ["review not approved"], "mask": [], "obligations": {}} if { not input.review.status in {"none", "approved"} }
`;
}
