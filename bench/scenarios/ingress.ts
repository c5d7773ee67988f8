/**
 * Ingress requests/s (`--ingress`, issue 20): how many single notifications
 * the ingress accepts per second (POST /v1/notifications, answered 202 once
 * the broker confirmed), with tier 0 paused so that only the ingress and the
 * broker work. With `--ingress-baseline DIR` (another checkout, built) its
 * daemon is measured too, rounds alternating between the two builds, each
 * round's queue purged, and then tier 0 of each draining the same preloaded
 * notifications in turn: the ratios this/baseline are the claim, both sides
 * measured in the same run on the same broker. Each build first has one
 * round that is not counted (its code is not optimised yet). `--ingress-build
 * DIR` measures another built checkout in this one's place (a commit against
 * its parent, or a build against itself: an A/A run, the bench's own spread).
 */
import amqp from 'amqplib';
import { dirname, resolve } from 'node:path';
import { Pool } from 'undici';
import { namesFor } from '../../src/broker/topology.js';
import { commitOf, median, queueInfo, round } from '../bench-util.js';
import { daemonThroughput, log, startDaemon, table, type BenchContext, type DaemonHandle, type Row, type ScenarioReport } from '../bench-context.js';
import { AMQP_URL, CLI_PATH, waitFor } from '../daemon-process.js';
import { cpuMs } from '../cpu.js';

interface Build {
  readonly label: string;
  /** The checkout measured (absolute) and its commit, so a result on disk says what it measured. */
  readonly dir: string;
  readonly commit: string | null;
  readonly daemon: DaemonHandle;
  readonly perS: number[];
  /** The ingress process's CPU per 1,000 accepted, per round: what req/s alone hides on a shared machine. */
  readonly cpuPer1k: number[];
  /** Tier 0 draining `n` preloaded notifications to the merchant, per round (with a baseline only). */
  readonly tier0PerS: number[];
  /** The daemon's CPU (all its processes, tier 0 the one working) per 1,000 of those, per round. */
  readonly tier0CpuPer1k: number[];
}

/** Pauses tier 0, refused loudly: a baseline without the route must not pass for a slow one. */
async function pauseTier0(daemon: DaemonHandle): Promise<void> {
  const r = await daemon.d.admin('POST', '/admin/tiers/0/pause');
  if (r.status !== 200) throw new Error(`POST /admin/tiers/0/pause answered ${r.status}`);
  await waitFor(async () => (await queueInfo(AMQP_URL, namesFor(daemon.prefix).workQueue(0))).consumerCount === 0, 10_000, 'tier 0 paused');
}

/** `seconds` of POSTs, `inflight` at a time, to one daemon's ingress: accepted per second and how many (anything but 202 stops the bench). */
async function blast(daemon: DaemonHandle, merchantBase: string, tag: string, seconds: number, inflight: number): Promise<{ perS: number; accepted: number }> {
  const pool = new Pool(daemon.d.ingressUrl, { connections: inflight, pipelining: 1 });
  let accepted = 0;
  let failure: string | null = null;
  let seq = 0;
  const until = performance.now() + seconds * 1000;
  const started = performance.now();
  const lane = async (): Promise<void> => {
    while (performance.now() < until && failure === null) {
      const id = `${tag}-${seq++}`;
      try {
        const r = await pool.request({
          path: '/v1/notifications',
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ id, url: `${merchantBase}/n/${id}`, body: { orderId: id, amount: 100, status: 'paid' } }),
        });
        const text = await r.body.text();
        if (r.statusCode === 202) accepted++;
        else failure = `${r.statusCode} ${text.slice(0, 200)}`;
      } catch (err) {
        failure = String(err);
      }
    }
  };
  let elapsed: number;
  try {
    await Promise.all(Array.from({ length: inflight }, lane));
    elapsed = (performance.now() - started) / 1000;
  } finally {
    await pool.close();
  }
  if (failure !== null) throw new Error(`ingress answered ${failure}`);
  return { perS: accepted / elapsed, accepted };
}

