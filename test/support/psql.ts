import { execFile } from 'node:child_process';

export interface PsqlResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface PsqlThroughSidecar {
  /** The psql binary. */
  bin: string;
  /** The sidecar's PostgreSQL listener on 127.0.0.1. */
  port: number;
  /** OIDC token, sent as the password. */
  token: string;
  /** Task id, sent in PGOPTIONS as `taskgate.task`. */
  task: string;
  /** psql arguments (connection settings come from the environment). */
  args: string[];
  /** Text on psql's standard input. */
  input?: string;
  /** Extra environment (e.g. PGSSLMODE). */
  env?: Record<string, string>;
}

/** Runs the real psql against a taskgate PostgreSQL sidecar as alice; never rejects (the exit code is returned). */
export function psqlThroughSidecar(o: PsqlThroughSidecar): Promise<PsqlResult> {
  const env = {
    ...process.env,
    PGPASSWORD: o.token,
    PGOPTIONS: `-c taskgate.task=${o.task}`,
    PGHOST: '127.0.0.1',
    PGPORT: String(o.port),
    PGUSER: 'alice',
    PGDATABASE: 'postgres',
    PGCONNECT_TIMEOUT: '10',
    ...o.env,
  };
  return new Promise((resolve) => {
    const child = execFile(o.bin, o.args, { env, timeout: 30_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1) : 0;
      resolve({ stdout, stderr, code });
    });
    if (o.input !== undefined) child.stdin?.end(o.input);
    else child.stdin?.end();
  });
}
