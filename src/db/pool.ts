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
    /**
     * A query with no answer for this long fails here, whatever the server
     * does (a host gone without a reset, a partition), and its connection is
     * dropped (`withClient`). Defaults to `statementTimeoutMs` + 5 s when that
     * is set; none otherwise (migrations may run long).
     */
    queryTimeoutMs?: number;
  },
): pg.Pool {
  const queryTimeoutMs = opts.queryTimeoutMs ?? (opts.statementTimeoutMs ? opts.statementTimeoutMs + 5000 : undefined);
  const pool = new (require('pg') as typeof pg).Pool({
    connectionString: url,
    max: opts.max,
    application_name: opts.name,
    connectionTimeoutMillis: 5000,
    idleTimeoutMillis: opts.idleMs ?? 30_000,
    // A connection whose peer vanished is noticed by TCP instead of waited on for good.
    keepAlive: true,
    keepAliveInitialDelayMillis: 10_000,
    ...(opts.statementTimeoutMs ? { statement_timeout: opts.statementTimeoutMs } : {}),
    ...(queryTimeoutMs ? { query_timeout: queryTimeoutMs } : {}),
  });
  pool.on('error', (err) => opts.log.warn({ db: redactUrl(url), err: err.message }, 'database connection lost'));
  return pool;
}

/**
 * Runs `fn` on a client checked out of `pool`, then gives it back. pg-pool
 * takes its own 'error' listener off a client while it is checked out, and
 * pg emits 'error' on a client whose connection ends under it (PostgreSQL
 * stopped or restarted): unheard, that kills the process (a master running
 * its minutely auto-disable check when PostgreSQL stopped died so). Heard
 * here, the statement under way fails with the error as it would anyway,
 * and the client is given back broken, so the pool drops it.
 */
export async function withClient<T>(pool: pg.Pool, fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
  const c = await pool.connect();
  let lost: Error | undefined;
  const onError = (err: Error): void => {
    lost = err;
  };
  c.on('error', onError);
  try {
    return await fn(c);
  } catch (err) {
    // pg leaves the timed-out query on the connection: given back whole, the next user would wait behind it.
    if (isQueryTimeout(err)) lost ??= err as Error;
    throw err;
  } finally {
    c.removeListener('error', onError);
    c.release(lost);
  }
}

/** pg's own error for a query past the pool's `queryTimeoutMs` (the server may still be running it). */
export function isQueryTimeout(err: unknown): boolean {
  return err instanceof Error && err.message === 'Query read timeout';
}

/** Runs `fn` in a transaction on one client of `pool` (see `withClient`). */
export function inTransaction<T>(pool: pg.Pool, fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
  return withClient(pool, async (c) => {
    try {
      await c.query('BEGIN');
      const out = await fn(c);
      await c.query('COMMIT');
      return out;
    } catch (err) {
      // After a query timeout the ROLLBACK would only queue behind it; the dropped connection rolls back instead.
      if (!isQueryTimeout(err)) await c.query('ROLLBACK').catch(() => undefined);
      throw err;
    }
  });
}
