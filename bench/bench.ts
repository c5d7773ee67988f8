/**
 * `npm run bench`: the real daemon against a hand-written ceiling and BullMQ,
 * retry precision, and memory (DESIGN §2–§3, issue 6). See `--help`.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import amqp from 'amqplib';
import { H, encodeNotification } from '../src/core/message.js';
import { loadConfig } from '../src/core/config.js';
import { parseSchedule } from '../src/core/schedule.js';
import { buildTopology, declareTopology, namesFor } from '../src/broker/topology.js';
import { BullmqQueue, BullmqWorkerProcess, bullmqAvailable } from './bullmq-bench.js';
import { makeNotification, median, openConfirm, percentile, preloadTier0, publishMany, queueInfo, round, sleep, tier0Props } from './bench-util.js';
import { CeilingProcess } from './ceiling.js';
import { CpuMeter, pidsByComm } from './cpu.js';
import { AMQP_URL, DaemonProcess, deletePrefix, uniquePrefix, waitFor } from './daemon-process.js';
import { MerchantProcess } from './merchant-process.js';
import { PssSampler, pssSumMiB } from './pss.js';

const USAGE = `npm run bench -- [options]

  --n N              notifications per throughput run (default 20000)
  --runs K           repeat throughput + ceiling (+ BullMQ) K times; ratios are medians (default 1)
  --rate R           retry-precision load, notifications/s (default 2000)
  --seconds S        retry-precision duration (default 10)
  --precision-warmup W  seconds of the same load before the measured ones (default 5; reported apart)
  --precision-runs K repeat the retry-precision test K times, notifyd and the loops in turn;
                     the run with the median p99 is reported, every run's p99 is listed (default 1)
  --pending M        also fill the wait queues with M pending notifications and measure memory
                     again, against the same daemon just before the fill: medians of 3 throughput
                     runs on each side, and idle PSS per process 30 s after each side's runs
                     (e.g. 1000000; takes minutes; default 0 = skip)
  --log-level L      the daemon's NOTIFY_LOG_LEVEL (default info, as shipped)
  --latency-ms X     merchant latency for the throughput runs (default 0)
  --failure-ratio F  share of throughput attempts the merchant answers 500 (default 0): those are
                     handed on to the wait queue (publish with confirm, then ack); the later tiers
                     are paused during the runs so the clock counts first attempts only
  --queue-type T     quorum (default, as shipped) or classic, for the daemon and the ceiling alike
  --cpu-prof DIR     profile the daemon (every process, via bench/cpu-prof-preload.ts) and the ceiling
                     (node --cpu-prof) into DIR; prints each window for bench/cpuprofile-top.ts
  --tuned-ceiling P[,single]  also run the loop with prefetch P and one 'multiple' ack per
                     event-loop turn (',single': acks one by one) — what a tuned tier worker could
                     reach; reported apart, not in the ratio
  --bullmq-keep-completed  keep completed BullMQ jobs (BullMQ's default) instead of removing them as an ack does
  --daemon-env K=V   extra NOTIFY_* variable for the daemon (repeatable), e.g. NOTIFY_DELIVERY_CONCURRENCY=128
  --cpu-hog N        keep N extra processes spinning on the CPU for the whole bench: a noisy
                     neighbour on the shared VM, the same for every engine (default 0)
  --skip-bullmq      --skip-precision      --echo (daemon logs to stdout)`;

const DEFAULT_SCHEDULE = 'default';
/** Six tiers as the default, but delays long enough that pending notifications sit. */
const PENDING_SCHEDULE = '0s,1h,2h,3h,4h,5h';
/**
 * How long the pending daemon sits idle before its control runs, and after
 * each side's runs before its idle PSS is read: about as long as filling
 * 1,000,000 takes here. A worker gives back heap over the half minute after
 * it last worked, so readings at unequal distances from a run would credit
 * that to the fill (or hide growth behind it).
 */
const PENDING_CONTROL_IDLE_MS = 30_000;
/**
 * Throughput runs on each side of the fill: single runs' PSS peaks differ (the
 * first after an idle pause peaks 8–12 % lower), so medians are compared.
 */
const PENDING_LOAD_RUNS = 3;

interface Flags {
  n: number;
  runs: number;
  rate: number;
  seconds: number;
  pending: number;
  logLevel: string;
  latencyMs: number;
  failureRatio: number;
  queueType: 'quorum' | 'classic';
  cpuProf: string | null;
  skipBullmq: boolean;
  bullmqKeepCompleted: boolean;
  tunedPrefetch: number;
  tunedBatchAcks: boolean;
  skipPrecision: boolean;
  precisionWarmup: number;
  precisionRuns: number;
  echo: boolean;
  daemonEnv: Record<string, string>;
  /**
   * The daemon's `delivery.concurrency` (its prefetch) as it will run: the
   * ceiling's prefetch and BullMQ's concurrency are the same, so a changed
   * default or a `--daemon-env NOTIFY_DELIVERY_CONCURRENCY` compares like with like.
   */
  concurrency: number;
  /** The daemon's `delivery.connectionsPerOrigin`: every engine's keep-alive pool to the merchant. */
  connections: number;
  cpuHog: number;
}

