/**
 * Cold retry tiers (`--cold`, issue 18): retry lateness of a daemon whose
 * retry tiers have been idle since start, per second of load, beside the
 * bare TTL + dead-letter mechanism at the same rate, at shares of the
 * machine's retry ceiling measured in the same run.
 *
 * - Ceiling: the hand-written retry pipeline (bench/ceiling.ts loops on tier 0
 *   and tier 1) carrying `--cold-n` fail-once notifications preloaded in tier
 *   0: n / (time until the merchant saw every attempt 2 − schedule[1]).
 * - notifyd, per run: a fresh daemon; tier 0 warmed with `--cold-warm`
 *   seconds of notifications that succeed at once (tier 1 sees nothing); then
 *   `--cold-seconds` of notifications whose first attempt fails, so each goes
 *   through tier 1, and a tail of one delay (schedule[1]) more of them, not
 *   measured: without it the last measured second's retries were due while
 *   tier 0 had nothing left to do (the machine about half as busy), which made
 *   the tenth second a light reference for the first. Lateness = arrival of
 *   attempt 2 − arrival of attempt 1 − schedule[1], at the merchant (attempt
 *   1's answer and hand-on included).
 * - bare: the same rate published straight into `P.wait.1` of a topology
 *   declared for the run (TTL schedule[1], dead-lettering into `P.work.1`;
 *   as old as the daemon's queues when the load starts), read by a plain
 *   consumer in the bench: arrival − publish − schedule[1].
 * - loops (`--cold-loops`): the ceiling's hand-written loops on a fresh
 *   topology, under notifyd's load, measured as notifyd is.
 * notifyd and loops runs also report how busy the machine was during the
 * fail-once load and the CPU per second of each party.
 * Runs alternate which goes first; per-second p50/p99 are medians over runs.
 */
import amqp from 'amqplib';
import { encodeNotification } from '../../src/core/message.js';
import { parseSchedule } from '../../src/core/schedule.js';
import { buildTopology, declareTopology, namesFor } from '../../src/broker/topology.js';
import { makeNotification, median, openConfirm, percentile, preloadTier0, round, sleep, tier0Props } from '../bench-util.js';
import { CeilingProcess } from '../ceiling.js';
import { AMQP_URL, deletePrefix, uniquePrefix } from '../daemon-process.js';
import { MerchantProcess } from '../merchant-process.js';
import { BEAM, DEFAULT_SCHEDULE, log, metricsText, monoUs, startDaemon, table, waitDepth } from '../bench-context.js';
import { counterSum, histogramPercentileMs, samples } from '../metrics-text.js';
import { CpuMeter, CpuTimeline, busyPctBetween, cpuByWindow } from '../cpu.js';
import { pssKiB } from '../pss.js';
import { RetouchProbe } from '../retouch.js';
import type { BenchContext, Row, ScenarioReport } from '../bench-context.js';

const DELAY1 = parseSchedule(DEFAULT_SCHEDULE)[1]!;

/** Lateness of one run: every value (ms), and p50/p99 per second of load. */
interface ColdRun {
  all: number[];
  p50BySecond: number[];
  p99BySecond: number[];
  seen: number;
  sent: number;
  /** CLOCK_MONOTONIC µs of the load (for bench/cpuprofile-top.ts --from/--to). */
  windowUs: [number, number];
  /** notifyd only: what tier 1 said of itself (its metrics, its warm-up line); its counts include the unmeasured tail's. */
  tier1?: Tier1Report;
  /**
   * From the first fail-once publish until the tail's publishing ended, when
   * the last measured second's retries were due (`windowS`; not bare): how
   * busy the whole machine was, and the CPU ms per second of the pipeline
   * under test (the daemon's processes or the loops),
   * the broker, the merchant and the bench process (the publisher, and for a
   * daemon also the reader of its log lines).
   */
  cpu?: { windowS: number; machineBusyPct: number; msPerS: Record<string, number> };
  /**
   * Second by second of load (not bare): the CPU ms tier 1's process (the
   * daemon's tier 1 worker, or the loops' tier 1) spent in the second that
   * second's retries were due in (one delay later), and how busy the whole
   * machine was then (%). Tells a tier that is cold (more CPU for the same
   * retries) from a machine that is short of CPU at the step in load.
   */
  bySecond?: { tier1CpuMs: number[]; machineBusyPct: number[] };
  /** Tier 1's process PSS (MiB) just before the fail-once load: what its idle left of its warm-up's heap. */
  tier1PssMiB?: number | null;
  /**
   * Not bare, and only with `--cold-idle`. The machine, not notifyd: ms to
   * touch again every page of 64 MiB in the bench's process after the run's
   * `--cold-idle` (`idle`) and just before it (`warm`); what each page a
   * worker left alone costs it again (bench/retouch.ts).
   */
  retouchMs?: { warm: number; idle: number };
}

