/**
 * Throughput: the shared daemon's tier 0 against the hand-written ceiling loop
 * (and BullMQ, and `--tuned-ceiling`), `--runs` times in alternating order,
 * with CPU per 1,000 notifications and the daemon's PSS peak under load.
 */
import { parseSchedule } from '../../src/core/schedule.js';
import { namesFor } from '../../src/broker/topology.js';
import { makeNotification, median, preloadTier0, round } from '../bench-util.js';
import { BullmqQueue, BullmqWorkerProcess, bullmqAvailable } from '../bullmq-bench.js';
import { CeilingProcess } from '../ceiling.js';
import { pidsByComm } from '../cpu.js';
import { AMQP_URL } from '../daemon-process.js';
import type { MerchantProcess } from '../merchant-process.js';
import { BEAM, DEFAULT_SCHEDULE, byRole, daemonThroughput, log, table, timeUntilSeen, waitDepth } from '../bench-context.js';
import type { BenchContext, DaemonMeasured, Flags, Measured, Row, ScenarioReport } from '../bench-context.js';

type Loop = Awaited<ReturnType<typeof CeilingProcess.start>>;

/**
 * A ceiling loop's process, started once and kept for every run as notifyd's
 * tier 0 is: a fresh process per run paid its JIT and its connections inside
 * each measured window, which notifyd's warmed worker did not.
 */
