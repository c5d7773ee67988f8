/**
 * What every bench scenario (bench/scenarios/*.ts) shares: the flags, the log,
 * the registry of what has to be cleaned up, starting the real daemon on a
 * fresh prefix and measuring it, and the context and report types a scenario
 * takes and returns. bench/bench.ts sets the context up and runs the scenarios.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import amqp from 'amqplib';
import { loadConfig } from '../src/core/config.js';
import { namesFor } from '../src/broker/topology.js';
import { preloadTier0, queueInfo, round } from './bench-util.js';
import { CpuMeter, pidsByComm } from './cpu.js';
import { AMQP_URL, DaemonProcess, deletePrefix, uniquePrefix, waitFor } from './daemon-process.js';
import type { MerchantProcess } from './merchant-process.js';
import { PssSampler } from './pss.js';

export const USAGE = `npm run bench -- [options]

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
                     (node --cpu-prof) into DIR; prints each window for bench/cpuprofile-top.ts;
                     BENCH_CPU_PROF_INTERVAL_US=N samples the daemon every N µs (default 500)
                     BENCH_CPU_PROF_ONLY=ROLE profiles one daemon process alone (tier1, tier0, master, ingress)
  --tuned-ceiling P[,single]  also run the loop with prefetch P and one 'multiple' ack per
                     event-loop turn (',single': acks one by one) — what a tuned tier worker could
                     reach; reported apart, not in the ratio
  --bullmq-keep-completed  keep completed BullMQ jobs (BullMQ's default) instead of removing them as an ack does
  --daemon-env K=V   extra NOTIFY_* variable for the daemon (repeatable), e.g. NOTIFY_DELIVERY_CONCURRENCY=128
  --cpu-hog N        keep N extra processes spinning on the CPU for the whole bench: a noisy
                     neighbour on the shared VM, the same for every engine (default 0)
  --bad-merchant M[,M…]  origin isolation: the healthy merchant's deliveries/s beside a bad one, as a
                     ratio to a control run (the bad share to a second healthy merchant), and its
                     latency at a steady rate; M = hang, blackhole, slow, refused, dns or all. Each run also
                     counts the deferrals, skipped attempts and failed attempts handed on, all tiers, within
                     its window: each is a publish into a wait, hold or dead queue, dearer to the broker
                     than a delivery
  --bad-share P[,P]  percent of the notifications for the bad merchant (default 10)
  --isolation-n N    notifications preloaded per isolation run (default 20000)
  --isolation-runs K repeat each share's control and bad runs K times, the modes' order turning
                     each round; ratios against the control of the same round, reported with
                     their median and range when K > 1, and then also against the mean of
                     that control and the next round's (a closing control follows the last
                     round) (default 1)
  --broker-probe     each isolation run also asks tier 0's quorum queue, every 50 ms, for its ready
                     messages and its consumers' unsettled deliveries and credit (bench/broker-probe.erl
                     through rabbitmqctl eval, run as root or rabbitmq on the broker's host; quorum
                     queues only): how often the lane's window was full, what moved lanes held, how
                     long the queue took to answer. The probe's CPU is the broker's, in its figures
  --isolation-rate R --isolation-seconds S  the steady part of each isolation run (default 2000/s, 5 s)
  --origins K        also spread --origins-n notifications over K origins against one (e.g. 10000)
  --origins-n N      notifications of the many-origins runs (default 40000)
  --origin-addresses  each of the K origins on a loopback address of its own (127.1.x.y; the merchant
                     then listens on 0.0.0.0), so none share connections; by default every origin's
                     name resolves to 127.0.0.1, one host serving them all (shared connections)
  --registry         throughput with a registered merchant on every notification (PostgreSQL) against
                     the same without one (daemon-wide secret), --runs pairs
  --history          throughput with the delivery history on against off (same database), --runs pairs,
                     and the recorder's lag at --rate and at half the measured throughput (--seconds each)
  --cold             cold retry tiers (issue 18): a fresh daemon per run, tier 0 warm, tier 1 idle since
                     start, fail-once load; retry lateness per second of load beside the bare TTL +
                     dead-letter mechanism at the same rate, at shares of the measured retry ceiling
  --cold-shares P[,P]  percent of the retry ceiling to load with (default 25,50)
  --cold-runs K      runs per share, notifyd and the bare mechanism in turn (default 3)
  --cold-seconds S   seconds of retry load per run (default 10)   --cold-warm W  tier-0 warm-up, s (default 3)
  --cold-n N         fail-once notifications for the retry ceiling (default 20000)
  --cold-ceiling R   take R/s as the retry ceiling instead of measuring it
  --cold-idle S      seconds the fresh daemon idles before its tier-0 warm-up (default 0): long enough
                     (120 or more) for what a quiet hour does to the idle tier 1 to have happened (V8's
                     memory reducer, the young generation's shrink, the machine's charge for idle pages,
                     which each run prints as 64 MiB of the bench's own touched again after the idle)
  --cold-compare     also run the daemon with its tier warm-up off (NOTIFY_DELIVERY_WARM_UP=0) in turn
  --cold-loops       also run the ceiling's hand-written loops under the same load, in turn
  --ingress          ingress requests/s (POST /v1/notifications, tier 0 paused so only the ingress and the
                     broker work), rounds alternating between this build and --ingress-baseline
  --ingress-baseline DIR  another checkout, built (npm ci && npm run build), measured in turn with this one
                     (or with the --ingress-build checkout)
  --ingress-build DIR  measure that checkout (built) in this one's place, e.g. a commit against its parent,
                     or a build against itself (A/A: the bench's own spread); results name both commits
  --ingress-rounds K --ingress-seconds S --ingress-inflight C  (default 6 rounds of 5 s, 64 requests in flight)
  --idle             an idle daemon's CPU ms/s and event-loop wake-ups/s, all processes, after it settled
  --idle-baseline DIR  another checkout, built, idling beside this one over the same window (ratios)
  --idle-seconds S   seconds measured (default 30)
  --skip-bullmq      --skip-precision      --skip-throughput      --echo (daemon logs to stdout)`;

/** How a bad merchant misbehaves in `--bad-merchant`. */
export const BAD_MODES = ['hang', 'blackhole', 'slow', 'refused', 'dns'] as const;
export type BadMode = (typeof BAD_MODES)[number];

