/**
 * What one parsed statement touches: tables with read/write access, functions
 * called anywhere in the tree, statement flags, whether every UPDATE/DELETE is
 * filtered, and the command/class. Walks the raw parse tree of libpg-query
 * generically (every node, every field), with the few node kinds that change
 * the meaning of what is below them handled explicitly: WITH scopes (a CTE
 * name hides a table of that name only inside its scope), the targets of
 * DML/DDL (write), EXPLAIN without ANALYZE (nothing executes), PREPARE/EXECUTE.
 */
import type { PgStatement, PgTableRef, TableAccess } from '../../../core/policy-contract.ts';
import { SYSTEM_SCHEMAS, schemaOf } from './catalog.ts';
import { commandOf, type CommandInfo, type StatementClass } from './commands.ts';

type Obj = Record<string, unknown>;

/** Keys of *Stmt nodes whose relations the statement changes (DDL/DML targets). */
const WRITE_KEYS = new Set(['relation', 'relations', 'view', 'table', 'rels', 'into', 'intoClause', 'sequence']);
/** Statements whose `relation`-like keys are handled by their own case. */
const OWN_TARGETS = new Set(['SelectStmt', 'CopyStmt', 'DeclareCursorStmt', 'LockStmt']);
const DML = new Set(['InsertStmt', 'UpdateStmt', 'DeleteStmt', 'MergeStmt']);
const RELATION_OBJECTS = new Set([
  'OBJECT_TABLE',
  'OBJECT_VIEW',
  'OBJECT_MATVIEW',
  'OBJECT_INDEX',
  'OBJECT_SEQUENCE',
  'OBJECT_FOREIGN_TABLE',
]);
/** Settings that change how the server's lexer reads later statements (see docs: parser differential). */
const LEXER_SETTINGS = new Set(['standard_conforming_strings', 'backslash_quote', 'client_encoding']);
/** LOCK modes from ROW EXCLUSIVE (3) up block writers or readers: reported as write access. */
const LOCK_ROW_EXCLUSIVE = 3;

interface Scope {
  names: ReadonlySet<string>;
  parent: Scope | undefined;
}

function inScope(scope: Scope | undefined, name: string): boolean {
  for (let s = scope; s; s = s.parent) if (s.names.has(name)) return true;
  return false;
}

/** Prepared statements the session knows, by name (SQL PREPARE and protocol Parse share one namespace). */
export type PreparedLookup = ReadonlyMap<string, PgStatement>;

export interface Analysis {
  command: string;
  class: StatementClass;
  tables: PgTableRef[];
  functions: string[];
  flags: string[];
  has_where: boolean;
  /** For PREPARE name AS …: the name and what it prepares. */
  prepare?: { name: string; command: string; class: StatementClass };
  /** For DEALLOCATE: the name, or null for DEALLOCATE ALL. */
  deallocate?: string | null;
  /** The statement ran EXECUTE: its classification depends on the session's prepared statements. */
  uses_prepared: boolean;
  /** EXECUTE of a name the session does not know. */
  unknown_prepared?: string;
}

class Walker {
  readonly tables = new Map<string, PgTableRef>();
  readonly functions = new Set<string>();
  readonly flags = new Set<string>();
  unfiltered = 0;
  usesPrepared = false;
  unknownPrepared: string | undefined;
  /** Inside EXPLAIN without ANALYZE: nothing executes, write targets are reported as read. */
  private planOnly = 0;

  constructor(private readonly prepared: PreparedLookup | undefined) {}

  addTable(rv: Obj, access: TableAccess, scope: Scope | undefined): void {
    const name = typeof rv.relname === 'string' ? rv.relname : '';
    if (!name) return;
    const explicit = typeof rv.schemaname === 'string' && rv.schemaname !== '' ? rv.schemaname : undefined;
    if (!explicit && access === 'read' && inScope(scope, name)) return; // a CTE, not a table
    const schema = schemaOf(name, explicit);
    if (SYSTEM_SCHEMAS.has(schema)) this.flags.add('system_catalog');
    if (this.planOnly > 0) access = 'read';
    const key = `${schema}\u0000${name}`;
    const prev = this.tables.get(key);
    if (!prev) this.tables.set(key, { schema, name, access });
    else if (access === 'write') prev.access = 'write';
  }

