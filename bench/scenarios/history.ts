/**
 * The delivery history's cost (`--history`, issue 16): tier-0 throughput of a
 * daemon recording every notification and attempt in PostgreSQL against the
 * same daemon with `history.enabled: false` (same database, same registry
 * machinery: only the history differs), `--runs` pairs alternating which goes
 * first; each "on" run waits for the recorder to catch up before the next run
 * starts, and says how long that took. Then the recorder's lag at a steady
 * rate (`--rate`, the bench's sustained rate, and half the measured
 * throughput): for every attempt, the time from its end (the tier worker's
 * clock) to its commit in PostgreSQL (`recorded_at`), p50/p99/max.
 */
import pg from 'pg';
import { namesFor } from '../../src/broker/topology.js';
import { encodeNotification } from '../../src/core/message.js';
import { makeNotification, median, openConfirm, preloadTier0, queueInfo, round, sleep, tier0Props } from '../bench-util.js';
import { BEAM, log, historyOffConfig, metricsText, startDaemon, table, timeUntilSeen, waitDepth, type BenchContext, type DaemonHandle, type Row, type ScenarioReport } from '../bench-context.js';
import { CpuMeter, pidsByComm } from '../cpu.js';
import { AMQP_URL, waitFor } from '../daemon-process.js';
import { freshDatabase } from '../database.js';
import { counterSum } from '../metrics-text.js';

/** History records written so far by a daemon's recorder (written + duplicates), from its /metrics. */
async function recorded(daemon: DaemonHandle): Promise<number> {
  return counterSum(await metricsText(daemon.d), 'notify_history_records_total', { result: /^(?:written|duplicate)$/ });
}

interface RunResult {
  perS: number;
  catchUpS: number | null;
  /** CPU ms per 1,000 notifications from the resume until every record was written (or, off, delivered). */
  cpu: Record<'tier0' | 'recorder' | 'postgres' | 'broker', number>;
}

async function throughputRun(ctx: BenchContext, daemon: DaemonHandle, label: string, history: boolean): Promise<RunResult> {
  const n = ctx.flags.n;
  const q0 = namesFor(daemon.prefix).workQueue(0);
  await daemon.d.admin('POST', '/admin/tiers/0/pause');
  await waitFor(async () => (await queueInfo(AMQP_URL, q0)).consumerCount === 0, 10_000, 'tier 0 paused');
  await preloadTier0(AMQP_URL, daemon.prefix, n, (id) => `${ctx.merchant.base}/n/${id}`, label);
  await waitDepth(q0, n);
  const before = history ? await recorded(daemon) : 0;
  const status = (await daemon.d.admin<{ tiers: { pid: number | null }[]; recorder: { pid: number | null } | null }>('GET', '/admin/status')).body;
  const meter = new CpuMeter({ tier0: [status.tiers[0]?.pid ?? 0], recorder: status.recorder?.pid ? [status.recorder.pid] : [], postgres: pidsByComm('postgres'), broker: BEAM() }).start();
  const t0 = Date.now();
  const m = await timeUntilSeen(ctx.merchant, n, { consumer: daemon.pids(), broker: BEAM() }, async () => void (await daemon.d.admin('POST', '/admin/tiers/0/resume')));
  let catchUpS: number | null = null;
  if (history) {
    // Two records per notification: its ladder (recorded by tier 0, as a direct publish) and its attempt.
    await waitFor(async () => (await recorded(daemon)) - before >= 2 * n, 600_000, 'the recorder caught up', 250);
    catchUpS = (Date.now() - t0) / 1000;
  }
  const used = meter.stop();
  const per1k = (g: string): number => round(((used[g] ?? 0) * 1000) / n, 1);
  return { perS: m.perS, catchUpS, cpu: { tier0: per1k('tier0'), recorder: per1k('recorder'), postgres: per1k('postgres'), broker: per1k('broker') } };
}

/** Publishes `rate`/s to tier 0 for `seconds`, then the lag of those attempts' records. */
async function lagRun(ctx: BenchContext, daemon: DaemonHandle, db: pg.Pool, rate: number, label: string): Promise<{ rate: number; n: number; p50: number; p99: number; max: number }> {
  const names = namesFor(daemon.prefix);
  const { ch, close } = await openConfirm(AMQP_URL, `notifyd bench history lag ${label}`);
  const total = Math.round(rate * ctx.flags.seconds);
  const stepMs = 10;
  const perStep = rate / (1000 / stepMs);
  const start = Date.now();
  let sent = 0;
  try {
    while (sent < total) {
      const due = Math.min(total, Math.floor(((Date.now() - start) / stepMs + 1) * perStep));
      for (; sent < due; sent++) {
        const now = Date.now();
        const note = makeNotification(`${label}-${sent}`, `${ctx.merchant.base}/n/${label}-${sent}`, now);
        if (!ch.publish(names.work, names.routingKey(0), encodeNotification(note), tier0Props(note, now))) await new Promise<void>((r) => ch.once('drain', () => r()));
      }
      await sleep(stepMs);
    }
    await ch.waitForConfirms();
  } finally {
    await close();
  }
  const pattern = `${label}-%`;
  await waitFor(async () => Number((await db.query<{ c: string }>('SELECT count(*) AS c FROM notify_attempts WHERE notification_id LIKE $1', [pattern])).rows[0]!.c) >= total, 600_000, 'every attempt recorded', 500);
  const r = await db.query<{ p50: number; p99: number; max: number }>(
    `SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY lag) AS p50, percentile_cont(0.99) WITHIN GROUP (ORDER BY lag) AS p99, max(lag) AS max
       FROM (SELECT extract(epoch FROM recorded_at - finished_at) * 1000 AS lag FROM notify_attempts WHERE notification_id LIKE $1) AS l`,
    [pattern],
  );
  const row = r.rows[0]!;
  return { rate, n: total, p50: Number(row.p50), p99: Number(row.p99), max: Number(row.max) };
}