async function startLoop(prefix: string, flags: Flags, tuned: { prefetch: number; batchAcks: boolean } | null): Promise<Loop> {
  const names = namesFor(prefix);
  const execArgv = flags.cpuProf ? ['--cpu-prof', `--cpu-prof-dir=${flags.cpuProf}`] : [];
  return CeilingProcess.start(
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
}

async function ceilingThroughput(c: Loop, prefix: string, merchant: MerchantProcess, n: number, label: string): Promise<Measured> {
  const names = namesFor(prefix);
  await preloadTier0(AMQP_URL, prefix, n, (id) => `${merchant.base}/n/${id}`, label);
  await waitDepth(names.workQueue(0), n);
  const m = await timeUntilSeen(merchant, n, { consumer: [c.pid!], broker: BEAM() }, () => c.go());
  // A loop that did not stop consuming would take the next engine's notifications: that fails the bench.
  await c.pause();
  return m;
}

/** BullMQ's queue and worker process, kept for every run as the loops' and notifyd's are. */
interface Bull {
  readonly q: BullmqQueue;
  readonly w: Awaited<ReturnType<typeof BullmqWorkerProcess.start>>;
}

async function startBull(flags: Flags): Promise<Bull> {
  const q = new BullmqQueue();
  try {
    return { q, w: await BullmqWorkerProcess.start({ prefix: q.prefix, concurrency: flags.concurrency, connections: flags.connections }) };
  } catch (err) {
    await q.destroy();
    throw err;
  }
}

async function stopBull(b: Bull): Promise<void> {
  await b.w.stop().catch((e: unknown) => log(`bullmq worker stop: ${String(e)}`));
  await b.q.destroy();
}

async function bullmqThroughput({ q, w }: Bull, merchant: MerchantProcess, n: number, label: string, flags: Flags): Promise<Measured> {
  const now = Date.now();
  function* notes(): Generator<ReturnType<typeof makeNotification>> {
    for (let i = 0; i < n; i++) {
      const id = `${label}-${i}`;
      yield makeNotification(id, `${merchant.base}/n/${id}`, now);
    }
  }
  await q.addMany(notes(), flags.bullmqKeepCompleted);
  const m = await timeUntilSeen(merchant, n, { consumer: [w.pid!], broker: pidsByComm('redis-server') }, () => w.go());
  await w.pause();
  return m;
}

interface Run {
  daemon: Measured;
  ceiling: Measured;
  bullmq: Measured | null;
  tuned: Measured | null;
  ratio: number;
  bullRatio: number | null;
  pssMiB: number;
  pssPerPid: Record<number, number>;
}

export async function throughput(ctx: BenchContext): Promise<ScenarioReport> {
  const { flags, merchant, daemon, ceilingPrefix } = ctx;
  const redis = !flags.skipBullmq && (await bullmqAvailable());
  const bullNote = flags.skipBullmq ? 'skipped (--skip-bullmq)' : redis ? null : 'skipped: Redis does not answer on 127.0.0.1:6379';
  if (bullNote) log(`BullMQ ${bullNote}`);

  const laterTiers = parseSchedule(DEFAULT_SCHEDULE).map((_, i) => i).filter((i) => i > 0);
  if (flags.failureRatio > 0) {
    // Failed first attempts come back after 1 s; keep them away from the merchant's count.
    for (const i of laterTiers) await daemon.d.admin('POST', `/admin/tiers/${i}/pause`);
  }

  // Warm-up: JIT, keep-alive pools and the broker's quorum machinery, so run 1 is not penalised; the loops warm
  // in the processes that then do every run.
  const warm = Math.min(2000, flags.n);
  log(`warm-up with ${warm} notifications`);
  await daemonThroughput(daemon, merchant, warm, 'warm-d');
  const loop = await startLoop(ceilingPrefix, flags, null);
  const tunedLoop = flags.tunedPrefetch > 0 ? await startLoop(ceilingPrefix, flags, { prefetch: flags.tunedPrefetch, batchAcks: flags.tunedBatchAcks }) : null;
  const bullmq = redis ? await startBull(flags) : null;
  const runs: Run[] = [];
  try {
    await ceilingThroughput(loop, ceilingPrefix, merchant, warm, 'warm-c');
    if (tunedLoop) await ceilingThroughput(tunedLoop, ceilingPrefix, merchant, warm, 'warm-t');
    if (bullmq) await bullmqThroughput(bullmq, merchant, warm, 'warm-b', flags);

    for (let r = 0; r < flags.runs; r++) {
      // Alternate the order so drift on the shared machine does not favour one side.
      const order = r % 2 === 0 ? (['daemon', 'ceiling', 'bullmq', 'tuned'] as const) : (['tuned', 'ceiling', 'bullmq', 'daemon'] as const);
      let dm: DaemonMeasured | null = null;
      let cm: Measured | null = null;
      let bm: Measured | null = null;
      let tm: Measured | null = null;
      for (const what of order) {
        if (what === 'daemon') {
          dm = await daemonThroughput(daemon, merchant, flags.n, `d${r}`);
          log(`run ${r + 1}: daemon  ${round(dm.perS)}/s (${dm.ms} ms), peak PSS ${round(dm.pssPeakMiB, 1)} MiB (${byRole(daemon.pids(), dm.pssPerPid)})${flags.cpuProf ? `, window --from ${dm.monoUs[0]} --to ${dm.monoUs[1]}` : ''}`);
        } else if (what === 'ceiling') {
          cm = await ceilingThroughput(loop, ceilingPrefix, merchant, flags.n, `c${r}`);
          log(`run ${r + 1}: ceiling ${round(cm.perS)}/s (${cm.ms} ms)${flags.cpuProf ? `, window --from ${cm.monoUs[0]} --to ${cm.monoUs[1]}` : ''}`);
        } else if (what === 'tuned') {
          if (tunedLoop) {
            tm = await ceilingThroughput(tunedLoop, ceilingPrefix, merchant, flags.n, `t${r}`);
            log(`run ${r + 1}: tuned loop (${flags.tunedBatchAcks ? 'batched' : 'single'} acks, prefetch ${flags.tunedPrefetch}) ${round(tm.perS)}/s (${tm.ms} ms)`);
          }
        } else if (bullmq) {
          bm = await bullmqThroughput(bullmq, merchant, flags.n, `b${r}`, flags);
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
  } finally {
    await loop.stop().catch((e: unknown) => log(`ceiling stop: ${String(e)}`));
    await tunedLoop?.stop().catch((e: unknown) => log(`tuned loop stop: ${String(e)}`));
    if (bullmq) await stopBull(bullmq);
  }

  if (flags.failureRatio > 0) for (const i of laterTiers) await daemon.d.admin('POST', `/admin/tiers/${i}/resume`);

  const ratio = median(runs.map((r) => r.ratio));
  const bullRatios = runs.map((r) => r.bullRatio).filter((x): x is number => x !== null);
  const delivered = median(runs.map((r) => r.daemon.perS));
  const ceiling = median(runs.map((r) => r.ceiling.perS));
  const bull = bullRatios.length ? median(runs.map((r) => r.bullmq!.perS)) : null;
  const pssMiB = Math.max(...runs.map((r) => r.pssMiB));
  // Each run measures both back to back under the same load, so the paired ratio is quoted too.
  const vsBullRuns = runs.filter((r) => r.bullmq).map((r) => r.daemon.perS / r.bullmq!.perS);

  let head = '';
  const rows: Row[] = [['', 'notifyd tier 0', 'ceiling', 'BullMQ', 'notifyd/ceiling', 'BullMQ/ceiling']];
  runs.forEach((r, i) =>
    rows.push([`run ${i + 1} (/s)`, round(r.daemon.perS), round(r.ceiling.perS), r.bullmq ? round(r.bullmq.perS) : '-', round(r.ratio, 3), r.bullRatio === null ? '-' : round(r.bullRatio, 3)]),
  );
  if (runs.length > 1) rows.push(['median (/s)', round(delivered), round(ceiling), bull === null ? '-' : round(bull), round(ratio, 3), bullRatios.length ? round(median(bullRatios), 3) : '-']);
  head += `\nthroughput: ${flags.n} notifications preloaded in tier 0, merchant answers after ${flags.latencyMs} ms${flags.failureRatio > 0 ? `, ${flags.failureRatio * 100}% 500s (handed on to P.wait.1)` : ''}, daemon log level ${flags.logLevel}, ${flags.queueType} queues, concurrency ${flags.concurrency} (notifyd's prefetch; the ceiling's prefetch and BullMQ's concurrency alike), ${flags.connections} connections to the merchant each${flags.cpuHog > 0 ? `, ${flags.cpuHog} CPU hog process(es) spinning` : ''}\n`;
  head += `${table(rows)}\n`;
  if (bullNote) head += `BullMQ: ${bullNote}\n`;
  if (bull !== null) {
    head += `notifyd/BullMQ: ${round(delivered / bull, 2)}x (medians); per run ${vsBullRuns.map((x) => round(x, 2)).join(', ')}, median ${round(median(vsBullRuns), 2)}x\n`;
  }
  const tunedMed = flags.tunedPrefetch > 0 ? median(runs.map((r) => r.tuned!.perS)) : null;
  if (tunedMed !== null) head += `tuned loop (${flags.tunedBatchAcks ? 'one multiple ack per turn' : 'single acks'}, prefetch ${flags.tunedPrefetch}): ${round(tunedMed)}/s = ${round(median(runs.map((r) => r.tuned!.perS / r.ceiling.perS)), 3)}x the ceiling\n`;
  const medCpu = (pick: (r: Run) => Measured | null, k: keyof Measured['cpuPer1k']): string | number => {
    const xs = runs.map(pick).filter((m): m is Measured => m !== null).map((m) => m.cpuPer1k[k]).filter((x): x is number => x !== undefined);
    return xs.length ? round(median(xs)) : '-';
  };
  const cpuRows: Row[] = [['CPU ms per 1,000 notifications (median)', 'notifyd (all processes)', 'ceiling', 'BullMQ worker']];
  cpuRows.push(['consumer', medCpu((r) => r.daemon, 'consumer'), medCpu((r) => r.ceiling, 'consumer'), medCpu((r) => r.bullmq, 'consumer')]);
  cpuRows.push(['  of which tier 0 (the one consuming)', medCpu((r) => r.daemon, 'tier0'), '-', '-']);
  cpuRows.push(['broker (RabbitMQ / Redis for BullMQ)', medCpu((r) => r.daemon, 'broker'), medCpu((r) => r.ceiling, 'broker'), medCpu((r) => r.bullmq, 'broker')]);
  cpuRows.push(['merchant', medCpu((r) => r.daemon, 'merchant'), medCpu((r) => r.ceiling, 'merchant'), medCpu((r) => r.bullmq, 'merchant')]);
  head += `\n${table(cpuRows)}\n`;

  return {
    record: {
      delivered_per_s: round(delivered),
      ceiling_per_s: round(ceiling),
      ratio: round(ratio, 3),
      bullmq_per_s: bull === null ? null : round(bull),
      bullmq_ratio: bullRatios.length ? round(median(bullRatios), 3) : null,
      notifyd_vs_bullmq: bull === null ? null : round(delivered / bull, 3),
      notifyd_vs_bullmq_paired: vsBullRuns.length ? round(median(vsBullRuns), 3) : null,
      pss_mb: round(pssMiB, 1),
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
      bullmq_note: bullNote,
      bullmq_keep_completed: flags.bullmqKeepCompleted,
    },
    head,
    memory: [['peak during throughput (6 tiers)', round(pssMiB, 1)]],
    tail: '',
  };
}