/** `hang,slow` or `all` → modes. */
function parseModes(text: string | undefined): BadMode[] {
  if (text === undefined) return [];
  if (text === 'all') return [...BAD_MODES];
  return text.split(',').map((m) => {
    if (!(BAD_MODES as readonly string[]).includes(m)) throw new Error(`--bad-merchant: ${m} is not one of ${BAD_MODES.join(', ')}, all`);
    return m as BadMode;
  });
}

/** The schedule of the shared daemon and the ceiling's topology (config/default.json's). */
export const DEFAULT_SCHEDULE = 'default';

export interface Flags {
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
  /** `--broker-probe`: sample tier 0's queue from inside the broker during isolation runs (bench/broker-probe.ts). */
  brokerProbe: boolean;
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
  /** The daemon's `delivery.delayFromStart`: the loops count a retry's delay as it does. */
  delayFromStartMs: number;
  cpuHog: number;
  skipThroughput: boolean;
  badModes: BadMode[];
  badShares: number[];
  isolationN: number;
  isolationRate: number;
  isolationSeconds: number;
  /** `--isolation-runs`: rounds of control + bad runs per share (single runs of one build ranged 0.53–1.24× at stop 20). */
  isolationRuns: number;
  origins: number;
  originsN: number;
  /** Each origin on an address of its own, rather than every name on 127.0.0.1. */
  originAddresses: boolean;
  registry: boolean;
  history: boolean;
  cold: boolean;
  coldShares: number[];
  coldRuns: number;
  coldSeconds: number;
  coldWarm: number;
  /** `--cold-idle`: seconds the daemon idles before the load's tier-0 warm-up. */
  coldIdle: number;
  coldN: number;
  /** 0: measure it. */
  coldCeiling: number;
  coldCompare: boolean;
  /** `--cold-loops`: the hand-written loops under the cold load too (what the machine allows any consumer). */
  coldLoops: boolean;
  ingress: boolean;
  /** A built checkout whose daemon the ingress rounds alternate with, or null. */
  ingressBaseline: string | null;
  /** Measure an idle daemon's CPU and wake-ups (`--idle`). */
  idle: boolean;
  /** A built checkout idling beside this one (`--idle-baseline`); null: none. */
  idleBaseline: string | null;
  /** Seconds the idle daemons are measured. */
  idleSeconds: number;
  /** A built checkout measured in place of this one (`--ingress-build`); null: this checkout. */
  ingressBuild: string | null;
  ingressRounds: number;
  ingressSeconds: number;
  ingressInflight: number;
}

