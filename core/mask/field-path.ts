/**
 * JSON field paths for `field` mask rules.
 *
 *   data.password            key `password` under key `data` at the root
 *   data.*                   every key under `data` (or every element if it is an array)
 *   items[*].card            `card` in every element of the `items` array
 *   items[0].card            only the first element
 *   spec.containers[*].env[*].value
 *   **.password              `password` at any depth (`**` = zero or more levels)
 *   metadata.annotations["kubectl.kubernetes.io/last-applied-configuration"]
 *
 * Paths are anchored at the document root. A path that selects an object or an
 * array masks every scalar below it.
 */
import { TaskgateError } from '../errors.ts';

export type PathStep = string | number;
export type FieldMatcher = (path: readonly PathStep[]) => boolean;

type Seg = { k: 'key'; name: string } | { k: 'any' } | { k: 'index'; n: number } | { k: 'anyIndex' } | { k: 'deep' };

export function parseFieldPath(src: string, ruleIndex = 0): Seg[] {
  const fail = (why: string): never => {
    throw new TaskgateError('decision_invalid', `mask[${ruleIndex}]: field ${JSON.stringify(src)}: ${why}`);
  };
  const segs: Seg[] = [];
  let i = 0;
  let needSep = false;
  while (i < src.length) {
    const c = src[i]!;
    if (c === '.') {
      if (!needSep) fail(`unexpected "." at ${i}`);
      needSep = false;
      i++;
      continue;
    }
    if (c === '[') {
      const close = src.indexOf(']', i);
      if (close < 0) fail('unclosed [');
      const inner = src.slice(i + 1, close).trim();
      if (inner === '*') segs.push({ k: 'anyIndex' });
      else if (/^\d+$/.test(inner)) segs.push({ k: 'index', n: Number(inner) });
      else if (/^(["']).*\1$/.test(inner)) segs.push({ k: 'key', name: inner.slice(1, -1) });
      else fail(`bad index [${inner}]`);
      i = close + 1;
      needSep = true;
      continue;
    }
    if (needSep) fail(`expected "." or "[" at ${i}`);
    let j = i;
    while (j < src.length && src[j] !== '.' && src[j] !== '[') j++;
    const name = src.slice(i, j);
    if (name === '**') segs.push({ k: 'deep' });
    else if (name === '*') segs.push({ k: 'any' });
    else if (name.includes('*')) fail('"*" must be a whole segment');
    else segs.push({ k: 'key', name });
    i = j;
    needSep = true;
  }
  if (segs.length === 0 || !needSep) fail('empty or ends with "."');
  return segs;
}

export function compileFieldPath(src: string, ruleIndex = 0): FieldMatcher {
  const segs = parseFieldPath(src, ruleIndex);
  const hasDeep = segs.some((s) => s.k === 'deep');
  const stepOk = (s: Seg, p: PathStep): boolean => {
    switch (s.k) {
      case 'key':
        return typeof p === 'string' && p === s.name;
      case 'any':
        return true;
      case 'index':
        return p === s.n;
      case 'anyIndex':
        return typeof p === 'number';
      case 'deep':
        return true;
    }
  };
  if (!hasDeep) {
    return (path) => {
      if (path.length !== segs.length) return false;
      for (let i = 0; i < segs.length; i++) if (!stepOk(segs[i]!, path[i]!)) return false;
      return true;
    };
  }
  const match = (si: number, pi: number, path: readonly PathStep[]): boolean => {
    if (si === segs.length) return pi === path.length;
    const s = segs[si]!;
    if (s.k === 'deep') {
      for (let k = pi; k <= path.length; k++) if (match(si + 1, k, path)) return true;
      return false;
    }
    return pi < path.length && stepOk(s, path[pi]!) && match(si + 1, pi + 1, path);
  };
  return (path) => match(0, 0, path);
}

/** `items[*].card`-style display of a concrete path (indices folded), used as a count key. */
export function pathKey(path: readonly PathStep[]): string {
  let out = '';
  for (const p of path) {
    if (typeof p === 'number') out += '[*]';
    else if (/^[A-Za-z_$][\w$-]*$/.test(p)) out += (out ? '.' : '') + p;
    else out += `[${JSON.stringify(p)}]`;
  }
  return out || '$';
}
