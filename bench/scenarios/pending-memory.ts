/**
 * Memory with notifications pending (`--pending M`, skipped at 0): a daemon of
 * its own on a long schedule, throughput PSS and idle PSS before the wait
 * queues are filled with M notifications (the control) and after.
 */
import { H, encodeNotification } from '../../src/core/message.js';
import { parseSchedule } from '../../src/core/schedule.js';
import { namesFor } from '../../src/broker/topology.js';
import { makeNotification, median, openConfirm, publishMany, round, sleep } from '../bench-util.js';
import { AMQP_URL } from '../daemon-process.js';
import { pssSumMiB } from '../pss.js';
import { byRole, daemonThroughput, log, startDaemon } from '../bench-context.js';
import type { BenchContext, DaemonMeasured, ScenarioReport } from '../bench-context.js';

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

/** One side of the fill: median PSS peak and rate of its throughput runs, then idle PSS. */
interface PendingSide {
  peak: number;
  peaks: number[];
  perS: number;
  idleMiB: number;
}

export async function pendingMemory(ctx: BenchContext): Promise<ScenarioReport> {
  const { flags, merchant } = ctx;
  let pending: { m: number; fillMs: number; freshMiB: number; control: PendingSide; filled: PendingSide } | null = null;
  if (flags.pending > 0) {
    const pd = await startDaemon(ctx, PENDING_SCHEDULE, 'pending');
    log(`pending: daemon ${pd.prefix} (schedule ${PENDING_SCHEDULE}); filling ${flags.pending} notifications into its wait queues`);
    await daemonThroughput(pd, merchant, Math.min(2000, flags.n), 'pwarm');
    const fresh = await daemonThroughput(pd, merchant, flags.n, 'pfresh');
    log(`pending: PSS under load ${round(fresh.pssPeakMiB, 1)} MiB fresh; idle ${PENDING_CONTROL_IDLE_MS / 1000} s, then the control runs`);
    await sleep(PENDING_CONTROL_IDLE_MS);
    const side = async (label: string, what: string): Promise<PendingSide> => {
      const rs: DaemonMeasured[] = [];
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

  return {
    record: {
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
    },
    head: '',
    memory: pending
      ? [
          [`peak during throughput, schedule ${PENDING_SCHEDULE}, fresh daemon, nothing pending`, round(pending.freshMiB, 1)],
          [`peak during throughput ${PENDING_CONTROL_IDLE_MS / 1000} s later, nothing pending (the control; median of ${PENDING_LOAD_RUNS})`, round(pending.control.peak, 1)],
          [`idle ${PENDING_CONTROL_IDLE_MS / 1000} s after those runs, nothing pending`, round(pending.control.idleMiB, 1)],
          [`peak during throughput with ${pending.m} pending (median of ${PENDING_LOAD_RUNS})`, round(pending.filled.peak, 1)],
          [`idle ${PENDING_CONTROL_IDLE_MS / 1000} s after those runs, ${pending.m} pending`, round(pending.filled.idleMiB, 1)],
        ]
      : [],
    tail: '',
  };
}