function parseFlags(): Flags {
  const { values } = parseArgs({
    options: {
      n: { type: 'string' },
      runs: { type: 'string' },
      rate: { type: 'string' },
      seconds: { type: 'string' },
      pending: { type: 'string' },
      'log-level': { type: 'string' },
      'latency-ms': { type: 'string' },
      'failure-ratio': { type: 'string' },
      'queue-type': { type: 'string' },
      'cpu-prof': { type: 'string' },
      'skip-bullmq': { type: 'boolean' },
      'bullmq-keep-completed': { type: 'boolean' },
      'tuned-ceiling': { type: 'string' },
      'skip-precision': { type: 'boolean' },
      'precision-warmup': { type: 'string' },
      'precision-runs': { type: 'string' },
      echo: { type: 'boolean' },
      'daemon-env': { type: 'string', multiple: true },
      'cpu-hog': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    process.exit(0);
  }
  const num = (v: string | undefined, d: number, name: string): number => {
    if (v === undefined) return d;
    const x = Number(v);
    if (!Number.isFinite(x) || x < 0) throw new Error(`--${name} must be a non-negative number`);
    return x;
  };
  const daemonEnv = Object.fromEntries(
    (values['daemon-env'] ?? []).map((kv) => {
      const i = kv.indexOf('=');
      if (i <= 0 || !kv.startsWith('NOTIFY_')) throw new Error(`--daemon-env takes NOTIFY_NAME=value, not ${kv}`);
      return [kv.slice(0, i), kv.slice(i + 1)];
    }),
  );
  return {
    n: Math.max(1, Math.floor(num(values.n, 20_000, 'n'))),
    runs: Math.max(1, Math.floor(num(values.runs, 1, 'runs'))),
    rate: Math.max(1, num(values.rate, 2000, 'rate')),
    seconds: Math.max(1, num(values.seconds, 10, 'seconds')),
    pending: Math.floor(num(values.pending, 0, 'pending')),
    logLevel: values['log-level'] ?? 'info',
    latencyMs: num(values['latency-ms'], 0, 'latency-ms'),
    queueType: values['queue-type'] === 'classic' ? 'classic' : 'quorum',
    failureRatio: Math.min(1, num(values['failure-ratio'], 0, 'failure-ratio')),
    cpuProf: values['cpu-prof'] ? resolve(values['cpu-prof']) : null,
    skipBullmq: values['skip-bullmq'] ?? false,
    bullmqKeepCompleted: values['bullmq-keep-completed'] ?? false,
    tunedPrefetch: Math.floor(num(values['tuned-ceiling']?.split(',')[0], 0, 'tuned-ceiling')),
    tunedBatchAcks: values['tuned-ceiling']?.split(',')[1] !== 'single',
    skipPrecision: values['skip-precision'] ?? false,
    precisionWarmup: num(values['precision-warmup'], 5, 'precision-warmup'),
    precisionRuns: Math.max(1, Math.round(num(values['precision-runs'], 1, 'precision-runs'))),
    echo: values.echo ?? false,
    daemonEnv,
    ...daemonDelivery(daemonEnv),
    cpuHog: Math.floor(num(values['cpu-hog'], 0, 'cpu-hog')),
  };
}

/** What the daemon will run with (config/default.json plus the `--daemon-env` overrides). */
function daemonDelivery(env: Record<string, string>): { concurrency: number; connections: number } {
  let delivery;
  try {
    delivery = loadConfig({ configFile: null, env }).delivery;
  } catch (err) {
    throw new Error(`--daemon-env gives an invalid daemon config: ${(err as Error).message}`);
  }
  return { concurrency: delivery.concurrency, connections: delivery.connectionsPerOrigin };
}

const log = (s: string): void => void process.stderr.write(`[bench] ${s}\n`);

interface TierStatus {
  index: number;
  state: string;
  pid: number | null;
}
interface Status {
  tiers: TierStatus[];
  ingress: { pid: number | null };
}

/** Everything started, so a failure or Ctrl-C still cleans up. */
class Resources {
  readonly daemons: { d: DaemonProcess; prefix: string; schedule: string }[] = [];
  readonly prefixes: { prefix: string; schedule: string }[] = [];
  readonly stops: (() => Promise<unknown>)[] = [];
  private cleaned = false;

  constructor(private readonly queueType: 'quorum' | 'classic') {}

  async cleanup(): Promise<void> {
    if (this.cleaned) return;
    this.cleaned = true;
    for (const s of this.stops.splice(0).reverse()) await s().catch((e: unknown) => log(`cleanup: ${String(e)}`));
    for (const { d } of this.daemons) await d.stop(40_000).catch((e: unknown) => log(`daemon stop: ${String(e)}`));
    for (const { prefix, schedule } of [...this.daemons, ...this.prefixes]) {
      await deletePrefix(prefix, schedule, this.queueType).catch((e: unknown) => log(`deletePrefix ${prefix}: ${String(e)}`));
    }
  }
}

/** Starts the real daemon; afterwards its stdout is drained cheaply (no JSON parsing in the bench). */
async function startDaemon(res: Resources, schedule: string, flags: Flags, label: string): Promise<{ d: DaemonProcess; prefix: string; pids: () => number[]; status: () => Promise<Status> }> {
  const prefix = uniquePrefix(label);
  const env: Record<string, string> = { NOTIFY_LOG_LEVEL: flags.logLevel, NOTIFY_QUEUE_TYPE: flags.queueType, ...flags.daemonEnv };
  if (flags.cpuProf) {
    // node refuses --cpu-prof in NODE_OPTIONS; a preloaded inspector profiler does the same job in master and workers.
    env.NODE_OPTIONS = `--import=${resolve(dirname(fileURLToPath(import.meta.url)), 'cpu-prof-preload.js')}`;
    env.BENCH_CPU_PROF_DIR = flags.cpuProf;
  }
  const d = new DaemonProcess({ prefix, schedule, env, echo: flags.echo });
  res.daemons.push({ d, prefix, schedule });
  await d.ready(30_000);
  if (!flags.echo) {
    // The per-attempt log lines still go to a pipe as in production; the bench
    // just no longer parses and keeps them.
    const out = d.proc.stdout!;
    out.removeAllListeners('data');
    out.on('data', () => undefined);
  }
  const status = async (): Promise<Status> => (await d.admin<Status>('GET', '/admin/status')).body;
  let pidList: number[] = [];
  const refresh = async (): Promise<void> => {
    const s = await status();
    pidList = [d.proc.pid!, ...s.tiers.map((t) => t.pid), s.ingress.pid].filter((p): p is number => typeof p === 'number');
  };
  await waitFor(async () => {
    const s = await status();
    return s.tiers.every((t) => t.pid !== null && t.state === 'running') && s.ingress.pid !== null;
  }, 20_000, 'all workers running');
  await refresh();
  return { d, prefix, pids: () => pidList, status };
}

/** `master 60, tier0 30, …` for pids in `startDaemon`'s order (master, tiers, ingress). */
function byRole(pids: readonly number[], perPidMiB: Record<number, number>): string {
  return pids.map((pid, i) => `${i === 0 ? 'master' : i === pids.length - 1 ? 'ingress' : `tier${i - 1}`} ${perPidMiB[pid] ?? '?'}`).join(', ');
}

interface Measured {
  perS: number;
  ms: number;
  /** CLOCK_MONOTONIC µs of the measured window (what `cpuprofile-top --from/--to` take). */
  monoUs: [number, number];
  /** CPU ms per 1,000 notifications: the consuming process(es), the broker (RabbitMQ or Redis), the merchant. */
  cpuPer1k: { consumer: number; broker: number; merchant: number; tier0?: number };
}

const BEAM = (): number[] => pidsByComm('beam.smp');

function per1k(cpu: Record<string, number>, n: number): Measured['cpuPer1k'] {
  const f = (x: number | undefined): number => round(((x ?? 0) * 1000) / n, 1);
  return { consumer: f(cpu.consumer), broker: f(cpu.broker), merchant: f(cpu.merchant), ...(cpu.tier0 !== undefined ? { tier0: f(cpu.tier0) } : {}) };
}

const monoUs = (): number => Number(process.hrtime.bigint() / 1000n);

/** Waits until `queue` holds `n` ready messages (quorum queue counts can trail the confirms a little). */
async function waitDepth(queue: string, n: number): Promise<void> {
  await waitFor(async () => (await queueInfo(AMQP_URL, queue)).messageCount >= n, 30_000, `${queue} to hold ${n}`, 100);
}

/** Throughput of the daemon's tier 0: preload while paused, resume, stop the clock at the merchant's N-th request. */
async function daemonThroughput(
  daemon: { d: DaemonProcess; prefix: string; pids: () => number[]; status: () => Promise<Status> },
  merchant: MerchantProcess,
  n: number,
  label: string,
): Promise<Measured & { pssPeakMiB: number; pssPerPid: Record<number, number> }> {
  const names = namesFor(daemon.prefix);
  const q0 = names.workQueue(0);
  const p = await daemon.d.admin('POST', '/admin/tiers/0/pause');
  if (p.status !== 200) throw new Error(`pause answered ${p.status}`);
  await waitFor(async () => (await queueInfo(AMQP_URL, q0)).consumerCount === 0, 10_000, 'tier 0 consumer cancelled');
  await preloadTier0(AMQP_URL, daemon.prefix, n, (id) => `${merchant.base}/n/${id}`, label);
  await waitDepth(q0, n);
  const tier0Pid = (await daemon.status()).tiers[0]?.pid;
  const sampler = new PssSampler(daemon.pids, 200).start();
  const measured = await timeUntilSeen(merchant, n, { consumer: daemon.pids(), tier0: tier0Pid ? [tier0Pid] : [], broker: BEAM() }, async () => {
    const r = await daemon.d.admin('POST', '/admin/tiers/0/resume');
    if (r.status !== 200) throw new Error(`resume answered ${r.status}`);
  });
  const pss = await sampler.stop();
  return { ...measured, pssPeakMiB: pss.peakMiB, pssPerPid: pss.perPid };
}

/**
 * The measured window of every throughput run: arm the merchant's watch for
 * `n` more requests, start the CPU meter (`groups` plus the merchant), call
 * `go`, stop the clock when the merchant has seen them all.
 */
async function timeUntilSeen(merchant: MerchantProcess, n: number, groups: Record<string, readonly number[]>, go: () => Promise<void>): Promise<Measured> {
  const base = await merchant.count();
  const reached = merchant.watch(base + n, Math.max(120_000, n * 5));
  const cpu = new CpuMeter({ ...groups, merchant: [merchant.pid!] }).start();
  const m0 = monoUs();
  const t0 = Date.now();
  await go();
  const { at } = await reached;
  const m1 = monoUs();
  const used = cpu.stop();
  const ms = at - t0;
  return { perS: (n / ms) * 1000, ms, monoUs: [m0, m1], cpuPer1k: per1k(used, n) };
}

async function ceilingThroughput(prefix: string, merchant: MerchantProcess, n: number, flags: Flags, label: string, tuned: { prefetch: number; batchAcks: boolean } | null = null): Promise<Measured> {
  const names = namesFor(prefix);
  await preloadTier0(AMQP_URL, prefix, n, (id) => `${merchant.base}/n/${id}`, label);
  await waitDepth(names.workQueue(0), n);
  const execArgv = flags.cpuProf ? ['--cpu-prof', `--cpu-prof-dir=${flags.cpuProf}`] : [];
  const c = await CeilingProcess.start(
    {
      amqpUrl: AMQP_URL,
      queue: names.workQueue(0),
      retryQueue: names.waitQueue(1),
      retryDelayMs: parseSchedule(DEFAULT_SCHEDULE)[1]!,
      prefetch: tuned?.prefetch ?? flags.concurrency,
      connections: flags.connections,
      batchAcks: tuned?.batchAcks ?? false,
    },
    execArgv,
  );
  try {
    return await timeUntilSeen(merchant, n, { consumer: [c.pid!], broker: BEAM() }, () => c.go());
  } finally {
    await c.stop().catch((e: unknown) => log(`ceiling stop: ${String(e)}`));
  }
}

async function bullmqThroughput(merchant: MerchantProcess, n: number, label: string, flags: Flags): Promise<Measured> {
  const q = new BullmqQueue();
  try {
    const now = Date.now();
    function* notes(): Generator<ReturnType<typeof makeNotification>> {
      for (let i = 0; i < n; i++) {
        const id = `${label}-${i}`;
        yield makeNotification(id, `${merchant.base}/n/${id}`, now);
      }
    }
    await q.addMany(notes(), flags.bullmqKeepCompleted);
    const w = await BullmqWorkerProcess.start({ prefix: q.prefix, concurrency: flags.concurrency, connections: flags.connections });
    try {
      return await timeUntilSeen(merchant, n, { consumer: [w.pid!], broker: pidsByComm('redis-server') }, () => w.go());
    } finally {
      await w.stop().catch((e: unknown) => log(`bullmq worker stop: ${String(e)}`));
    }
  } finally {
    await q.destroy();
  }
}

/** Upper bound (ms) of the histogram bucket holding the p-th percentile of `notify_schedule_lateness_seconds{tier}`. */
function histogramPercentileMs(metrics: string, tier: string, p: number): number | null {
  const re = /^notify_schedule_lateness_seconds_bucket\{([^}]*)\}\s+(\S+)$/gm;
  const buckets: { le: number; count: number }[] = [];
  for (let m; (m = re.exec(metrics)); ) {
    const labels = m[1]!;
    if (!new RegExp(`(^|,)tier="${tier}"(,|$)`).test(labels)) continue;
    const le = /le="([^"]+)"/.exec(labels)?.[1];
    if (!le) continue;
    buckets.push({ le: le === '+Inf' ? Infinity : Number(le), count: Number(m[2]) });
  }
  if (buckets.length === 0) return null;
  buckets.sort((a, b) => a.le - b.le);
  const total = buckets[buckets.length - 1]!.count;
  if (total === 0) return null;
  const want = (p / 100) * total;
  const b = buckets.find((x) => x.count >= want)!;
  return b.le === Infinity ? Infinity : b.le * 1000;
}

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
 * upper bound of "start − due". `consumers` are the pids doing tiers 0 and 1.
 */
