/**
 * Shell command analysis for SSH `exec` commands and interactive lines.
 *
 * The command is parsed with mvdan.cc/sh (bash dialect) and every program it
 * would run is listed for the policy: sequences, pipelines, `&&`/`||`,
 * subshells, `$(...)`, backticks, process substitution, control flow,
 * functions, redirects and here-documents, plus the programs that run other
 * programs (`sudo`, `env`, `xargs`, `find -exec`, `bash -c '...'`, `eval`,
 * `nohup`, `timeout`, ...) whose argument strings are analysed recursively.
 *
 * Nothing here matches substrings: `echo 'rm -rf /'` runs `echo`, not `rm`.
 * What cannot be parsed is reported `unparseable` (the policy denies it), and a
 * program whose name is built from an expansion (`$X`, `$(echo rm)`) is
 * reported with `dynamic: true` and its source text as the name.
 */
import sh, { type ShNode } from 'mvdan-sh';
import type { SshProgram } from '../../core/policy-contract.ts';

const { syntax } = sh;

export interface ShellAnalysis {
  /** argv of the first program (the command as a user reads it). */
  argv: string[];
  programs: SshProgram[];
  redirects: { op: string; target: string }[];
  unparseable?: boolean;
  parse_error?: string;
}

/** Nested command strings (bash -c inside bash -c ...) deeper than this are unparseable: fail closed. */
const MAX_DEPTH = 8;

/** Shells whose `-c STRING` argument is itself a command line. */
const SHELLS = new Set(['sh', 'bash', 'dash', 'zsh', 'ksh', 'mksh', 'ash', 'busybox-sh', 'rbash', 'fish']);

/** Wrappers that run the rest of their arguments as a program, with the options that take a value. */
const PREFIX_WRAPPERS: Record<string, { via: string; valueOpts: string[]; positional?: number }> = {
  sudo: { via: 'sudo', valueOpts: ['-u', '-g', '-C', '-D', '-h', '-p', '-r', '-t', '-U', '-T', '-R', '--user', '--group', '--chdir', '--host', '--prompt', '--role', '--type', '--other-user', '--command-timeout', '--chroot', '--close-from'] },
  doas: { via: 'sudo', valueOpts: ['-u', '-C'] },
  env: { via: 'env', valueOpts: ['-u', '-C', '--unset', '--chdir', '-P'] },
  nohup: { via: 'nohup', valueOpts: [] },
  time: { via: 'time', valueOpts: ['-f', '-o', '--format', '--output'] },
  nice: { via: 'nice', valueOpts: ['-n', '--adjustment'] },
  ionice: { via: 'ionice', valueOpts: ['-c', '-n', '-p', '-P', '-u', '--class', '--classdata'] },
  timeout: { via: 'timeout', valueOpts: ['-k', '-s', '--kill-after', '--signal'], positional: 1 },
  stdbuf: { via: 'stdbuf', valueOpts: ['-i', '-o', '-e', '--input', '--output', '--error'] },
  setsid: { via: 'setsid', valueOpts: [] },
  exec: { via: 'exec', valueOpts: ['-a'] },
  command: { via: 'command', valueOpts: [] },
  builtin: { via: 'builtin', valueOpts: [] },
  chroot: { via: 'chroot', valueOpts: ['--userspec', '--groups'], positional: 1 },
  flock: { via: 'flock', valueOpts: ['-w', '-E', '--timeout', '--conflict-exit-code'], positional: 1 },
  unbuffer: { via: 'unbuffer', valueOpts: [] },
  strace: { via: 'strace', valueOpts: ['-e', '-o', '-p', '-s', '-u', '-E', '-P', '-I', '-b', '-a', '-X'] },
  ltrace: { via: 'ltrace', valueOpts: ['-e', '-o', '-p', '-s', '-u', '-n', '-a'] },
  runuser: { via: 'sudo', valueOpts: ['-u', '-g', '-G', '--user', '--group', '--supp-group'] },
  xargs: { via: 'xargs', valueOpts: ['-a', '-d', '-E', '-e', '-I', '-i', '-L', '-l', '-n', '-P', '-s', '--arg-file', '--delimiter', '--max-args', '--max-procs', '--max-lines', '--max-chars', '--replace', '--eof', '--process-slot-var'] },
  watch: { via: 'watch', valueOpts: ['-n', '-d', '--interval', '--differences'] },
};

/** Wrappers whose remaining arguments are joined into one shell string (as the shell would). */
const STRING_WRAPPERS = new Set(['eval', 'watch']);

interface Ctx {
  src: Buffer;
  programs: SshProgram[];
  redirects: { op: string; target: string }[];
  depth: number;
  errors: string[];
  /** argv of the first program the outer command line runs itself (not in a substitution). */
  mainArgv?: string[];
}