interface Tier1Report {
  /** notify_attempts_total{tier="1"} by outcome. */
  attempts: Record<string, number>;
  deferrals: number;
  /** Upper bound of the bucket of its own schedule-lateness p99 (start of attempt − due time), ms. */
  latenessP99LeMs: number | null;
  /** How long its warm-up took at start, ms (null: none logged). */
  warmUpMs: number | null;
  /** How long its warm-up through the broker took after it connected, ms (null: none logged). */
  brokerWarmUpMs: number | null;
  /**
   * Tier 0's skipped and deferred notifications: a notification whose attempt 1
   * was skipped (its origin looked saturated to a tier 0 behind) reaches the
   * merchant first from tier 1, so its gap is not attempt 1 → 2. Such a run
   * measures a machine too busy for tier 0, not a cold tier 1: it is flagged.
   */
  tier0SkippedOrDeferred: number;
}

/** Tier 1's own view of a run, from the daemon's /metrics and its start-up log. */
function tier1Report(metrics: string, lines: readonly { msg?: string; tier?: unknown; ms?: unknown }[]): Tier1Report {
  const attempts: Record<string, number> = {};
  for (const x of samples(metrics, 'notify_attempts_total')) {
    if (x.labels.tier !== '1') continue;
    const outcome = x.labels.outcome ?? '?';
    attempts[outcome] = (attempts[outcome] ?? 0) + x.value;
  }
  const deferrals = counterSum(metrics, 'notify_deferrals_total', { tier: '1' });
  const warm = lines.find((l) => l.msg === 'tier worker warmed up' && Number(l.tier) === 1);
  const broker = lines.find((l) => l.msg === 'tier worker warmed up through the broker' && Number(l.tier) === 1);
  const tier0SkippedOrDeferred = counterSum(metrics, 'notify_attempts_total', { tier: '0', outcome: 'skipped' }) + counterSum(metrics, 'notify_deferrals_total', { tier: '0' });
  return { attempts, deferrals, latenessP99LeMs: histogramPercentileMs(metrics, '1', 99), warmUpMs: warm ? Number(warm.ms) : null, brokerWarmUpMs: broker ? Number(broker.ms) : null, tier0SkippedOrDeferred };
}

/**
 * Seconds of load a run publishes: the measured ones, then a tail of one
 * delay more of the same kind (its own ids, not measured), so the last
 * measured second's retries meet a tier 0 as busy as every other second's.
 */
function loadSeconds(measured: number): number {
  return measured + DELAY1 / 1000;
}

/** p50/p99 per second of load from (second index, lateness) pairs. */
function perSecond(samples: readonly { sec: number; late: number }[], seconds: number): { p50: number[]; p99: number[] } {
  const by: number[][] = Array.from({ length: seconds }, () => []);
  for (const s of samples) if (s.sec >= 0 && s.sec < seconds) by[s.sec]!.push(s.late);
  const sorted = by.map((xs) => xs.sort((a, b) => a - b));
  return { p50: sorted.map((xs) => (xs.length ? round(percentile(xs, 50), 1) : NaN)), p99: sorted.map((xs) => (xs.length ? round(percentile(xs, 99), 1) : NaN)) };
}

/**
 * Publishes `rate`/s for `seconds` on a timer (a tick every 5 ms catches up
 * to where the clock says it should be), calling `make(i)` for each.
 */
async function steady(rate: number, seconds: number, send: (i: number) => void): Promise<void> {
  const total = Math.round(rate * seconds);
  const t0 = Date.now();
  let sent = 0;
  await new Promise<void>((done) => {
    const timer = setInterval(() => {
      const due = Math.min(total, Math.floor(((Date.now() - t0) / 1000) * rate));
      for (; sent < due; sent++) send(sent);
      if (sent >= total) {
        clearInterval(timer);
        done();
      }
    }, 5);
  });
}