export async function history(ctx: BenchContext): Promise<ScenarioReport> {
  if (!ctx.flags.history) return { record: { history: null }, head: '', memory: [], tail: '' };
  const db = await freshDatabase('bench');
  ctx.res.stops.push(() => db.drop());
  const offFile = historyOffConfig(ctx.res);
  const on = await startDaemon({ res: ctx.res, flags: { ...ctx.flags, daemonEnv: { NOTIFY_DATABASE_URL: db.url, ...ctx.flags.daemonEnv } } }, 'default', 'history');
  const off = await startDaemon({ res: ctx.res, flags: { ...ctx.flags, daemonEnv: { NOTIFY_DATABASE_URL: db.url, NOTIFY_CONFIG: offFile, ...ctx.flags.daemonEnv } } }, 'default', 'nohistory');
  const pool = new pg.Pool({ connectionString: db.url, max: 2 });
  ctx.res.stops.push(() => pool.end());

  const pairs: { on: number; off: number; catchUpS: number; cpuOn: RunResult['cpu']; cpuOff: RunResult['cpu'] }[] = [];
  for (let i = 0; i < ctx.flags.runs; i++) {
    let a: RunResult | null = null;
    let b: RunResult | null = null;
    for (const which of i % 2 === 0 ? ['on', 'off'] : ['off', 'on']) {
      if (which === 'on') a = await throughputRun(ctx, on, `hist${i}`, true);
      else b = await throughputRun(ctx, off, `nohist${i}`, false);
    }
    if (!a || !b) throw new Error('history run missing');
    log(`history run ${i + 1}: on ${round(a.perS)}/s (recorder caught up after ${round(a.catchUpS ?? 0, 1)} s), off ${round(b.perS)}/s; CPU ms/1k on ${JSON.stringify(a.cpu)}, off ${JSON.stringify(b.cpu)}`);
    pairs.push({ on: a.perS, off: b.perS, catchUpS: a.catchUpS ?? 0, cpuOn: a.cpu, cpuOff: b.cpu });
  }
  const ratio = median(pairs.map((p) => p.on / p.off));
  const rates = [...new Set([ctx.flags.rate, Math.round(median(pairs.map((p) => p.on)) / 2)])].sort((x, y) => x - y);
  const lags = [];
  for (const [i, rate] of rates.entries()) {
    const l = await lagRun(ctx, on, pool, rate, `lag${i}`);
    log(`history lag at ${rate}/s for ${ctx.flags.seconds} s: p50 ${round(l.p50)} ms, p99 ${round(l.p99)} ms, max ${round(l.max)} ms`);
    lags.push(l);
  }

  const rows: Row[] = [['', 'history on (/s)', 'off (/s)', 'ratio', 'recorder caught up after (s)', 'CPU ms/1k on: tier 0', 'recorder', 'PostgreSQL', 'RabbitMQ', 'off: tier 0', 'RabbitMQ']];
  pairs.forEach((p, i) =>
    rows.push([`run ${i + 1}`, round(p.on), round(p.off), round(p.on / p.off, 3), round(p.catchUpS, 1), p.cpuOn.tier0, p.cpuOn.recorder, p.cpuOn.postgres, p.cpuOn.broker, p.cpuOff.tier0, p.cpuOff.broker]),
  );
  const lagRows: Row[] = [['steady rate (/s)', 'attempts', 'lag p50 (ms)', 'p99 (ms)', 'max (ms)']];
  for (const l of lags) lagRows.push([l.rate, l.n, round(l.p50), round(l.p99), round(l.max)]);
  return {
    record: {
      history: {
        n: ctx.flags.n,
        runs: pairs.map((p) => ({ on_per_s: round(p.on), off_per_s: round(p.off), catch_up_s: round(p.catchUpS, 1), cpu_ms_per_1k_on: p.cpuOn, cpu_ms_per_1k_off: p.cpuOff })),
        ratio: round(ratio, 3),
        lag: lags.map((l) => ({ rate: l.rate, n: l.n, p50_ms: round(l.p50), p99_ms: round(l.p99), max_ms: round(l.max) })),
      },
    },
    head: `\n== delivery history: ${ctx.flags.n} preloaded in tier 0, recorded in PostgreSQL or not (same database either way)\n${table(rows)}\nmedian ratio ${round(ratio, 3)}x\n\n== history lag at a steady rate (${ctx.flags.seconds} s each): attempt end → committed\n${table(lagRows)}\n`,
    memory: [],
    tail: '',
  };
}
