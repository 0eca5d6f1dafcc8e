import { chmod, mkdir, readFile, rename, writeFile, rm } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';

/** What `taskgate login` keeps: the token set of one issuer, in a 0600 file in a 0700 directory. */
export interface CachedTokens {
  issuer: string;
  client_id: string;
  audience?: string;
  access_token: string;
  refresh_token?: string;
  id_token?: string;
  /** ms since epoch */
  expires_at: number;
  subject?: string;
}

export function defaultTokenFile(env: NodeJS.ProcessEnv = process.env): string {
  if (env.TASKGATE_TOKEN_FILE) return env.TASKGATE_TOKEN_FILE;
  const base = env.XDG_CONFIG_HOME || join(homedir(), '.config');
  return join(base, 'taskgate', 'token.json');
}

export async function readTokens(file = defaultTokenFile()): Promise<CachedTokens | undefined> {
  try {
    const t = JSON.parse(await readFile(file, 'utf8')) as CachedTokens;
    return typeof t.access_token === 'string' ? t : undefined;
  } catch {
    return undefined;
  }
}

/** Writes atomically (temp file + rename) with mode 0600; the directory is 0700. */
export async function writeTokens(t: CachedTokens, file = defaultTokenFile()): Promise<void> {
  await mkdir(dirname(file), { recursive: true, mode: 0o700 });
  await chmod(dirname(file), 0o700).catch(() => undefined);
  const tmp = `${file}.${process.pid}.tmp`;
  await writeFile(tmp, JSON.stringify(t, null, 2), { mode: 0o600 });
  await chmod(tmp, 0o600);
  await rename(tmp, file);
}

export async function clearTokens(file = defaultTokenFile()): Promise<void> {
  await rm(file, { force: true });
}
