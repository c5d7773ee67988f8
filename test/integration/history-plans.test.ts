// The history listing's plans against a real PostgreSQL (history read-path
// review, stop 60): listing the few pending notifications among many
// delivered ones must use an index that holds only pending rows, not read
// every day's partition.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { freshDatabase, type TestDatabase } from '../../bench/database.js';
import { createLogger } from '../../src/core/logger.js';
import { migrate } from '../../src/db/migrate.js';
import { query } from '../../src/db/sql.js';

interface PlanNode {
  'Node Type': string;
  'Relation Name'?: string;
  'Index Name'?: string;
  Plans?: PlanNode[];
}

function scans(n: PlanNode): PlanNode[] {
  return [...(n['Relation Name'] ? [n] : []), ...(n.Plans ?? []).flatMap(scans)];
}

describe('history listing plans (real PostgreSQL)', () => {
  let db: TestDatabase;
  let pool: pg.Pool;

  before(async () => {
    db = await freshDatabase('historyplans');
    pool = new pg.Pool({ connectionString: db.url, max: 1 });
    pool.on('error', () => undefined);
    await migrate(pool, createLogger('silent', {}));
    for (const day of ['2026-12-01', '2026-12-02', '2026-12-03']) await pool.query('SELECT notify_history_add_day($1::date)', [day]);
    // Three days of 20,000 delivered notifications each over 20 merchants, and a handful under way.
    await pool.query(
      `INSERT INTO notify_notifications (id, created_at, merchant, url, status, status_at)
       SELECT 'n' || g, timestamptz '2026-12-01 00:00:00+00' + (g * interval '4 seconds'), 'm' || (g % 20), 'https://m.example/', 'delivered', now()
         FROM generate_series(1, 60000) AS g`,
    );
    await pool.query("UPDATE notify_notifications SET status = 'pending' WHERE id IN ('n10', 'n30000', 'n59990', 'n59991')");
    await pool.query('ANALYZE notify_notifications');
  });

  after(async () => {
    await pool?.end();
    await db?.drop();
  });

  /** The indexes the listing reads for `status=pending` (with or without a merchant), each with its definition. */
  async function pendingListing(merchant: string | null): Promise<{ scans: PlanNode[]; defs: Map<string, string>; ids: string[] }> {
    const params = [merchant, 'pending', null, null, null, null, 51];
    const plan = (await pool.query<{ 'QUERY PLAN': [{ Plan: PlanNode }] }>(`EXPLAIN (FORMAT JSON) ${query('history-list')}`, params)).rows[0]!['QUERY PLAN'][0].Plan;
    const defs = new Map((await pool.query<{ indexname: string; indexdef: string }>('SELECT indexname, indexdef FROM pg_indexes')).rows.map((r) => [r.indexname, r.indexdef]));
    const ids = (await pool.query<{ id: string }>(query('history-list'), params)).rows.map((r) => r.id);
    return { scans: scans(plan), defs, ids };
  }

  it('status=pending reads only indexes of pending rows, with or without a merchant, and finds them all', async () => {
    for (const merchant of [null, 'm10']) {
      const { scans: s, defs, ids } = await pendingListing(merchant);
      assert.ok(s.length > 0);
      for (const n of s) {
        assert.notEqual(n['Node Type'], 'Seq Scan', `${merchant}: ${n['Relation Name']} read whole`);
        assert.match(defs.get(n['Index Name'] ?? '') ?? '', /WHERE \(status = 'pending'::text\)/, `${merchant}: ${n['Relation Name']} by ${n['Index Name']}`);
      }
      assert.deepEqual(ids, merchant === null ? ['n59991', 'n59990', 'n30000', 'n10'] : ['n59990', 'n10']);
    }
  });
});
