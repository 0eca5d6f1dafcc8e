/** Serves the web inbox: plain HTML, CSS and JS from this directory, no build step. */
import { readFileSync } from 'node:fs';
import type { ServerResponse } from 'node:http';
import { join } from 'node:path';
import { TaskgateError } from '../../core/errors.ts';
import { packageRoot } from '../../core/package-root.ts';

// The sources' directory, also when running from the build (dist/ holds no .html/.css).
const dir = join(packageRoot(), 'control-plane', 'inbox');
const FILES: Record<string, { file: string; type: string }> = {
  '/inbox': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/inbox/': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/inbox/app.js': { file: 'app.js', type: 'text/javascript; charset=utf-8' },
  '/inbox/style.css': { file: 'style.css', type: 'text/css; charset=utf-8' },
};
const cache = new Map<string, Buffer>();

export function serveInbox(path: string, res: ServerResponse): void {
  const f = FILES[path];
  if (!f) throw new TaskgateError('not_found', `no inbox asset ${path}`);
  let body = cache.get(f.file);
  if (!body) cache.set(f.file, (body = readFileSync(join(dir, f.file))));
  res.writeHead(200, {
    'content-type': f.type,
    'content-length': body.length,
    'cache-control': 'no-cache',
    'content-security-policy': "default-src 'self'; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'",
    'x-content-type-options': 'nosniff',
    'referrer-policy': 'no-referrer',
  });
  res.end(body);
}
