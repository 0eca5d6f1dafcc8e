/**
 * Minimal structured logger: one JSON object per line on stderr (or a human
 * line when `TASKGATE_LOG_FORMAT=text`). Never logs secrets: callers pass
 * already-masked fields.
 */
export type Level = 'debug' | 'info' | 'warn' | 'error';
const ORDER: Record<Level, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
  child(fields: Record<string, unknown>): Logger;
}

export function createLogger(
  opts: { level?: Level; format?: 'json' | 'text'; base?: Record<string, unknown>; write?: (line: string) => void } = {},
): Logger {
  const level = opts.level ?? ((process.env.TASKGATE_LOG_LEVEL as Level | undefined) ?? 'info');
  const format = opts.format ?? (process.env.TASKGATE_LOG_FORMAT === 'text' ? 'text' : 'json');
  const write = opts.write ?? ((l: string) => process.stderr.write(l + '\n'));
  const base = opts.base ?? {};
  const emit = (lvl: Level, msg: string, fields?: Record<string, unknown>) => {
    if (ORDER[lvl] < (ORDER[level] ?? 20)) return;
    if (format === 'text') {
      const kv = Object.entries({ ...base, ...fields })
        .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
        .join(' ');
      write(`${lvl.toUpperCase()} ${msg}${kv ? ' ' + kv : ''}`);
    } else {
      write(JSON.stringify({ ts: new Date().toISOString(), level: lvl, msg, ...base, ...fields }));
    }
  };
  return {
    debug: (m, f) => emit('debug', m, f),
    info: (m, f) => emit('info', m, f),
    warn: (m, f) => emit('warn', m, f),
    error: (m, f) => emit('error', m, f),
    child: (f) => createLogger({ level, format, write, base: { ...base, ...f } }),
  };
}

/** A logger that drops everything (tests, benchmarks). */
export const silentLogger: Logger = {
  debug() {},
  info() {},
  warn() {},
  error() {},
  child() {
    return silentLogger;
  },
};