/** The command line (`--help` prints USAGE and exits). */
export function parseFlags(): Flags {
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
      'broker-probe': { type: 'boolean' },
      'skip-bullmq': { type: 'boolean' },
      'bullmq-keep-completed': { type: 'boolean' },
      'tuned-ceiling': { type: 'string' },
      'skip-precision': { type: 'boolean' },
      'precision-warmup': { type: 'string' },
      'precision-runs': { type: 'string' },
      echo: { type: 'boolean' },
      'daemon-env': { type: 'string', multiple: true },
      'cpu-hog': { type: 'string' },
      'skip-throughput': { type: 'boolean' },
      'bad-merchant': { type: 'string' },
      'bad-share': { type: 'string' },
      'isolation-n': { type: 'string' },
      'isolation-rate': { type: 'string' },
      'isolation-seconds': { type: 'string' },
      'isolation-runs': { type: 'string' },
      origins: { type: 'string' },
      'origins-n': { type: 'string' },
      'origin-addresses': { type: 'boolean' },
      registry: { type: 'boolean' },
      history: { type: 'boolean' },
      cold: { type: 'boolean' },
      'cold-shares': { type: 'string' },
      'cold-runs': { type: 'string' },
      'cold-seconds': { type: 'string' },
      'cold-warm': { type: 'string' },
      'cold-idle': { type: 'string' },
      'cold-n': { type: 'string' },
      'cold-ceiling': { type: 'string' },
      'cold-compare': { type: 'boolean' },
      'cold-loops': { type: 'boolean' },
      ingress: { type: 'boolean' },
      'ingress-baseline': { type: 'string' },
      'ingress-build': { type: 'string' },
      'ingress-rounds': { type: 'string' },
      'ingress-seconds': { type: 'string' },
      'ingress-inflight': { type: 'string' },
      idle: { type: 'boolean' },
      'idle-baseline': { type: 'string' },
      'idle-seconds': { type: 'string' },
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
  // The probe asks a quorum queue's state machine; on a classic queue's process that call is foreign.
  if (values['broker-probe'] && ((values['queue-type'] ?? 'quorum') !== 'quorum' || (daemonEnv.NOTIFY_QUEUE_TYPE ?? 'quorum') !== 'quorum')) {
    throw new Error('--broker-probe probes quorum queues only');
  }
  // A build named for the ingress or idle bench without --ingress or --idle would be silently ignored.
  if (!values.ingress && (values['ingress-baseline'] !== undefined || values['ingress-build'] !== undefined)) {
    throw new Error('--ingress-baseline and --ingress-build need --ingress');
  }
  if (!values.idle && (values['idle-baseline'] !== undefined || values['idle-seconds'] !== undefined)) {
    throw new Error('--idle-baseline and --idle-seconds need --idle');
  }
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
    brokerProbe: values['broker-probe'] === true,
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
    skipThroughput: values['skip-throughput'] ?? false,
    badModes: parseModes(values['bad-merchant']),
    badShares: (values['bad-share'] ?? '10').split(',').map((x) => {
      const p = Number(x);
      if (!(p > 0 && p < 100)) throw new Error(`--bad-share takes percents between 0 and 100, not ${x}`);
      return p;
    }),
    isolationN: Math.max(100, Math.floor(num(values['isolation-n'], 20_000, 'isolation-n'))),
    isolationRate: Math.max(1, num(values['isolation-rate'], 2000, 'isolation-rate')),
    isolationSeconds: Math.max(1, num(values['isolation-seconds'], 5, 'isolation-seconds')),
    isolationRuns: ((k: number): number => {
      if (!Number.isInteger(k) || k < 1) throw new Error(`--isolation-runs takes a whole number of rounds, 1 or more, not ${values['isolation-runs']}`);
      return k;
    })(num(values['isolation-runs'], 1, 'isolation-runs')),
    origins: Math.floor(num(values.origins, 0, 'origins')),
    originsN: Math.max(100, Math.floor(num(values['origins-n'], 40_000, 'origins-n'))),
    originAddresses: values['origin-addresses'] ?? false,
    registry: values.registry ?? false,
    history: values.history ?? false,
    cold: values.cold ?? false,
    coldShares: (values['cold-shares'] ?? '25,50').split(',').map((x) => {
      const p = Number(x);
      if (!(p > 0 && p <= 100)) throw new Error(`--cold-shares takes percents between 0 and 100, not ${x}`);
      return p;
    }),
    coldRuns: Math.max(1, Math.round(num(values['cold-runs'], 3, 'cold-runs'))),
    coldSeconds: Math.max(1, Math.round(num(values['cold-seconds'], 10, 'cold-seconds'))),
    coldWarm: Math.max(1, num(values['cold-warm'], 3, 'cold-warm')),
    coldIdle: Math.max(0, num(values['cold-idle'], 0, 'cold-idle')),
    coldN: Math.max(1000, Math.floor(num(values['cold-n'], 20_000, 'cold-n'))),
    coldCeiling: num(values['cold-ceiling'], 0, 'cold-ceiling'),
    coldCompare: values['cold-compare'] ?? false,
    coldLoops: values['cold-loops'] ?? false,
    ingress: values.ingress ?? false,
    ingressBaseline: values['ingress-baseline'] ?? null,
    ingressBuild: values['ingress-build'] ?? null,
    ingressRounds: Math.max(1, Math.round(num(values['ingress-rounds'], 6, 'ingress-rounds'))),
    ingressSeconds: Math.max(1, num(values['ingress-seconds'], 5, 'ingress-seconds')),
    ingressInflight: Math.max(1, Math.round(num(values['ingress-inflight'], 64, 'ingress-inflight'))),
    idle: values.idle ?? false,
    idleBaseline: values['idle-baseline'] ?? null,
    idleSeconds: Math.max(5, num(values['idle-seconds'], 30, 'idle-seconds')),
  };
}

