import { readFile, stat } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { isMap, isScalar, isSeq, LineCounter, parseDocument, type Document } from 'yaml';
import { validateMaskRule } from '../core/engine/decision-schema.ts';
import { TaskgateError } from '../core/errors.ts';
import type { SshKind } from '../core/policy-contract.ts';

/**
 * Strict validation of the task-type catalog (`<dir>/task_types/data.yaml`,
 * loaded by OPA as `data.task_types`). Unknown keys, wrong types, unknown
 * effects, mask rules the masker would refuse and rules that can never fire
 * are errors, one line each, with the path and the source line:
 *
 *   policies/task_types/data.yaml:57: task_types.data-fix.postgres.comands: unknown key (expected: classes, commands, ...)
 */

export type Effect = 'allow' | 'review' | 'deny';
export type Catalog = Record<string, Record<string, unknown>>;

export interface LoadedCatalog {
  file: string;
  catalog: Catalog;
}

const EFFECTS: readonly string[] = ['allow', 'review', 'deny'];
const PG_CLASSES = ['read', 'write', 'ddl', 'dcl', 'tcl', 'session', 'admin', 'utility', 'unparseable', '*'];
const SSH_KINDS: readonly (SshKind | '*')[] = [
  'exec', 'shell', 'shell_line', 'subsystem', 'sftp', 'scp', 'port_forward', 'remote_forward', 'agent_forward', 'x11', '*',
];
const K8S_VERBS = ['get', 'list', 'watch', 'create', 'update', 'patch', 'delete', 'deletecollection', 'proxy', 'connect', '*'];
const HTTP_METHODS = ['GET', 'HEAD', 'OPTIONS', 'POST', 'PUT', 'PATCH', 'DELETE', 'CONNECT', 'TRACE', '*'];

const CATALOG_FILES = ['data.yaml', 'data.yml', 'data.json'];

/** The catalog file of a policy directory, or undefined when it has none. */
export async function findCatalog(dir: string): Promise<string | undefined> {
  for (const f of CATALOG_FILES) {
    const p = join(dir, 'task_types', f);
    if ((await stat(p).catch(() => undefined))?.isFile()) return p;
  }
  return undefined;
}

/** Loads and validates the catalog of `dir`; undefined when the directory has no catalog. Throws catalog_invalid. */
export async function loadCatalog(dir: string): Promise<LoadedCatalog | undefined> {
  const file = await findCatalog(dir);
  if (!file) return undefined;
  const text = await readFile(file, 'utf8');
  const shown = relative(process.cwd(), file) || file;
  const problems = validateCatalogText(text, shown);
  if (problems.length > 0) {
    throw new TaskgateError('catalog_invalid', `task-type catalog has ${problems.length} problem(s):\n  ${problems.join('\n  ')}`);
  }
  return { file, catalog: parseDocument(text).toJS() as Catalog };
}

/** All problems in a catalog's text, one line each, prefixed with `file:line:`. */
export function validateCatalogText(text: string, file: string): string[] {
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, uniqueKeys: true });
  if (doc.errors.length > 0) {
    return doc.errors.map((e) => `${file}:${e.linePos?.[0]?.line ?? 1}: ${e.message.split('\n')[0]}`);
  }
  const v = new Validator(doc, lc, file);
  v.catalog(doc.toJS());
  return v.problems;
}

type Path = (string | number)[];

class Validator {
  readonly problems: string[] = [];
  constructor(
    private readonly doc: Document,
    private readonly lc: LineCounter,
    private readonly file: string,
  ) {}

  private line(path: Path): number {
    let node: unknown = this.doc.contents;
    let line = 1;
    for (const seg of path) {
      if (isMap(node)) {
        const pair = node.items.find((p) => isScalar(p.key) && p.key.value === seg);
        if (!pair) break;
        const r = (pair.key as { range?: [number, number, number] }).range;
        if (r) line = this.lc.linePos(r[0]).line;
        node = pair.value;
      } else if (isSeq(node) && typeof seg === 'number') {
        node = node.items[seg];
        const r = (node as { range?: [number, number, number] } | undefined)?.range;
        if (r) line = this.lc.linePos(r[0]).line;
      } else break;
    }
    return line;
  }