/** The hand-written retry pipeline's rate: fail-once notifications through two loops (see the file's comment). */
async function retryCeiling(ctx: BenchContext, m: MerchantProcess, n: number): Promise<number> {
  const names = namesFor(ctx.ceilingPrefix);
  await purge(ctx.ceilingPrefix);
  const stages = await Promise.all(
    [0, 1].map((tier) =>
      CeilingProcess.start({ amqpUrl: AMQP_URL, queue: names.workQueue(tier), retryQueue: names.waitQueue(tier + 1), retryDelayMs: parseSchedule(DEFAULT_SCHEDULE)[tier + 1]!, prefetch: ctx.flags.concurrency, connections: ctx.flags.connections, delayFromStartMs: ctx.flags.delayFromStartMs }),
    ),
  );
  try {
    // Warmed first in the same processes: a ceiling measured on cold loops reads low, and so would the loads
    // set from it.
    const warm = Math.min(2000, n);
    await preloadTier0(AMQP_URL, ctx.ceilingPrefix, warm, (id) => `${m.base}/fail/1/${id}`, 'ccw');
    const warmBase = await m.count();
    const warmed = m.watch(warmBase + 2 * warm, 60_000 + warm * 2);
    await Promise.all(stages.map((s) => s.go()));
    await warmed;
    await Promise.all(stages.map((s) => s.pause()));
    await purge(ctx.ceilingPrefix);
    await preloadTier0(AMQP_URL, ctx.ceilingPrefix, n, (id) => `${m.base}/fail/1/${id}`, 'cc');
    await waitDepth(names.workQueue(0), n);
    const base = await m.count();
    const reached = m.watch(base + 2 * n, 60_000 + n * 2);
    const t0 = Date.now();
    await Promise.all(stages.map((s) => s.go()));
    const { at } = await reached;
    return (n / Math.max(1, at - t0 - DELAY1)) * 1000;
  } finally {
    for (const s of stages) await s.stop().catch((e: unknown) => log(`ceiling stop: ${String(e)}`));
    await m.clear();
  }
}

/** Empties the work and wait queues of the ceiling topology (leftovers of other scenarios must not mix in). */
async function purge(prefix: string): Promise<void> {
  const names = namesFor(prefix);
  const schedule = parseSchedule(DEFAULT_SCHEDULE);
  const conn = await amqp.connect(AMQP_URL);
  try {
    const ch = await conn.createChannel();
    for (let i = 0; i < schedule.length; i++) await ch.purgeQueue(names.workQueue(i));
    for (let i = 1; i < schedule.length; i++) await ch.purgeQueue(names.waitQueue(i));
  } finally {
    await conn.close();
  }
}

/**
 * The load of one run, against whatever consumes tier 0 of `prefix` (a
 * daemon, or the hand-written loops): `--cold-idle` seconds of nothing, then
 * `--cold-warm` seconds of notifications that succeed at once (tier 0 warm, tier 1 untouched), a second of quiet,
 * then `--cold-seconds` of fail-once notifications (and the unmeasured
 * tail, `loadSeconds`). Lateness of attempt 2 at the merchant, and the CPU of
 * `groups` and of the machine during that load.
 */
