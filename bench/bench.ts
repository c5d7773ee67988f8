/**
 * `npm run bench`: the real daemon against a hand-written ceiling and BullMQ,
 * retry precision, and memory (DESIGN §2–§3, issue 6). See `--help`.
 *
 * The entry: flags, the shared merchant, daemon and ceiling topology, cleanup
 * on exit or a closed pipe, then the scenarios of bench/scenarios/ in order,
 * the summary and the results file. What scenarios share is in bench-context.ts.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import amqp from 'amqplib';
import { parseSchedule } from '../src/core/schedule.js';
import { buildTopology, declareTopology } from '../src/broker/topology.js';
import { round } from './bench-util.js';
import { DEFAULT_SCHEDULE, Resources, log, parseFlags, startDaemon, table } from './bench-context.js';
import type { BenchContext, Row, Scenario, ScenarioReport } from './bench-context.js';
import { AMQP_URL, uniquePrefix } from './daemon-process.js';
import { MerchantProcess } from './merchant-process.js';
import { pendingMemory } from './scenarios/pending-memory.js';
import { retryPrecision } from './scenarios/retry-precision.js';
import { throughput } from './scenarios/throughput.js';
import { isolation } from './scenarios/isolation.js';
import { registry } from './scenarios/registry.js';
import { history } from './scenarios/history.js';
import { cold } from './scenarios/cold.js';
import { ingress } from './scenarios/ingress.js';
import { idle } from './scenarios/idle.js';

/** Scenarios on the shared daemon (`ctx.daemon`), run in this order. */
const ON_SHARED_DAEMON: readonly Scenario[] = [
  throughput, // daemon vs ceiling vs BullMQ, CPU per 1k, PSS under load
  retryPrecision, // lateness of attempt 2, daemon and loops (--skip-precision)
];

/** Scenarios that start daemons of their own, run in this order after the shared daemon has been stopped. */
const ON_OWN_DAEMONS: readonly Scenario[] = [
  pendingMemory, // --pending M
  isolation, // --bad-merchant MODE[,…] --bad-share P[,…], --origins K
  registry, // --registry
  history, // --history
  cold, // --cold (issue 18)
  ingress, // --ingress [--ingress-baseline DIR] (issue 20)
  idle, // --idle [--idle-baseline DIR]
];

/**
 * The results file's keys in the order the bench wrote them before it was
 * split into scenarios, so files stay comparable line by line; keys not listed
 * here follow in scenario order.
 */
const RESULT_KEY_ORDER = [
  'delivered_per_s',
  'ceiling_per_s',
  'ratio',
  'bullmq_per_s',
  'bullmq_ratio',
  'notifyd_vs_bullmq',
  'notifyd_vs_bullmq_paired',
  'lateness_p50_ms',
  'lateness_p99_ms',
  'lateness_max_ms',
  'lateness_seen',
  'lateness_missing',
  'lateness_hist_p99_le_ms',
  'precision_max_ready',
  'lateness_p99_by_second',
  'lateness_p99_runs_ms',
  'ceiling_lateness_p99_runs_ms',
  'lateness_warmup_p99_ms',
  'ceiling_lateness_warmup_p99_ms',
  'ceiling_lateness_p99_by_second',
  'ceiling_lateness_p50_ms',
  'ceiling_lateness_p99_ms',
  'ceiling_lateness_max_ms',
  'precision_cpu_ms_per_1k',
  'pss_mb',
  'pss_precision_mb',
  'pss_pending_mb',
  'pss_pending_idle_mb',
  'pss_idle_mb',
  'pss_pending_control_mb',
  'pss_pending_fresh_mb',
  'pss_pending_runs_mb',
  'pss_pending_control_runs_mb',
  'pending_control_delivered_per_s',
  'pending',
  'pending_fill_s',
  'pending_delivered_per_s',
  'n',
  'runs',
  'per_run',
  'cpu_prof_dir',
  'daemon_pids',
  'rate',
  'seconds',
  'precision_warmup_s',
  'log_level',
  'merchant_latency_ms',
  'merchant_failure_ratio',
  'queue_type',
  'daemon_env',
  'concurrency',
  'connections',
  'cpu_hog',
  'bullmq_note',
  'bullmq_keep_completed',
  'node',
  'loadavg_start',
  'loadavg_end',
  'at',
  'bench_s',
];