  private fail(path: Path, msg: string): void {
    const shown = ['task_types', ...path].map((s) => (typeof s === 'number' ? `[${s}]` : s)).join('.').replace(/\.\[/g, '[');
    this.problems.push(`${this.file}:${this.line(path)}: ${shown}: ${msg}`);
  }

  private keys(o: Record<string, unknown>, path: Path, allowed: string[], required: string[] = []): void {
    for (const k of Object.keys(o)) {
      if (!allowed.includes(k)) this.fail([...path, k], `unknown key (expected: ${allowed.join(', ')})`);
    }
    for (const k of required) if (o[k] === undefined) this.fail(path, `missing required key ${k}`);
  }

  private object(v: unknown, path: Path): Record<string, unknown> | undefined {
    if (v !== null && typeof v === 'object' && !Array.isArray(v)) return v as Record<string, unknown>;
    this.fail(path, `must be a mapping, got ${describe(v)}`);
    return undefined;
  }

  private strings(v: unknown, path: Path, check?: (s: string, p: Path) => void): string[] {
    if (!Array.isArray(v)) {
      this.fail(path, `must be a list of strings, got ${describe(v)}`);
      return [];
    }
    v.forEach((s, i) => {
      if (typeof s !== 'string' || s === '') this.fail([...path, i], `must be a non-empty string, got ${describe(s)}`);
      else check?.(s, [...path, i]);
    });
    return v.filter((s): s is string => typeof s === 'string');
  }

  private effect(v: unknown, path: Path): Effect | undefined {
    if (typeof v === 'string' && EFFECTS.includes(v)) return v as Effect;
    this.fail(path, `unknown effect ${typeof v === 'string' ? JSON.stringify(v) : describe(v)} (expected allow, review or deny)`);
    return undefined;
  }

  /** A map of name -> effect; `keyCheck` returns an error for a bad key. */
  private effectMap(v: unknown, path: Path, keyCheck?: (k: string) => string | undefined): Effect[] {
    const o = this.object(v, path);
    if (!o) return [];
    const out: Effect[] = [];
    for (const [k, e] of Object.entries(o)) {
      const bad = keyCheck?.(k);
      if (bad) this.fail([...path, k], bad);
      const eff = this.effect(e, [...path, k]);
      if (eff) out.push(eff);
    }
    return out;
  }

  catalog(root: unknown): void {
    if (root === null || root === undefined) {
      this.problems.push(`${this.file}:1: the catalog is empty (expected a mapping of task type id -> definition)`);
      return;
    }
    const o = this.object(root, []);
    if (!o) return;
    for (const [id, def] of Object.entries(o)) {
      if (!/^[a-z0-9][a-z0-9-]*$/.test(id)) this.fail([id], 'task type id must be lower-case letters, digits and dashes');
      const t = this.object(def, [id]);
      if (t) this.taskType(id, t);
    }
  }

  private taskType(id: string, t: Record<string, unknown>): void {
    const p = [id];
    this.keys(t, p, ['description', 'review', 'mask', 'obligations', 'postgres', 'ssh', 'http'], ['description']);
    if (t.description !== undefined && typeof t.description !== 'string') this.fail([id, 'description'], 'must be a string');
    const effects: Effect[] = [];
    if (t.postgres !== undefined) effects.push(...this.postgres(t.postgres, [id, 'postgres']));
    if (t.ssh !== undefined) effects.push(...this.ssh(t.ssh, [id, 'ssh']));
    if (t.http !== undefined) effects.push(...this.http(t.http, [id, 'http']));
    if (t.postgres === undefined && t.ssh === undefined && t.http === undefined) {
      this.fail(p, 'grants nothing: define at least one of postgres, ssh, http');
    }
    if (t.review !== undefined) this.review(t.review, [id, 'review']);
    else if (effects.includes('review')) this.fail(p, 'uses effect review but has no review section (approvers, min_approvals, timeout_s)');
    if (t.mask !== undefined) this.mask(t.mask, [id, 'mask']);
    if (t.obligations !== undefined) this.obligations(t.obligations, [id, 'obligations']);
  }

  private review(v: unknown, p: Path): void {
    const r = this.object(v, p);
    if (!r) return;
    this.keys(r, p, ['approvers', 'min_approvals', 'timeout_s'], ['approvers']);
    const approvers = r.approvers === undefined ? [] : this.strings(r.approvers, [...p, 'approvers'], (s, sp) => {
      if (s.startsWith('$') && s !== '$reviewers') this.fail(sp, `unknown approver token ${s} (only $reviewers: the task's reviewers)`);
      if (s.startsWith('group:') && s.length === 6) this.fail(sp, 'group: needs a group name');
    });
    if (r.approvers !== undefined && approvers.length === 0) this.fail([...p, 'approvers'], 'must name at least one approver');
    const min = r.min_approvals ?? 1;
    if (typeof min !== 'number' || !Number.isInteger(min) || min < 1) this.fail([...p, 'min_approvals'], 'must be an integer >= 1');
    else {
      const open = approvers.some((a) => a === '$reviewers' || a.startsWith('group:'));
      if (!open && min > new Set(approvers).size) {
        this.fail([...p, 'min_approvals'], `${min} approvals can never be reached with ${approvers.length} named approver(s)`);
      }
    }
    const timeout = r.timeout_s ?? 900;
    if (typeof timeout !== 'number' || !(timeout > 0)) this.fail([...p, 'timeout_s'], 'must be a positive number of seconds');
  }

  private mask(v: unknown, p: Path): void {
    if (!Array.isArray(v)) {
      this.fail(p, `must be a list of mask rules, got ${describe(v)}`);
      return;
    }
    v.forEach((m, i) => {
      const o = this.object(m, [...p, i]);
      if (!o) return;
      this.keys(o, [...p, i], ['column', 'field', 'detector', 'strategy', 'keep']);
      const checked = validateMaskRule(o);
      if (typeof checked === 'string') this.fail([...p, i], checked);
      else if (o.keep !== undefined && o.strategy !== 'partial') this.fail([...p, i, 'keep'], 'keep only applies to strategy partial');
    });
  }

  private obligations(v: unknown, p: Path): void {
    const o = this.object(v, p);
    if (!o) return;
    this.keys(o, p, ['max_rows', 'max_bytes', 'session_ttl_s', 'record']);
    for (const k of ['max_rows', 'max_bytes', 'session_ttl_s']) {
      const n = o[k];
      if (n !== undefined && (typeof n !== 'number' || !Number.isInteger(n) || n <= 0)) this.fail([...p, k], 'must be a positive integer');
    }
    if (o.record !== undefined && typeof o.record !== 'boolean') this.fail([...p, 'record'], 'must be true or false');
  }

  private postgres(v: unknown, p: Path): Effect[] {
    const o = this.object(v, p);
    if (!o) return [];
    this.keys(o, p, ['classes', 'commands', 'flags', 'functions', 'dangerous', 'tables', 'write_effect', 'require_where']);
    const effects: Effect[] = [];
    if (o.classes !== undefined) {
      effects.push(...this.effectMap(o.classes, [...p, 'classes'], (k) => (PG_CLASSES.includes(k) ? undefined : `unknown statement class (expected: ${PG_CLASSES.join(', ')})`)));
    }
    if (o.commands !== undefined) {
      effects.push(...this.effectMap(o.commands, [...p, 'commands'], (k) => (/^[A-Z][A-Z ]*$/.test(k) ? undefined : 'commands are upper case, as PostgreSQL names them (e.g. SELECT, CREATE TABLE)')));
    }
    if (o.flags !== undefined) effects.push(...this.effectMap(o.flags, [...p, 'flags'], (k) => (/^[a-z_]+$/.test(k) ? undefined : 'flags are lower_snake_case (e.g. for_update)')));
    if (o.functions !== undefined) {
      effects.push(...this.effectMap(o.functions, [...p, 'functions'], (k) => (/^[a-z_][a-z0-9_]*$/.test(k) ? undefined : 'function names are lower case without schema (pg_catalog.set_config -> set_config)')));
    }
    if (o.dangerous !== undefined) effects.push(...this.effectMap(o.dangerous, [...p, 'dangerous']));
    if (o.tables !== undefined) {
      const t = this.object(o.tables, [...p, 'tables']);
      if (t) {
        this.keys(t, [...p, 'tables'], ['read', 'write', 'deny']);
        for (const k of ['read', 'write', 'deny']) {
          if (t[k] !== undefined) {
            this.strings(t[k], [...p, 'tables', k], (s, sp) => {
              if (s.split('.').length !== 2) this.fail(sp, `table pattern ${JSON.stringify(s)} must be schema.table (globs allowed: app.*, *.*)`);
            });
          }
        }
      }
    }
    if (o.write_effect !== undefined) {
      const e = this.effect(o.write_effect, [...p, 'write_effect']);
      if (e) effects.push(e);
      const writes = (o.tables as Record<string, unknown> | undefined)?.write;
      if (!Array.isArray(writes) || writes.length === 0) this.fail([...p, 'write_effect'], 'can never apply: tables.write lists no writable tables');
    }
    if (o.require_where !== undefined && typeof o.require_where !== 'boolean') this.fail([...p, 'require_where'], 'must be true or false');
    return effects;
  }

  private ssh(v: unknown, p: Path): Effect[] {
    const o = this.object(v, p);
    if (!o) return [];
    this.keys(o, p, ['kinds', 'programs', 'paths', 'redirects', 'via', 'forwards'], ['kinds']);
    const effects: Effect[] = [];
    let kinds: Record<string, unknown> = {};
    if (o.kinds !== undefined) {
      effects.push(...this.effectMap(o.kinds, [...p, 'kinds'], (k) => (SSH_KINDS.includes(k as SshKind) ? undefined : `unknown SSH request kind (expected: ${SSH_KINDS.join(', ')})`)));
      kinds = (o.kinds ?? {}) as Record<string, unknown>;
    }
    const runsCommands = ['exec', 'shell_line', '*'].some((k) => kinds[k] !== undefined && kinds[k] !== 'deny');
    if (o.programs !== undefined) {
      const progs = this.object(o.programs, [...p, 'programs']);
      if (progs && !runsCommands) this.fail([...p, 'programs'], 'can never apply: kinds allows neither exec nor shell_line');
      for (const [name, rule] of Object.entries(progs ?? {})) {
        const rp = [...p, 'programs', name];
        if (name.includes('/')) this.fail(rp, 'program names are bare names (restrict locations with ssh.paths)');
        if (typeof rule === 'string') {
          const e = this.effect(rule, rp);
          if (e) effects.push(e);
        } else if (Array.isArray(rule)) {
          if (rule.length === 0) this.fail(rp, 'an empty rule list denies everything: remove the program instead');
          rule.forEach((r, i) => {
            const ro = this.object(r, [...rp, i]);
            if (!ro) return;
            this.keys(ro, [...rp, i], ['args', 'effect'], ['effect']);
            if (ro.args !== undefined && (typeof ro.args !== 'string' || ro.args === '')) this.fail([...rp, i, 'args'], 'must be a non-empty glob over the arguments');
            if (ro.effect !== undefined) {
              const e = this.effect(ro.effect, [...rp, i, 'effect']);
              if (e) effects.push(e);
            }
          });
        } else this.fail(rp, 'must be an effect (allow|review|deny) or a list of {args, effect} rules');
      }
    }
    if (o.paths !== undefined) this.strings(o.paths, [...p, 'paths'], (s, sp) => {
      if (!s.startsWith('/')) this.fail(sp, 'must be an absolute path glob such as /usr/bin/*');
    });
    if (o.redirects !== undefined) {
      const e = this.effect(o.redirects, [...p, 'redirects']);
      if (e) effects.push(e);
    }
    if (o.via !== undefined) effects.push(...this.effectMap(o.via, [...p, 'via']));
    if (o.forwards !== undefined) this.strings(o.forwards, [...p, 'forwards'], (s, sp) => {
      if (!/^[^:]+:[^:]+$/.test(s)) this.fail(sp, 'must be host:port (globs allowed: localhost:*)');
    });
    return effects;
  }

  private http(v: unknown, p: Path): Effect[] {
    const o = this.object(v, p);
    if (!o) return [];
    this.keys(o, p, ['kubernetes', 'routes']);
    const effects: Effect[] = [];
    const rules = (k: 'kubernetes' | 'routes', each: (r: Record<string, unknown>, rp: Path) => void): void => {
      if (o[k] === undefined) return;
      if (!Array.isArray(o[k])) {
        this.fail([...p, k], `must be a list of rules, got ${describe(o[k])}`);
        return;
      }
      (o[k] as unknown[]).forEach((r, i) => {
        const ro = this.object(r, [...p, k, i]);
        if (!ro) return;
        each(ro, [...p, k, i]);
        if (ro.effect === undefined) this.fail([...p, k, i], 'missing required key effect');
        else {
          const e = this.effect(ro.effect, [...p, k, i, 'effect']);
          if (e) effects.push(e);
        }
      });
    };
    rules('kubernetes', (r, rp) => {
      this.keys(r, rp, ['verbs', 'api_groups', 'resources', 'namespaces', 'names', 'non_resource_urls', 'effect'], ['verbs']);
      if (r.verbs !== undefined) this.strings(r.verbs, [...rp, 'verbs'], (s, sp) => {
        if (!K8S_VERBS.includes(s)) this.fail(sp, `unknown Kubernetes verb ${JSON.stringify(s)} (expected: ${K8S_VERBS.join(', ')})`);
      });
      for (const k of ['api_groups', 'namespaces', 'names']) {
        if (r[k] !== undefined) {
          const list = r[k];
          if (!Array.isArray(list) || !list.every((x) => typeof x === 'string')) this.fail([...rp, k], 'must be a list of strings');
        }
      }
      if (r.resources !== undefined && r.non_resource_urls !== undefined) this.fail(rp, 'a rule matches resources or non_resource_urls, not both');
      else if (r.resources === undefined && r.non_resource_urls === undefined) this.fail(rp, 'can never match: give resources or non_resource_urls');
      if (r.resources !== undefined) this.strings(r.resources, [...rp, 'resources']);
      if (r.non_resource_urls !== undefined) this.strings(r.non_resource_urls, [...rp, 'non_resource_urls'], (s, sp) => {
        if (!s.startsWith('/')) this.fail(sp, 'must start with /');
      });
    });
    rules('routes', (r, rp) => {
      this.keys(r, rp, ['methods', 'paths', 'effect'], ['methods', 'paths']);
      if (r.methods !== undefined) this.strings(r.methods, [...rp, 'methods'], (s, sp) => {
        if (!HTTP_METHODS.includes(s)) this.fail(sp, `unknown HTTP method ${JSON.stringify(s)} (upper case: ${HTTP_METHODS.join(', ')})`);
      });
      if (r.paths !== undefined) this.strings(r.paths, [...rp, 'paths'], (s, sp) => {
        if (!s.startsWith('/')) this.fail(sp, 'must start with /');
      });
    });
    return effects;
  }
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a mapping';
  return `${typeof v} ${JSON.stringify(v)}`;
}
