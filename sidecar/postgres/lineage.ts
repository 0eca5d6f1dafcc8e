/**
 * Column lineage: for each output column of a row-returning statement, the
 * source columns (`schema.table.column`) its value derives from, followed
 * through expressions, casts, CASE, function calls, scalar subqueries, CTEs,
 * subqueries in FROM, joins and UNION branches (position by position).
 *
 * Conservative by construction: every column an output expression references
 * is a source (a CASE condition too); `*` / `t.*` over a base table and whole-
 * row references (`row_to_json(t)`) are reported as `stars` (all columns of
 * that table may flow here, the column list needs the catalog); anything
 * lineage cannot follow (a set-returning function in FROM, an unresolvable
 * name) sets `unknown`. Views are base tables here: the sources name the view.
 *
 * Works on the parse tree the classifier already has (ClassifiedStatement.node):
 * the hot path parses once.
 */

import { schemaOf } from './sql/catalog.ts';

type Obj = Record<string, unknown>;

export interface ColumnLineage {
  /** Output column name as PostgreSQL names it (alias, column, function name, or ?column?). */
  name: string;
  /** `schema.table.column` sources, sorted. */
  sources: string[];
  /** `schema.table`: any column of the table may flow into this output (`*`, `t.*`, whole-row references). */
  stars: string[];
  /** Lineage could not be established for (part of) this column. */
  unknown: boolean;
  /**
   * This entry stands for zero or more output columns (`*` over a base table,
   * FETCH from a cursor): their number is only known from RowDescription. Use alignLineage().
   */
  variable?: boolean;
}

interface Col {
  name: string;
  sources: Set<string>;
  stars: Set<string>;
  unknown: boolean;
  variable: boolean;
}

/** One FROM item visible by name. */
interface Entry {
  alias: string;
  /** `schema.table` for a base table (columns unknown without the catalog). */
  table?: string;
  /** Output columns of a subquery / CTE / VALUES. */
  cols?: Col[];
  /** Alias column names (`AS a(x, y)`): for a base table they hide which column is which. */
  renamed?: string[];
  /** Columns cannot be known (functions in FROM). */
  opaque?: boolean;
  /** Children of a JOIN with an alias (`(a JOIN b) AS j`). */
  children?: Entry[];
}

interface CteDef {
  node: unknown;
  cols?: Col[];
  busy: boolean;
  recursive: boolean;
  /** `WITH x(a, b) AS …` column names. */
  names: (string | undefined)[];
}

interface Scope {
  entries: Entry[];
  parent: Scope | undefined;
  ctes: CteScope | undefined;
}

interface CteScope {
  defs: Map<string, CteDef>;
  parent: CteScope | undefined;
}


function col(name: string, unknown = false): Col {
  return { name, sources: new Set(), stars: new Set(), unknown, variable: false };
}

function merge(into: Col, from: Col): void {
  for (const s of from.sources) into.sources.add(s);
  for (const s of from.stars) into.stars.add(s);
  if (from.unknown) into.unknown = true;
}

function unwrap(node: unknown): [string, Obj] | undefined {
  if (!node || typeof node !== 'object' || Array.isArray(node)) return undefined;
  const k = Object.keys(node)[0];
  if (!k) return undefined;
  const b = (node as Obj)[k];
  return b && typeof b === 'object' ? [k, b as Obj] : undefined;
}

function arr(v: unknown): unknown[] {
  return Array.isArray(v) ? v : [];
}

function str(v: unknown): string | undefined {
  const s = (v as Obj | undefined)?.String as Obj | undefined;
  return typeof s?.sval === 'string' ? s.sval : undefined;
}

function lookupCte(ctes: CteScope | undefined, name: string): CteDef | undefined {
  for (let c = ctes; c; c = c.parent) {
    const d = c.defs.get(name);
    if (d) return d;
  }
  return undefined;
}

/** `schema.table`, resolved as the classifier does: pg_catalog relations first, else `public`. */
function resolveTable(rv: Obj): string {
  const name = String(rv.relname);
  return `${schemaOf(name, rv.schemaname)}.${name}`;
}

class Lineage {
  /** Output columns of a SELECT-like node (wrapped or bare SelectStmt, or DML with RETURNING). */
  query(node: unknown, outer: Scope | undefined, ctes: CteScope | undefined): Col[] {
    const t = unwrap(node);
    if (!t) return [col('?column?', true)];
    const [type, b] = t;
    if (type === 'SelectStmt') return this.select(b, outer, ctes);
    if (type === 'InsertStmt' || type === 'UpdateStmt' || type === 'DeleteStmt' || type === 'MergeStmt') {
      return this.returning(type, b, outer, ctes);
    }
    // a bare SelectStmt (larg/rarg of a set operation)
    if ('targetList' in (node as Obj) || 'op' in (node as Obj) || 'valuesLists' in (node as Obj)) {
      return this.select(node as Obj, outer, ctes);
    }
    return [col('?column?', true)];
  }

