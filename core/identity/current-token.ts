import { TaskgateError } from '../errors.ts';
import { refreshLogin } from './device-login.ts';
import { defaultTokenFile, readTokens, writeTokens, type CachedTokens } from './token-cache.ts';

/**
 * The user's current access token for connecting through taskgate: from
 * TASKGATE_TOKEN, else the login cache, refreshed when it expires within a
 * minute.
 */
export async function currentToken(opts: { file?: string; env?: NodeJS.ProcessEnv; allowInsecureLoopback?: boolean } = {}): Promise<{ token: string; cached?: CachedTokens }> {
  const env = opts.env ?? process.env;
  if (env.TASKGATE_TOKEN) return { token: env.TASKGATE_TOKEN };
  const file = opts.file ?? defaultTokenFile(env);
  const cached = await readTokens(file);
  if (!cached) throw new TaskgateError('auth_failed', 'not logged in', { hint: 'run `taskgate login`' });
  if (cached.expires_at - Date.now() > 60_000) return { token: cached.access_token, cached };
  const fresh = await refreshLogin(cached, { allowInsecureLoopback: opts.allowInsecureLoopback ?? isLoopbackIssuer(cached.issuer) });
  await writeTokens(fresh, file);
  return { token: fresh.access_token, cached: fresh };
}

export function isLoopbackIssuer(issuer: string): boolean {
  try {
    return ['127.0.0.1', 'localhost', '[::1]'].includes(new URL(issuer).hostname);
  } catch {
    return false;
  }
}