async function coldLoad(ctx: BenchContext, m: MerchantProcess, retouch: RetouchProbe | null, rate: number, tag: string, prefix: string, groups: Record<string, readonly number[]>, tier1Pid: number | null): Promise<ColdRun> {
  const { flags } = ctx;
  const names = namesFor(prefix);
  // A quiet spell first (--cold-idle): what idling does to tier 1 (V8's memory reducer and young generation, the
  // machine's charge for idle pages) happens before the burst, as in production. The first touch after the last
  // run's load pays for the time since; the second is the warm figure.
  retouch?.touch();
  const warmTouch = retouch?.touch();
  if (flags.coldIdle > 0) await sleep(flags.coldIdle * 1000);
  const retouchMs = retouch && warmTouch !== undefined ? { warm: round(warmTouch, 1), idle: round(retouch.touch(), 1) } : undefined;
  const { ch, close } = await openConfirm(AMQP_URL, 'notifyd bench cold');
  let timeline: CpuTimeline | null = null;
  try {
    const proto = makeNotification('cold-0', `${m.base}/n/cold-0`);
    const publish = (id: string, url: string): void => {
      const now = Date.now();
      const note = { ...proto, id, url, createdAt: now };
      ch.publish(names.work, names.routingKey(0), encodeNotification(note), tier0Props(note, now));
    };
    // Tier 0 warm (as in production, where new notifications never stop), tier 1 untouched: these succeed at once.
    const base = await m.count();
    const warmN = Math.round(rate * flags.coldWarm);
    await steady(rate, flags.coldWarm, (i) => publish(`${tag}w-${i}`, `${m.base}/n/${tag}w-${i}`));
    await m.reached(base + warmN, 60_000);
    await sleep(1000);
    const total = Math.round(rate * flags.coldSeconds);
    const loadS = loadSeconds(flags.coldSeconds);
    const reached = m.watch(base + warmN + 2 * Math.round(rate * loadS), 60_000 + loadS * 1000);
    const tier1Kib = tier1Pid === null ? null : await pssKiB(tier1Pid);
    const m0 = monoUs();
    const cpu = new CpuMeter({ ...groups, broker: BEAM(), merchant: m.pid === undefined ? [] : [m.pid], bench: [process.pid] }).start();
    // Its first and last readings bound the whole load's busy share as well.
    timeline = new CpuTimeline(tier1Pid).start();
    const loadAt = performance.now();
    await steady(rate, loadS, (i) =>
      i < total ? publish(`${tag}-${i}`, `${m.base}/fail/1/${tag}-${i}`) : publish(`${tag}t-${i}`, `${m.base}/fail/1/${tag}t-${i}`),
    );
    // The tail's publishing ends when the last measured second's retries are due: the whole-run
    // CPU and busy share end there too, as they did (at the last retry) before the tail.
    const m1 = monoUs();
    const ms = cpu.stop();
    const loadEnd = performance.now();
    await ch.waitForConfirms();
    await reached.catch((e: unknown) => log(`cold: not every attempt 2 (tail included) arrived: ${String(e)}`));
    const readings = timeline.stop();
    const upToEnd = readings.filter((r) => r.at <= loadEnd);
    const t1 = cpuByWindow(readings, loadAt + DELAY1, 1000, flags.coldSeconds);
    const seconds = (m1 - m0) / 1e6;
    const g = await m.gaps(`/fail/1/${tag}-`);
    const samples = g.gapsMs.map((gap, i) => ({ sec: Math.floor(Number(g.keys[i]) / rate), late: gap - DELAY1 }));
    // A retry that never came (or whose first attempt made no request) is as late as can be, not left out:
    // the latest ones are the likeliest to miss the watch, and leaving them out lowers the p99.
    const keys = new Set(g.keys.map(Number));
    for (let i = 0; i < total; i++) if (!keys.has(i)) samples.push({ sec: Math.floor(i / rate), late: Infinity });
    const { p50, p99 } = perSecond(samples, flags.coldSeconds);
    return {
      all: samples.map((s) => s.late).sort((a, b) => a - b),
      p50BySecond: p50,
      p99BySecond: p99,
      seen: keys.size,
      sent: total,
      windowUs: [m0, m1],
      cpu: {
        windowS: round(seconds, 1),
        machineBusyPct: round(busyPctBetween(upToEnd[0] ?? readings[0]!, upToEnd[upToEnd.length - 1] ?? readings[readings.length - 1]!)),
        msPerS: Object.fromEntries(Object.entries(ms).map(([k, v]) => [k, round(v / seconds)])),
      },
      bySecond: { tier1CpuMs: t1.cpuMs, machineBusyPct: t1.busyPct },
      tier1PssMiB: tier1Kib === null ? null : round(tier1Kib / 1024, 1),
      ...(retouchMs ? { retouchMs } : {}),
    };
  } finally {
    timeline?.stop();
    await close().catch(() => undefined);
  }
}

/** One cold run of notifyd at `rate`: a fresh daemon, tier 0 warmed, tier 1 idle since start. */
async function coldDaemon(ctx: BenchContext, m: MerchantProcess, retouch: RetouchProbe | null, rate: number, tag: string, env: Record<string, string> = {}): Promise<ColdRun> {
  const { flags } = ctx;
  const daemon = await startDaemon({ res: ctx.res, flags: { ...flags, daemonEnv: { ...flags.daemonEnv, ...env } } }, DEFAULT_SCHEDULE, 'cold');
  try {
    const run = await coldLoad(ctx, m, retouch, rate, tag, daemon.prefix, { pipeline: daemon.pids() }, (await daemon.status()).tiers[1]?.pid ?? null);
    const metrics = await metricsText(daemon.d);
    return { ...run, tier1: tier1Report(metrics, daemon.d.lines as { msg?: string; tier?: unknown; ms?: unknown }[]) };
  } finally {
    await ctx.res.retire(daemon.d);
    await m.clear();
  }
}

/**
 * `--cold-loops`: the hand-written loops of the ceiling (bench/ceiling.ts,
 * fresh processes on a fresh topology) under the same load as notifyd. The
 * least a consumer can do per attempt, on the same broker, merchant and
 * machine: what is left of its lateness is the machine's and its own cold
 * start's (fresh processes, no warm-up), not notifyd's.
 */