  private withCtes(wc: unknown, ctes: CteScope | undefined): CteScope | undefined {
    if (!wc) return ctes;
    const w = wc as Obj;
    const defs = new Map<string, CteDef>();
    const scope: CteScope = { defs, parent: ctes };
    for (const n of arr(w.ctes)) {
      const d = ((n as Obj).CommonTableExpr ?? n) as Obj;
      const def: CteDef = { node: d.ctequery, busy: false, recursive: Boolean(w.recursive), names: arr(d.aliascolnames).map(str) };
      defs.set(String(d.ctename), def);
    }
    // non-recursive CTEs see only earlier ones; resolving lazily through `scope` is a superset, fine for lineage
    return scope;
  }

  private cteCols(def: CteDef, ctes: CteScope): Col[] {
    if (def.cols) return def.cols;
    if (def.busy) {
      // recursive self-reference while computing: the non-recursive term is the first approximation
      const t = unwrap(def.node);
      if (t && t[0] === 'SelectStmt' && t[1].larg) return rename(this.query(t[1].larg, undefined, ctes), def.names);
      return [Object.assign(col('?column?', true), { variable: true })];
    }
    def.busy = true;
    let cols = rename(this.query(def.node, undefined, ctes), def.names);
    if (def.recursive) {
      // iterate to a fixpoint: each round feeds the previous result into the self-reference
      for (let i = 0; i < 4; i++) {
        def.cols = cols;
        const next = rename(this.query(def.node, undefined, ctes), def.names);
        const same = next.length === cols.length && next.every((c, j) => sameCol(c, cols[j]!));
        cols = next;
        if (same) break;
        if (i === 3) for (const c of cols) c.unknown = true;
      }
    }
    def.busy = false;
    def.cols = cols;
    return cols;
  }

  private select(b: Obj, outer: Scope | undefined, ctesIn: CteScope | undefined): Col[] {
    const ctes = this.withCtes(b.withClause, ctesIn);
    if (b.op && b.op !== 'SETOP_NONE') {
      const l = this.query(b.larg, outer, ctes);
      const r = this.query(b.rarg, outer, ctes);
      return positional(l, r);
    }
    if (Array.isArray(b.valuesLists)) {
      const scope: Scope = { entries: [], parent: outer, ctes };
      let out: Col[] = [];
      for (const row of b.valuesLists) {
        const items = arr(((row as Obj).List as Obj | undefined)?.items ?? row);
        const cols = items.map((e, i) => this.expr(e, scope, `column${i + 1}`));
        out = out.length ? positional(out, cols) : cols;
      }
      return out;
    }
    const scope: Scope = { entries: [], parent: outer, ctes };
    for (const f of arr(b.fromClause)) {
      const e = this.fromItem(f, scope);
      scope.entries.push(...e);
    }
    return this.targets(b.targetList, scope);
  }

  /** A target list or RETURNING list: one Col per expression, `*` expanded. */
  private targets(list: unknown, scope: Scope): Col[] {
    const out: Col[] = [];
    for (const t of arr(list)) {
      const rt = ((t as Obj).ResTarget ?? t) as Obj;
      const cr = unwrap(rt.val);
      if (cr && cr[0] === 'ColumnRef') {
        const fields = arr(cr[1].fields);
        if (fields.length && 'A_Star' in (fields[fields.length - 1] as Obj)) {
          out.push(...this.star(fields, scope));
          continue;
        }
      }
      out.push(this.expr(rt.val, scope, typeof rt.name === 'string' ? rt.name : outputName(rt.val)));
    }
    return out;
  }

  private returning(type: string, b: Obj, outer: Scope | undefined, ctesIn: CteScope | undefined): Col[] {
    const ctes = this.withCtes(b.withClause, ctesIn);
    const scope: Scope = { entries: [], parent: outer, ctes };
    const rel = b.relation as Obj | undefined;
    if (rel) scope.entries.push(this.tableEntry(rel));
    for (const k of ['fromClause', 'usingClause']) for (const f of arr(b[k])) scope.entries.push(...this.fromItem(f, scope));
    if (type === 'MergeStmt' && b.sourceRelation) scope.entries.push(...this.fromItem(b.sourceRelation, scope));
    const ret = (b.returningClause as Obj | undefined)?.exprs ?? b.returningList;
    return this.targets(ret, scope);
  }

