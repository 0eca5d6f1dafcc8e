import { readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { parse } from 'yaml';
import { z } from 'zod';
import { TaskgateError } from '../errors.ts';
import { formatZodIssues, ConfigError } from '../config/load.ts';

/**
 * The user's side: which taskgate endpoints exist and how to reach them
 * (`taskgate connect <resource>`). Kept in $XDG_CONFIG_HOME/taskgate/resources.yaml
 * (or TASKGATE_RESOURCES); `taskgate demo` writes one for the demo.
 */
const Resource = z.discriminatedUnion('protocol', [
  z.strictObject({
    protocol: z.literal('postgres'),
    host: z.string().default('127.0.0.1'),
    port: z.number().int().min(1).max(65535),
    database: z.string().default('postgres'),
    user: z.string().optional(),
    sslmode: z.enum(['disable', 'prefer', 'require', 'verify-ca', 'verify-full']).default('prefer'),
  }),
  z.strictObject({
    protocol: z.literal('ssh'),
    host: z.string().default('127.0.0.1'),
    port: z.number().int().min(1).max(65535).default(22),
    user: z.string().optional(),
    /** known_hosts line(s) for the sidecar's host key */
    known_hosts: z.string().optional(),
  }),
  z.strictObject({
    protocol: z.literal('http'),
    url: z.string().url(),
    kubernetes: z.boolean().default(false),
    ca_file: z.string().optional(),
    insecure_skip_tls_verify: z.boolean().default(false),
  }),
]);

export const ResourcesFile = z.strictObject({ resources: z.record(z.string(), Resource) });
export type ClientResource = z.output<typeof Resource>;

export function defaultResourcesFile(env: NodeJS.ProcessEnv = process.env): string {
  return env.TASKGATE_RESOURCES || join(env.XDG_CONFIG_HOME || join(homedir(), '.config'), 'taskgate', 'resources.yaml');
}

export async function loadResources(file = defaultResourcesFile()): Promise<Record<string, ClientResource>> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch {
    throw new TaskgateError('not_found', `no resources file at ${file}`, { hint: 'create it (see docs/getting-started.md) or set TASKGATE_RESOURCES' });
  }
  let doc: unknown;
  try {
    doc = parse(text);
  } catch (e) {
    throw new TaskgateError('config_invalid', `${file}: ${(e as Error).message.split('\n')[0]}`);
  }
  const r = ResourcesFile.safeParse(doc);
  if (!r.success) throw new ConfigError(file, formatZodIssues(r.error));
  return r.data.resources;
}