interface WordText {
  text: string;
  /** true when the value depends on an expansion ($X, $(...), globs are static text). */
  dynamic: boolean;
}

let parser: ReturnType<typeof syntax.NewParser> | undefined;

/** Parses one command line and lists every program it would run. Never throws. */
export function analyzeShell(text: string): ShellAnalysis {
  const ctx: Ctx = { src: Buffer.alloc(0), programs: [], redirects: [], depth: 0, errors: [] };
  parseInto(ctx, text, []);
  const out: ShellAnalysis = { argv: ctx.mainArgv ?? ctx.programs[0]?.argv ?? [], programs: ctx.programs, redirects: ctx.redirects };
  if (ctx.errors.length > 0) {
    out.unparseable = true;
    out.parse_error = ctx.errors.join('; ');
  }
  return out;
}

function parseInto(ctx: Ctx, text: string, via: string[]): void {
  if (ctx.depth >= MAX_DEPTH) {
    ctx.errors.push(`command strings nested deeper than ${MAX_DEPTH} levels`);
    return;
  }
  if (text.includes('\0')) {
    ctx.errors.push('command contains a NUL byte');
    return;
  }
  let file: ShNode;
  try {
    parser ??= syntax.NewParser();
    file = parser.Parse(text, 'command');
  } catch (e) {
    ctx.errors.push(goError(e));
    return;
  }
  const saved = ctx.src;
  ctx.src = Buffer.from(text, 'utf8');
  ctx.depth++;
  try {
    for (const st of list(file.Stmts)) stmt(ctx, st, via);
  } catch (e) {
    ctx.errors.push(`command could not be analysed: ${goError(e)}`);
  } finally {
    ctx.depth--;
    ctx.src = saved;
  }
}

function goError(e: unknown): string {
  if (e && typeof e === 'object' && typeof (e as { Error?: unknown }).Error === 'function') {
    return String((e as { Error: () => string }).Error());
  }
  return e instanceof Error ? e.message : String(e);
}

/** GopherJS slices are JS arrays (or null for a nil slice). */
function list(v: unknown): ShNode[] {
  return Array.isArray(v) ? (v as ShNode[]) : [];
}

function source(ctx: Ctx, n: ShNode): string {
  return ctx.src.subarray(n.Pos().Offset(), n.End().Offset()).toString('utf8');
}

function stmt(ctx: Ctx, st: ShNode, via: string[]): void {
  for (const r of list(st.Redirs)) redirect(ctx, r, via);
  const cmd = st.Cmd as ShNode | null;
  if (!cmd) return;
  const type = syntax.NodeType(cmd);
  switch (type) {
    case 'CallExpr':
      call(ctx, cmd, via, stdinScript(ctx, st));
      return;
    case 'BinaryCmd': {
      const op = source(ctx, cmd).slice(cmd.OpPos.Offset() - cmd.Pos().Offset()).trimStart();
      const pipe = op.startsWith('|') && !op.startsWith('||');
      const v = pipe ? [...via, 'pipe'] : via;
      stmt(ctx, cmd.X, v);
      stmt(ctx, cmd.Y, v);
      return;
    }
    case 'Subshell':
      nested(ctx, cmd, [...via, 'subshell']);
      return;
    case 'FuncDecl':
      nested(ctx, cmd, [...via, 'function']);
      return;
    case 'Block':
    case 'IfClause':
    case 'WhileClause':
    case 'ForClause':
    case 'CaseClause':
    case 'TimeClause':
    case 'CoprocClause':
    case 'ArithmCmd':
    case 'TestClause':
    case 'LetClause':
      nested(ctx, cmd, type === 'Block' || type === 'TimeClause' ? via : [...via, 'compound']);
      return;
    case 'DeclClause': {
      // declare/local/export/readonly/typeset: the builtin runs; values may hold substitutions.
      const name = cmd.Variant ? String(cmd.Variant.Value) : 'declare';
      const argv = [name, ...list(cmd.Args).map((a) => source(ctx, a))];
      ctx.programs.push({ name, argv, via: via.length ? via : ['top'] });
      nested(ctx, cmd, via);
      return;
    }
    default:
      ctx.errors.push(`unsupported shell construct ${type}`);
  }
}

/** Walks a compound node: statements inside are analysed, substitutions anywhere are followed. */
function nested(ctx: Ctx, node: ShNode, via: string[]): void {
  syntax.Walk(node, (n) => {
    if (!n || n === node) return true;
    const t = syntax.NodeType(n);
    if (t === 'Stmt') {
      stmt(ctx, n, via);
      return false;
    }
    if (t === 'CmdSubst' || t === 'ProcSubst') {
      const tag = t === 'CmdSubst' ? 'substitution' : 'process_substitution';
      for (const s of list(n.Stmts)) stmt(ctx, s, [...via, tag]);
      return false;
    }
    return true;
  });
}

