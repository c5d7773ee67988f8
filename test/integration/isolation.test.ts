// Origin isolation (issue 14) against the real daemon and RabbitMQ: one
// hanging merchant does not hold up a healthy one, its notifications are
// skipped or deferred (and say so), and when it comes back its backlog drains
// at a bounded pace.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it, type TestContext } from 'node:test';
import amqp, { type ChannelModel } from 'amqplib';
import { AMQP_URL, DaemonProcess, deletePrefix, uniquePrefix, waitFor } from '../../bench/daemon-process.js';
import { MerchantStub } from '../../bench/merchant-stub.js';
import { counterSum } from '../../bench/metrics-text.js';

const SCHEDULE = '0s,1s,2s,4s,8s';
const TIERS = 5;
const CAP = 16;

interface OriginsReport {
  origins: { tier: number; origin: string; state: string; limit: number; inflight: number; lastError: string | null; skipped: number; deferred: number }[];
  counts: { failing: number; limited: number };
}

describe('origin isolation (real daemon, real RabbitMQ)', () => {
  const healthy = new MerchantStub({ record: false });
  const bad = new MerchantStub({ record: false });
  let daemon: DaemonProcess;
  let conn: ChannelModel;
  const prefix = uniquePrefix('iso');
  const outcomes = new Map<string, { outcome: string; reason?: string; error?: string; attempts: number }>();
  /** Outcome events per notification: more than one means it was handled twice. */
  const events = new Map<string, number>();
  let tmp: string;

  before(async () => {
    await healthy.start();
    await bad.start();
    tmp = mkdtempSync(join(tmpdir(), 'notifyd-iso-'));
    const cfg = join(tmp, 'config.json');
    writeFileSync(
      cfg,
      JSON.stringify({
        delivery: {
          timeout: '1s',
          headersTimeout: '1s',
          perOrigin: { maxConcurrency: CAP, initialLimit: 4, failureThreshold: 3, probeInterval: '300ms', maxProbeInterval: '1s' },
        },
        log: { attempts: 'failures' },
      }),
    );
    daemon = new DaemonProcess({ prefix, schedule: SCHEDULE, env: { NOTIFY_CONFIG: cfg } });
    await daemon.ready();
    conn = await amqp.connect(AMQP_URL);
    const ch = await conn.createChannel();
    const q = await ch.assertQueue('', { exclusive: true });
    await ch.bindQueue(q.queue, `${prefix}.outcomes`, '#');
    await ch.consume(q.queue, (m) => {
      if (m) {
        const e = JSON.parse(m.content.toString()) as { id: string; outcome: string; reason?: string; error?: string; attempts: number };
        outcomes.set(e.id, e);
        events.set(e.id, (events.get(e.id) ?? 0) + 1);
      }
    }, { noAck: true });
  });

  after(async () => {
    await daemon?.stop().catch(() => undefined);
    await conn?.close().catch(() => undefined);
    await healthy.close();
    await bad.close();
    await deletePrefix(prefix, SCHEDULE);
    rmSync(tmp, { recursive: true, force: true });
  });

  it('a hanging merchant at 10 % does not hold up a healthy one; its attempts are skipped (and say so); it recovers, and its backlog drains at most CAP at a time per tier', async (t: TestContext) => {
    bad.setMode('bad', 'hang');
    // Warm the healthy origin up (its limit grows as it answers, and its round trip is known),
    // and let the outcome binding be seen (events are skipped while unroutable).
    const warm = Array.from({ length: 200 }, (_, i) => ({ id: `warm-${i}`, url: `${healthy.base}/warm/${i}`, body: 'x', contentType: 'text/plain' }));
    assert.equal((await daemon.post({ notifications: warm }, '/v1/notifications:batch')).status, 202);
    await waitFor(() => healthy.countPrefix('/warm/') === warm.length, 10_000, 'warm-up delivered');

    const N = 300;
    const items = Array.from({ length: N }, (_, i) =>
      i % 10 === 0
        ? { id: `bad-${i}`, url: `${bad.base}/mode/bad/${i}`, body: { i }, metadata: { merchant: 'bad' } }
        : { id: `good-${i}`, url: `${healthy.base}/ok/${i}`, body: { i } },
    );
    const sent = Date.now();
    for (let i = 0; i < N; i += 300) {
      const r = await daemon.post({ notifications: items.slice(i, i + 300) }, '/v1/notifications:batch');
      assert.equal(r.status, 202, JSON.stringify(r.body).slice(0, 300));
    }
    const goodCount = items.filter((x) => x.id.startsWith('good')).length;
    await waitFor(() => healthy.countPrefix('/ok/') >= goodCount, 5000, 'healthy deliveries');
    const healthyMs = Date.now() - sent;
    t.diagnostic(`${goodCount} healthy notifications delivered within ${healthyMs} ms beside ${N - goodCount} for a hanging merchant (attempt timeout 1 s)`);
    assert.ok(healthyMs < 1000, `the healthy merchant waited ${healthyMs} ms`);
    assert.ok(bad.maxConcurrent('/mode/bad') <= CAP * TIERS, `the hanging merchant got ${bad.maxConcurrent('/mode/bad')} requests at once`);

    // The bad origin is failing: its attempts are skipped, visible as such.
    await waitFor(async () => (await daemon.admin<OriginsReport>('GET', '/admin/origins')).body.counts.failing >= 1, 5000, 'bad origin failing');
    const report = (await daemon.admin<OriginsReport>('GET', '/admin/origins')).body;
    const badOrigin = report.origins.find((o) => o.origin === bad.base);
    assert.ok(badOrigin, JSON.stringify(report));
    assert.equal(badOrigin.state, 'failing');
    assert.match(String(badOrigin.lastError), /TIMEOUT/);
    assert.ok(!report.origins.some((o) => o.origin === healthy.base && o.state === 'failing'), 'the healthy origin is not failing');
    await waitFor(() => daemon.lines.some((l) => l.msg === 'attempt' && l.skipped === 'origin-failing'), 5000, 'a skipped attempt in the log');
    // The counter moves once the skipped attempt's hand-on is confirmed, a moment after its log line.
    await waitFor(async () => /notify_attempts_total\{[^}]*outcome="skipped"[^}]*\} [1-9]/.test((await daemon.admin<string>('GET', '/metrics')).body), 5000, 'skipped attempts counted');
    assert.match((await daemon.admin<string>('GET', '/metrics')).body, /notify_origins\{[^}]*state="failing"[^}]*\} [1-9]/);

    // It comes back: probes find it, the limit ramps from one, the backlog drains.
    bad.resetPeak('/mode/bad');
    bad.setMode('bad', 'ok');
    const badIds = items.filter((x) => x.id.startsWith('bad')).map((x) => x.id);
    await waitFor(() => badIds.every((id) => outcomes.has(id)), 30_000, 'every bad notification finished');
    const delivered = badIds.filter((id) => outcomes.get(id)!.outcome === 'delivered').length;
    const exhausted = badIds.filter((id) => outcomes.get(id)!.reason === 'exhausted');
    t.diagnostic(`bad merchant: ${delivered} delivered after recovery, ${exhausted.length} parked exhausted (schedule ran out while it hung); at most ${bad.maxConcurrent('/mode/bad')} requests at once after recovery`);
    assert.equal(delivered + exhausted.length, badIds.length, 'nothing lost: delivered or parked exhausted');
    assert.ok(delivered > 0, 'its backlog was delivered once it recovered');
    for (const id of exhausted) assert.match(String(outcomes.get(id)!.error), /skipped|TIMEOUT/);
    assert.ok(bad.maxConcurrent('/mode/bad') <= CAP * TIERS, `after recovery: ${bad.maxConcurrent('/mode/bad')} at once, cap ${CAP} per tier`);
    // Skipped at tier 0 while it hung, delivered by a later tier once it answered.
    const late = badIds.filter((id) => outcomes.get(id)!.outcome === 'delivered' && outcomes.get(id)!.attempts >= 2).length;
    assert.ok(late > 0, 'some were delivered down the ladder after being skipped');
  });

  it('a merchant slower than its share: notifications beyond what it can serve soon are deferred to the hold queue, not attempted (waits are not attempts)', async (t: TestContext) => {
    // More than one tier worker can serve soon (16 at a time, 400 ms each) or keep in memory (its share of the window).
    const N = 250;
    const items = Array.from({ length: N }, (_, i) => ({ id: `slow-${i}`, url: `${bad.base}/delay/400/slow-${i}`, body: { i } }));
    const r = await daemon.post({ notifications: items }, '/v1/notifications:batch');
    assert.equal(r.status, 202);
    // About 11 s on a quiet machine (250 × 400 ms over 16 slots, plus the holds); the bound is for a busy one.
    await waitFor(() => items.every((x) => outcomes.has(x.id)), 90_000, 'every slow notification finished');
    const metrics = (await daemon.admin<string>('GET', '/metrics')).body;
    const deferrals = counterSum(metrics, 'notify_deferrals_total');
    const delivered = items.filter((x) => outcomes.get(x.id)!.outcome === 'delivered');
    t.diagnostic(`${delivered.length}/${N} delivered, ${deferrals} deferrals, at most ${bad.maxConcurrent('/delay/400')} requests at once`);
    assert.ok(deferrals > 0, 'some were deferred');
    assert.ok(bad.maxConcurrent('/delay/400') <= CAP * TIERS);
    // A deferral is not an attempt: a notification delivered at once counts one attempt however often it waited.
    for (const x of delivered) assert.ok(outcomes.get(x.id)!.attempts <= TIERS);
    assert.equal(items.filter((x) => { const o = outcomes.get(x.id)!; return o.outcome !== 'delivered' && o.reason !== 'exhausted'; }).length, 0);
  });

  it('attempts held at the head of a channel (a hanging merchant): the tier moves its consumer to a new channel, acks every delivery on the channel it came on, and loses nothing', async (t: TestContext) => {
    const hanging = new MerchantStub({ record: false });
    await hanging.start();
    t.after(() => hanging.close());
    hanging.setMode('h', 'hang');
    const movesBefore = counterSum((await daemon.admin<string>('GET', '/metrics')).body, 'notify_consumer_lane_moves_total');
    const linesBefore = daemon.lines.length;
    // Its first attempts (the origin's initial limit) hang for the 1 s timeout at the head of tier 0's channel ...
    const stuck = Array.from({ length: 20 }, (_, i) => ({ id: `lane-bad-${i}`, url: `${hanging.base}/mode/h/${i}`, body: { i } }));
    assert.equal((await daemon.post({ notifications: stuck }, '/v1/notifications:batch')).status, 202);
    await waitFor(() => hanging.maxConcurrent('/mode/h') >= 1, 5000, 'the hanging merchant reached');
    // ... while healthy notifications keep coming behind them for longer than a lane's stall (250 ms and four times the others' age).
    const good: { id: string; url: string; body: { i: number } }[] = [];
    for (let round = 0; round < 16; round++) {
      const batch = Array.from({ length: 100 }, (_, i) => ({ id: `lane-good-${round}-${i}`, url: `${healthy.base}/lane/${round}/${i}`, body: { i } }));
      good.push(...batch);
      assert.equal((await daemon.post({ notifications: batch }, '/v1/notifications:batch')).status, 202);
      await new Promise((r) => setTimeout(r, 30));
    }
    await waitFor(() => healthy.countPrefix('/lane/') >= good.length, 10_000, 'healthy deliveries');
    const moves = counterSum((await daemon.admin<string>('GET', '/metrics')).body, 'notify_consumer_lane_moves_total') - movesBefore;
    t.diagnostic(`${moves} consumer lane moves while ${good.length} healthy notifications went past ${stuck.length} hanging ones`);
    assert.ok(moves >= 1, 'the consumer moved to a new channel');
    // It answers again; every notification ends delivered or parked exhausted, each once.
    hanging.setMode('h', 'ok');
    const all = [...stuck, ...good];
    await waitFor(() => all.every((x) => outcomes.has(x.id)), 60_000, 'every notification finished');
    const unfinished = all.filter((x) => { const o = outcomes.get(x.id)!; return o.outcome !== 'delivered' && o.reason !== 'exhausted'; });
    assert.deepEqual(unfinished.map((x) => [x.id, outcomes.get(x.id)]), []);
    assert.ok(good.every((x) => outcomes.get(x.id)!.outcome === 'delivered'));
    // No delivery was handled twice (a lane closed under its unacked deliveries would have them redelivered);
    // a second outcome would come later than the first, so give it a moment.
    await new Promise((r) => setTimeout(r, 1500));
    assert.deepEqual(all.filter((x) => events.get(x.id) !== 1).map((x) => [x.id, events.get(x.id)]), []);
    assert.deepEqual(good.filter((x) => healthy.count(new URL(x.url).pathname) !== 1).map((x) => x.id), [], 'each healthy notification requested once');
    // Acks on the old channels went to their own channel: a tag acked on another closes it (a channel error, then a reconnect).
    const troubles = daemon.lines.slice(linesBefore).filter((l) => ['broker channel error', 'broker connection lost; reconnecting to the next node', 'moving the consumer to a new channel failed', 'the consumer did not start on its new channel; reconnecting'].includes(String(l.msg)));
    assert.deepEqual(troubles, [], JSON.stringify(troubles).slice(0, 500));
    // Nothing left on tier 0's queue, ready or unacked, once all is done (a delivery an old lane never acked would show here).
    const tier0 = (): string => {
      const rows = execFileSync('rabbitmqctl', ['-q', 'list_queues', '--no-table-headers', 'name', 'messages_ready', 'messages_unacknowledged'], { encoding: 'utf8', timeout: 30_000 });
      return rows.split('\n').find((r) => r.split(/\s+/)[0] === `${prefix}.work.0`) ?? '';
    };
    await waitFor(() => /\s0\s+0\s*$/.test(tier0()), 15_000, 'tier 0 empty and nothing unacked');
  });

  it('a refused merchant: its notifications are skipped down the ladder many to a broker message (bundles), and every one is parked exhausted', async (t: TestContext) => {
    // A port nothing listens on: every connect is refused at once, so the origin's breaker opens.
    const probe = createServer();
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
    const port = (probe.address() as AddressInfo).port;
    await new Promise<void>((resolve) => probe.close(() => resolve()));
    const bundlesBefore = counterSum((await daemon.admin<string>('GET', '/metrics')).body, 'notify_bundles_total');
    const N = 400;
    const items = Array.from({ length: N }, (_, i) => ({ id: `refused-${i}`, url: `http://127.0.0.1:${port}/n/${i}`, body: { i } }));
    assert.equal((await daemon.post({ notifications: items }, '/v1/notifications:batch')).status, 202);
    // The ladder is 0s,1s,2s,4s,8s: about 15 s, more on a busy machine.
    await waitFor(() => items.every((x) => outcomes.has(x.id)), 90_000, 'every refused notification finished');
    const metrics = (await daemon.admin<string>('GET', '/metrics')).body;
    const bundles = counterSum(metrics, 'notify_bundles_total') - bundlesBefore;
    const notExhausted = items.filter((x) => { const o = outcomes.get(x.id)!; return o.outcome !== 'dead' || o.reason !== 'exhausted' || o.attempts !== TIERS; });
    t.diagnostic(`${N} notifications for a refused merchant: ${bundles} bundles`);
    assert.deepEqual(notExhausted.map((x) => [x.id, outcomes.get(x.id)]), [], 'each parked exhausted once its five rungs were made or skipped');
    assert.ok(bundles > 0, 'skips went down the ladder in bundles');
    assert.ok(items.some((x) => /skipped/.test(String(outcomes.get(x.id)!.error))), 'skipped rungs say so');
  });
});