async function coldLoops(ctx: BenchContext, m: MerchantProcess, retouch: RetouchProbe | null, rate: number, tag: string): Promise<ColdRun> {
  const { flags } = ctx;
  const prefix = uniquePrefix('loops');
  const names = namesFor(prefix);
  const owned = { prefix, schedule: DEFAULT_SCHEDULE };
  ctx.res.prefixes.push(owned);
  const stages: Awaited<ReturnType<typeof CeilingProcess.start>>[] = [];
  try {
    {
      const c = await amqp.connect(AMQP_URL);
      await declareTopology(c, buildTopology(prefix, parseSchedule(DEFAULT_SCHEDULE), flags.queueType));
      await c.close();
    }
    for (const tier of [0, 1]) {
      stages.push(
        await CeilingProcess.start({ amqpUrl: AMQP_URL, queue: names.workQueue(tier), retryQueue: names.waitQueue(tier + 1), retryDelayMs: parseSchedule(DEFAULT_SCHEDULE)[tier + 1]!, prefetch: flags.concurrency, connections: flags.connections, delayFromStartMs: flags.delayFromStartMs }),
      );
    }
    await Promise.all(stages.map((s) => s.go()));
    return await coldLoad(ctx, m, retouch, rate, tag, prefix, { pipeline: stages.map((s) => s.pid).filter((x): x is number => x !== undefined) }, stages[1]?.pid ?? null);
  } finally {
    for (const s of stages) await s.stop().catch((e: unknown) => log(`cold loops stop: ${String(e)}`));
    await dropPrefix(ctx, owned, ctx.res.prefixes);
    await m.clear();
  }
}

/**
 * Deletes a run's own topology now (a prefix it declared, or a stopped
 * daemon's); only once that worked is it struck off `from`, the bench's final
 * clean-up list, which otherwise tries again at the end.
 */
async function dropPrefix<T extends { prefix: string; schedule: string }>(ctx: BenchContext, owned: T, from: T[]): Promise<void> {
  try {
    await deletePrefix(owned.prefix, owned.schedule, ctx.flags.queueType);
  } catch (e) {
    log(`deletePrefix ${owned.prefix}: ${String(e)}`);
    return;
  }
  const i = from.indexOf(owned);
  if (i >= 0) from.splice(i, 1);
}

/** The bare mechanism at `rate`: publish into `P.wait.1` of a fresh topology, a plain consumer on `P.work.1`. */
async function bareMechanism(ctx: BenchContext, rate: number): Promise<ColdRun> {
  const { flags } = ctx;
  // A topology of its own, as old as the daemon's queues are when its load starts: the same
  // fresh quorum queues on both sides, so what differs is notifyd, not the broker's state.
  const prefix = uniquePrefix('bare');
  const names = namesFor(prefix);
  const owned = { prefix, schedule: DEFAULT_SCHEDULE };
  ctx.res.prefixes.push(owned);
  {
    const c = await amqp.connect(AMQP_URL);
    await declareTopology(c, buildTopology(prefix, parseSchedule(DEFAULT_SCHEDULE), flags.queueType));
    await c.close();
  }
  await sleep((flags.coldIdle + flags.coldWarm + 1) * 1000);
  const total = Math.round(rate * flags.coldSeconds);
  // The same tail as notifyd's load, not measured, so the runs compare like with like.
  const loadS = loadSeconds(flags.coldSeconds);
  const published = Math.round(rate * loadS);
  const conn = await amqp.connect(AMQP_URL, { clientProperties: { connection_name: 'notifyd bench cold bare consumer' } });
  const samples: { i: number; sec: number; late: number }[] = [];
  const { ch, close } = await openConfirm(AMQP_URL, 'notifyd bench cold bare');
  try {
    const cch = await conn.createChannel();
    await cch.prefetch(flags.concurrency);
    let got = 0;
    let allIn: () => void = () => undefined;
    const done = new Promise<void>((r) => (allIn = r));
    await cch.consume(names.workQueue(1), (msg) => {
      if (!msg) return;
      const now = Date.now();
      const h = msg.properties.headers ?? {};
      const i = Number(h['bench-i']);
      if (i < total) samples.push({ i, sec: Math.floor(i / rate), late: now - Number(h['bench-sent']) - DELAY1 });
      cch.ack(msg);
      if (++got >= published) allIn();
    });
    const body = encodeNotification(makeNotification('bare-0', 'http://127.0.0.1/bare'));
    const m0 = monoUs();
    await steady(rate, loadS, (i) => {
      ch.publish('', names.waitQueue(1), body, { persistent: true, headers: { 'bench-i': i, 'bench-sent': Date.now() } });
    });
    await ch.waitForConfirms();
    await Promise.race([done, sleep(30_000 + DELAY1)]);
    const m1 = monoUs();
    const arrived = new Set<number>();
    for (const s of samples) arrived.add(s.i);
    for (let i = 0; i < total; i++) if (!arrived.has(i)) samples.push({ i, sec: Math.floor(i / rate), late: Infinity });
    const { p50, p99 } = perSecond(samples, flags.coldSeconds);
    return { all: samples.map((s) => s.late).sort((a, b) => a - b), p50BySecond: p50, p99BySecond: p99, seen: arrived.size, sent: total, windowUs: [m0, m1] };
  } finally {
    await close().catch(() => undefined);
    await conn.close().catch(() => undefined);
    await dropPrefix(ctx, owned, ctx.res.prefixes);
  }
}

