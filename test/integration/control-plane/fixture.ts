/** Shared setup for the control-plane tests: the fixture policy compiled to WASM, sessions, commands. */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildBundle } from '../../../compiler/build.ts';
import { PolicyEngine } from '../../../core/engine/engine.ts';
import type { CommandSpec, SessionContext } from '../../../core/gate.ts';
import type { Identity } from '../../../core/identity/identity.ts';

const POLICY_DIR = new URL('../../fixtures/control-plane/policy', import.meta.url).pathname;

let bundle: Promise<Buffer> | undefined;

/** The fixture policy, compiled once per process with the real `opa build -t wasm`. */
export async function fixtureEngine(): Promise<PolicyEngine> {
  bundle ??= (async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tg-cp-bundle-'));
    try {
      await buildBundle({ dir: POLICY_DIR, out: join(dir, 'bundle.tar.gz') });
      return await readFile(join(dir, 'bundle.tar.gz'));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  })();
  const engine = new PolicyEngine();
  await engine.load(await bundle, 'fixture');
  return engine;
}

let n = 0;
export function session(taskId: string, identity: Identity, labels: Record<string, string> = {}): SessionContext {
  return {
    id: `sess-${++n}`,
    started_at: new Date().toISOString(),
    identity,
    task_id: taskId,
    resource: { protocol: 'postgres', name: 'orders-db', labels },
  };
}

export function write(text = 'UPDATE orders SET status = $1 WHERE id = $2'): CommandSpec {
  return {
    request: {
      message: 'query',
      statements: [
        { command: 'UPDATE', class: 'write', tables: [{ schema: 'public', name: 'orders', access: 'write' }], functions: [], fingerprint: 'fp-upd', text, has_where: true, flags: [] },
      ],
    },
    text,
    fingerprint: `fp-${text.length}-${text.slice(0, 12)}`,
  };
}

export function user(sub: string, groups: string[] = []): Identity {
  return { subject: sub, groups, issuer: 'test', type: 'user' };
}

/** Resolves when `p` settles or rejects after ms: every wait in these tests is bounded. */
export function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  return Promise.race([p, new Promise<T>((_, reject) => setTimeout(() => reject(new Error(`${what}: no result within ${ms} ms`)), ms).unref())]);
}