  private tableEntry(rv: Obj): Entry {
    const alias = rv.alias as Obj | undefined;
    const e: Entry = { alias: typeof alias?.aliasname === 'string' ? alias.aliasname : String(rv.relname), table: resolveTable(rv) };
    const renamed = arr(alias?.colnames).map(str).filter((x): x is string => x !== undefined);
    if (renamed.length) e.renamed = renamed;
    return e;
  }

  private fromItem(node: unknown, scope: Scope): Entry[] {
    const t = unwrap(node);
    if (!t) return [];
    const [type, b] = t;
    const alias = b.alias as Obj | undefined;
    const aliasName = typeof alias?.aliasname === 'string' ? alias.aliasname : undefined;
    const colnames = arr(alias?.colnames).map(str);
    switch (type) {
      case 'RangeVar': {
        const name = String(b.relname);
        const noSchema = !(typeof b.schemaname === 'string' && b.schemaname);
        const def = noSchema ? lookupCte(scope.ctes, name) : undefined;
        if (def && scope.ctes) {
          const cols = rename(this.cteCols(def, scope.ctes), colnames);
          return [{ alias: aliasName ?? name, cols }];
        }
        return [this.tableEntry(b)];
      }
      case 'RangeSubselect': {
        // LATERAL subqueries may reference earlier FROM items
        const outer: Scope = b.lateral ? scope : { entries: [], parent: scope.parent, ctes: scope.ctes };
        const cols = rename(this.query(b.subquery, outer, scope.ctes), colnames);
        return [{ alias: aliasName ?? '', cols }];
      }
      case 'JoinExpr': {
        const inner = [...this.fromItem(b.larg, scope), ...this.fromItem(b.rarg, scope)];
        const joinAlias = (b.alias as Obj | undefined)?.aliasname;
        if (typeof joinAlias === 'string') return [{ alias: joinAlias, children: inner }];
        return inner;
      }
      default:
        // functions in FROM, VALUES, XMLTABLE, JSON_TABLE, TABLESAMPLE over a table ...
        if (type === 'RangeTableSample') return this.fromItem(b.relation, scope);
        return [{ alias: aliasName ?? '', opaque: true }];
    }
  }

  /** `*` or `t.*` in a target list: one Col per known column, one variable Col per base table. */
  private star(fields: unknown[], scope: Scope): Col[] {
    const qual = fields.length > 1 ? str(fields[fields.length - 2]) : undefined;
    const entries = qual === undefined ? scope.entries : findEntries(scope, qual);
    if (entries.length === 0) return [Object.assign(col('?column?', true), { variable: true })];
    const out: Col[] = [];
    for (const e of entries) out.push(...entryColumns(e));
    return out;
  }

  /** Lineage of one value expression. */
  expr(node: unknown, scope: Scope, name: string): Col {
    const c = col(name);
    this.collect(node, scope, c);
    return c;
  }

  private collect(v: unknown, scope: Scope, into: Col): void {
    if (v === null || typeof v !== 'object') return;
    if (Array.isArray(v)) {
      for (const x of v) this.collect(x, scope, into);
      return;
    }
    const t = unwrap(v);
    if (t && Object.keys(v).length === 1 && /^[A-Z]/.test(t[0])) {
      const [type, b] = t;
      if (type === 'ColumnRef') {
        merge(into, this.columnRef(arr(b.fields), scope));
        return;
      }
      if (type === 'SubLink') {
        const kind = String(b.subLinkType);
        const sub = this.query(b.subselect, scope, scope.ctes);
        if (kind === 'EXPR_SUBLINK' || kind === 'ARRAY_SUBLINK' || kind === 'MULTIEXPR_SUBLINK') {
          for (const s of sub) merge(into, s);
        }
        this.collect(b.testexpr, scope, into);
        return;
      }
      if (type === 'SelectStmt') {
        for (const s of this.query(v, scope, scope.ctes)) merge(into, s);
        return;
      }
      for (const k in b) this.collect(b[k], scope, into);
      return;
    }
    for (const k in v as Obj) this.collect((v as Obj)[k], scope, into);
  }

