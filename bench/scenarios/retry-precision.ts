/**
 * Retry precision: `--rate`/s fresh notifications whose first attempt fails,
 * and how late attempt 2 arrives at the merchant after schedule[1] — on the
 * shared daemon and on two hand-written loops (tier 0 → P.wait.1 → tier 1),
 * `--precision-runs` times in alternating order. Skipped with `--skip-precision`.
 */
import amqp from 'amqplib';
import { encodeNotification } from '../../src/core/message.js';
import { parseSchedule } from '../../src/core/schedule.js';
import { namesFor } from '../../src/broker/topology.js';
import { makeNotification, openConfirm, percentile, round, sleep, tier0Props } from '../bench-util.js';
import { CeilingProcess } from '../ceiling.js';
import { CpuMeter } from '../cpu.js';
import { AMQP_URL, type DaemonProcess } from '../daemon-process.js';
import { MerchantProcess } from '../merchant-process.js';
import { PssSampler } from '../pss.js';
import { BEAM, DEFAULT_SCHEDULE, DepthSampler, log, metricsText, monoUs, per1k, table } from '../bench-context.js';
import { histogramPercentileMs } from '../metrics-text.js';
import type { BenchContext, Flags, Row, ScenarioReport } from '../bench-context.js';

interface PrecisionResult {
  maxDepth: Record<string, number>;
  sent: number;
  publishRate: number;
  attempt2Seen: number;
  missing: number;
  p50: number;
  p99: number;
  max: number;
  histP99Tier1Ms: number | null;
  p99BySecond: number[];
  /** p99 of the warm-up notifications (not counted): how long a cold tier takes to settle. */
  warmupP99: number;
  pssPeakMiB: number | null;
  cpuPer1k: { consumer: number; broker: number; merchant: number };
}

/**
 * Retry precision: `rate`/s fresh notifications for `seconds` into `P.work.0`
 * of `prefix`, to a merchant path that fails its first request; lateness of
 * attempt 2 = (its arrival − attempt 1's arrival) − schedule[1], measured at the
 * merchant. The first attempt's response time is in there too, so this is an
 * upper bound of "start − due". `consumers` are the pids metered: for notifyd
 * all of its processes (the master, the ingress and idle tiers too).
 */
async function measurePrecision(prefix: string, consumers: () => number[], flags: Flags, daemon: DaemonProcess | null): Promise<PrecisionResult> {
  const schedule = parseSchedule(DEFAULT_SCHEDULE);
  const delay1 = schedule[1]!;
  const m2 = await MerchantProcess.start({ record: true });
  const names = namesFor(prefix);
  const { ch, close } = await openConfirm(AMQP_URL, 'notifyd bench precision');
  const sampler = daemon ? new PssSampler(consumers, 200).start() : null;
  const depths = new DepthSampler([names.workQueue(0), names.waitQueue(1), names.workQueue(1)]).start();
  try {
    // The load runs for warm-up + measured seconds without a break; only
    // notifications published after the warm-up count (fresh processes, pools
    // and JIT make the first seconds a transient, not the steady state).
    const warm = Math.round(flags.rate * flags.precisionWarmup);
    const total = Math.round(flags.rate * flags.seconds);
    const proto = makeNotification('lat-0', `${m2.base}/fail/1/lat-0`);
    let sent = 0;
    let cpu: CpuMeter | null = null;
    let t0 = Date.now();
    let m0 = monoUs();
    const tStart = t0;
    await new Promise<void>((done) => {
      const tick = (): void => {
        const due = Math.min(warm + total, Math.floor(((Date.now() - tStart) / 1000) * flags.rate));
        for (; sent < due; sent++) {
          if (sent === warm) {
            cpu = new CpuMeter({ consumer: consumers(), broker: BEAM(), merchant: [m2.pid!] }).start();
            t0 = Date.now();
            m0 = monoUs();
          }
          const now = Date.now();
          const id = sent < warm ? `w-${sent}` : `m-${sent}`;
          // A validated prototype with a fresh id, url and time: the load generator stays cheap.
          const note = { ...proto, id, url: `${m2.base}/fail/1/${id}`, createdAt: now };
          ch.publish(names.work, names.routingKey(0), encodeNotification(note), tier0Props(note, now));
        }
        if (sent >= warm + total) {
          clearInterval(timer);
          done();
        }
      };
      const timer = setInterval(tick, 5);
    });
    const publishMs = Date.now() - t0;
    await ch.waitForConfirms();
    await m2.reached(2 * (warm + total), 60_000 + flags.seconds * 1000).catch((e: unknown) => log(`precision: not every attempt 2 arrived: ${String(e)}`));
    const used = (cpu as CpuMeter | null)?.stop() ?? {};
    if (flags.cpuProf) log(`precision window (${daemon ? 'notifyd' : 'loops'}) --from ${m0} --to ${monoUs()}`);
    const g = await m2.gaps('/fail/1/m-');
    const gw = await m2.gaps('/fail/1/w-');
    const warmLate = gw.gapsMs.map((x) => x - delay1).sort((a, b) => a - b);
    const late = g.gapsMs.map((x) => x - delay1);
    // A retry that never came counts as infinitely late, not as left out (the latest are the likeliest to miss the watch).
    const got = new Set(g.keys.map((k) => Number(k.replace(/^m-/, ''))));
    const missed: number[] = [];
    for (let index = warm; index < warm + total; index++) if (!got.has(index)) missed.push(index);
    late.push(...missed.map(() => Infinity));
    late.sort((a, b) => a - b);
    // p99 per second of load (by when the notification was published): a
    // start-up transient and a steady backlog look different.
    const bySecond: number[][] = [];
    g.gapsMs.forEach((gap, i) => {
      const index = Number(g.keys[i]!.replace(/^m-/, ''));
      const sec = Math.floor((index - warm) / flags.rate);
      (bySecond[sec] ??= []).push(gap - delay1);
    });
    for (const index of missed) (bySecond[Math.floor((index - warm) / flags.rate)] ??= []).push(Infinity);
    const p99BySecond = Array.from(bySecond, (xs) => (xs ? round(percentile(xs.sort((a, b) => a - b), 99)) : NaN));
    const metrics = daemon ? await metricsText(daemon) : null;
    const pss = sampler ? await sampler.stop() : null;
    const maxDepth = await depths.stop();
    return {
      maxDepth: Object.fromEntries(Object.entries(maxDepth).map(([q, d]) => [q.slice(prefix.length + 1), d])),
      sent: total,
      publishRate: (total / publishMs) * 1000,
      attempt2Seen: got.size,
      missing: missed.length,
      p50: percentile(late, 50),
      p99: percentile(late, 99),
      max: late[late.length - 1] ?? NaN,
      histP99Tier1Ms: metrics ? histogramPercentileMs(metrics, '1', 99) : null,
      p99BySecond,
      warmupP99: percentile(warmLate, 99),
      pssPeakMiB: pss ? pss.peakMiB : null,
      cpuPer1k: per1k(used, total),
    };
  } finally {
    await sampler?.stop();
    await depths.stop();
    await close().catch((e: unknown) => log(`precision publisher: ${String(e)}`));
    await m2.stop();
  }
}