function redirect(ctx: Ctx, r: ShNode, via: string[]): void {
  const opText = ctx.src.subarray(r.OpPos.Offset(), r.Word ? r.Word.Pos().Offset() : r.End().Offset()).toString('utf8').trim();
  const fd = r.N ? String(r.N.Value) : '';
  const target = r.Word ? source(ctx, r.Word) : '';
  ctx.redirects.push({ op: fd + opText, target });
  if (r.Word) nested(ctx, r.Word, via);
  if (r.Hdoc) nested(ctx, r.Hdoc, [...via, 'heredoc']);
}

/** The literal value of a word (quotes removed) and whether an expansion shapes it. */
function wordText(ctx: Ctx, w: ShNode): WordText {
  let text = '';
  let dynamic = false;
  const part = (p: ShNode): void => {
    switch (syntax.NodeType(p)) {
      case 'Lit':
        text += unescapeLit(String(p.Value));
        return;
      case 'SglQuoted':
        text += String(p.Value);
        return;
      case 'DblQuoted':
        for (const q of list(p.Parts)) {
          if (syntax.NodeType(q) === 'Lit') text += unescapeDq(String(q.Value));
          else part(q);
        }
        return;
      default:
        dynamic = true;
        text += source(ctx, p);
    }
  };
  for (const p of list(w.Parts)) part(p);
  return { text, dynamic };
}

function unescapeLit(s: string): string {
  return s.replace(/\\\n/g, '').replace(/\\(.)/gs, '$1');
}