/** The records in one object (a key written twice is a bug), in RESULT_KEY_ORDER. */
function resultRecord(records: readonly Record<string, unknown>[]): Record<string, unknown> {
  const merged: Record<string, unknown> = {};
  for (const rec of records) {
    for (const [k, v] of Object.entries(rec)) {
      if (k in merged) throw new Error(`results key ${k} written twice`);
      merged[k] = v;
    }
  }
  const out: Record<string, unknown> = {};
  for (const k of RESULT_KEY_ORDER) if (k in merged) out[k] = merged[k];
  for (const [k, v] of Object.entries(merged)) if (!(k in out)) out[k] = v;
  return out;
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

    const daemon = await startDaemon({ res, flags }, DEFAULT_SCHEDULE, 'bench');
    const daemonPids = daemon.pids();
    log(`daemon ready, prefix ${daemon.prefix}, pids (master, tiers…, ingress) ${daemonPids.join(',')}`);

    const ceilingPrefix = uniquePrefix('ceiling');
    res.prefixes.push({ prefix: ceilingPrefix, schedule: DEFAULT_SCHEDULE });
    {
      const conn = await amqp.connect(AMQP_URL);
      await declareTopology(conn, buildTopology(ceilingPrefix, parseSchedule(DEFAULT_SCHEDULE), flags.queueType));
      await conn.close();
    }

    const ctx: BenchContext = { flags, res, merchant, daemon, ceilingPrefix };
    const reports: ScenarioReport[] = [];
    for (const scenario of ON_SHARED_DAEMON) if (!(flags.skipThroughput && scenario === throughput)) reports.push(await scenario(ctx));
    await daemon.d.stop(40_000);
    for (const scenario of ON_OWN_DAEMONS) {
      reports.push(await scenario(ctx));
      // Nothing a scenario started idles beside the next one's measurements.
      await res.retireAll();
    }

    for (const r of reports) if (r.head) process.stdout.write(r.head);
    const mem: Row[] = [['memory (sum of PSS, master + all workers)', 'MiB'], ...reports.flatMap((r) => r.memory)];
    process.stdout.write(`\n${table(mem)}\n`);
    for (const r of reports) if (r.tail) process.stdout.write(r.tail);

    const out = resultRecord([
      ...reports.map((r) => r.record),
      {
        ...(flags.cpuProf ? { cpu_prof_dir: flags.cpuProf, daemon_pids: daemonPids } : {}),
        log_level: flags.logLevel,
        merchant_latency_ms: flags.latencyMs,
        merchant_failure_ratio: flags.failureRatio,
        queue_type: flags.queueType,
        daemon_env: flags.daemonEnv,
        concurrency: flags.concurrency,
        connections: flags.connections,
        cpu_hog: flags.cpuHog,
        node: process.version,
        loadavg_start: loadStart.map((x) => round(x, 2)),
        loadavg_end: loadavg().map((x) => round(x, 2)),
        at: new Date(started).toISOString(),
        bench_s: round((Date.now() - started) / 1000, 1),
      },
    ]);
    const dir = resultsDir();
    mkdirSync(dir, { recursive: true });
    const file = resolve(dir, `${new Date(started).toISOString().replace(/:/g, '-')}.json`);
    // JSON has no Infinity (it would print null, which elsewhere means "not measured"): a retry that never came says so.
    const infinite = (_k: string, v: unknown): unknown => (v === Infinity ? 'Infinity' : v);
    writeFileSync(file, `${JSON.stringify(out, infinite, 2)}\n`);
    process.stdout.write(`\nresults: ${file}\n${JSON.stringify(out, infinite)}\n`);
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
