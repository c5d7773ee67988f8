// A redrive's part in the history (src/history/superseded.ts) against a real
// PostgreSQL: what it claims of a batch of parked copies, what it gives back,
// and that a row the recorder changes while the redrive waits for its lock is
// read whole, its status and ladders as of the same moment.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { freshDatabase, type TestDatabase } from '../../bench/database.js';
import { createLogger } from '../../src/core/logger.js';
import { migrate } from '../../src/db/migrate.js';
import { query } from '../../src/db/sql.js';
import { HistoryClaims } from '../../src/history/claims.js';
import { foldRecords } from '../../src/history/fold.js';
import { newRunId, type AttemptRecord, type HistoryRecord } from '../../src/history/records.js';
import { RedriveClaims } from '../../src/history/superseded.js';
import { HistoryWriter } from '../../src/history/writer.js';

const CREATED = Date.parse('2026-12-01T10:00:00.000Z');
const DEAD_AT = CREATED + 60_000;

/** A parked copy of notification `id` (created at CREATED), parked at DEAD_AT on ladder `run`. */
const copy = (id: string, moves = true, run = 'r1') => ({
  content: Buffer.from(JSON.stringify({ id, createdAt: CREATED, url: 'https://m.example/' })),
  headers: { 'notify-dead-at': DEAD_AT, 'notify-run': run } as Record<string, unknown>,
  moves,
});