/** One arm's fields in the bench record, named after `key` (`unwarmed_p99_ms`, `loops_p99_ms`, …). */
function armRecord(key: string, runs: readonly ColdRun[], seconds: number): Record<string, unknown> {
  return {
    [`${key}_p50_ms`]: medianAt(runs, (x) => p(x, 50)),
    [`${key}_p99_ms`]: medianAt(runs, (x) => p(x, 99)),
    [`${key}_p99_runs_ms`]: runs.map((x) => round(p(x, 99), 1)),
    [`${key}_p99_by_second`]: Array.from({ length: seconds }, (_, s) => medianAt(runs, (x) => x.p99BySecond[s]!)),
    [`${key}_p99_by_second_runs`]: runs.map((x) => x.p99BySecond),
    [`${key}_seen`]: runs.map((x) => `${x.seen}/${x.sent}`),
    [`${key}_cpu_runs`]: runs.map((x) => x.cpu ?? null),
    [`${key}_retouch_ms_runs`]: runs.map((x) => x.retouchMs ?? null),
    [`${key}_by_second_runs`]: runs.map((x) => x.bySecond ?? null),
  };
}

/** Median of a column over runs (NaN-free). */
function medianAt(runs: readonly ColdRun[], pick: (r: ColdRun) => number): number {
  // NaN is "no sample"; Infinity (a retry that never came) is a result and stays in.
  const xs = runs.map(pick).filter((x) => !Number.isNaN(x));
  return xs.length ? round(median(xs), 1) : NaN;
}

interface RateResult {
  share: number;
  rate: number;
  notifyd: ColdRun[];
  bare: ColdRun[];
  /** `--cold-compare`: the same daemon with its warm-up off (NOTIFY_DELIVERY_WARM_UP=0). */
  unwarmed: ColdRun[];
  /** `--cold-loops`: the hand-written loops under the same load. */
  loops: ColdRun[];
}

type Arm = 'notifyd' | 'bare' | 'unwarmed' | 'loops';

/** `; machine: 64 MiB touched again in 44.6 ms after the idle (0.3 warm)`: what the machine charges for memory left alone. */
function retouchText(run: ColdRun): string {
  return run.retouchMs ? `; machine: 64 MiB touched again in ${run.retouchMs.idle} ms after the idle (${run.retouchMs.warm} warm)` : '';
}

/** `; over 11 s: machine 86 % busy, CPU ms/s pipeline 700, broker 600, …` for a run's log line. */
function cpuText(run: ColdRun): string {
  if (!run.cpu) return '';
  const by = run.bySecond ? `; by second of retries: tier 1 CPU ms ${run.bySecond.tier1CpuMs.join(' ')}, machine busy % ${run.bySecond.machineBusyPct.join(' ')}` : '';
  return `; over ${run.cpu.windowS} s: machine ${run.cpu.machineBusyPct} % busy, CPU ms/s ${Object.entries(run.cpu.msPerS).map(([k, v]) => `${k} ${v}`).join(', ')}${by}`;
}

/** Run r's order: each arm goes first in turn, so none always meets the machine fresh or tired. */
function armOrder(r: number, arms: readonly Arm[]): Arm[] {
  return arms.map((_, i) => arms[(i + r) % arms.length]!);
}

const p = (r: ColdRun, q: number): number => (r.all.length ? percentile(r.all, q) : NaN);