/** The run whose p99 is the median (the upper middle one for an even count), so its details stay together. */
function medianRun(runs: readonly PrecisionResult[]): PrecisionResult {
  const sorted = [...runs].sort((a, b) => a.p99 - b.p99);
  return sorted[Math.ceil((sorted.length - 1) / 2)]!;
}

/** The same retry-precision load on two hand-written loops (tier 0 → P.wait.1 → tier 1) instead of the daemon. */
async function ceilingPrecision(prefix: string, flags: Flags): Promise<PrecisionResult> {
  const names = namesFor(prefix);
  const schedule = parseSchedule(DEFAULT_SCHEDULE);
  {
    // Leftovers of earlier failure-ratio runs must not be mixed in.
    const conn = await amqp.connect(AMQP_URL);
    const ch = await conn.createChannel();
    for (let i = 0; i < schedule.length; i++) await ch.purgeQueue(names.workQueue(i));
    for (let i = 1; i < schedule.length; i++) await ch.purgeQueue(names.waitQueue(i));
    await conn.close();
  }
  const stages = await Promise.all(
    [0, 1].map((tier) =>
      CeilingProcess.start({ amqpUrl: AMQP_URL, queue: names.workQueue(tier), retryQueue: names.waitQueue(tier + 1), retryDelayMs: schedule[tier + 1]!, prefetch: flags.concurrency, connections: flags.connections, delayFromStartMs: flags.delayFromStartMs }),
    ),
  );
  try {
    await Promise.all(stages.map((c) => c.go()));
    return await measurePrecision(prefix, () => stages.map((c) => c.pid!), flags, null);
  } finally {
    for (const c of stages) await c.stop().catch((e: unknown) => log(`ceiling stop: ${String(e)}`));
  }
}