  /** Any value of the tree: arrays, wrapped nodes `{Type: body}`, bare structs. */
  walk(v: unknown, scope: Scope | undefined, write: boolean): void {
    if (v === null || typeof v !== 'object') return;
    if (Array.isArray(v)) {
      for (const x of v) this.walk(x, scope, write);
      return;
    }
    const o = v as Obj;
    if (typeof o.relname === 'string') {
      this.addTable(o, write ? 'write' : 'read', scope);
      return;
    }
    const keys = Object.keys(o);
    if (keys.length === 1) {
      const k = keys[0]!;
      const c0 = k.charCodeAt(0);
      if (c0 >= 65 && c0 <= 90) {
        const body = o[k];
        if (body !== null && typeof body === 'object' && !Array.isArray(body)) {
          this.node(k, body as Obj, scope, write);
          return;
        }
      }
    }
    this.fields(o, scope, write, undefined);
  }

  /** The fields of a struct, with its WITH clause (if any) scoping the rest. */
  fields(o: Obj, scope: Scope | undefined, write: boolean, skip: ReadonlySet<string> | undefined): void {
    const inner = o.withClause ? this.withClause(o.withClause as Obj, scope) : scope;
    for (const k in o) {
      if (k === 'withClause' || (skip && skip.has(k))) continue;
      this.walk(o[k], inner, write);
    }
  }

  private withClause(wc: Obj, scope: Scope | undefined): Scope {
    const ctes = Array.isArray(wc.ctes) ? (wc.ctes as Obj[]) : [];
    const defs = ctes.map((n) => (n.CommonTableExpr ?? n) as Obj);
    const names = defs.map((d) => String(d.ctename ?? ''));
    const all: Scope = { names: new Set(names), parent: scope };
    defs.forEach((d, i) => {
      const q = d.ctequery as Obj | undefined;
      if (q && Object.keys(q).some((k) => DML.has(k))) this.flags.add('data_modifying_cte');
      const visible: Scope = wc.recursive ? all : { names: new Set(names.slice(0, i)), parent: scope };
      this.walk(d.ctequery, visible, false);
      // search/cycle clauses and column lists hold no relations or calls of interest, but walk them anyway
      this.fields(d, visible, false, new Set(['ctequery', 'ctename']));
    });
    return all;
  }

  private node(type: string, b: Obj, scope: Scope | undefined, write: boolean): void {
    switch (type) {
      case 'RangeVar':
        this.addTable(b, write ? 'write' : 'read', scope);
        return;
      case 'FuncCall': {
        const name = qualifiedName(b.funcname);
        if (name) this.functions.add(name);
        this.fields(b, scope, write, NAME_KEYS);
        return;
      }
      case 'SelectStmt':
        if (b.intoClause) this.flags.add('into');
        if (Array.isArray(b.lockingClause)) for (const l of b.lockingClause) this.locking(l as Obj);
        if (b.intoClause) this.walk(b.intoClause, scope, true);
        this.fields(b, scope, false, SELECT_SKIP);
        return;
      case 'UpdateStmt':
      case 'DeleteStmt':
        if (!filters(b.whereClause)) this.unfiltered++;
        this.dml(b, scope);
        return;
      case 'InsertStmt':
      case 'MergeStmt':
        this.dml(b, scope);
        return;
      case 'TruncateStmt':
        this.unfiltered++;
        break;
      case 'CopyStmt':
        this.copy(b, scope);
        return;
      case 'ExplainStmt': {
        if (explainAnalyze(b.options)) {
          this.flags.add('explain_analyze');
          this.walk(b.query, scope, false);
        } else {
          this.planOnly++;
          this.walk(b.query, scope, false);
          this.planOnly--;
        }
        this.walk(b.options, scope, false);
        return;
      }
      case 'ExecuteStmt':
        this.execute(b, scope);
        return;
      case 'VariableSetStmt': {
        const name = typeof b.name === 'string' ? b.name.toLowerCase() : '';
        if (LEXER_SETTINGS.has(name)) this.flags.add('lexer_setting');
        if (b.is_local) this.flags.add('set_local');
        break;
      }
      case 'DropStmt':
        if (typeof b.removeType === 'string' && RELATION_OBJECTS.has(b.removeType)) {
          for (const obj of asArray(b.objects)) {
            const parts = nameParts(obj);
            const name = parts[parts.length - 1];
            const schema = parts.length > 1 ? parts[parts.length - 2] : undefined;
            if (name) this.addTable(schema ? { relname: name, schemaname: schema } : { relname: name }, 'write', undefined);
          }
        }
        return;
      case 'GrantStmt':
        if (b.targtype === 'ACL_TARGET_ALL_IN_SCHEMA') this.flags.add('all_in_schema');
        if (b.targtype === 'ACL_TARGET_OBJECT' && typeof b.objtype === 'string' && RELATION_OBJECTS.has(b.objtype)) {
          this.walk(b.objects, scope, true);
        }
        this.fields(b, scope, false, OBJECTS_KEY);
        return;
      case 'LockStmt':
        this.walk(b.relations, scope, typeof b.mode === 'number' && b.mode >= LOCK_ROW_EXCLUSIVE);
        return;
      case 'CreateTrigStmt':
      case 'CreateEventTrigStmt': {
        const fn = qualifiedName(b.funcname);
        if (fn) this.functions.add(fn);
        break;
      }
      case 'CallStmt': {
        const fc = b.funccall as Obj | undefined; // a bare FuncCall
        const fn = qualifiedName(fc?.funcname);
        if (fn) this.functions.add(fn);
        break;
      }
      case 'LockingClause':
        return; // `FOR UPDATE OF a` names range-table aliases, not tables
    }
    if (type.endsWith('Stmt') && !OWN_TARGETS.has(type)) {
      const inner = b.withClause ? this.withClause(b.withClause as Obj, scope) : scope;
      for (const k in b) {
        if (k === 'withClause') continue;
        this.walk(b[k], inner, WRITE_KEYS.has(k));
      }
      return;
    }
    this.fields(b, scope, write, undefined);
  }