function unescapeDq(s: string): string {
  return s.replace(/\\\n/g, '').replace(/\\([$`"\\])/g, '$1');
}

/** The text a here-document or here-string feeds to the command's stdin, if any. */
function stdinScript(ctx: Ctx, st: ShNode): WordText | undefined {
  let out: WordText | undefined;
  for (const r of list(st.Redirs)) {
    const fd = r.N ? String(r.N.Value) : '0';
    if (fd !== '0') continue;
    if (r.Hdoc) out = wordText(ctx, r.Hdoc);
    else if (r.Word && /^<<<$/.test(ctx.src.subarray(r.OpPos.Offset(), r.Word.Pos().Offset()).toString('utf8').trim())) out = wordText(ctx, r.Word);
  }
  return out;
}

function call(ctx: Ctx, c: ShNode, via: string[], stdin?: WordText): void {
  // Substitutions in assignments and arguments run before the command.
  for (const a of list(c.Assigns)) nested(ctx, a, via);
  const args = list(c.Args);
  for (const a of args) nested(ctx, a, via);
  if (args.length === 0) return;
  const words = args.map((a) => wordText(ctx, a));
  const v = via.length ? via : ['top'];
  if (!ctx.mainArgv && ctx.depth === 1 && !v.some((x) => x.includes('substitution'))) ctx.mainArgv = words.map((w) => w.text);
  program(ctx, words, v);
  // `bash <<EOF ... EOF` / `sh <<< 'cmd'`: a shell without -c runs its stdin as a script.
  const first = words[0];
  if (stdin && first && !first.dynamic && SHELLS.has(basename(first.text)) && !words.slice(1).some((w) => /^-[A-Za-z]*c/.test(w.text))) {
    commandString(ctx, [stdin], [...v, 'heredoc']);
  }
}

function basename(p: string): string {
  return p.slice(p.lastIndexOf('/') + 1);
}

/** Records the program in `words[0]` and follows wrappers into the programs they run. */
function program(ctx: Ctx, words: WordText[], via: string[]): void {
  const first = words[0];
  if (!first) return;
  const argv = words.map((w) => w.text);
  const slash = first.text.lastIndexOf('/');
  const name = first.dynamic ? first.text : slash >= 0 ? first.text.slice(slash + 1) : first.text;
  const p: SshProgram = { name, argv, via };
  if (slash >= 0 && !first.dynamic) p.path = first.text;
  if (first.dynamic) p.dynamic = true;
  ctx.programs.push(p);
  if (first.dynamic) return;

  const rest = words.slice(1);
  if (SHELLS.has(name)) return shellC(ctx, name, rest, via);
  if (name === 'su') return suC(ctx, rest, via);
  if (name === 'find') return findExec(ctx, rest, via);
  if (STRING_WRAPPERS.has(name) && name === 'eval') return commandString(ctx, rest, [...via, 'eval']);
  const wrapper = PREFIX_WRAPPERS[name];
  if (!wrapper) return;
  const inner = afterOptions(rest, wrapper.valueOpts, name === 'env' || name === 'sudo' || name === 'doas');
  if (name === 'env') {
    const split = envSplitString(rest);
    if (split) return commandString(ctx, [split], [...via, 'env']);
  }
  const skipped = inner.slice(wrapper.positional ?? 0);
  if (skipped.length === 0) {
    if (name === 'xargs') program(ctx, [{ text: 'echo', dynamic: false }], [...via, 'xargs']);
    return;
  }
  if (name === 'watch') return commandString(ctx, skipped, [...via, 'watch']);
  program(ctx, skipped, [...via, wrapper.via]);
}

/** Drops leading options (and the values of options that take one) and, for env/sudo, VAR=value words. */
function afterOptions(words: WordText[], valueOpts: string[], assignments: boolean): WordText[] {
  let i = 0;
  while (i < words.length) {
    const w = words[i]!;
    if (w.dynamic) break;
    const t = w.text;
    if (t === '--') {
      i++;
      break;
    }
    if (t.startsWith('-') && t !== '-') {
      const eq = t.indexOf('=');
      const opt = eq > 0 ? t.slice(0, eq) : t;
      const takesValue = eq < 0 && valueOpts.includes(opt);
      // a short option with its value attached (-uroot) or clustered flags (-Ei) is one word
      i += takesValue ? 2 : 1;
      continue;
    }
    if (assignments && /^[A-Za-z_][A-Za-z0-9_]*=/.test(t)) {
      i++;
      continue;
    }
    break;
  }
  return words.slice(i);
}

/** `env -S 'cmd args'` / `env --split-string=...`: the string is a command line. */
function envSplitString(words: WordText[]): WordText | undefined {
  for (let i = 0; i < words.length; i++) {
    const t = words[i]!.text;
    if (t === '-S' || t === '--split-string') return words[i + 1];
    if (t.startsWith('--split-string=')) return { text: t.slice(15), dynamic: words[i]!.dynamic };
    if (/^-[^-]*S./.test(t)) return { text: t.slice(t.indexOf('S') + 1), dynamic: words[i]!.dynamic };
    if (!t.startsWith('-')) break;
  }
  return undefined;
}

/** `bash -c 'string' [name args...]`, `sh -ec "..."`, `bash -lc ...`: the string is parsed recursively. */
function shellC(ctx: Ctx, _name: string, rest: WordText[], via: string[]): void {
  for (let i = 0; i < rest.length; i++) {
    const w = rest[i]!;
    if (w.dynamic) break;
    if (w.text === '--') break;
    if (/^-[A-Za-z]*c[A-Za-z]*$/.test(w.text) || w.text === '--command') {
      // options after -c that take a value are rare; the first non-option word is the string
      let j = i + 1;
      while (j < rest.length && /^[-+][A-Za-z]+$/.test(rest[j]!.text) && !rest[j]!.dynamic) j++;
      const s = rest[j];
      if (s) commandString(ctx, [s], [...via, 'bash_c']);
      return;
    }
    if (/^[-+]o$/.test(w.text)) {
      i++;
      continue;
    }
    if (!w.text.startsWith('-') && !w.text.startsWith('+')) break;
  }
}

/** `su [user] -c 'string'`. */
function suC(ctx: Ctx, rest: WordText[], via: string[]): void {
  for (let i = 0; i < rest.length; i++) {
    const t = rest[i]!.text;
    if (t === '-c' || t === '--command') {
      const s = rest[i + 1];
      if (s) commandString(ctx, [s], [...via, 'su']);
      return;
    }
    if (t.startsWith('--command=')) return commandString(ctx, [{ text: t.slice(10), dynamic: rest[i]!.dynamic }], [...via, 'su']);
  }
}

/** `find ... -exec cmd args {} ;` / `-execdir` / `-ok` / `-okdir`. */
function findExec(ctx: Ctx, rest: WordText[], via: string[]): void {
  for (let i = 0; i < rest.length; i++) {
    const t = rest[i]!.text;
    if (t === '-exec' || t === '-execdir' || t === '-ok' || t === '-okdir') {
      let j = i + 1;
      while (j < rest.length && rest[j]!.text !== ';' && !(rest[j]!.text === '+' && rest[j - 1]?.text === '{}')) j++;
      const cmd = rest.slice(i + 1, j);
      if (cmd.length > 0) program(ctx, cmd, [...via, 'find_exec']);
      i = j;
    } else if (t === '-delete') {
      ctx.programs.push({ name: 'find -delete', argv: ['-delete'], via: [...via, 'find_exec'] });
    }
  }
}

/** Joins words with spaces (as eval does) and analyses the result as a command line. */
function commandString(ctx: Ctx, words: WordText[], via: string[]): void {
  if (words.some((w) => w.dynamic)) {
    const text = words.map((w) => w.text).join(' ');
    ctx.programs.push({ name: text, argv: [text], via, dynamic: true });
    return;
  }
  parseInto(ctx, words.map((w) => w.text).join(' '), via);
}
