import { readFile } from 'node:fs/promises';
import { dirname, isAbsolute, resolve } from 'node:path';
import { parseDocument } from 'yaml';
import { z } from 'zod';
import { TaskgateError } from '../errors.ts';

/**
 * Strict configuration loading shared by every entry point:
 *  - YAML (or JSON) file, parsed with line numbers for syntax errors;
 *  - environment overrides `TASKGATE__SECTION__KEY=value` (double underscore
 *    separates path segments; values parse as JSON when they can, else string);
 *  - validated by a zod schema in which every object is strict: an unknown key
 *    or a wrong type is an error naming the path to the field.
 */

export interface ConfigIssue {
  path: string;
  message: string;
}

export class ConfigError extends TaskgateError {
  readonly issues: ConfigIssue[];
  constructor(source: string, issues: ConfigIssue[]) {
    super('config_invalid', `${source}: ${issues.length} problem${issues.length === 1 ? '' : 's'}:\n${issues.map((i) => `  ${i.path || '(root)'}: ${i.message}`).join('\n')}`, {
      hint: 'see docs/configuration.md; `taskgate config check -c <file>` validates a file',
    });
    this.issues = issues;
  }
}

export function envOverrides(env: NodeJS.ProcessEnv = process.env, prefix = 'TASKGATE__'): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, raw] of Object.entries(env)) {
    if (!k.startsWith(prefix) || raw === undefined) continue;
    const path = k
      .slice(prefix.length)
      .split('__')
      .map((s) => s.toLowerCase());
    let v: unknown = raw;
    try {
      v = JSON.parse(raw);
    } catch {
      /* plain string */
    }
    let cur = out;
    for (const seg of path.slice(0, -1)) {
      cur[seg] = typeof cur[seg] === 'object' && cur[seg] !== null ? cur[seg] : {};
      cur = cur[seg] as Record<string, unknown>;
    }
    cur[path.at(-1)!] = v;
  }
  return out;
}

export function deepMerge(a: unknown, b: unknown): unknown {
  if (b === undefined) return a;
  if (a && b && typeof a === 'object' && typeof b === 'object' && !Array.isArray(a) && !Array.isArray(b)) {
    const out: Record<string, unknown> = { ...(a as Record<string, unknown>) };
    for (const [k, v] of Object.entries(b as Record<string, unknown>)) out[k] = deepMerge(out[k], v);
    return out;
  }
  return b;
}

export function formatZodIssues(err: z.ZodError): ConfigIssue[] {
  return err.issues.map((i) => {
    const path = i.path.map((p) => (typeof p === 'number' ? `[${p}]` : `.${String(p)}`)).join('').replace(/^\./, '');
    if (i.code === 'unrecognized_keys') {
      return { path: path, message: `unknown key${i.keys.length > 1 ? 's' : ''} ${i.keys.map((k) => JSON.stringify(k)).join(', ')}` };
    }
    return { path, message: i.message };
  });
}

/** Validates an already-parsed document against a schema. */
export function validateConfig<S extends z.ZodType>(schema: S, doc: unknown, source = 'config'): z.output<S> {
  const r = schema.safeParse(doc);
  if (!r.success) throw new ConfigError(source, formatZodIssues(r.error));
  return r.data;
}

/** Reads, overrides from the environment and validates a config file. */
export async function loadConfigFile<S extends z.ZodType>(
  schema: S,
  file: string,
  env: NodeJS.ProcessEnv = process.env,
): Promise<{ config: z.output<S>; baseDir: string }> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    throw new TaskgateError('config_invalid', `cannot read config ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  const doc = parseDocument(text, { prettyErrors: false, uniqueKeys: true });
  if (doc.errors.length > 0) {
    const lineOf = (pos: number) => text.slice(0, pos).split('\n').length;
    const issues = doc.errors.map((e) => ({ path: `line ${lineOf(e.pos[0])}`, message: e.message.split('\n')[0] ?? e.code }));
    throw new ConfigError(file, issues);
  }
  const merged = deepMerge(doc.toJS() ?? {}, envOverrides(env));
  return { config: validateConfig(schema, merged, file), baseDir: dirname(resolve(file)) };
}

/** Resolves a path from the config relative to the config file's directory. */
export function configPath(baseDir: string, p: string): string {
  return isAbsolute(p) || /^https?:\/\//.test(p) ? p : resolve(baseDir, p);
}