/** What the daemon will run with (config/default.json plus the `--daemon-env` overrides). */
function daemonDelivery(env: Record<string, string>): { concurrency: number; connections: number; delayFromStartMs: number } {
  let delivery;
  try {
    delivery = loadConfig({ configFile: null, env }).delivery;
  } catch (err) {
    throw new Error(`--daemon-env gives an invalid daemon config: ${(err as Error).message}`);
  }
  return { concurrency: delivery.concurrency, connections: delivery.connectionsPerOrigin, delayFromStartMs: delivery.delayFromStartMs };
}

/** Progress goes to stderr; stdout carries only the summary. */
export const log = (s: string): void => void process.stderr.write(`[bench] ${s}\n`);

/** Everything started, so a failure or Ctrl-C still cleans up. */
export class Resources {
  readonly daemons: { d: DaemonProcess; prefix: string; schedule: string }[] = [];
  /** Topologies declared by hand (no daemon): deleted on cleanup. */
  readonly prefixes: { prefix: string; schedule: string }[] = [];
  /** Run in reverse order on cleanup, before the daemons are stopped. */
  readonly stops: (() => Promise<unknown>)[] = [];
  private cleaned = false;

  constructor(private readonly queueType: 'quorum' | 'classic') {}

  /**
   * Stops a daemon and deletes its queues now rather than at cleanup: an idle
   * daemon left running takes CPU and wake-ups from the scenarios after it,
   * and shares file pages with their daemons, lowering their PSS.
   */
  async retire(d: DaemonProcess): Promise<void> {
    const i = this.daemons.findIndex((x) => x.d === d);
    if (i < 0) return;
    const { prefix, schedule } = this.daemons.splice(i, 1)[0]!;
    await d.stop(40_000).catch((e: unknown) => log(`daemon stop: ${String(e)}`));
    await deletePrefix(prefix, schedule, this.queueType).catch((e: unknown) => {
      log(`deletePrefix ${prefix}: ${String(e)}`);
      this.prefixes.push({ prefix, schedule });
    });
  }

