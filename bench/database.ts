/**
 * A throw-away PostgreSQL database for a test or bench run, on the machine's
 * server (trust auth on 127.0.0.1:5432; `NOTIFY_TEST_PG` overrides the admin
 * URL). Created fresh, dropped afterwards, so runs never share tables.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';

export const PG_ADMIN_URL = process.env.NOTIFY_TEST_PG ?? 'postgres://postgres@127.0.0.1:5432/postgres';

export interface TestDatabase {
  /** The URL to give the daemon (`NOTIFY_DATABASE_URL`). */
  readonly url: string;
  readonly name: string;
  /** Runs a query on it (test checks). */
  query<T extends pg.QueryResultRow = pg.QueryResultRow>(text: string, values?: unknown[]): Promise<pg.QueryResult<T>>;
  /** Drops it, cutting any connection still open; idempotent. */
  drop(): Promise<void>;
}

async function admin<T>(fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ connectionString: PG_ADMIN_URL });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end().catch(() => undefined);
  }
}

/** Creates a database named after `label` and a random suffix. */
export async function freshDatabase(label: string): Promise<TestDatabase> {
  const name = `notifyd_t_${label.replace(/[^a-z0-9]/gi, '').toLowerCase()}_${randomBytes(4).toString('hex')}`;
  // An identifier cannot be a parameter; the name is built from [a-z0-9_] only.
  await admin((c) => c.query(`CREATE DATABASE ${name}`));
  const u = new URL(PG_ADMIN_URL);
  u.pathname = `/${name}`;
  const url = u.toString();
  const pool = new pg.Pool({ connectionString: url, max: 2 });
  pool.on('error', () => undefined);
  let dropped = false;
  return {
    url,
    name,
    query: (text, values) => pool.query(text, values),
    async drop() {
      if (dropped) return;
      dropped = true;
      await pool.end().catch(() => undefined);
      await admin((c) => c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`));
    },
  };
}