export async function cold(ctx: BenchContext): Promise<ScenarioReport> {
  const { flags } = ctx;
  if (!flags.cold) return { record: { cold: null }, head: '', memory: [], tail: '' };
  const m = await MerchantProcess.start({ record: true });
  ctx.res.stops.push(() => m.stop());
  // Only a run that idles has something to compare (64 MiB of the bench's own otherwise for nothing).
  const retouch = flags.coldIdle > 0 ? new RetouchProbe() : null;
  let ceiling = flags.coldCeiling;
  if (ceiling === 0) {
    ceiling = await retryCeiling(ctx, m, flags.coldN);
    log(`cold: hand-written retry pipeline carries ${round(ceiling)}/s (${flags.coldN} fail-once notifications)`);
  } else log(`cold: retry ceiling given as ${ceiling}/s (--cold-ceiling)`);
  const results: RateResult[] = [];
  for (const share of flags.coldShares) {
    const rate = Math.max(1, Math.round((ceiling * share) / 100));
    const res: RateResult = { share, rate, notifyd: [], bare: [], unwarmed: [], loops: [] };
    const arms: Arm[] = ['notifyd', 'bare', ...(flags.coldCompare ? (['unwarmed'] as const) : []), ...(flags.coldLoops ? (['loops'] as const) : [])];
    for (let r = 0; r < flags.coldRuns; r++) {
      for (const who of armOrder(r, arms)) {
        if (who === 'notifyd' || who === 'unwarmed') {
          const run = await coldDaemon(ctx, m, retouch, rate, `${who[0]}${share}r${r}`, who === 'unwarmed' ? { NOTIFY_DELIVERY_WARM_UP: '0' } : {});
          res[who].push(run);
          const t1 = run.tier1;
          const own = t1 ? `; tier 1: attempts ${JSON.stringify(t1.attempts)}, deferrals ${t1.deferrals}, own lateness p99 ≤ ${t1.latenessP99LeMs} ms, warm-up ${t1.warmUpMs ?? '-'} ms${t1.brokerWarmUpMs !== null ? ` + ${t1.brokerWarmUpMs} ms through the broker` : ''}${t1.tier0SkippedOrDeferred > 0 ? `; FLAGGED: tier 0 skipped or deferred ${t1.tier0SkippedOrDeferred} (machine too busy for tier 0)` : ''}` : '';
          log(`cold ${share}% (${rate}/s) run ${r + 1}: ${who} p99 ${round(p(run, 99))} ms, per second ${run.p99BySecond.join(' ')} (${run.seen}/${run.sent})${own}; tier 1 PSS before the load ${run.tier1PssMiB ?? '-'} MiB${retouchText(run)}${cpuText(run)}${flags.cpuProf ? `, window --from ${run.windowUs[0]} --to ${run.windowUs[1]}` : ''}`);
        } else if (who === 'loops') {
          const run = await coldLoops(ctx, m, retouch, rate, `l${share}r${r}`);
          res.loops.push(run);
          log(`cold ${share}% (${rate}/s) run ${r + 1}: loops p99 ${round(p(run, 99))} ms, per second ${run.p99BySecond.join(' ')} (${run.seen}/${run.sent})${retouchText(run)}${cpuText(run)}`);
        } else {
          const run = await bareMechanism(ctx, rate);
          res.bare.push(run);
          log(`cold ${share}% (${rate}/s) run ${r + 1}: bare p99 ${round(p(run, 99))} ms, per second ${run.p99BySecond.join(' ')} (${run.seen}/${run.sent})`);
        }
        await sleep(1000);
      }
    }
    results.push(res);
  }

  let tail = `\n== cold retry tiers: fresh daemon${flags.coldIdle > 0 ? ` idle ${flags.coldIdle}s` : ''}, tier 0 warmed ${flags.coldWarm}s, tier 1 idle since start; ${flags.coldSeconds}s of fail-once load; retry ceiling ${round(ceiling)}/s${flags.coldCeiling ? ' (given)' : ' (hand-written loops, measured)'}; medians of ${flags.coldRuns} runs\n`;
  const record: Record<string, unknown>[] = [];
  for (const r of results) {
    const cmp = r.unwarmed.length > 0;
    const lp = r.loops.length > 0;
    // The arms beside notifyd and bare that ran: their label in the report, their key in the record.
    const extras = ([['no warm-up', 'unwarmed', r.unwarmed], ['loops', 'loops', r.loops]] as const).filter(([, , runs]) => runs.length > 0);
    const rows: Row[] = [[`${r.share}% = ${r.rate}/s: lateness of attempt 2 (ms), by second of load`, 'notifyd p50', 'notifyd p99', 'bare p50', 'bare p99', ...extras.flatMap(([label]) => [`${label} p50`, `${label} p99`]), 'notifyd tier 1 CPU ms', 'notifyd machine busy %']];
    for (let s = 0; s < flags.coldSeconds; s++) {
      rows.push([
        `second ${s + 1}`,
        medianAt(r.notifyd, (x) => x.p50BySecond[s]!),
        medianAt(r.notifyd, (x) => x.p99BySecond[s]!),
        medianAt(r.bare, (x) => x.p50BySecond[s]!),
        medianAt(r.bare, (x) => x.p99BySecond[s]!),
        ...extras.flatMap(([, , runs]) => [medianAt(runs, (x) => x.p50BySecond[s]!), medianAt(runs, (x) => x.p99BySecond[s]!)]),
        medianAt(r.notifyd, (x) => x.bySecond?.tier1CpuMs[s] ?? NaN),
        medianAt(r.notifyd, (x) => x.bySecond?.machineBusyPct[s] ?? NaN),
      ]);
    }
    const np99 = medianAt(r.notifyd, (x) => p(x, 99));
    const bp99 = medianAt(r.bare, (x) => p(x, 99));
    rows.push(['all seconds', medianAt(r.notifyd, (x) => p(x, 50)), np99, medianAt(r.bare, (x) => p(x, 50)), bp99, ...extras.flatMap(([, , runs]) => [medianAt(runs, (x) => p(x, 50)), medianAt(runs, (x) => p(x, 99))]), '', '']);
    const first = medianAt(r.notifyd, (x) => x.p99BySecond[0]!);
    const last = medianAt(r.notifyd, (x) => x.p99BySecond[flags.coldSeconds - 1]!);
    const bound = round(1.5 * bp99 + 20, 1);
    tail += `\n${table(rows)}\n`;
    tail += `p99 of every run: notifyd ${r.notifyd.map((x) => round(p(x, 99))).join(', ')}; bare ${r.bare.map((x) => round(p(x, 99))).join(', ')}${extras.map(([label, , runs]) => `; ${label} ${runs.map((x) => round(p(x, 99))).join(', ')}`).join('')}\n`;
    const busy = (runs: readonly ColdRun[]): string => runs.map((x) => x.cpu?.machineBusyPct ?? '-').join(', ');
    tail += `machine busy during the fail-once load (%): notifyd ${busy(r.notifyd)}${lp ? `; loops ${busy(r.loops)}` : ''}\n`;
    const flagged = [...r.notifyd, ...r.unwarmed].filter((x) => (x.tier1?.tier0SkippedOrDeferred ?? 0) > 0).length;
    if (flagged > 0) tail += `${flagged} run(s) flagged: tier 0 skipped or deferred attempt 1 (its origin looked saturated: the machine was too busy for tier 0), so their gaps are not attempt 1 → 2\n`;
    tail += `target p99 ≤ 1.5 × bare + 20 = ${bound} ms: ${np99 <= bound ? 'met' : 'missed'} (${np99} ms); first second p99 ≤ 2 × last: ${first <= 2 * last ? 'met' : 'missed'} (${first} against ${last} ms)\n`;
    record.push({
      share_percent: r.share,
      rate: r.rate,
      notifyd_p50_ms: medianAt(r.notifyd, (x) => p(x, 50)),
      notifyd_p99_ms: np99,
      bare_p50_ms: medianAt(r.bare, (x) => p(x, 50)),
      bare_p99_ms: bp99,
      notifyd_p99_runs_ms: r.notifyd.map((x) => round(p(x, 99), 1)),
      bare_p99_runs_ms: r.bare.map((x) => round(p(x, 99), 1)),
      notifyd_p50_by_second: Array.from({ length: flags.coldSeconds }, (_, s) => medianAt(r.notifyd, (x) => x.p50BySecond[s]!)),
      notifyd_p99_by_second: Array.from({ length: flags.coldSeconds }, (_, s) => medianAt(r.notifyd, (x) => x.p99BySecond[s]!)),
      bare_p50_by_second: Array.from({ length: flags.coldSeconds }, (_, s) => medianAt(r.bare, (x) => x.p50BySecond[s]!)),
      bare_p99_by_second: Array.from({ length: flags.coldSeconds }, (_, s) => medianAt(r.bare, (x) => x.p99BySecond[s]!)),
      notifyd_p99_by_second_runs: r.notifyd.map((x) => x.p99BySecond),
      seen: r.notifyd.map((x) => `${x.seen}/${x.sent}`),
      tier1_runs: r.notifyd.map((x) => x.tier1 ?? null),
      cpu_runs: r.notifyd.map((x) => x.cpu ?? null),
      notifyd_by_second_runs: r.notifyd.map((x) => x.bySecond ?? null),
      tier1_pss_mib_runs: r.notifyd.map((x) => x.tier1PssMiB ?? null),
      retouch_ms_runs: r.notifyd.map((x) => x.retouchMs ?? null),
      ...Object.assign({}, ...extras.map(([, key, runs]) => armRecord(key, runs, flags.coldSeconds))),
      ...(cmp ? { unwarmed_tier1_runs: r.unwarmed.map((x) => x.tier1 ?? null) } : {}),
      bound_ms: bound,
      p99_target_met: np99 <= bound,
      first_second_target_met: first <= 2 * last,
    });
  }
  return {
    record: { cold: { ceiling_per_s: round(ceiling), ceiling_given: flags.coldCeiling > 0, runs: flags.coldRuns, seconds: flags.coldSeconds, warm_s: flags.coldWarm, idle_s: flags.coldIdle, rates: record } },
    head: '',
    memory: [],
    tail,
  };
}
