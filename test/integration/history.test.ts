// Delivery history (issue 16), the record path, against the real daemon,
// RabbitMQ and PostgreSQL: what is recorded for each kind of attempt, and
// that nothing is lost when PostgreSQL stops or the recorder is killed;
// retention drops whole days.
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, afterEach, before, describe, it, type TestContext } from 'node:test';
import amqp from 'amqplib';
import pg from 'pg';
import { AMQP_URL, CLI_PATH, DaemonProcess, deletePrefix, uniquePrefix, waitFor } from '../../bench/daemon-process.js';
import { freshDatabase, type TestDatabase } from '../../bench/database.js';
import { MerchantStub } from '../../bench/merchant-stub.js';
import { NotifyClient } from '../../src/client.js';
import { decodeBatch, encodeBatch, serializeRecord, type HistoryRecord } from '../../src/history/records.js';

const SCHEDULE = '0s,300ms,600ms';
const DAY = 86_400_000;

function pgCluster(action: 'start' | 'stop'): void {
  const version = execFileSync('ls', ['/etc/postgresql'], { encoding: 'utf8' }).trim().split('\n')[0]!;
  execFileSync('pg_ctlcluster', ['--skip-systemctl-redirect', version, 'main', action], { timeout: 60_000 });
}

interface AttemptRow {
  notification_id: string;
  run: string;
  attempt: number;
  tier: number;
  http_status: number | null;
  outcome: string;
  skip_reason: string | null;
  error: string | null;
  answer: string | null;
}

