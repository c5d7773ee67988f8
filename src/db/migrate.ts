import type pg from 'pg';
import type { Logger } from '../core/logger.js';
import { withClient } from './pool.js';
import { migrations, query } from './sql.js';

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

/** How often a migration waiting for another's lock asks again, and how often it says it still waits. */
const LOCK_POLL_MS = 250;
const LOCK_LOG_EVERY_MS = 10_000;

/**
 * How long one migration's DDL may wait for a table lock. Without a bound an
 * ALTER queued behind a long transaction would queue every later query of
 * that table behind itself (PostgreSQL's lock queue), stalling delivery
 * history and the registry; with it the migration fails and is retried.
 */
const MIGRATION_LOCK_TIMEOUT = '30s';

/**
 * Takes the migration lock, asking again until it is free rather than blocking
 * in `pg_advisory_lock`, so that a wait behind another daemon's migration is
 * logged instead of silent.
 */
async function lockMigrations(client: pg.PoolClient, log: Logger): Promise<void> {
  let loggedAt = -Infinity;
  for (;;) {
    const r = await client.query<{ ok: boolean }>('SELECT pg_try_advisory_lock($1) AS ok', [MIGRATE_LOCK]);
    if (r.rows[0]?.ok === true) return;
    if (Date.now() - loggedAt >= LOCK_LOG_EVERY_MS) {
      loggedAt = Date.now();
      log.warn({ lock: MIGRATE_LOCK }, 'waiting for another notifyd to finish migrating the database (it holds the migration lock)');
    }
    await new Promise((resolve) => setTimeout(resolve, LOCK_POLL_MS));
  }
}

async function migrateOn(client: pg.PoolClient, log: Logger): Promise<number[]> {
  const applied: number[] = [];
  const all = migrations();
  await lockMigrations(client, log);
  try {
    await client.query(
      'CREATE TABLE IF NOT EXISTS notify_schema_migrations (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())',
    );
    const rows = (await client.query<{ version: number; name: string }>('SELECT version, name FROM notify_schema_migrations')).rows;
    const done = new Map(rows.map((r) => [r.version, r.name]));
    for (const m of all) {
      const had = done.get(m.version);
      // Another migration under this number was applied (two branches' 003, say): applying neither would leave the schema wrong silently.
      if (had !== undefined && had !== m.name) throw new Error(`migration ${m.version} applied to this database is "${had}", not "${m.name}" as sql/migrations says`);
    }
    for (const m of all) {
      if (done.has(m.version)) continue;
      await client.query('BEGIN');
      try {
        await client.query(query('set-lock-timeout'), [MIGRATION_LOCK_TIMEOUT]);
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