  private dml(b: Obj, scope: Scope | undefined): void {
    const inner = b.withClause ? this.withClause(b.withClause as Obj, scope) : scope;
    this.walk(b.relation, undefined, true); // the target is never a CTE
    for (const k in b) {
      if (k === 'withClause' || k === 'relation') continue;
      this.walk(b[k], inner, false);
    }
  }

  private locking(l: Obj): void {
    const s = String(((l.LockingClause ?? l) as Obj).strength ?? '');
    if (s === 'LCS_FORUPDATE' || s === 'LCS_FORNOKEYUPDATE') this.flags.add('for_update');
    else if (s === 'LCS_FORSHARE' || s === 'LCS_FORKEYSHARE') this.flags.add('for_share');
  }

  private copy(b: Obj, scope: Scope | undefined): void {
    this.flags.add(b.is_from ? 'copy_from' : 'copy_to');
    if (b.is_program) this.flags.add('copy_program');
    else if (typeof b.filename === 'string') this.flags.add('copy_file');
    else this.flags.add(b.is_from ? 'copy_stdin' : 'copy_stdout');
    if (b.relation) this.walk(b.relation, undefined, Boolean(b.is_from));
    this.fields(b, scope, false, RELATION_KEY);
  }

  private execute(b: Obj, scope: Scope | undefined): void {
    this.usesPrepared = true;
    const name = String(b.name ?? '');
    const p = this.prepared?.get(name);
    if (!p) this.unknownPrepared = name;
    else {
      for (const t of p.tables) {
        if (this.planOnly > 0) this.addTable({ relname: t.name, schemaname: t.schema }, 'read', undefined);
        else this.addTable({ relname: t.name, schemaname: t.schema }, t.access, undefined);
      }
      for (const f of p.functions) this.functions.add(f);
      for (const f of p.flags) if (f !== 'multiple_statements') this.flags.add(f);
      if (p.has_where === false) this.unfiltered++;
    }
    this.walk(b.params, scope, false);
  }
}

const NAME_KEYS: ReadonlySet<string> = new Set(['funcname']);
const SELECT_SKIP: ReadonlySet<string> = new Set(['intoClause', 'lockingClause']);
const OBJECTS_KEY: ReadonlySet<string> = new Set(['objects']);
const RELATION_KEY: ReadonlySet<string> = new Set(['relation']);

function asArray(v: unknown): unknown[] {
  return Array.isArray(v) ? v : [];
}

/** `[{String:{sval:'pg_catalog'}}, {String:{sval:'set_config'}}]` -> ['pg_catalog', 'set_config']. */
export function nameParts(v: unknown): string[] {
  let list: unknown = v;
  if (list && typeof list === 'object' && !Array.isArray(list) && 'List' in list) list = ((list as Obj).List as Obj).items;
  const out: string[] = [];
  for (const x of asArray(list)) {
    const s = (x as Obj)?.String as Obj | undefined;
    if (s && typeof s.sval === 'string') out.push(s.sval);
  }
  return out;
}

function qualifiedName(v: unknown): string {
  return nameParts(v).join('.').toLowerCase();
}