describe('delivery history: the record path (real daemon, RabbitMQ, PostgreSQL)', () => {
  const merchant = new MerchantStub();
  let db: TestDatabase;
  let tmp: string;
  const daemons: DaemonProcess[] = [];
  const prefixes: string[] = [];

  before(async () => {
    await merchant.start();
    db = await freshDatabase('history');
    tmp = mkdtempSync(join(tmpdir(), 'notifyd-history-'));
  });

  afterEach(async () => {
    await Promise.all(daemons.splice(0).map((d) => d.stop().catch(() => undefined)));
  });

  after(async () => {
    for (const p of prefixes) await deletePrefix(p, SCHEDULE).catch(() => undefined);
    await db.drop();
    await merchant.close();
    rmSync(tmp, { recursive: true, force: true });
  });

  async function daemon(label: string, config: object = {}): Promise<DaemonProcess> {
    const prefix = uniquePrefix(label);
    prefixes.push(prefix);
    const file = join(tmp, `${label}.json`);
    writeFileSync(file, JSON.stringify(config));
    const d = new DaemonProcess({ prefix, schedule: SCHEDULE, env: { NOTIFY_DATABASE_URL: db.url, NOTIFY_CONFIG: file } });
    daemons.push(d);
    return d.ready(30_000);
  }

  /** A fresh client per call: a test may stop PostgreSQL under the suite's one. */
  async function sql<T extends pg.QueryResultRow>(text: string, params: unknown[] = []): Promise<T[]> {
    const c = new pg.Client({ connectionString: db.url });
    await c.connect();
    try {
      return (await c.query<T>(text, params)).rows;
    } finally {
      await c.end();
    }
  }

  async function attemptsOf(id: string): Promise<AttemptRow[]> {
    return sql<AttemptRow>('SELECT notification_id, run, attempt, tier, http_status, outcome, skip_reason, error, answer FROM notify_attempts WHERE notification_id = $1 ORDER BY started_at', [id]);
  }

  async function notification(id: string): Promise<Record<string, unknown> | undefined> {
    return (await sql('SELECT * FROM notify_notifications WHERE id = $1', [id]))[0];
  }

  it('fails twice then succeeds: three attempts with their statuses and tiers; a dead one has its reason; the recorder shows in status', async () => {
    const d = await daemon('three');
    const url = `${merchant.base}/fail/2/three-${d.opts.prefix}`;
    assert.equal((await d.post({ id: 'three', url, body: { order: 20240001 } })).status, 202);
    assert.equal((await d.post({ id: 'gone', url: `${merchant.base}/status/410/gone-${d.opts.prefix}`, body: {} })).status, 202);
    assert.equal((await d.post({ id: 'tired', url: `${merchant.base}/status/503/tired-${d.opts.prefix}`, body: {} })).status, 202);
    await waitFor(async () => (await notification('three'))?.status === 'delivered', 15_000, 'three delivered in the history');
    const rows = await attemptsOf('three');
    assert.deepEqual(
      rows.map((r) => [r.attempt, r.tier, r.http_status, r.outcome]),
      [
        [0, 0, 500, 'retry'],
        [1, 1, 500, 'retry'],
        [2, 2, 200, 'success'],
      ],
    );
    assert.equal(new Set(rows.map((r) => r.run)).size, 1, 'one ladder');
    assert.equal(rows[2]!.answer, 'success', 'the answer is kept');
    assert.match(String(rows[0]!.error), /500/);
    const n = (await notification('three'))!;
    assert.equal(n.attempts, 3);
    assert.equal(n.last_status, 200);
    assert.ok(n.delivered_at instanceof Date);
    assert.equal(JSON.parse(String(n.content)).body.order, 20240001, 'the notification itself, for a resend');
    const runs = await sql<{ via: string }>('SELECT via FROM notify_runs WHERE notification_id = $1', ['three']);
    assert.deepEqual(
      runs.map((r) => r.via),
      ['ingress'],
    );

    await waitFor(async () => (await notification('gone'))?.status === 'dead' && (await notification('tired'))?.status === 'dead', 15_000, 'both parked in the history');
    const gone = (await notification('gone'))!;
    assert.deepEqual([gone.dead_reason, gone.attempts, gone.last_status], ['status-410', 1, 410]);
    const tired = (await notification('tired'))!;
    assert.deepEqual([tired.dead_reason, tired.attempts], ['exhausted', 3]);
    assert.deepEqual(
      (await attemptsOf('tired')).map((r) => r.outcome),
      ['retry', 'retry', 'dead'],
    );

    const status = (await (await fetch(`${d.adminUrl}/admin/status`)).json()) as { recorder: { pid: number; state: string } | null };
    assert.equal(status.recorder?.state, 'running');
    assert.ok(status.recorder!.pid > 0);
    const ctl = spawnSync(process.execPath, [CLI_PATH, 'ctl', 'status', '--admin', d.adminUrl], { encoding: 'utf8', timeout: 20_000 });
    assert.match(ctl.stdout, new RegExp(`recorder\\s+-\\s+running\\s+${status.recorder!.pid}\\s+0`));
  });

  it('a notification published straight to the broker (NotifyClient) is recorded by tier 0, with the notification', async () => {
    const d = await daemon('client');
    const c = new NotifyClient({ amqpUrl: AMQP_URL, prefix: d.opts.prefix });
    try {
      await c.publish({ id: 'from-client', url: `${merchant.base}/fail/0/client-${d.opts.prefix}`, body: { a: 1 } });
    } finally {
      await c.close();
    }
    await waitFor(async () => (await notification('from-client'))?.status === 'delivered', 15_000, 'recorded');
    const runs = await sql<{ via: string; run: string }>('SELECT via, run FROM notify_runs WHERE notification_id = $1', ['from-client']);
    assert.deepEqual(
      runs.map((r) => r.via),
      ['client'],
    );
    assert.notEqual(runs[0]!.run, '');
    assert.ok((await notification('from-client'))!.content, 'the notification itself is kept');
  });

  it('a skipped attempt (its origin failing) is recorded as skipped, with the reason and no status', async () => {
    const d = await daemon('skipped', { delivery: { perOrigin: { failureThreshold: 2, probeInterval: '30s', maxProbeInterval: '30s' } } });
    // A port nobody listens on: refused at once.
    const dead = 'http://127.0.0.1:9/refused';
    for (const id of ['s1', 's2']) assert.equal((await d.post({ id, url: dead, body: {} })).status, 202);
    await waitFor(async () => (await sql('SELECT 1 FROM notify_attempts WHERE notification_id IN ($1, $2) AND attempt = 0', ['s1', 's2'])).length === 2, 15_000, 'the first failures');
    for (const id of ['s3', 's4', 's5']) assert.equal((await d.post({ id, url: dead, body: {} })).status, 202);
    await waitFor(async () => (await sql("SELECT 1 FROM notify_attempts WHERE outcome = 'skipped' AND notification_id IN ('s3','s4','s5')")).length >= 3, 15_000, 'skips recorded');
    const skipped = await sql<AttemptRow>("SELECT notification_id, run, attempt, tier, http_status, outcome, skip_reason, error, answer FROM notify_attempts WHERE outcome = 'skipped' AND notification_id = 's3' ORDER BY attempt");
    assert.ok(skipped.length >= 1);
    assert.deepEqual([skipped[0]!.skip_reason, skipped[0]!.http_status, skipped[0]!.answer], ['origin-failing', null, null]);
    assert.match(String(skipped[0]!.error), /127\.0\.0\.1:9/);
  });

  it('PostgreSQL stopped for 30 s under load: delivery goes on, then every record arrives (counts equal)', async (t: TestContext) => {
    const d = await daemon('pgdown');
    const ids: string[] = [];
    let n = 0;
    const path = (id: string): string => `/fail/0/pgh-${d.opts.prefix}-${id}`;
    const send = async (): Promise<void> => {
      const id = `pgh-${n++}`;
      const r = await d.post({ id, url: `${merchant.base}${path(id)}`, body: { id } });
      assert.equal(r.status, 202, JSON.stringify(r.body));
      ids.push(id);
    };
    for (let i = 0; i < 20; i++) await send();
    // One parked before the stop, for a redrive while the history is away.
    assert.equal((await d.post({ id: 'pgp-parked', url: `${merchant.base}/status/410/pgp-parked-${d.opts.prefix}`, body: {} })).status, 202);
    await waitFor(async () => Number((await sql<{ c: string }>("SELECT count(*) AS c FROM notify_notifications WHERE id LIKE 'pgh-%'"))[0]!.c) === 20, 15_000, 'the first 20 recorded');
    await waitFor(async () => (await sql("SELECT 1 FROM notify_notifications WHERE id = 'pgp-parked' AND status = 'dead'")).length === 1, 15_000, 'pgp-parked dead');
    pgCluster('stop');
    let deliveredDuring = 0;
    let lagDuring = 0;
    try {
      // A redrive cannot ask the history: it fails with nothing taken, so the parked copy is not given back with a
      // requeue (on RabbitMQ 4 each counts towards a quorum queue's delivery limit of 20, past which P.dead drops it).
      const redrive = await fetch(`${d.adminUrl}/admin/dead/redrive?limit=10`, { method: 'POST' });
      const body = (await redrive.json()) as { error?: { code?: string } };
      assert.deepEqual([redrive.status, body.error?.code], [503, 'HISTORY_UNAVAILABLE'], JSON.stringify(body));
      const conn = await amqp.connect(AMQP_URL);
      try {
        const ch = await conn.createChannel();
        const m = await ch.get(`${d.opts.prefix}.dead`, { noAck: false });
        assert.ok(m, 'still parked');
        assert.equal(m.properties.messageId, 'pgp-parked');
        assert.equal(m.fields.redelivered, false, 'never taken and given back');
      } finally {
        await conn.close();
      }
      const until = Date.now() + 30_000;
      while (Date.now() < until) {
        await send();
        await new Promise((r) => setTimeout(r, 50));
      }
      deliveredDuring = ids.filter((id) => merchant.count(path(id)) > 0).length;
      const metrics = await (await fetch(`${d.adminUrl}/metrics`)).text();
      lagDuring = Number(/^notify_history_lag_seconds (\S+)/m.exec(metrics)?.[1] ?? 0);
      assert.match(metrics, /^notify_history_up 0/m, 'the recorder says it cannot write');
    } finally {
      pgCluster('start');
    }
    assert.ok(deliveredDuring >= ids.length - 25, `deliveries went on while PostgreSQL was down (${deliveredDuring}/${ids.length})`);
    assert.ok(lagDuring >= 10, `the lag showed (${lagDuring} s)`);
    await waitFor(() => ids.every((id) => merchant.count(path(id)) > 0), 30_000, 'every accepted notification delivered');
    await waitFor(
      async () => Number((await sql<{ c: string }>("SELECT count(*) AS c FROM notify_notifications WHERE id LIKE 'pgh-%' AND status = 'delivered'"))[0]!.c) === ids.length,
      60_000,
      'every notification recorded as delivered',
    );
    const [counts] = await sql<{ notes: string; attempts: string; runs: string; sum: string }>(
      "SELECT (SELECT count(*) FROM notify_notifications WHERE id LIKE 'pgh-%') AS notes, (SELECT count(*) FROM notify_attempts WHERE notification_id LIKE 'pgh-%') AS attempts, (SELECT count(*) FROM notify_runs WHERE notification_id LIKE 'pgh-%') AS runs, (SELECT sum(attempts) FROM notify_notifications WHERE id LIKE 'pgh-%') AS sum",
    );
    const calls = ids.reduce((s, id) => s + merchant.count(path(id)), 0);
    t.diagnostic(`${ids.length} accepted, ${deliveredDuring} delivered while PostgreSQL was down (lag ${lagDuring.toFixed(1)} s); recorded: ${counts!.notes} notifications, ${counts!.runs} ladders, ${counts!.attempts} attempts for ${calls} merchant calls`);
    assert.deepEqual([Number(counts!.notes), Number(counts!.runs)], [ids.length, ids.length]);
    assert.equal(Number(counts!.attempts), calls, 'one attempt row per merchant call');
    assert.equal(Number(counts!.sum), calls, 'attempt counts agree');
    await waitFor(async () => /^notify_history_up 1/m.test(await (await fetch(`${d.adminUrl}/metrics`)).text()), 10_000, 'the recorder writes again');
  });

  it('the recorder killed with -9 under load: restarted, no record lost, repeats absorbed', async (t: TestContext) => {
    const d = await daemon('kill9');
    const status = async (): Promise<{ pid: number | null; state: string; restarts: number }> =>
      ((await (await fetch(`${d.adminUrl}/admin/status`)).json()) as { recorder: { pid: number | null; state: string; restarts: number } }).recorder;
    const before = await status();
    const ids: string[] = [];
    const path = (id: string): string => `/fail/1/k9-${d.opts.prefix}-${id}`;
    let stop = false;
    const load = (async () => {
      for (let i = 0; !stop; i++) {
        const id = `k9-${i}`;
        const r = await d.post({ id, url: `${merchant.base}${path(id)}`, body: { i } });
        assert.equal(r.status, 202);
        ids.push(id);
        await new Promise((r) => setTimeout(r, 10));
      }
    })();
    await waitFor(() => ids.length >= 150, 20_000, 'load under way');
    process.kill(before.pid!, 'SIGKILL');
    await waitFor(async () => {
      const s = await status();
      return s.state === 'running' && s.pid !== before.pid && s.restarts === before.restarts + 1;
    }, 20_000, 'recorder restarted');
    await waitFor(() => ids.length >= 400, 30_000, 'more load after the restart');
    stop = true;
    await load;
    await waitFor(() => ids.every((id) => merchant.count(path(id)) === 2), 30_000, 'every notification delivered at its second attempt');
    await waitFor(
      async () => Number((await sql<{ c: string }>("SELECT count(*) AS c FROM notify_notifications WHERE id LIKE 'k9-%' AND status = 'delivered' AND attempts = 2"))[0]!.c) === ids.length,
      60_000,
      'every notification recorded as delivered at its second attempt',
    );
    const [c] = await sql<{ attempts: string; runs: string }>(
      "SELECT (SELECT count(*) FROM notify_attempts WHERE notification_id LIKE 'k9-%') AS attempts, (SELECT count(*) FROM notify_runs WHERE notification_id LIKE 'k9-%') AS runs",
    );
    assert.deepEqual([Number(c!.attempts), Number(c!.runs)], [2 * ids.length, ids.length], 'exactly one row per attempt and per ladder');
    // A batch written but not acked (a kill between the commit and the ack) comes again: replay one on purpose.
    const [first] = await sql<{ created_ms: string; run: string }>("SELECT (extract(epoch FROM created_at) * 1000)::bigint AS created_ms, run FROM notify_runs WHERE notification_id = 'k9-0'");
    const createdAt = Number(first!.created_ms);
    const url = `${merchant.base}${path('k9-0')}`;
    const again: HistoryRecord[] = [
      { t: 'run', id: 'k9-0', createdAt, run: first!.run, at: createdAt, via: 'ingress', merchant: null, producer: null, url, content: '{}' },
      ...[0, 1].map((attempt): HistoryRecord => ({ t: 'attempt', id: 'k9-0', createdAt, run: first!.run, attempt, tier: attempt, startedAt: createdAt + attempt, durationMs: 1, status: 200, outcome: 'success', skipReason: null, error: null, answer: 'x', final: null })),
    ];
    const conn = await amqp.connect(AMQP_URL);
    try {
      const ch = await conn.createConfirmChannel();
      await new Promise<void>((resolve, reject) => ch.sendToQueue(`${d.opts.prefix}.history`, encodeBatch(again.map(serializeRecord)), { persistent: true }, (err) => (err ? reject(err) : resolve())));
    } finally {
      await conn.close();
    }
    const duplicates = async (): Promise<number> => Number(/^notify_history_records_total\{result="duplicate"\} (\S+)/m.exec(await (await fetch(`${d.adminUrl}/metrics`)).text())?.[1] ?? 0);
    await waitFor(async () => (await duplicates()) >= 3, 10_000, 'the replayed batch counted as duplicates');
    const [c2] = await sql<{ attempts: string; n: string }>("SELECT (SELECT count(*) FROM notify_attempts WHERE notification_id = 'k9-0') AS attempts, (SELECT attempts FROM notify_notifications WHERE id = 'k9-0') AS n");
    assert.deepEqual([Number(c2!.attempts), Number(c2!.n)], [2, 2], 'a replayed batch changes nothing');
    t.diagnostic(`${ids.length} notifications; recorder pid ${before.pid} killed, restarted; ${await duplicates()} repeated records absorbed`);
  });

  it('the recorder drained while a write is held and batches keep arriving: each batch written or back in the queue, none acked unwritten', async (t: TestContext) => {
    const d = await daemon('drain');
    const queue = `${d.opts.prefix}.history`;
    const createdAt = Date.now();
    const batch = (id: string): Buffer =>
      encodeBatch([serializeRecord({ t: 'run', id, createdAt, run: `${id}-r`, at: createdAt, via: 'ingress', merchant: null, producer: null, url: 'http://m.example/n', content: '{}' })]);
    const conn = await amqp.connect(AMQP_URL);
    const ch = await conn.createConfirmChannel();
    const send = (id: string): Promise<void> => new Promise((resolve, reject) => ch.sendToQueue(queue, batch(id), { persistent: true }, (err) => (err ? reject(err) : resolve())));
    const ready = async (): Promise<number> => (await ch.checkQueue(queue)).messageCount;
    // The recorder's next write waits on a lock the test holds.
    const locker = new pg.Client({ connectionString: db.url });
    await locker.connect();
    try {
      await locker.query('BEGIN');
      await locker.query('LOCK TABLE notify_runs IN ACCESS EXCLUSIVE MODE');
      await send('dr-a');
      // Asked from another session: inside the locker's transaction pg_stat_activity is a snapshot taken once.
      await waitFor(async () => (await sql("SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database() AND application_name LIKE 'notifyd recorder%'")).length > 0, 10_000, "the recorder's write waiting on the lock");
      // These wait in the recorder's memory behind the held write.
      for (let i = 1; i <= 5; i++) await send(`dr-b${i}`);
      await waitFor(async () => (await ready()) === 0, 10_000, 'the waiting batches delivered to the recorder');
      d.signal('SIGTERM');
      await new Promise((r) => setTimeout(r, 1000));
      // One more arrives during the drain (the consumer is still there until its channel closes).
      await send('dr-c');
      await new Promise((r) => setTimeout(r, 500));
    } finally {
      await locker.query('ROLLBACK').catch(() => undefined);
      await locker.end();
    }
    await d.waitExit(40_000);
    const ids = ['dr-a', 'dr-b1', 'dr-b2', 'dr-b3', 'dr-b4', 'dr-b5', 'dr-c'];
    const written = new Set((await sql<{ id: string }>('SELECT notification_id AS id FROM notify_runs WHERE notification_id = ANY($1)', [ids])).map((r) => r.id));
    const queued = new Set<string>();
    // Quorum queue counts trail a little; what never comes back is reported by the assertion below.
    await waitFor(async () => (await ready()) + written.size >= ids.length, 10_000).catch(() => undefined);
    for (let m = await ch.get(queue, { noAck: true }); m !== false; m = await ch.get(queue, { noAck: true })) {
      for (const r of decodeBatch(m.content).records) queued.add(r.id);
    }
    await conn.close();
    const lost = ids.filter((id) => !written.has(id) && !queued.has(id));
    t.diagnostic(`written ${[...written].join(' ')}; back in the queue ${[...queued].join(' ')}`);
    assert.deepEqual(lost, [], 'every batch written or back in the queue');
    assert.ok(written.has('dr-a'), 'the held write finished within the drain');
  });

  it('retention: days older than history.retention are dropped by the cron job, whole partitions; newer ones stay', async () => {
    const d = await daemon('retention', { history: { retention: '2d', retentionCron: '*/2 * * * * *' } });
    const now = Date.now();
    const oldDay = new Date(now - 5 * DAY).toISOString().slice(0, 10).replace(/-/g, '');
    const keptDay = new Date(now - 1 * DAY).toISOString().slice(0, 10).replace(/-/g, '');
    assert.equal((await d.post({ id: 'old-one', url: `${merchant.base}/fail/0/old-${d.opts.prefix}`, body: {}, createdAt: now - 5 * DAY })).status, 202);
    assert.equal((await d.post({ id: 'kept-one', url: `${merchant.base}/fail/0/kept-${d.opts.prefix}`, body: {}, createdAt: now - 1 * DAY })).status, 202);
    await waitFor(async () => (await notification('kept-one'))?.status === 'delivered', 15_000, 'the recent one recorded');
    await waitFor(() => d.lines.some((l) => l.msg === 'history: dropped days past the retention' && (l.days as string[]).includes(`${oldDay.slice(0, 4)}-${oldDay.slice(4, 6)}-${oldDay.slice(6)}`)), 20_000, 'the old day dropped by the job');
    // The recorder may have made the old day again for a late record: the next run drops it again.
    await waitFor(async () => (await sql('SELECT 1 FROM pg_class WHERE relname = $1', [`notify_attempts_${oldDay}`])).length === 0, 20_000, 'no partition left for the old day');
    assert.equal(await notification('old-one'), undefined);
    for (const t of ['notify_notifications', 'notify_runs', 'notify_attempts']) {
      assert.equal((await sql('SELECT 1 FROM pg_class WHERE relname = $1', [`${t}_${oldDay}`])).length, 0, `${t}_${oldDay} dropped`);
      assert.equal((await sql('SELECT 1 FROM pg_class WHERE relname = $1', [`${t}_${keptDay}`])).length, 1, `${t}_${keptDay} kept`);
    }
    assert.ok(await notification('kept-one'));
    // Today's and the next two days' partitions are made ahead.
    const ahead = new Date(now + 2 * DAY).toISOString().slice(0, 10).replace(/-/g, '');
    assert.equal((await sql('SELECT 1 FROM pg_class WHERE relname = $1', [`notify_attempts_${ahead}`])).length, 1);
  });
});