async function retryPrecision(prefix: string, consumers: () => number[], flags: Flags, daemon: DaemonProcess | null): Promise<PrecisionResult> {
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
    const late = g.gapsMs.map((x) => x - delay1).sort((a, b) => a - b);
    // p99 per second of load (by when the notification was published): a
    // start-up transient and a steady backlog look different.
    const bySecond: number[][] = [];
    g.gapsMs.forEach((gap, i) => {
      const index = Number(g.keys[i]!.replace(/^m-/, ''));
      const sec = Math.floor((index - warm) / flags.rate);
      (bySecond[sec] ??= []).push(gap - delay1);
    });
    const p99BySecond = Array.from(bySecond, (xs) => (xs ? round(percentile(xs.sort((a, b) => a - b), 99)) : NaN));
    const metrics = daemon ? String((await daemon.admin<string>('GET', '/metrics')).body) : null;
    const pss = sampler ? await sampler.stop() : null;
    const maxDepth = await depths.stop();
    return {
      maxDepth: Object.fromEntries(Object.entries(maxDepth).map(([q, d]) => [q.slice(prefix.length + 1), d])),
      sent: total,
      publishRate: (total / publishMs) * 1000,
      attempt2Seen: g.gapsMs.length,
      missing: total - g.gapsMs.length,
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
      CeilingProcess.start({ amqpUrl: AMQP_URL, queue: names.workQueue(tier), retryQueue: names.waitQueue(tier + 1), retryDelayMs: schedule[tier + 1]!, prefetch: flags.concurrency, connections: flags.connections }),
    ),
  );
  try {
    await Promise.all(stages.map((c) => c.go()));
    return await retryPrecision(prefix, () => stages.map((c) => c.pid!), flags, null);
  } finally {
    for (const c of stages) await c.stop().catch((e: unknown) => log(`ceiling stop: ${String(e)}`));
  }
}

