/**
 * The sidecar's line discipline for interactive shells: keystrokes are kept
 * and echoed here, and only a complete line is handed on (to be decided by
 * the policy before it reaches the remote shell).
 *
 * Minimal editing, like a cooked tty: printable text (UTF-8), backspace,
 * delete, ^U (kill line), ^W (kill word), left/right/home/end, ^C (drop the
 * line, interrupt upstream), ^D on an empty line (EOF upstream). History,
 * tab completion and other escape sequences are ignored (a bell for tab).
 * Columns are counted one per code point: wide characters and lines longer
 * than the terminal width may redraw imperfectly.
 *
 * A pure state machine: fed bytes, returns events; no sockets, no policy.
 */
import { StringDecoder } from 'node:string_decoder';

export type LineEvent =
  /** Bytes to show the user (local echo). */
  | { type: 'echo'; data: string }
  /** A submitted line; `erase` removes its local echo from the screen (cursor back to where input started). */
  | { type: 'line'; line: string; erase: string }
  /** ^C: the pending input was dropped (`erase` clears its echo); send an interrupt upstream. */
  | { type: 'interrupt'; erase: string }
  /** ^D on an empty line. */
  | { type: 'eof' }
  /** ^L on an empty line: passed upstream as is. */
  | { type: 'passthrough'; data: string };

const ESC = '\x1b';
const MAX_LINE = 64 * 1024;

export class LineDiscipline {
  private chars: string[] = [];
  private cur = 0;
  private readonly decoder = new StringDecoder('utf8');
  /** Partial escape sequence carried across feeds. */
  private esc = '';
  /** The last byte of the previous feed was CR (a CRLF split across feeds is one Enter). */
  private lastCR = false;

  get pending(): string {
    return this.chars.join('');
  }

  feed(data: Buffer | string): LineEvent[] {
    const text = this.esc + (typeof data === 'string' ? data : this.decoder.write(data));
    this.esc = '';
    const out: LineEvent[] = [];
    let echo = '';
    const flush = () => {
      if (echo) out.push({ type: 'echo', data: echo });
      echo = '';
    };
    const cps = [...text];
    const prevCR = this.lastCR;
    this.lastCR = cps.length > 0 ? cps[cps.length - 1] === '\r' : prevCR;
    for (let i = 0; i < cps.length; i++) {
      const ch = cps[i]!;
      if (ch === ESC) {
        const seq = readEscape(cps, i);
        if (seq === undefined) {
          this.esc = cps.slice(i).join('');
          break;
        }
        echo += this.escape(seq);
        i += [...seq].length - 1;
        continue;
      }
      switch (ch) {
        case '\r':
        case '\n': {
          if (ch === '\n' && (i > 0 ? cps[i - 1] === '\r' : prevCR)) break;
          flush();
          out.push({ type: 'line', line: this.pending, erase: this.eraseAll() });
          this.reset();
          break;
        }
        case '\x7f':
        case '\b':
          echo += this.backspace();
          break;
        case '\x15':
          echo += this.eraseAll();
          this.reset();
          break;
        case '\x17':
          echo += this.killWord();
          break;
        case '\x03':
          flush();
          out.push({ type: 'interrupt', erase: this.eraseAll() });
          this.reset();
          break;
        case '\x04':
          if (this.chars.length === 0) {
            flush();
            out.push({ type: 'eof' });
          }
          break;
        case '\x0c':
          if (this.chars.length === 0) {
            flush();
            out.push({ type: 'passthrough', data: ch });
          }
          break;
        case '\x01':
          echo += this.move(-this.cur);
          break;
        case '\x05':
          echo += this.move(this.chars.length - this.cur);
          break;
        case '\t':
          echo += '\x07';
          break;
        default:
          if (ch < ' ') break; // other control characters are ignored
          if (this.chars.length >= MAX_LINE) {
            echo += '\x07';
            break;
          }
          echo += this.insert(ch);
      }
    }
    flush();
    return out;
  }

  private reset(): void {
    this.chars = [];
    this.cur = 0;
  }

  private tail(): string {
    return this.chars.slice(this.cur).join('');
  }

  private insert(ch: string): string {
    this.chars.splice(this.cur, 0, ch);
    this.cur++;
    const tail = this.tail();
    return ch + tail + left(tail.length);
  }

  private backspace(): string {
    if (this.cur === 0) return '';
    this.chars.splice(this.cur - 1, 1);
    this.cur--;
    const tail = this.tail();
    return '\b' + tail + ' ' + left(tail.length + 1);
  }

  private del(): string {
    if (this.cur >= this.chars.length) return '';
    this.chars.splice(this.cur, 1);
    const tail = this.tail();
    return tail + ' ' + left(tail.length + 1);
  }

  private killWord(): string {
    let n = 0;
    while (this.cur - n > 0 && this.chars[this.cur - n - 1] === ' ') n++;
    while (this.cur - n > 0 && this.chars[this.cur - n - 1] !== ' ') n++;
    let s = '';
    for (let i = 0; i < n; i++) s += this.backspace();
    return s;
  }

  private move(delta: number): string {
    const to = Math.max(0, Math.min(this.chars.length, this.cur + delta));
    const d = to - this.cur;
    this.cur = to;
    return d < 0 ? left(-d) : d > 0 ? `${ESC}[${d}C` : '';
  }

  /** Cursor back to the start of the input and clear to the end of the line. */
  private eraseAll(): string {
    if (this.chars.length === 0) return '';
    return left(this.cur) + `${ESC}[K`;
  }

  private escape(seq: string): string {
    switch (seq) {
      case `${ESC}[D`:
      case `${ESC}OD`:
        return this.move(-1);
      case `${ESC}[C`:
      case `${ESC}OC`:
        return this.move(1);
      case `${ESC}[H`:
      case `${ESC}OH`:
      case `${ESC}[1~`:
        return this.move(-this.cur);
      case `${ESC}[F`:
      case `${ESC}OF`:
      case `${ESC}[4~`:
        return this.move(this.chars.length - this.cur);
      case `${ESC}[3~`:
        return this.del();
      default:
        return ''; // history, function keys, bracketed-paste markers: ignored
    }
  }
}

function left(n: number): string {
  return n > 0 ? `${ESC}[${n}D` : '';
}

/** The escape sequence starting at cps[i] (ESC), or undefined when it is not complete yet. */
function readEscape(cps: string[], i: number): string | undefined {
  const next = cps[i + 1];
  if (next === undefined) return undefined;
  if (next === '[') {
    for (let j = i + 2; j < cps.length && j < i + 32; j++) {
      const c = cps[j]!;
      if (c >= '@' && c <= '~') return cps.slice(i, j + 1).join('');
    }
    return cps.length - i >= 32 ? cps.slice(i, i + 2).join('') : undefined;
  }
  if (next === 'O') {
    const c = cps[i + 2];
    return c === undefined ? undefined : ESC + 'O' + c;
  }
  return ESC + next; // Alt+key: ignored as a pair
}