export async function retryPrecision(ctx: BenchContext): Promise<ScenarioReport> {
  const { flags, daemon, ceilingPrefix } = ctx;
  let precision: PrecisionResult | null = null;
  let precisionCeiling: PrecisionResult | null = null;
  const precisionRuns: PrecisionResult[] = [];
  const precisionCeilingRuns: PrecisionResult[] = [];
  if (!flags.skipPrecision) {
    log(`retry precision: ${flags.rate}/s for ${flags.precisionWarmup}s warm-up + ${flags.seconds}s measured, first attempt fails${flags.precisionRuns > 1 ? `, ${flags.precisionRuns} runs` : ''}`);
    for (let r = 0; r < flags.precisionRuns; r++) {
      // Alternate who goes first, as the throughput runs do.
      for (const who of r % 2 === 0 ? (['notifyd', 'loops'] as const) : (['loops', 'notifyd'] as const)) {
        if (who === 'notifyd') {
          const p = await measurePrecision(daemon.prefix, daemon.pids, flags, daemon.d);
          precisionRuns.push(p);
          log(`notifyd: lateness of attempt 2: p50 ${p.p50} ms, p99 ${p.p99} ms, max ${p.max} ms (${p.attempt2Seen}/${p.sent})`);
        } else {
          const p = await ceilingPrecision(ceilingPrefix, flags);
          precisionCeilingRuns.push(p);
          log(`ceiling: lateness of attempt 2: p50 ${p.p50} ms, p99 ${p.p99} ms, max ${p.max} ms (${p.attempt2Seen}/${p.sent})`);
        }
        await sleep(1000);
      }
    }
    precision = medianRun(precisionRuns);
    precisionCeiling = medianRun(precisionCeilingRuns);
  }

  const memory: Row[] = [];
  if (precision?.pssPeakMiB) memory.push([`peak during retry precision`, round(precision.pssPeakMiB, 1)]);
  let tail = '';
  if (precision) {
    const lat: Row[] = [[`retry precision, ${flags.rate}/s for ${flags.seconds}s (after ${flags.precisionWarmup}s warm-up)${flags.cpuHog > 0 ? `, ${flags.cpuHog} CPU hog(s)` : ''}: lateness of attempt 2 (ms)`, 'p50', 'p99', 'max', 'seen', 'CPU ms/1k (notifyd: all its processes, loops: both; broker)']];
    for (const [name, p] of [['notifyd', precision], ['hand-written tier 0 + tier 1 loops', precisionCeiling]] as const) {
      if (!p) continue;
      lat.push([name, round(p.p50, 1), round(p.p99, 1), round(p.max, 1), `${p.attempt2Seen}/${p.sent}`, `${round(p.cpuPer1k.consumer)}, ${round(p.cpuPer1k.broker)}`]);
    }
    if (precisionRuns.length > 1) {
      const p99s = (rs: readonly PrecisionResult[]): string => rs.map((p) => round(p.p99)).join(', ');
      lat.push([`(the median of ${precisionRuns.length} runs by p99; p99 of every run: notifyd ${p99s(precisionRuns)}; loops ${p99s(precisionCeilingRuns)})`, '', '', '', '', '']);
    }
    tail += `\n${table(lat)}\n(at the merchant: arrival of attempt 2 − arrival of attempt 1 − ${parseSchedule(DEFAULT_SCHEDULE)[1]} ms; notifyd's own histogram puts its p99 in the bucket ≤ ${precision.histP99Tier1Ms} ms)\n`;
    const depth = (p: PrecisionResult): string => Object.entries(p.maxDepth).map(([q, d]) => `${q} ${d}`).join(', ');
    tail += `warm-up p99 (cold tiers settling, not counted): notifyd ${round(precision.warmupP99)} ms${precisionCeiling ? `; loops ${round(precisionCeiling.warmupP99)} ms` : ''}\n`;
    tail += `p99 per second of load: notifyd ${precision.p99BySecond.join(' ')}${precisionCeiling ? `; loops ${precisionCeiling.p99BySecond.join(' ')}` : ''}\n`;
    tail += `most messages ready: notifyd ${depth(precision)}${precisionCeiling ? `; loops ${depth(precisionCeiling)}` : ''}\n`;
  }

  return {
    record: {
      lateness_p50_ms: precision ? round(precision.p50, 1) : null,
      lateness_p99_ms: precision ? round(precision.p99, 1) : null,
      lateness_max_ms: precision ? round(precision.max, 1) : null,
      lateness_seen: precision ? precision.attempt2Seen : null,
      lateness_missing: precision ? precision.missing : null,
      lateness_hist_p99_le_ms: precision ? precision.histP99Tier1Ms : null,
      precision_max_ready: precision ? precision.maxDepth : null,
      lateness_p99_by_second: precision ? precision.p99BySecond : null,
      lateness_p99_runs_ms: precisionRuns.map((p) => round(p.p99, 1)),
      ceiling_lateness_p99_runs_ms: precisionCeilingRuns.map((p) => round(p.p99, 1)),
      lateness_warmup_p99_ms: precision ? round(precision.warmupP99) : null,
      ceiling_lateness_warmup_p99_ms: precisionCeiling ? round(precisionCeiling.warmupP99) : null,
      ceiling_lateness_p99_by_second: precisionCeiling ? precisionCeiling.p99BySecond : null,
      ceiling_lateness_p50_ms: precisionCeiling ? round(precisionCeiling.p50, 1) : null,
      ceiling_lateness_p99_ms: precisionCeiling ? round(precisionCeiling.p99, 1) : null,
      ceiling_lateness_max_ms: precisionCeiling ? round(precisionCeiling.max, 1) : null,
      precision_cpu_ms_per_1k: precision ? { notifyd: precision.cpuPer1k, ceiling: precisionCeiling?.cpuPer1k ?? null } : null,
      pss_precision_mb: precision?.pssPeakMiB ? round(precision.pssPeakMiB, 1) : null,
      rate: flags.rate,
      seconds: flags.seconds,
      precision_warmup_s: flags.precisionWarmup,
    },
    head: '',
    memory,
    tail,
  };
}