/** A WHERE clause that filters rows: it references a column (or a cursor), so `WHERE true` / `WHERE 1=1` do not count. */
function filters(where: unknown): boolean {
  if (!where) return false;
  let found = false;
  const visit = (v: unknown): void => {
    if (found || v === null || typeof v !== 'object') return;
    if (Array.isArray(v)) {
      for (const x of v) visit(x);
      return;
    }
    const o = v as Obj;
    if ('ColumnRef' in o || 'CurrentOfExpr' in o) {
      found = true;
      return;
    }
    for (const k in o) visit(o[k]);
  };
  visit(where);
  return found;
}

function explainAnalyze(options: unknown): boolean {
  for (const o of asArray(options)) {
    const d = (o as Obj)?.DefElem as Obj | undefined;
    if (!d || String(d.defname).toLowerCase() !== 'analyze') continue;
    if (d.arg === undefined) return true;
    const a = d.arg as Obj;
    const bool = (a.Boolean as Obj | undefined)?.boolval;
    if (a.Boolean) return bool === true;
    const s = (a.String as Obj | undefined)?.sval;
    if (typeof s === 'string') return !/^(false|off|no|0)$/i.test(s);
    const i = ((a.Integer as Obj | undefined)?.ival as number | undefined) ?? 0;
    if (a.Integer) return i !== 0;
    return true; // an argument we cannot read: assume it executes
  }
  return false;
}

function typeOf(node: unknown): [string, Obj] | undefined {
  if (!node || typeof node !== 'object') return undefined;
  const k = Object.keys(node)[0];
  if (!k) return undefined;
  const b = (node as Obj)[k];
  return b && typeof b === 'object' ? [k, b as Obj] : undefined;
}

/** Command and class of a statement node, resolving EXPLAIN/PREPARE/EXECUTE/COPY through what they run. */
function resolveCommand(node: unknown, w: Walker, prepared: PreparedLookup | undefined): CommandInfo & { inner?: CommandInfo } {
  const t = typeOf(node);
  if (!t) return { command: 'UNKNOWN', class: 'unparseable' };
  const [type, b] = t;
  const base = commandOf(type, b);
  switch (type) {
    case 'ExplainStmt': {
      if (!explainAnalyze(b.options)) return base;
      const inner = resolveCommand(b.query, w, prepared);
      return { command: 'EXPLAIN', class: inner.class };
    }
    case 'PrepareStmt': {
      const inner = resolveCommand(b.query, w, prepared);
      return { command: 'PREPARE', class: inner.class, inner };
    }
    case 'ExecuteStmt': {
      const p = prepared?.get(String(b.name ?? ''));
      if (!p) return { command: 'EXECUTE', class: 'unparseable' };
      return { command: 'EXECUTE', class: p.class as StatementClass };
    }
    case 'DeclareCursorStmt': {
      const inner = resolveCommand(b.query, w, prepared);
      return { command: base.command, class: inner.class };
    }
    case 'CreateTableAsStmt': {
      const q = typeOf(b.query);
      if (q && q[0] === 'ExecuteStmt' && !prepared?.get(String(q[1].name ?? ''))) return { command: base.command, class: 'unparseable' };
      return base;
    }
  }
  return base;
}

function hasWrite(w: Walker): boolean {
  for (const t of w.tables.values()) if (t.access === 'write') return true;
  return false;
}

/** Analyses one statement node of a libpg-query parse tree (the `stmt` of a RawStmt). */
export function analyzeStatement(node: unknown, prepared?: PreparedLookup): Analysis {
  const w = new Walker(prepared);
  w.walk(node, undefined, false);
  const cmd = resolveCommand(node, w, prepared);
  let cls = cmd.class;
  if (cls === 'read' && hasWrite(w)) cls = 'write';
  const a: Analysis = {
    command: cmd.command,
    class: cls,
    tables: [...w.tables.values()],
    functions: [...w.functions],
    flags: [...w.flags],
    has_where: w.unfiltered === 0,
    uses_prepared: w.usesPrepared,
  };
  if (w.unknownPrepared !== undefined) {
    a.class = 'unparseable';
    a.unknown_prepared = w.unknownPrepared;
    if (!a.flags.includes('unknown_prepared_statement')) a.flags.push('unknown_prepared_statement');
  }
  const t = typeOf(node);
  if (t && t[0] === 'PrepareStmt' && cmd.inner) {
    const innerClass = cls === 'write' && cmd.inner.class === 'read' ? 'write' : cmd.inner.class;
    a.prepare = { name: String(t[1].name ?? ''), command: cmd.inner.command, class: innerClass };
  }
  if (t && t[0] === 'DeallocateStmt') a.deallocate = t[1].isall || t[1].name === undefined ? null : String(t[1].name);
  return a;
}