/** Largest number of ready messages (`messageCount` of a passive declare) seen per queue, sampled every 250 ms. */
class DepthSampler {
  private timer: NodeJS.Timeout | null = null;
  private conn: amqp.ChannelModel | null = null;
  private readonly max: Record<string, number> = {};
  private stopped: Promise<Record<string, number>> | null = null;

  constructor(private readonly queues: readonly string[]) {}

  start(): this {
    let busy = false;
    void amqp.connect(AMQP_URL).then(async (conn) => {
      this.conn = conn;
      conn.on('error', () => undefined);
      const ch = await conn.createChannel();
      ch.on('error', () => undefined);
      this.timer = setInterval(() => {
        if (busy) return;
        busy = true;
        void Promise.all(this.queues.map((q) => ch.checkQueue(q).then((r) => (this.max[q] = Math.max(this.max[q] ?? 0, r.messageCount)))))
          .catch(() => undefined)
          .finally(() => (busy = false));
      }, 250);
    });
    return this;
  }

  stop(): Promise<Record<string, number>> {
    this.stopped ??= (async () => {
      if (this.timer) clearInterval(this.timer);
      await this.conn?.close().catch(() => undefined);
      return { ...this.max };
    })();
    return this.stopped;
  }
}

/** Fills the wait queues of a long schedule with `m` notifications (spread over tiers 1..). */
async function fillPending(prefix: string, m: number, merchantBase: string): Promise<{ ms: number }> {
  const schedule = parseSchedule(PENDING_SCHEDULE);
  const names = namesFor(prefix);
  const tiers = schedule.map((d, i) => ({ d, i })).filter((x) => x.d > 0);
  const { ch, close } = await openConfirm(AMQP_URL, 'notifyd bench pending');
  const t0 = Date.now();
  try {
    const now = Date.now();
    const proto = makeNotification('pending-0', `${merchantBase}/n/pending-0`, now);
    let lastLog = Date.now();
    await publishMany(
      ch,
      m,
      (i) => {
        const t = tiers[i % tiers.length]!;
        const id = `pending-${i}`;
        const note = { ...proto, id, url: `${merchantBase}/n/${id}` };
        if (Date.now() - lastLog > 10_000) {
          lastLog = Date.now();
          log(`pending: ${i}/${m} published`);
        }
        return {
          exchange: '',
          routingKey: names.waitQueue(t.i),
          content: encodeNotification(note),
          options: {
            messageId: id,
            persistent: true,
            mandatory: true,
            contentType: 'application/json',
            headers: { [H.attempt]: t.i, [H.firstAttemptAt]: now, [H.dueAt]: now + t.d, [H.lastError]: 'status 500' },
          },
        };
      },
      5000,
    );
  } finally {
    await close();
  }
  return { ms: Date.now() - t0 };
}