describe('redrive claims (real PostgreSQL)', () => {
  let db: TestDatabase;
  let pool: pg.Pool;
  let claims: RedriveClaims;

  before(async () => {
    db = await freshDatabase('redriveclaims');
    pool = new pg.Pool({ connectionString: db.url, max: 2 });
    pool.on('error', () => undefined);
    await migrate(pool, createLogger('silent', {}));
    await pool.query('SELECT notify_history_add_day($1::date)', ['2026-12-01']);
    claims = new RedriveClaims(pool);
  });

  after(async () => {
    await pool?.end();
    await db?.drop();
  });

  /** A notification dead since DEAD_AT on ladder r1 (and `runs` more ladders started at those times). */
  async function parked(id: string, runs: number[] = []): Promise<void> {
    await pool.query(
      "INSERT INTO notify_notifications (id, created_at, url, status, status_at, dead_reason, dead_at) VALUES ($1, to_timestamp($2 / 1000.0), 'https://m.example/', 'dead', to_timestamp($3 / 1000.0), 'exhausted', to_timestamp($3 / 1000.0))",
      [id, CREATED, DEAD_AT],
    );
    for (const [i, at] of [CREATED, ...runs].entries()) {
      await pool.query("INSERT INTO notify_runs (notification_id, created_at, run, started_at, via) VALUES ($1, to_timestamp($2 / 1000.0), $3, to_timestamp($4 / 1000.0), 'ingress')", [id, CREATED, `r${i + 1}`, at]);
    }
  }
  const status = async (id: string): Promise<{ status: string; ms: number; reason: string | null }> => {
    const r = (await pool.query("SELECT status, round(EXTRACT(EPOCH FROM status_at) * 1000)::bigint AS ms, dead_reason FROM notify_notifications WHERE id = $1", [id])).rows[0];
    return { status: r.status, ms: Number(r.ms), reason: r.dead_reason };
  };

  it('claims the copies it moves (pending as of the batch start), not sticky ones; a second copy of one notification is held; a giveBack restores what the claim replaced', async () => {
    await parked('a');
    await parked('b');
    await parked('c');
    const at = DEAD_AT + 10_000;
    const h = await claims.open();
    const v = await h.decide([copy('a'), copy('b', false), copy('a'), copy('c'), copy('unknown')], at);
    assert.deepEqual(v, ['move', 'move', 'hold', 'move', 'move'], 'the second copy of a held; one the history does not know moved');
    assert.deepEqual(await status('a'), { status: 'pending', ms: at, reason: null });
    assert.deepEqual(await status('b'), { status: 'dead', ms: DEAD_AT, reason: 'exhausted' }, 'sticky: not claimed');
    assert.deepEqual(await status('c'), { status: 'pending', ms: at, reason: null });
    // c's move failed (from index 3 on): its claim goes back; a's stays.
    await h.giveBack(3);
    assert.deepEqual(await status('c'), { status: 'dead', ms: DEAD_AT, reason: 'exhausted' });
    assert.equal((await status('a')).status, 'pending');
  });

  it('a row changed since it was read is not claimed (a resend claimed it first)', async () => {
    await parked('f');
    const key = (await pool.query<{ key: string }>("SELECT to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') AS key FROM notify_notifications WHERE id = 'f'")).rows[0]!.key;
    const asRead = new Date(DEAD_AT).toISOString();
    // A resend's claim after the redrive read the row as dead.
    await pool.query("UPDATE notify_notifications SET status = 'pending', status_at = to_timestamp($1 / 1000.0) WHERE id = 'f'", [DEAD_AT + 5000]);
    const r = await pool.query(query('history-claim-parked'), [['f'], [key], DEAD_AT + 40_000, ['dead'], [asRead]]);
    assert.equal(r.rowCount, 0);
    assert.deepEqual(await status('f'), { status: 'pending', ms: DEAD_AT + 5000, reason: 'exhausted' }, "the resend's claim stands");
    // As read, it is claimed.
    await pool.query("UPDATE notify_notifications SET status = 'dead', status_at = to_timestamp($1 / 1000.0) WHERE id = 'f'", [DEAD_AT]);
    assert.equal((await pool.query(query('history-claim-parked'), [['f'], [key], DEAD_AT + 40_000, ['dead'], [asRead]])).rowCount, 1);
  });

  it('a claim replaced meanwhile (a newer record) is not given back', async () => {
    await parked('d');
    const at = DEAD_AT + 20_000;
    const h = await claims.open();
    assert.deepEqual(await h.decide([copy('d')], at), ['move']);
    await pool.query("UPDATE notify_notifications SET status = 'delivered', status_at = to_timestamp($1 / 1000.0) WHERE id = 'd'", [at + 500]);
    await h.giveBack(0);
    assert.deepEqual(await status('d'), { status: 'delivered', ms: at + 500, reason: null });
  });

  it('a row the recorder changes while the redrive waits for its lock is read whole: the new ladder and its end together (dropped, not moved twice)', async () => {
    await parked('e');
    const recorder = new pg.Client({ connectionString: db.url });
    await recorder.connect();
    try {
      // What a resend's ladder brings, in one transaction as the recorder writes it: the run, then the row.
      await recorder.query('BEGIN');
      await recorder.query("UPDATE notify_notifications SET status = 'dead', status_at = to_timestamp($1 / 1000.0) WHERE id = 'e'", [DEAD_AT + 2000]);
      const deciding = claims.open().then((h) => h.decide([copy('e')], DEAD_AT + 30_000));
      // The redrive waits on the row lock (asked from another session: pg_stat_activity in a transaction is a snapshot).
      let seen = false;
      for (let i = 0; i < 200 && !seen; i++) {
        seen = (await db.query("SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()")).rows.length > 0;
        if (!seen) await new Promise((r) => setTimeout(r, 50));
      }
      assert.ok(seen, 'the redrive waited for the lock (else this would not test the wait)');
      await recorder.query("INSERT INTO notify_runs (notification_id, created_at, run, started_at, via) VALUES ('e', to_timestamp($1 / 1000.0), 'r2', to_timestamp($2 / 1000.0), 'resend')", [CREATED, DEAD_AT + 1000]);
      await recorder.query('COMMIT');
      assert.deepEqual(await deciding, ['drop'], 'resent after it was parked');
    } finally {
      await recorder.end();
    }
    assert.equal((await status('e')).status, 'dead', 'not claimed');
  });
  it('a ladder\'s duplicate copy that parks after its delivery (a redelivery after a lost ack) leaves it delivered whichever batch comes first, and a redrive drops that copy; a claim given back restores the ladder it replaced', async () => {
    const writer = new HistoryWriter(pool);
    const ra = newRunId(CREATED);
    const att = (id: string, over: Partial<AttemptRecord>): AttemptRecord => ({
      t: 'attempt', id, createdAt: CREATED, run: ra, attempt: 0, tier: 0, startedAt: CREATED + 10, durationMs: 5, status: 200, outcome: 'success', skipReason: null, error: null, answer: 'success', final: { status: 'delivered' }, ...over,
    });
    const start = (id: string): HistoryRecord => ({ t: 'run', id, createdAt: CREATED, run: ra, at: CREATED, via: 'ingress', merchant: 'shop', producer: null, url: 'https://m.example/', content: JSON.stringify({ id, createdAt: CREATED, url: 'https://m.example/' }) });
    const delivered = (id: string) => att(id, {});
    const parkedDup = (id: string) => att(id, { attempt: 5, tier: 5, startedAt: DEAD_AT - 5, status: 500, outcome: 'dead', answer: 'no', error: 'status 500', final: { status: 'dead', reason: 'exhausted' } });
    await writer.write(foldRecords([start('g'), delivered('g')]));
    await writer.write(foldRecords([parkedDup('g')]));
    await writer.write(foldRecords([start('h'), parkedDup('h')]));
    await writer.write(foldRecords([delivered('h')]));
    for (const id of ['g', 'h']) {
      const r = (await pool.query('SELECT status, dead_reason, round(EXTRACT(EPOCH FROM status_run_at) * 1000)::bigint AS run_ms, attempts FROM notify_notifications WHERE id = $1', [id])).rows[0];
      assert.deepEqual({ ...r, run_ms: Number(r.run_ms) }, { status: 'delivered', dead_reason: null, run_ms: CREATED, attempts: 2 }, id);
    }
    const h = await claims.open();
    assert.deepEqual(await h.decide([copy('g', true, ra)], DEAD_AT + 10_000), ['drop'], 'the merchant has it: not sent again');
    assert.equal((await status('g')).status, 'delivered');

    // A forced resend's claim on g, given back (its publish failed): the ladder it replaced comes back with it, so
    // the first ladder's late events still lose to the delivery.
    const key = (await pool.query<{ key: string }>("SELECT to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') AS key FROM notify_notifications WHERE id = 'g'")).rows[0]!.key;
    const hc = new HistoryClaims(pool);
    const claim = await hc.claim('g', key, DEAD_AT + 20_000, ['delivered']);
    assert.ok(claim);
    await hc.release(claim);
    await writer.write(foldRecords([att('g', { attempt: 4, tier: 4, startedAt: DEAD_AT + 30_000, status: 500, outcome: 'dead', final: { status: 'dead', reason: 'exhausted' } })]));
    assert.equal((await status('g')).status, 'delivered', 'the ladder start given back too');
    // A ladder started before the claim (a producer's second one) but after the delivery: its end is the status.
    await writer.write(foldRecords([att('g', { run: newRunId(DEAD_AT + 10_000), startedAt: DEAD_AT + 31_000, status: 500, outcome: 'dead', final: { status: 'dead', reason: 'exhausted' } })]));
    assert.equal((await status('g')).status, 'dead', 'not held back by the claim given back');
  });
  it('a forced resend whose publish failed gives its claim back, and the end its older ladder recorded meanwhile (lost to the claim) is the status again', async () => {
    const writer = new HistoryWriter(pool);
    const ra = newRunId(CREATED);
    await writer.write(foldRecords([{ t: 'run', id: 'k', createdAt: CREATED, run: ra, at: CREATED, via: 'ingress', merchant: 'shop', producer: null, url: 'https://m.example/', content: JSON.stringify({ id: 'k', createdAt: CREATED, url: 'https://m.example/' }) }]));
    const key = (await pool.query<{ key: string }>("SELECT to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') AS key FROM notify_notifications WHERE id = 'k'")).rows[0]!.key;
    const hc = new HistoryClaims(pool);
    const claimAt = DEAD_AT;
    const claim = await hc.claim('k', key, claimAt, ['pending', 'delivered', 'dead']);
    assert.ok(claim);
    // The first ladder delivers after the claim, while the resend's publish is failing.
    await writer.write(foldRecords([{ t: 'attempt', id: 'k', createdAt: CREATED, run: ra, attempt: 4, tier: 4, startedAt: claimAt + 1000, durationMs: 5, status: 200, outcome: 'success', skipReason: null, error: null, answer: 'success', final: { status: 'delivered' } }]));
    assert.equal((await status('k')).status, 'pending', 'the claim stands while its publish is under way');
    await hc.release(claim);
    assert.deepEqual(await status('k'), { status: 'delivered', ms: claimAt + 1005, reason: null });
  });
});