/** CPU ms of a process; a process gone (an ingress restarted mid-round) stops the bench rather than reading as 0. */
function cpuOf(pid: number): number {
  const ms = cpuMs(pid);
  if (ms === null) throw new Error(`process ${pid} is gone: the ingress restarted during a round`);
  return ms;
}

/** Median of this build's value over the baseline's, round by round (adjacent in time), so drift cancels. */
function pairedRatio(mine: readonly number[], base: readonly number[]): number {
  return round(median(mine.map((x, i) => x / base[i]!)), 3);
}

export async function ingress(ctx: BenchContext): Promise<ScenarioReport> {
  const { flags } = ctx;
  if (!flags.ingress) return { record: { ingress: null }, head: '', memory: [], tail: '' };
  // Every attempt must succeed at once: a failed one is retried by tier 1 a second later, into another round's count.
  if (flags.failureRatio > 0 || flags.latencyMs > 0) throw new Error('--ingress measures with a merchant that answers at once: leave out --failure-ratio and --latency-ms');
  // --ingress-build measures another checkout in this build's place: two commits of the past against each other.
  const ownDir = flags.ingressBuild === null ? resolve(dirname(CLI_PATH), '..', '..') : resolve(flags.ingressBuild);
  const own = flags.ingressBuild === null ? undefined : resolve(ownDir, 'dist', 'src', 'cli.js');
  const label = flags.ingressBuild === null ? 'this build' : `build ${flags.ingressBuild}`;
  const builds: Build[] = [{ label, dir: ownDir, commit: commitOf(ownDir), daemon: await startDaemon(ctx, 'default', 'ingress', own), perS: [], cpuPer1k: [], tier0PerS: [], tier0CpuPer1k: [] }];
  if (flags.ingressBaseline !== null) {
    const baseDir = resolve(flags.ingressBaseline);
    const cli = resolve(baseDir, 'dist', 'src', 'cli.js');
    builds.push({ label: `baseline ${flags.ingressBaseline}`, dir: baseDir, commit: commitOf(baseDir), daemon: await startDaemon(ctx, 'default', 'ingressbase', cli), perS: [], cpuPer1k: [], tier0PerS: [], tier0CpuPer1k: [] });
  }
  const conn = await amqp.connect(AMQP_URL);
  const ch = await conn.createChannel();
  try {
    for (const b of builds) await pauseTier0(b.daemon);
    // One unmeasured round each first: a fresh ingress runs its first seconds on unoptimised code.
    for (const b of builds) {
      await blast(b.daemon, ctx.merchant.base, `inw${builds.indexOf(b)}`, Math.min(3, flags.ingressSeconds), flags.ingressInflight);
      await ch.purgeQueue(namesFor(b.daemon.prefix).workQueue(0));
    }
    for (let r = 0; r < flags.ingressRounds; r++) {
      // Alternating which goes first, so a machine getting busier or quieter weighs on both.
      for (const b of r % 2 === 0 ? builds : [...builds].reverse()) {
        const pid = (await b.daemon.status()).ingress.pid!;
        const cpuBefore = cpuOf(pid);
        const { perS, accepted } = await blast(b.daemon, ctx.merchant.base, `in${r}${builds.indexOf(b)}`, flags.ingressSeconds, flags.ingressInflight);
        const cpu = ((cpuOf(pid) - cpuBefore) * 1000) / Math.max(1, accepted);
        b.perS.push(perS);
        b.cpuPer1k.push(cpu);
        log(`ingress round ${r + 1}, ${b.label}: ${Math.round(perS)} accepted/s, ingress CPU ${Math.round(cpu)} ms per 1k`);
        // An ever longer queue is not what is measured.
        await ch.purgeQueue(namesFor(b.daemon.prefix).workQueue(0));
      }
    }
    if (builds.length > 1) {
      // The tier's hot path too (decode and validate, sign, deliver, ack), the same notifications for both.
      const n = Math.min(flags.n, 20_000);
      // Uncounted first, as for the ingress: tier 0 has delivered nothing yet.
      for (const b of builds) await daemonThroughput(b.daemon, ctx.merchant, Math.ceil(n / 4), `tzw${builds.indexOf(b)}`);
      for (let r = 0; r < flags.ingressRounds; r++) {
        for (const b of r % 2 === 0 ? builds : [...builds].reverse()) {
          const { perS, cpuPer1k: cpu } = await daemonThroughput(b.daemon, ctx.merchant, n, `tz${r}${builds.indexOf(b)}`);
          const cpuPer1k = cpu.consumer;
          b.tier0PerS.push(perS);
          b.tier0CpuPer1k.push(cpuPer1k);
          log(`tier 0 round ${r + 1}, ${b.label}: ${Math.round(perS)} delivered/s, daemon CPU ${Math.round(cpuPer1k)} ms per 1k`);
        }
      }
    }
  } finally {
    await conn.close().catch(() => undefined);
  }
  const [mine, base] = builds;
  const ratio = base ? pairedRatio(mine!.perS, base.perS) : null;
  const cpuRatio = base ? pairedRatio(mine!.cpuPer1k, base.cpuPer1k) : null;
  const tier0Ratio = base ? pairedRatio(mine!.tier0PerS, base.tier0PerS) : null;
  const tier0CpuRatio = base ? pairedRatio(mine!.tier0CpuPer1k, base.tier0CpuPer1k) : null;
  const rows: Row[] = builds.map((b) => [b.label, round(median(b.perS)), b.perS.map((x) => Math.round(x)).join(', '), round(median(b.cpuPer1k)), b.cpuPer1k.map((x) => Math.round(x)).join(', ')]);
  const head =
    `\n== ingress: POST /v1/notifications, ${flags.ingressInflight} in flight, tier 0 paused; ${flags.ingressRounds} rounds of ${flags.ingressSeconds} s per build, alternating\n` +
    `${table([['build', 'median accepted/s', 'every round', 'ingress CPU ms/1k', 'every round'], ...rows])}\n` +
    (ratio !== null ? `${label} / baseline (median of per-round ratios): accepted/s ${ratio}, ingress CPU per request ${cpuRatio}\n` : '') +
    (base
      ? `tier 0 draining ${Math.min(flags.n, 20_000)} preloaded, delivered/s: ${label} ${builds[0]!.tier0PerS.map((x) => Math.round(x)).join(', ')}; baseline ${base.tier0PerS.map((x) => Math.round(x)).join(', ')}; median of per-round ratios ${tier0Ratio}\n` +
        `  daemon CPU ms per 1,000: ${label} ${builds[0]!.tier0CpuPer1k.map((x) => Math.round(x)).join(', ')}; baseline ${base.tier0CpuPer1k.map((x) => Math.round(x)).join(', ')}; median of per-round ratios ${tier0CpuRatio}\n`
      : '');
  return {
    record: {
      ingress: {
        inflight: flags.ingressInflight,
        seconds: flags.ingressSeconds,
        builds: builds.map((b) => ({ label: b.label, dir: b.dir, commit: b.commit, median_per_s: round(median(b.perS)), per_s: b.perS.map((x) => round(x)), cpu_ms_per_1k: b.cpuPer1k.map((x) => round(x)) })),
        ratio,
        cpu_ratio: cpuRatio,
        tier0_per_s: builds.map((b) => b.tier0PerS.map((x) => round(x))),
        tier0_ratio: tier0Ratio,
        tier0_cpu_ms_per_1k: builds.map((b) => b.tier0CpuPer1k.map((x) => round(x))),
        tier0_cpu_ratio: tier0CpuRatio,
      },
    },
    head,
    memory: [],
    tail: '',
  };
}
