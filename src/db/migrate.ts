import type pg from 'pg';
import type { Logger } from '../core/logger.js';
import { withClient } from './pool.js';
import { migrations } from './sql.js';

/** An arbitrary constant: the advisory lock every notifyd takes to migrate, so daemons starting together migrate once. */
const MIGRATE_LOCK = 0x6e6f7469; // "noti"

/**
 * Applies the migrations the database has not had yet, each in its own
 * transaction, under a session advisory lock (several daemons may start at
 * once: one migrates, the others wait and find nothing left to do).
 * Returns the versions applied.
 */
export function migrate(pool: pg.Pool, log: Logger): Promise<number[]> {
  return withClient(pool, (client) => migrateOn(client, log));
}

async function migrateOn(client: pg.PoolClient, log: Logger): Promise<number[]> {
  const applied: number[] = [];
  await client.query('SELECT pg_advisory_lock($1)', [MIGRATE_LOCK]);
  try {
    await client.query(
      'CREATE TABLE IF NOT EXISTS notify_schema_migrations (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())',
    );
    const done = new Set((await client.query<{ version: number }>('SELECT version FROM notify_schema_migrations')).rows.map((r) => r.version));
    for (const m of migrations()) {
      if (done.has(m.version)) continue;
      await client.query('BEGIN');
      try {
        await client.query(m.sql);
        await client.query('INSERT INTO notify_schema_migrations (version, name) VALUES ($1, $2)', [m.version, m.name]);
        await client.query('COMMIT');
      } catch (err) {
        await client.query('ROLLBACK').catch(() => undefined);
        throw new Error(`migration ${m.version}-${m.name} failed: ${(err as Error).message}`, { cause: err });
      }
      applied.push(m.version);
      log.info({ version: m.version, name: m.name }, 'database migrated');
    }
  } finally {
    await client.query('SELECT pg_advisory_unlock($1)', [MIGRATE_LOCK]).catch(() => undefined);
  }
  return applied;
}