  /** Sources of a column reference; whole-row references (`t`, `t.*`) become stars. */
  private columnRef(fields: unknown[], scope: Scope): Col {
    const c = col('');
    const last = fields[fields.length - 1] as Obj | undefined;
    if (last && 'A_Star' in last) {
      for (const x of this.star(fields, scope)) merge(c, x);
      return c;
    }
    const names = fields.map(str);
    if (names.some((n) => n === undefined)) {
      c.unknown = true;
      return c;
    }
    const parts = names as string[];
    const column = parts[parts.length - 1]!;
    if (parts.length === 1) {
      // unqualified: a column of some visible entry, or a whole-row reference to an entry of that name.
      // A base table may or may not have the column (no catalog): keep looking outward and take the union.
      let guessed = false;
      for (let s: Scope | undefined = scope; s; s = s.parent) {
        let certain = false;
        for (const e of s.entries) {
          const r = columnOf(e, column, c);
          if (r === 'known') certain = true;
          else if (r === 'guess') guessed = true;
        }
        for (const e of findEntriesHere(s, column)) {
          for (const x of entryColumns(e)) merge(c, x);
          certain = true;
        }
        if (certain) return c;
      }
      if (!guessed) c.unknown = true;
      return c;
    }
    const qual = parts[parts.length - 2]!;
    const entries = findEntries(scope, qual);
    if (entries.length === 0) {
      c.unknown = true; // schema.table.column of a table not in FROM, or a composite field
      return c;
    }
    for (const e of entries) if (columnOf(e, column, c) === false) c.unknown = true;
    return c;
  }
}

function sameCol(a: Col, b: Col): boolean {
  return a.unknown === b.unknown && a.sources.size === b.sources.size && [...a.sources].every((s) => b.sources.has(s)) &&
    a.stars.size === b.stars.size && [...a.stars].every((s) => b.stars.has(s));
}

/** Position-by-position union of two branches (UNION / INTERSECT / EXCEPT, VALUES rows). */
function positional(l: Col[], r: Col[]): Col[] {
  const variable = l.some((c) => c.variable) || r.some((c) => c.variable);
  if (variable || l.length !== r.length) {
    // a `*` over a base table in either branch: positions cannot be aligned without the catalog
    const all = col(l[0]?.name ?? '?column?');
    for (const c of [...l, ...r]) merge(all, c);
    all.unknown = all.unknown || l.length !== r.length;
    all.variable = true;
    return [all];
  }
  return l.map((c, i) => {
    const m = { ...c, sources: new Set(c.sources), stars: new Set(c.stars) };
    merge(m, r[i]!);
    return m;
  });
}

function rename(cols: Col[], names: (string | undefined)[]): Col[] {
  if (!names.length) return cols;
  return cols.map((c, i) => (names[i] !== undefined && !c.variable ? { ...c, name: names[i]! } : c));
}

function findEntriesHere(s: Scope, alias: string): Entry[] {
  const out: Entry[] = [];
  const visit = (e: Entry): void => {
    if (e.alias === alias) out.push(e);
    else if (e.children) e.children.forEach(visit);
  };
  s.entries.forEach(visit);
  return out;
}

function findEntries(scope: Scope, alias: string): Entry[] {
  for (let s: Scope | undefined = scope; s; s = s.parent) {
    const found = findEntriesHere(s, alias);
    if (found.length) return found;
  }
  return [];
}

/** All columns an entry contributes to `*`. */
function entryColumns(e: Entry): Col[] {
  if (e.children) return e.children.flatMap(entryColumns);
  if (e.cols) return e.cols.map((c) => ({ ...c, sources: new Set(c.sources), stars: new Set(c.stars) }));
  const c = col('*', Boolean(e.opaque));
  if (e.table) c.stars.add(e.table);
  c.variable = true;
  return [c];
}

/**
 * Adds the sources of `column` of entry `e` to `into`: `known` when the entry
 * has that column, `guess` when it may have it (a base table, whose columns
 * need the catalog), false when it does not.
 */
function columnOf(e: Entry, column: string, into: Col): 'known' | 'guess' | false {
  if (e.children) {
    let best: 'known' | 'guess' | false = false;
    for (const ch of e.children) {
      const r = columnOf(ch, column, into);
      if (r === 'known' || (r === 'guess' && best === false)) best = r;
    }
    return best;
  }
  if (e.cols) {
    const m = e.cols.filter((c) => c.name === column);
    for (const c of m) merge(into, c);
    if (m.length) return 'known';
    const variable = e.cols.filter((x) => x.variable);
    for (const c of variable) merge(into, c);
    return variable.length ? 'guess' : false;
  }
  if (e.opaque) {
    into.unknown = true;
    return 'guess';
  }
  if (e.table) {
    if (e.renamed) {
      if (!e.renamed.includes(column)) {
        into.sources.add(`${e.table}.${column}`); // a column past the renamed ones keeps its name
        return 'guess';
      }
      into.stars.add(e.table); // `t AS a(x, y)`: which column `x` is needs the catalog
      return 'known';
    }
    into.sources.add(`${e.table}.${column}`);
    return 'guess';
  }
  return false;
}