function table(rows: (string | number)[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => String(r[i] ?? '').length)));
  return rows.map((r) => r.map((c, i) => (i === 0 ? String(c).padEnd(widths[i]!) : String(c).padStart(widths[i]!))).join('  ')).join('\n');
}

function resultsDir(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  const root = here.endsWith('/dist/bench') ? resolve(here, '..', '..') : resolve(here, '..');
  return resolve(root, 'bench', 'results');
}

async function main(): Promise<void> {
  const flags = parseFlags();
  const started = Date.now();
  const loadStart = loadavg();
  if (loadStart[0]! > 0.5 * cpus().length) log(`warning: load average ${loadStart[0]!.toFixed(2)} on ${cpus().length} cores: other work shares this machine, numbers will be noisy`);
  if (flags.cpuProf) mkdirSync(flags.cpuProf, { recursive: true });
  // Fail fast with a clear line when the broker is down.
  try {
    const c = await amqp.connect(AMQP_URL);
    await c.close();
  } catch (err) {
    throw new Error(`RabbitMQ is not reachable at ${AMQP_URL.replace(/:[^:@/]*@/, ':***@')}: ${(err as Error).message}`);
  }
  const res = new Resources(flags.queueType);
  let interrupted = false;
  const onSignal = (): void => {
    if (interrupted) process.exit(130);
    interrupted = true;
    log('interrupted: cleaning up (again to force)');
    void res.cleanup().finally(() => process.exit(130));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  // Output piped into `head` that exits: without this the EPIPE kills the bench
  // and leaves the daemon and its queues behind.
  let outputGone = false;
  for (const stream of [process.stdout, process.stderr]) {
    stream.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code !== 'EPIPE') throw err;
      if (outputGone) return;
      outputGone = true;
      interrupted = true;
      void res.cleanup().finally(() => process.exit(141));
    });
  }

  try {
    for (let i = 0; i < flags.cpuHog; i++) {
      // Spins until killed, and exits by itself once orphaned (a killed bench
      // must not leave it burning): the parent's pid comes in argv, so a bench
      // gone before the hog started is noticed too.
      const hog = spawn(process.execPath, ['-e', 'const p = Number(process.argv[1]); for (;;) { for (let i = 0; i < 1e7; i++); if (process.ppid !== p) process.exit(0); }', String(process.pid)], { stdio: 'ignore' });
      hog.on('error', (err) => log(`cpu hog: ${err.message}`));
      res.stops.push(async () => {
        hog.kill('SIGKILL');
      });
    }
    if (flags.cpuHog > 0) log(`${flags.cpuHog} CPU hog process(es) spinning for the whole bench`);
    const merchant = await MerchantProcess.start({ latencyMs: flags.latencyMs, failureRatio: flags.failureRatio });
    res.stops.push(() => merchant.stop());
    log(`merchant at ${merchant.base} (pid ${merchant.pid})`);

    const daemon = await startDaemon(res, DEFAULT_SCHEDULE, flags, 'bench');
    const daemonPids = daemon.pids();
    log(`daemon ready, prefix ${daemon.prefix}, pids (master, tiers…, ingress) ${daemonPids.join(',')}`);

    const ceilingPrefix = uniquePrefix('ceiling');
    res.prefixes.push({ prefix: ceilingPrefix, schedule: DEFAULT_SCHEDULE });
    {
      const conn = await amqp.connect(AMQP_URL);
      const ch = await conn.createChannel();
      await declareTopology(ch, buildTopology(ceilingPrefix, parseSchedule(DEFAULT_SCHEDULE), flags.queueType));
      await conn.close();
    }

    const redis = !flags.skipBullmq && (await bullmqAvailable());
    const bullNote = flags.skipBullmq ? 'skipped (--skip-bullmq)' : redis ? null : 'skipped: Redis does not answer on 127.0.0.1:6379';
    if (bullNote) log(`BullMQ ${bullNote}`);

    const laterTiers = parseSchedule(DEFAULT_SCHEDULE).map((_, i) => i).filter((i) => i > 0);
    if (flags.failureRatio > 0) {
      // Failed first attempts come back after 1 s; keep them away from the merchant's count.
      for (const i of laterTiers) await daemon.d.admin('POST', `/admin/tiers/${i}/pause`);
    }

    // Warm-up: JIT, keep-alive pools and the broker's quorum machinery, so run 1 is not penalised.
    const warm = Math.min(2000, flags.n);
    log(`warm-up with ${warm} notifications`);
    await daemonThroughput(daemon, merchant, warm, 'warm-d');
    await ceilingThroughput(ceilingPrefix, merchant, warm, { ...flags, cpuProf: null }, 'warm-c');

    const runs: { daemon: Measured; ceiling: Measured; bullmq: Measured | null; tuned: Measured | null; ratio: number; bullRatio: number | null; pssMiB: number; pssPerPid: Record<number, number> }[] = [];
    for (let r = 0; r < flags.runs; r++) {
      // Alternate the order so drift on the shared machine does not favour one side.
      const order = r % 2 === 0 ? (['daemon', 'ceiling', 'bullmq', 'tuned'] as const) : (['tuned', 'ceiling', 'bullmq', 'daemon'] as const);
      let dm: Awaited<ReturnType<typeof daemonThroughput>> | null = null;
      let cm: Measured | null = null;
      let bm: Measured | null = null;
      let tm: Measured | null = null;
      for (const what of order) {
        if (what === 'daemon') {
          dm = await daemonThroughput(daemon, merchant, flags.n, `d${r}`);
          log(`run ${r + 1}: daemon  ${round(dm.perS)}/s (${dm.ms} ms), peak PSS ${round(dm.pssPeakMiB, 1)} MiB${flags.cpuProf ? `, window --from ${dm.monoUs[0]} --to ${dm.monoUs[1]}` : ''}`);
        } else if (what === 'ceiling') {
          cm = await ceilingThroughput(ceilingPrefix, merchant, flags.n, flags, `c${r}`);
          log(`run ${r + 1}: ceiling ${round(cm.perS)}/s (${cm.ms} ms)${flags.cpuProf ? `, window --from ${cm.monoUs[0]} --to ${cm.monoUs[1]}` : ''}`);
        } else if (what === 'tuned') {
          if (flags.tunedPrefetch > 0) {
            tm = await ceilingThroughput(ceilingPrefix, merchant, flags.n, flags, `t${r}`, { prefetch: flags.tunedPrefetch, batchAcks: flags.tunedBatchAcks });
            log(`run ${r + 1}: tuned loop (${flags.tunedBatchAcks ? 'batched' : 'single'} acks, prefetch ${flags.tunedPrefetch}) ${round(tm.perS)}/s (${tm.ms} ms)`);
          }
        } else if (redis) {
          bm = await bullmqThroughput(merchant, flags.n, `b${r}`, flags);
          log(`run ${r + 1}: bullmq  ${round(bm.perS)}/s (${bm.ms} ms)`);
        }
      }
      runs.push({
        daemon: dm!,
        ceiling: cm!,
        bullmq: bm,
        tuned: tm,
        ratio: dm!.perS / cm!.perS,
        bullRatio: bm ? bm.perS / cm!.perS : null,
        pssMiB: dm!.pssPeakMiB,
        pssPerPid: dm!.pssPerPid,
      });
    }

    if (flags.failureRatio > 0) for (const i of laterTiers) await daemon.d.admin('POST', `/admin/tiers/${i}/resume`);

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
            const p = await retryPrecision(daemon.prefix, daemon.pids, flags, daemon.d);
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

    await daemon.d.stop(40_000);

    /** One side of the fill: median PSS peak and rate of its throughput runs, then idle PSS. */
    interface PendingSide {
      peak: number;
      peaks: number[];
      perS: number;
      idleMiB: number;
    }
    let pending: { m: number; fillMs: number; freshMiB: number; control: PendingSide; filled: PendingSide } | null = null;
    if (flags.pending > 0) {
      const pd = await startDaemon(res, PENDING_SCHEDULE, flags, 'pending');
      log(`pending: daemon ${pd.prefix} (schedule ${PENDING_SCHEDULE}); filling ${flags.pending} notifications into its wait queues`);
      await daemonThroughput(pd, merchant, Math.min(2000, flags.n), 'pwarm');
      const fresh = await daemonThroughput(pd, merchant, flags.n, 'pfresh');
      log(`pending: PSS under load ${round(fresh.pssPeakMiB, 1)} MiB fresh; idle ${PENDING_CONTROL_IDLE_MS / 1000} s, then the control runs`);
      await sleep(PENDING_CONTROL_IDLE_MS);
      const side = async (label: string, what: string): Promise<PendingSide> => {
        const rs: Awaited<ReturnType<typeof daemonThroughput>>[] = [];
        for (let i = 0; i < PENDING_LOAD_RUNS; i++) rs.push(await daemonThroughput(pd, merchant, flags.n, `${label}${i}`));
        const peaks = rs.map((r) => round(r.pssPeakMiB, 1));
        const peak = median(rs.map((r) => r.pssPeakMiB));
        log(`pending: PSS under load, median of ${PENDING_LOAD_RUNS}: ${round(peak, 1)} MiB ${what} (runs ${peaks.join(', ')})`);
        await sleep(PENDING_CONTROL_IDLE_MS);
        const idle = await pssSumMiB(pd.pids());
        log(`pending: idle PSS ${round(idle.mib, 1)} MiB ${what} (${byRole(pd.pids(), idle.perPid)})`);
        return { peak, peaks, perS: median(rs.map((r) => r.perS)), idleMiB: idle.mib };
      };
      const control = await side('pbefore', 'nothing pending (the control)');
      const fill = await fillPending(pd.prefix, flags.pending, merchant.base);
      log(`pending: filled in ${round(fill.ms / 1000, 1)} s`);
      const filled = await side('pafter', `with ${flags.pending} pending`);
      pending = { m: flags.pending, fillMs: fill.ms, freshMiB: fresh.pssPeakMiB, control, filled };
      await pd.d.stop(40_000);
    }

    const ratio = median(runs.map((r) => r.ratio));
    const bullRatios = runs.map((r) => r.bullRatio).filter((x): x is number => x !== null);
    const delivered = median(runs.map((r) => r.daemon.perS));
    const ceiling = median(runs.map((r) => r.ceiling.perS));
    const bull = bullRatios.length ? median(runs.map((r) => r.bullmq!.perS)) : null;
    const pssMiB = Math.max(...runs.map((r) => r.pssMiB));
    // Each run measures both back to back under the same load, so the paired ratio is quoted too.
    const vsBullRuns = runs.filter((r) => r.bullmq).map((r) => r.daemon.perS / r.bullmq!.perS);

    const rows: (string | number)[][] = [['', 'notifyd tier 0', 'ceiling', 'BullMQ', 'notifyd/ceiling', 'BullMQ/ceiling']];
    runs.forEach((r, i) =>
      rows.push([`run ${i + 1} (/s)`, round(r.daemon.perS), round(r.ceiling.perS), r.bullmq ? round(r.bullmq.perS) : '-', round(r.ratio, 3), r.bullRatio === null ? '-' : round(r.bullRatio, 3)]),
    );
    if (runs.length > 1) rows.push(['median (/s)', round(delivered), round(ceiling), bull === null ? '-' : round(bull), round(ratio, 3), bullRatios.length ? round(median(bullRatios), 3) : '-']);
    process.stdout.write(`\nthroughput: ${flags.n} notifications preloaded in tier 0, merchant answers after ${flags.latencyMs} ms${flags.failureRatio > 0 ? `, ${flags.failureRatio * 100}% 500s (handed on to P.wait.1)` : ''}, daemon log level ${flags.logLevel}, ${flags.queueType} queues, concurrency ${flags.concurrency} (notifyd's prefetch; the ceiling's prefetch and BullMQ's concurrency alike), ${flags.connections} connections to the merchant each${flags.cpuHog > 0 ? `, ${flags.cpuHog} CPU hog process(es) spinning` : ''}\n`);
    process.stdout.write(`${table(rows)}\n`);
    if (bullNote) process.stdout.write(`BullMQ: ${bullNote}\n`);
    if (bull !== null) {
      process.stdout.write(`notifyd/BullMQ: ${round(delivered / bull, 2)}x (medians); per run ${vsBullRuns.map((x) => round(x, 2)).join(', ')}, median ${round(median(vsBullRuns), 2)}x\n`);
    }
    const tunedMed = flags.tunedPrefetch > 0 ? median(runs.map((r) => r.tuned!.perS)) : null;
    if (tunedMed !== null) process.stdout.write(`tuned loop (${flags.tunedBatchAcks ? 'one multiple ack per turn' : 'single acks'}, prefetch ${flags.tunedPrefetch}): ${round(tunedMed)}/s = ${round(median(runs.map((r) => r.tuned!.perS / r.ceiling.perS)), 3)}x the ceiling\n`);
    const medCpu = (pick: (r: (typeof runs)[number]) => Measured | null, k: keyof Measured['cpuPer1k']): string | number => {
      const xs = runs.map(pick).filter((m): m is Measured => m !== null).map((m) => m.cpuPer1k[k]).filter((x): x is number => x !== undefined);
      return xs.length ? round(median(xs)) : '-';
    };
    const cpuRows: (string | number)[][] = [['CPU ms per 1,000 notifications (median)', 'notifyd (all processes)', 'ceiling', 'BullMQ worker']];
    cpuRows.push(['consumer', medCpu((r) => r.daemon, 'consumer'), medCpu((r) => r.ceiling, 'consumer'), medCpu((r) => r.bullmq, 'consumer')]);
    cpuRows.push(['  of which tier 0 (the one consuming)', medCpu((r) => r.daemon, 'tier0'), '-', '-']);
    cpuRows.push(['broker (RabbitMQ / Redis for BullMQ)', medCpu((r) => r.daemon, 'broker'), medCpu((r) => r.ceiling, 'broker'), medCpu((r) => r.bullmq, 'broker')]);
    cpuRows.push(['merchant', medCpu((r) => r.daemon, 'merchant'), medCpu((r) => r.ceiling, 'merchant'), medCpu((r) => r.bullmq, 'merchant')]);
    process.stdout.write(`\n${table(cpuRows)}\n`);
    const mem: (string | number)[][] = [['memory (sum of PSS, master + all workers)', 'MiB']];
    mem.push(['peak during throughput (6 tiers)', round(pssMiB, 1)]);
    if (precision?.pssPeakMiB) mem.push([`peak during retry precision`, round(precision.pssPeakMiB, 1)]);
    if (pending) {
      mem.push([`peak during throughput, schedule ${PENDING_SCHEDULE}, fresh daemon, nothing pending`, round(pending.freshMiB, 1)]);
      mem.push([`peak during throughput ${PENDING_CONTROL_IDLE_MS / 1000} s later, nothing pending (the control; median of ${PENDING_LOAD_RUNS})`, round(pending.control.peak, 1)]);
      mem.push([`idle ${PENDING_CONTROL_IDLE_MS / 1000} s after those runs, nothing pending`, round(pending.control.idleMiB, 1)]);
      mem.push([`peak during throughput with ${pending.m} pending (median of ${PENDING_LOAD_RUNS})`, round(pending.filled.peak, 1)]);
      mem.push([`idle ${PENDING_CONTROL_IDLE_MS / 1000} s after those runs, ${pending.m} pending`, round(pending.filled.idleMiB, 1)]);
    }
    process.stdout.write(`\n${table(mem)}\n`);
    if (precision) {
      const lat: (string | number)[][] = [[`retry precision, ${flags.rate}/s for ${flags.seconds}s (after ${flags.precisionWarmup}s warm-up)${flags.cpuHog > 0 ? `, ${flags.cpuHog} CPU hog(s)` : ''}: lateness of attempt 2 (ms)`, 'p50', 'p99', 'max', 'seen', 'CPU ms/1k (tiers 0+1, broker)']];
      for (const [name, p] of [['notifyd', precision], ['hand-written tier 0 + tier 1 loops', precisionCeiling]] as const) {
        if (!p) continue;
        lat.push([name, round(p.p50, 1), round(p.p99, 1), round(p.max, 1), `${p.attempt2Seen}/${p.sent}`, `${round(p.cpuPer1k.consumer)}, ${round(p.cpuPer1k.broker)}`]);
      }
      if (precisionRuns.length > 1) {
        const p99s = (rs: readonly PrecisionResult[]): string => rs.map((p) => round(p.p99)).join(', ');
        lat.push([`(the median of ${precisionRuns.length} runs by p99; p99 of every run: notifyd ${p99s(precisionRuns)}; loops ${p99s(precisionCeilingRuns)})`, '', '', '', '', '']);
      }
      process.stdout.write(`\n${table(lat)}\n(at the merchant: arrival of attempt 2 − arrival of attempt 1 − ${parseSchedule(DEFAULT_SCHEDULE)[1]} ms; notifyd's own histogram puts its p99 in the bucket ≤ ${precision.histP99Tier1Ms} ms)\n`);
      const depth = (p: PrecisionResult): string => Object.entries(p.maxDepth).map(([q, d]) => `${q} ${d}`).join(', ');
      process.stdout.write(`warm-up p99 (cold tiers settling, not counted): notifyd ${round(precision.warmupP99)} ms${precisionCeiling ? `; loops ${round(precisionCeiling.warmupP99)} ms` : ''}\n`);
      process.stdout.write(`p99 per second of load: notifyd ${precision.p99BySecond.join(' ')}${precisionCeiling ? `; loops ${precisionCeiling.p99BySecond.join(' ')}` : ''}\n`);
      process.stdout.write(`most messages ready: notifyd ${depth(precision)}${precisionCeiling ? `; loops ${depth(precisionCeiling)}` : ''}\n`);
    }

    const out = {
      delivered_per_s: round(delivered),
      ceiling_per_s: round(ceiling),
      ratio: round(ratio, 3),
      bullmq_per_s: bull === null ? null : round(bull),
      bullmq_ratio: bullRatios.length ? round(median(bullRatios), 3) : null,
      notifyd_vs_bullmq: bull === null ? null : round(delivered / bull, 3),
      notifyd_vs_bullmq_paired: vsBullRuns.length ? round(median(vsBullRuns), 3) : null,
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
      pss_mb: round(pssMiB, 1),
      pss_precision_mb: precision?.pssPeakMiB ? round(precision.pssPeakMiB, 1) : null,
      pss_pending_mb: pending ? round(pending.filled.peak, 1) : null,
      pss_pending_idle_mb: pending ? round(pending.filled.idleMiB, 1) : null,
      pss_idle_mb: pending ? round(pending.control.idleMiB, 1) : null,
      pss_pending_control_mb: pending ? round(pending.control.peak, 1) : null,
      pss_pending_fresh_mb: pending ? round(pending.freshMiB, 1) : null,
      pss_pending_runs_mb: pending ? pending.filled.peaks : null,
      pss_pending_control_runs_mb: pending ? pending.control.peaks : null,
      pending_control_delivered_per_s: pending ? round(pending.control.perS) : null,
      pending: pending ? pending.m : 0,
      pending_fill_s: pending ? round(pending.fillMs / 1000, 1) : null,
      pending_delivered_per_s: pending ? round(pending.filled.perS) : null,
      n: flags.n,
      runs: flags.runs,
      per_run: runs.map((r) => ({
        delivered_per_s: round(r.daemon.perS),
        ceiling_per_s: round(r.ceiling.perS),
        bullmq_per_s: r.bullmq ? round(r.bullmq.perS) : null,
        ratio: round(r.ratio, 3),
        bullmq_ratio: r.bullRatio === null ? null : round(r.bullRatio, 3),
        pss_mb: round(r.pssMiB, 1),
        cpu_ms_per_1k: { notifyd: r.daemon.cpuPer1k, ceiling: r.ceiling.cpuPer1k, bullmq: r.bullmq?.cpuPer1k ?? null, ...(r.tuned ? { tuned: r.tuned.cpuPer1k } : {}) },
        ...(r.tuned ? { tuned_per_s: round(r.tuned.perS) } : {}),
        ...(flags.cpuProf ? { daemon_window_us: r.daemon.monoUs, ceiling_window_us: r.ceiling.monoUs } : {}),
      })),
      ...(flags.cpuProf ? { cpu_prof_dir: flags.cpuProf, daemon_pids: daemonPids } : {}),
      rate: flags.rate,
      seconds: flags.seconds,
      precision_warmup_s: flags.precisionWarmup,
      log_level: flags.logLevel,
      merchant_latency_ms: flags.latencyMs,
      merchant_failure_ratio: flags.failureRatio,
      queue_type: flags.queueType,
      daemon_env: flags.daemonEnv,
      concurrency: flags.concurrency,
      connections: flags.connections,
      cpu_hog: flags.cpuHog,
      bullmq_note: bullNote,
      bullmq_keep_completed: flags.bullmqKeepCompleted,
      node: process.version,
      loadavg_start: loadStart.map((x) => round(x, 2)),
      loadavg_end: loadavg().map((x) => round(x, 2)),
      at: new Date(started).toISOString(),
      bench_s: round((Date.now() - started) / 1000, 1),
    };
    const dir = resultsDir();
    mkdirSync(dir, { recursive: true });
    const file = resolve(dir, `${new Date(started).toISOString().replace(/:/g, '-')}.json`);
    writeFileSync(file, `${JSON.stringify(out, null, 2)}\n`);
    process.stdout.write(`\nresults: ${file}\n${JSON.stringify(out)}\n`);
  } finally {
    await res.cleanup();
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`bench failed: ${(err as Error)?.stack ?? String(err)}\n`);
    process.exit(1);
  },
);
