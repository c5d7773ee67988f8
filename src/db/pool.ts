import { createRequire } from 'node:module';
import type pg from 'pg';
import type { Logger } from '../core/logger.js';
import { redactUrl } from '../core/config-model.js';

/** pg loads with the first pool: a worker of a daemon without a database never needs it. */
const require = createRequire(import.meta.url);

/**
 * A pg pool for one process. Idle clients that lose their connection emit
 * 'error' on the pool; heard, it only costs a reconnect on the next query.
 */
export function createDbPool(
  url: string,
  opts: {
    max: number;
    name: string;
    log: Logger;
    /** 0 keeps idle connections open (a process that writes all the time). */
    idleMs?: number;
    /** PostgreSQL cancels any statement of this pool running longer (SQLSTATE 57014); none when absent. */
    statementTimeoutMs?: number;
  },
): pg.Pool {
  const pool = new (require('pg') as typeof pg).Pool({
    connectionString: url,
    max: opts.max,
    application_name: opts.name,
    connectionTimeoutMillis: 5000,
    idleTimeoutMillis: opts.idleMs ?? 30_000,
    ...(opts.statementTimeoutMs ? { statement_timeout: opts.statementTimeoutMs } : {}),
  });
  pool.on('error', (err) => opts.log.warn({ db: redactUrl(url), err: err.message }, 'database connection lost'));
  return pool;
}

/** Runs `fn` in a transaction on one client of `pool`. */
export async function inTransaction<T>(pool: pg.Pool, fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
  const c = await pool.connect();
  try {
    await c.query('BEGIN');
    const out = await fn(c);
    await c.query('COMMIT');
    return out;
  } catch (err) {
    await c.query('ROLLBACK').catch(() => undefined);
    throw err;
  } finally {
    c.release();
  }
}