function outputName(v: unknown): string {
  const t = unwrap(v);
  if (!t) return '?column?';
  const [type, b] = t;
  if (type === 'ColumnRef') return str(arr(b.fields)[arr(b.fields).length - 1]) ?? '?column?';
  if (type === 'FuncCall') return str(arr(b.funcname)[arr(b.funcname).length - 1]) ?? '?column?';
  if (type === 'TypeCast') {
    const inner = outputName(b.arg);
    if (inner !== '?column?') return inner;
    return str(arr((b.typeName as Obj | undefined)?.names).slice(-1)[0]) ?? '?column?';
  }
  if (type === 'A_Indirection') return str(arr(b.indirection).slice(-1)[0]) ?? outputName(b.arg);
  if (type === 'CaseExpr') return 'case';
  return '?column?';
}

function freeze(c: Col): ColumnLineage {
  const out: ColumnLineage = { name: c.name, sources: [...c.sources].sort(), stars: [...c.stars].sort(), unknown: c.unknown };
  if (c.variable) out.variable = true;
  return out;
}

/**
 * Lineage of the output columns of one statement node (ClassifiedStatement.node),
 * or undefined when the statement returns no rows lineage can describe (DDL,
 * SET, EXPLAIN, EXECUTE: the proxy uses the prepared statement's node instead).
 */
export function lineageOf(node: unknown): ColumnLineage[] | undefined {
  const t = unwrap(node);
  if (!t) return undefined;
  const [type, b] = t;
  const l = new Lineage();
  switch (type) {
    case 'SelectStmt':
      if (b.intoClause) return undefined;
      return l.query(node, undefined, undefined).map(freeze);
    case 'InsertStmt':
    case 'UpdateStmt':
    case 'DeleteStmt':
    case 'MergeStmt': {
      const ret = (b.returningClause as Obj | undefined)?.exprs ?? b.returningList;
      if (!arr(ret).length) return undefined;
      return l.query(node, undefined, undefined).map(freeze);
    }
    case 'CopyStmt': {
      if (b.is_from) return undefined;
      if (b.query) return l.query(b.query, undefined, undefined).map(freeze);
      const rel = b.relation as Obj | undefined;
      if (!rel) return undefined;
      const table = resolveTable(rel);
      const attlist = arr(b.attlist).map(str);
      if (attlist.length && attlist.every((a) => a !== undefined)) {
        return attlist.map((a) => ({ name: a!, sources: [`${table}.${a}`], stars: [], unknown: false }));
      }
      return [{ name: '*', sources: [], stars: [table], unknown: false, variable: true }];
    }
    case 'DeclareCursorStmt':
      return undefined; // rows come later with FETCH
    case 'FetchStmt':
      return [{ name: '*', sources: [], stars: [], unknown: true, variable: true }];
    default:
      return undefined;
  }
}

/**
 * Lines lineage up with the `fieldCount` columns of a RowDescription: a single
 * variable entry covers the columns the fixed ones leave; with more than one
 * (or counts that do not fit), every column gets the union of everything, unknown.
 */
export function alignLineage(lineage: readonly ColumnLineage[], fieldCount: number): ColumnLineage[] {
  const variable = lineage.filter((c) => c.variable).length;
  const fixed = lineage.length - variable;
  if (variable === 0 && fixed === fieldCount) return [...lineage];
  if (variable === 1 && fixed <= fieldCount) {
    const out: ColumnLineage[] = [];
    for (const c of lineage) {
      if (!c.variable) out.push(c);
      else for (let i = 0; i < fieldCount - fixed; i++) out.push({ name: c.name, sources: c.sources, stars: c.stars, unknown: c.unknown });
    }
    return out;
  }
  const all = { sources: new Set<string>(), stars: new Set<string>(), unknown: true };
  for (const c of lineage) {
    c.sources.forEach((s) => all.sources.add(s));
    c.stars.forEach((s) => all.stars.add(s));
  }
  const merged = { sources: [...all.sources].sort(), stars: [...all.stars].sort(), unknown: true };
  return Array.from({ length: fieldCount }, () => ({ name: '?column?', ...merged }));
}