  /** Retires every daemon still running (between scenarios). */
  async retireAll(): Promise<void> {
    for (const { d } of [...this.daemons]) await this.retire(d);
  }

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

interface TierStatus {
  index: number;
  state: string;
  pid: number | null;
}
export interface Status {
  tiers: TierStatus[];
  ingress: { pid: number | null };
}

/** A daemon started by `startDaemon`. */
export interface DaemonHandle {
  d: DaemonProcess;
  prefix: string;
  /** Master, tiers…, ingress, as they were once every worker ran. */
  pids: () => number[];
  status: () => Promise<Status>;
}

/**
 * A configuration file with the history off (`NOTIFY_CONFIG`), removed at
 * cleanup: a daemon with a database records everything unless told not to,
 * and a scenario that compares something else must not pay for it.
 */
export function historyOffConfig(res: Resources): string {
  const dir = mkdtempSync(join(tmpdir(), 'notifyd-bench-'));
  res.stops.push(async () => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'history-off.json');
  writeFileSync(file, JSON.stringify({ history: { enabled: false } }));
  return file;
}

/** The roles cpu-prof-preload.ts names its processes by (NOTIFYD_ROLE, with the tier's number). */
const CPU_PROF_ROLE = /^(master|ingress|recorder|tier\d+)$/;

/**
 * Starts the real daemon on a fresh prefix (registered in `res` for cleanup);
 * once it is ready, only its workers' warm-up lines are parsed from its stdout.
 */
export async function startDaemon({ res, flags }: { res: Resources; flags: Flags }, schedule: string, label: string, cliPath?: string): Promise<DaemonHandle> {
  const prefix = uniquePrefix(label);
  const env: Record<string, string> = { NOTIFY_LOG_LEVEL: flags.logLevel, NOTIFY_QUEUE_TYPE: flags.queueType, ...flags.daemonEnv };
  if (flags.cpuProf) {
    // node refuses --cpu-prof in NODE_OPTIONS; a preloaded inspector profiler does the same job in master and workers.
    env.NODE_OPTIONS = `--import=${resolve(dirname(fileURLToPath(import.meta.url)), 'cpu-prof-preload.js')}`;
    env.BENCH_CPU_PROF_DIR = flags.cpuProf;
    // A coarser interval (the preload's default is 500 µs) when the profiler's own cost would distort the load.
    if (process.env.BENCH_CPU_PROF_INTERVAL_US) env.BENCH_CPU_PROF_INTERVAL_US = process.env.BENCH_CPU_PROF_INTERVAL_US;
    const only = process.env.BENCH_CPU_PROF_ONLY;
    if (only !== undefined && only !== '') {
      // A mistyped role would match no process and profile nothing, silently.
      if (!CPU_PROF_ROLE.test(only)) throw new Error(`BENCH_CPU_PROF_ONLY=${only}: not a daemon process (master, ingress, recorder, tier0, tier1, ...)`);
      env.BENCH_CPU_PROF_ONLY = only;
    }
  }
  const d = new DaemonProcess({ prefix, schedule, env, echo: flags.echo, ...(cliPath ? { cliPath } : {}) });
  res.daemons.push({ d, prefix, schedule });
  await d.ready(30_000);
  // The per-attempt log lines still go to a pipe as in production; the bench
  // keeps only the warm-up lines (the cold scenario reports them). Not just
  // 'warm': the throughput and isolation scenarios' warm-up ids hold it.
  d.keepOnly('tier worker warmed up');
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
export function byRole(pids: readonly number[], perPid: Record<number, number | string>): string {
  return pids.map((pid, i) => `${i === 0 ? 'master' : i === pids.length - 1 ? 'ingress' : `tier${i - 1}`} ${perPid[pid] ?? '?'}`).join(', ');
}

export interface Measured {
  perS: number;
  ms: number;
  /** CLOCK_MONOTONIC µs of the measured window (what `cpuprofile-top --from/--to` take). */
  monoUs: [number, number];
  /** CPU ms per 1,000 notifications: the consuming process(es), the broker (RabbitMQ or Redis), the merchant. */
  cpuPer1k: { consumer: number; broker: number; merchant: number; tier0?: number };
}

/** RabbitMQ's pids. */
export const BEAM = (): number[] => pidsByComm('beam.smp');

export function per1k(cpu: Record<string, number>, n: number): Measured['cpuPer1k'] {
  const f = (x: number | undefined): number => round(((x ?? 0) * 1000) / n, 1);
  return { consumer: f(cpu.consumer), broker: f(cpu.broker), merchant: f(cpu.merchant), ...(cpu.tier0 !== undefined ? { tier0: f(cpu.tier0) } : {}) };
}

export const monoUs = (): number => Number(process.hrtime.bigint() / 1000n);

/** Waits until `queue` holds `n` ready messages (quorum queue counts can trail the confirms a little). */
export async function waitDepth(queue: string, n: number): Promise<void> {
  await waitFor(async () => (await queueInfo(AMQP_URL, queue)).messageCount >= n, 30_000, `${queue} to hold ${n}`, 100);
}

export type DaemonMeasured = Measured & { pssPeakMiB: number; pssPerPid: Record<number, number> };

/** Throughput of the daemon's tier 0: preload while paused, resume, stop the clock at the merchant's N-th request. */
export async function daemonThroughput(daemon: DaemonHandle, merchant: MerchantProcess, n: number, label: string): Promise<DaemonMeasured> {
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
export async function timeUntilSeen(merchant: MerchantProcess, n: number, groups: Record<string, readonly number[]>, go: () => Promise<void>): Promise<Measured> {
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

/** A daemon's Prometheus text, every process's metrics as the master aggregates them (read it with bench/metrics-text.ts). */
export async function metricsText(daemon: DaemonProcess): Promise<string> {
  return String((await daemon.admin<string>('GET', '/metrics')).body);
}

/** Largest number of ready messages (`messageCount` of a passive declare) seen per queue, sampled every 250 ms. */
export class DepthSampler {
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

/** One row of a printed table: a label, then the columns. */
export type Row = (string | number)[];

/** Columns aligned: the first padded on the right, the others on the left. */
export function table(rows: Row[]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => String(r[i] ?? '').length)));
  return rows.map((r) => r.map((c, i) => (i === 0 ? String(c).padEnd(widths[i]!) : String(c).padStart(widths[i]!))).join('  ')).join('\n');
}

/** What bench/bench.ts sets up once and hands to every scenario. */
export interface BenchContext {
  readonly flags: Flags;
  /** Register what a scenario starts here too, so a failure or Ctrl-C still cleans it up. */
  readonly res: Resources;
  /** The merchant of the throughput runs (`--latency-ms`, `--failure-ratio`), counting requests. */
  readonly merchant: MerchantProcess;
  /**
   * The daemon on DEFAULT_SCHEDULE the scenarios in bench.ts's first list
   * share; stopped before the second list (which start daemons of their own).
   */
  readonly daemon: DaemonHandle;
  /** A topology on DEFAULT_SCHEDULE with no daemon on it, for the hand-written loops. */
  readonly ceilingPrefix: string;
}

/**
 * What a scenario hands back. Nothing is printed while the scenarios run:
 * bench.ts prints every `head` (in run order), then the shared memory table
 * made of every scenario's `memory` rows, then every `tail`, and writes the
 * merged `record`s as the results file.
 */
export interface ScenarioReport {
  /** The keys of the results JSON this scenario owns (present, null or empty when it was skipped). */
  readonly record: Record<string, unknown>;
  /** Printed ahead of the memory table: exact text, newlines included. */
  readonly head: string;
  /** Rows of the memory table (sum of PSS, MiB). */
  readonly memory: Row[];
  /** Printed after the memory table: exact text, newlines included. */
  readonly tail: string;
}

/** A scenario: one file under bench/scenarios/, one line in bench.ts. */
export type Scenario = (ctx: BenchContext) => Promise<ScenarioReport>;
