/** The two storage engines every control-plane suite runs on: embedded PGlite and a real PostgreSQL server. */
import { startPostgres, type PgServer } from '../../../devenv/postgres.ts';
import { openPglite, openPostgres, type Database } from '../../../control-plane/storage/db.ts';
import { silentLogger } from '../../../core/log.ts';

export interface EngineHarness {
  name: 'pglite' | 'postgres';
  /** A fresh, empty database. */
  open(): Promise<Database>;
  /** Storage config for startControlPlane pointing at a fresh database. */
  config(): Promise<{ kind: 'pglite'; dataDir?: string } | { kind: 'postgres'; url: string }>;
  stop(): Promise<void>;
}

export function pgliteHarness(): EngineHarness {
  return {
    name: 'pglite',
    open: () => openPglite(),
    config: async () => ({ kind: 'pglite' }),
    stop: async () => {},
  };
}

/** One PostgreSQL server per suite; each open() gets its own database in it. */
export function postgresHarness(): EngineHarness {
  let server: PgServer | undefined;
  let n = 0;
  const fresh = async (): Promise<string> => {
    server ??= await startPostgres();
    const db = `cp_${process.pid}_${++n}`;
    await server.psql(`CREATE DATABASE ${db}`);
    return server.url('postgres', 'postgres', db);
  };
  return {
    name: 'postgres',
    open: async () => openPostgres(await fresh(), { poolSize: 10, log: silentLogger }),
    config: async () => ({ kind: 'postgres', url: await fresh() }),
    stop: async () => {
      await server?.stop();
    },
  };
}

export const harnesses = (): EngineHarness[] => [pgliteHarness(), postgresHarness()];
