import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

let root: string | undefined;

/**
 * The directory holding taskgate's package.json (and .tools/, policies/,
 * bin/, control-plane/inbox/), whether taskgate runs from its TypeScript
 * sources (core/ is one level down) or from the `npm run build` output
 * (dist/core/ is two levels down).
 */
export function packageRoot(): string {
  if (root) return root;
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, 'package.json'))) return (root = dir);
    const up = dirname(dir);
    if (up === dir) throw new Error(`taskgate's package.json was not found above ${dirname(fileURLToPath(import.meta.url))}`);
    dir = up;
  }
}
