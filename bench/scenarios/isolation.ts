/**
 * Origin isolation (`--bad-merchant MODE[,MODE…]`, `--bad-share P[,P]`, and
 * `--origins N`), each on a daemon of its own; skipped when neither is given.
 *
 * Bad merchant: tier 0 is preloaded with `--isolation-n` notifications, P %
 * of them for a bad merchant and the rest for a healthy one (A), and the
 * healthy merchant's deliveries/s are measured from the resume until A has
 * seen all of its share. The control run of the same bench sends the bad
 * share to a second healthy merchant (B) instead: same counts, same daemon,
 * so the control does the same amount of work. Then, at a steady
 * `--isolation-rate` for `--isolation-seconds`, A's first-attempt latency
 * (sent → merchant) beside the bad merchant, against the same with B. Modes:
 * hang (reads, never answers), blackhole (accepts, never reads), slow (200
 * after 3 s), refused (nothing listens), dns (its name never resolves).
 * Every run meets a bad origin it has never seen, and the queues are emptied
 * between runs.
 *
 * Many origins: the same preload spread over N origins (names of a local DNS
 * stub, one merchant process behind them) against all of it for one origin.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { readdirSync } from 'node:fs';
import amqp from 'amqplib';
import { namesFor } from '../../src/broker/topology.js';
import { H, encodeNotification } from '../../src/core/message.js';
import { parseSchedule } from '../../src/core/schedule.js';
import { makeNotification, median, openConfirm, publishMany, queueInfo, round } from '../bench-util.js';
import { BEAM, log, metricsText, startDaemon, table, timeUntilSeen, waitDepth, type BadMode, type BenchContext, type DaemonHandle, type Measured, type Row, type ScenarioReport } from '../bench-context.js';
import { AMQP_URL, waitFor } from '../daemon-process.js';
import { DnsStub } from '../dns-stub.js';
import { counterSum } from '../metrics-text.js';
import { MerchantProcess } from '../merchant-process.js';
import { CpuMeter } from '../cpu.js';
import { PssSampler } from '../pss.js';
import { BrokerProbe, localBrokerPid, summarizeProbe, type ProbeSummary } from '../broker-probe.js';
import { badHandlingCost, type WindowCpu } from '../handling-cost.js';

const SCHEDULE = 'default';

/** Open file descriptors of a process (sockets, pipes, files). */
function fdCount(pid: number): number {
  try {
    return readdirSync(`/proc/${pid}/fd`).length;
  } catch {
    return NaN;
  }
}

/** Samples the largest fd count of `pid` every 200 ms. */
function fdPeak(pid: number): { stop: () => number } {
  let peak = fdCount(pid);
  const t = setInterval(() => (peak = Math.max(peak, fdCount(pid))), 200);
  return {
    stop: () => {
      clearInterval(t);
      return Math.max(peak, fdCount(pid));
    },
  };
}

/** Empties every work, wait and hold queue of a daemon (P.dead kept) until nothing is left in flight either. */
async function drainDaemon(daemon: DaemonHandle): Promise<void> {
  const names = namesFor(daemon.prefix);
  const schedule = parseSchedule(SCHEDULE);
  const queues = schedule.flatMap((_d, i) => [names.workQueue(i), names.waitQueue(i), names.holdQueue(i)]);
  const conn = await amqp.connect(AMQP_URL);
  try {
    let quiet = 0;
    for (let round = 0; round < 60 && quiet < 2; round++) {
      let left = 0;
      for (const q of queues) {
        const ch = await conn.createChannel();
        ch.on('error', () => undefined);
        try {
          left += (await ch.purgeQueue(q)).messageCount;
        } catch {
          /* a wait queue of a 0 delay does not exist */
        }
        await ch.close().catch(() => undefined);
      }
      const inflight = (await daemon.d.admin<{ tiers: { inflight: number }[] }>('GET', '/admin/status')).body.tiers.reduce((n, t) => n + t.inflight, 0);
      quiet = left === 0 && inflight === 0 ? quiet + 1 : 0;
      if (quiet < 2) await sleep(500);
    }
    // The next run would start beside this one's leftovers.
    if (quiet < 2) throw new Error(`${daemon.prefix}: still delivering after 30 s of purging`);
  } finally {
    await conn.close().catch(() => undefined);
  }
}

/**
 * Tier 0's attempts that ended its rung, skips included (not `error`: a
 * hand-on that failed is requeued, and its rung ends later).
 */
function tier0Rungs(metrics: string): number {
  // An error body (no such metric) must not read as 0: the next good read would count every earlier run.
  if (!metrics.includes('notify_attempts_total')) return NaN;
  return counterSum(metrics, 'notify_attempts_total', { tier: '0', outcome: /^(success|retry|dead|skipped)$/ });
}

/**
 * The broker's CPU from the start of a run until all `n` notifications had
 * their tier-0 rung (delivered, failed or skipped, deferrals on the way
 * included), per 1,000 notifications: whenever it is spent, within or after
 * the healthy merchant's window (the healthy rate alone misses work a build
 * puts off until the window is over). Not a per-rung price: the later tiers'
 * work on what tier 0 handed on meanwhile is in it too. It ends at the
 * first read (every 250 ms, each a collection of the workers' metrics) that
 * finds tier 0 done, and not before the healthy window's end. NaN when tier
 * 0 had not finished within a minute, or the count could not be read at
 * the start.
 */
async function tier0Done(daemon: DaemonHandle, meter: CpuMeter, startedAt: number, before: number, n: number): Promise<{ s: number; brokerPer1k: number }> {
  const t0 = Date.now();
  let done = false;
  while (!done && Number.isFinite(before) && Date.now() - t0 <= 60_000) {
    done = tier0Rungs(await metricsText(daemon.d)) - before >= n;
    if (!done) await sleep(250);
  }
  const broker = meter.stop().broker;
  if (!done) return { s: NaN, brokerPer1k: NaN };
  return { s: round((Date.now() - startedAt) / 1000, 1), brokerPer1k: broker === undefined ? NaN : round((broker * 1000) / n, 1) };
}

/** Preloads tier 0 with `n` notifications, the URL of the i-th chosen by `url(i)`, while tier 0 is paused. */
async function preload(daemon: DaemonHandle, n: number, url: (i: number) => string, label: string): Promise<void> {
  const names = namesFor(daemon.prefix);
  const q0 = names.workQueue(0);
  const p = await daemon.d.admin('POST', '/admin/tiers/0/pause');
  if (p.status !== 200) throw new Error(`pause answered ${p.status}`);
  await waitFor(async () => (await queueInfo(AMQP_URL, q0)).consumerCount === 0, 10_000, 'tier 0 consumer cancelled');
  const { ch, close } = await openConfirm(AMQP_URL, `notifyd bench isolation ${daemon.prefix}`);
  try {
    const now = Date.now();
    await publishMany(ch, n, (i) => {
      const note = makeNotification(`${label}-${i}`, url(i), now);
      return {
        exchange: names.work,
        routingKey: names.routingKey(0),
        content: encodeNotification(note),
        options: { messageId: note.id, persistent: true, mandatory: true, contentType: 'application/json', headers: { [H.attempt]: 0, [H.dueAt]: now } },
      };
    });
  } finally {
    await close();
  }
  await waitDepth(q0, n);
}

/** Sends notifications into tier 0 at `rate`/s for `seconds`, the URL of the i-th chosen by `url(i, sentAt)`. */
/** Publishes at `rate` for `seconds`; returns how many it sent. */
async function steady(daemon: DaemonHandle, rate: number, seconds: number, url: (i: number, sentAt: number) => string, label: string): Promise<number> {
  const names = namesFor(daemon.prefix);
  const { ch, close } = await openConfirm(AMQP_URL, `notifyd bench steady ${daemon.prefix}`);
  try {
    const per10ms = rate / 100;
    const started = Date.now();
    let sent = 0;
    while (Date.now() - started < seconds * 1000) {
      const due = Math.floor(((Date.now() - started) / 10 + 1) * per10ms);
      for (; sent < due; sent++) {
        const now = Date.now();
        const note = makeNotification(`${label}-${sent}`, url(sent, now), now);
        ch.publish(names.work, names.routingKey(0), encodeNotification(note), { messageId: note.id, persistent: true, mandatory: true, contentType: 'application/json', headers: { [H.attempt]: 0, [H.dueAt]: now } });
      }
      await sleep(10);
    }
    await ch.waitForConfirms();
    return sent;
  } finally {
    await close();
  }
}

interface BadRun {
  mode: BadMode | 'control';
  share: number;
  /** Healthy notifications of the steady load that had not arrived when the latencies were read. */
  latencyMissing?: number;
  /** Which round of `--isolation-runs` (from 1); its ratio is against that round's control. The closing control's is K + 1. */
  round: number;
  healthyPerS: number;
  ratio: number | null;
  /**
   * Against the mean of its round's control and the next one (the closing
   * control after the last round): a control on each side, so drift over a
   * round and one control's own luck weigh less. Null for controls, and for
   * a single round.
   */
  ratioAround: number | null;
  latencyP50: number;
  latencyP99: number;
  pssPeakMiB: number;
  tier0Fds: number;
  /** CPU ms per 1,000 of the healthy merchant's deliveries: the daemon's processes, the broker, merchant A. */
  cpuPer1k: { consumer: number; broker: number; merchant: number };
  /** What the tiers did other than deliver while the healthy merchant's share was measured. */
  handling: Handling;
  /** Until every notification had its tier-0 rung: seconds from the start, and the broker's CPU ms per 1,000 of them (see tier0Done). */
  tier0: { s: number; brokerPer1k: number };
  /**
   * What one bad notification cost the daemon and the broker within the
   * window, as a multiple of one notification in the round's control
   * (bench/handling-cost.ts; issue 14 asks for 1 or less). Null for controls.
   */
  badCost: number | null;
  /** `--broker-probe`: tier 0's queue as the broker saw it while the healthy merchant's share was measured; null without. */
  probe: ProbeSummary | null;
}

/**
 * What the tiers did, summed over all of them, other than deliver. With
 * quorum queues each of these is a publish into a quorum queue (a wait or
 * hold queue that dead-letters at least once; on the last rung a skip is a
 * park in `P.dead`), the broker's dearest work here: a delivery hands
 * nothing on.
 */
interface Handling {
  /** Deferred to a hold queue (a wait, not an attempt). */
  deferred: number;
  /** Attempts skipped without a request, and handed on. */
  skipped: number;
  /** Attempts that failed (`retry`) and were handed on to the next wait queue. */
  failedHandedOn: number;
  /** Times a tier worker moved its consumer to a new channel past long-held deliveries (`delivery.consumerLanes`). */
  laneMoves: number;
  /** Ack frames the tier workers sent, and those of them for one delivery each (behind an unfinished one, mostly). */
  ackFrames: number;
  singleAcks: number;
  /** Broker messages that each carried several of the skips and deferrals (bundles). */
  bundles: number;
}

/**
 * Read after the window, so it also counts the rungs of the moment it takes
 * to read (the master collects the workers' metrics, up to 500 ms): a few
 * against the thousands of a bad run.
 */
function handlingOf(m: string): Handling {
  return {
    deferred: counterSum(m, 'notify_deferrals_total'),
    skipped: counterSum(m, 'notify_attempts_total', { outcome: 'skipped' }),
    failedHandedOn: counterSum(m, 'notify_attempts_total', { outcome: 'retry' }),
    laneMoves: counterSum(m, 'notify_consumer_lane_moves_total'),
    ackFrames: counterSum(m, 'notify_ack_frames_total'),
    singleAcks: counterSum(m, 'notify_ack_frames_total', { kind: 'single' }),
    bundles: counterSum(m, 'notify_bundles_total'),
  };
}

/** A bad merchant of `mode`, never seen by the daemon before: its base URL and how to stop it. */
async function badMerchant(mode: BadMode, run: number, dns: DnsStub): Promise<{ base: string; stop: () => Promise<void> }> {
  switch (mode) {
    case 'hang':
    case 'slow': {
      const m = await MerchantProcess.start({});
      return { base: `${m.base}/${mode === 'hang' ? 'hang' : 'delay/3000'}`, stop: () => m.stop() };
    }
    case 'blackhole': {
      const m = await MerchantProcess.start({ blackhole: true });
      return { base: `http://127.0.0.1:${m.blackholePort}/x`, stop: () => m.stop() };
    }
    case 'refused': {
      // A port that was just free: nothing listens, the kernel refuses.
      const m = await MerchantProcess.start({});
      const base = m.base;
      await m.stop();
      return { base: `${base}/x`, stop: async () => undefined };
    }
    case 'dns': {
      const name = `bad${run}.test`;
      dns.set(name, 'blackhole');
      return { base: `http://${name}:8080/x`, stop: async () => undefined };
    }
  }
}

async function badMerchantRuns(ctx: BenchContext): Promise<{ runs: BadRun[]; rows: Row[]; summary: Row[] | null }> {
  const { flags, res } = ctx;
  const dns = new DnsStub();
  await dns.start();
  res.stops.push(() => dns.close());
  // Healthy merchants are reached by name through the stub too, so the dns mode
  // shows whether one name that never answers holds up the others' lookups.
  const a = await MerchantProcess.start({});
  const b = await MerchantProcess.start({});
  res.stops.push(() => a.stop(), () => b.stop());
  dns.set('a.test', { a: ['127.0.0.1'], ttl: 300 });
  dns.set('b.test', { a: ['127.0.0.1'], ttl: 300 });
  const aBase = a.base.replace('127.0.0.1', 'a.test');
  const bBase = b.base.replace('127.0.0.1', 'b.test');
  const daemon = await startDaemon({ res, flags: { ...flags, daemonEnv: { NOTIFY_DNS_SERVERS: dns.address, NOTIFY_DRAIN_TIMEOUT: '3s', ...flags.daemonEnv } } }, SCHEDULE, 'iso');
  const tier0 = (await daemon.status()).tiers[0]!.pid!;
  const n = flags.isolationN;
  const runs: BadRun[] = [];
  let runNo = 0;
  // Warm-up: the healthy origins' pools and limits, as in production where they are not new.
  await preload(daemon, 2000, (i) => `${i % 2 ? aBase : bBase}/warm/${i}`, 'warm');
  await timeUntilSeen(a, 1000, {}, async () => void (await daemon.d.admin('POST', '/admin/tiers/0/resume')));
  await drainDaemon(daemon);
  for (const share of flags.badShares) {
    // Spread evenly and exactly: `share` of every 100 (a rounded "one in every k" gave 33 % for 30 and none past 70).
    const isBad = (i: number): boolean => Math.floor(((i + 1) * share) / 100) > Math.floor((i * share) / 100);
    const badCount = Array.from({ length: n }, (_, i) => i).filter(isBad).length;
    const healthyCount = n - badCount;
    if (badCount === 0 || healthyCount === 0) throw new Error(`--bad-share ${share} with ${n} notifications leaves ${badCount === 0 ? 'the bad merchant' : 'the healthy one'} none`);
    // Over several rounds, a closing control after the last one, so every bad run has a control after it too.
    const closing = flags.isolationRuns > 1 ? 1 : 0;
    for (let roundNo = 1; roundNo <= flags.isolationRuns + closing; roundNo++) {
      let controlPerS = NaN;
      let controlCpu: WindowCpu = { consumer: NaN, broker: NaN };
      // The control first, then the modes in an order that turns by one each round: drift within a round
      // (the machine, the broker's periodic work) does not always fall on the same mode.
      const turn = (roundNo - 1) % flags.badModes.length;
      const modes = roundNo > flags.isolationRuns ? [] : [...flags.badModes.slice(turn), ...flags.badModes.slice(0, turn)];
      for (const mode of ['control' as const, ...modes]) {
        runNo++;
        const bad = mode === 'control' ? { base: `${bBase}/b`, stop: async () => undefined } : await badMerchant(mode, runNo, dns);
        let probe: BrokerProbe | null = null;
        try {
          log(`isolation: ${mode} at ${share} % (${badCount} of ${n} for ${mode === 'control' ? 'merchant B' : `a ${mode} merchant`})${flags.isolationRuns > 1 ? (roundNo > flags.isolationRuns ? ', closing control' : `, round ${roundNo} of ${flags.isolationRuns}`) : ''}`);
          await preload(daemon, n, (i) => (isBad(i) ? `${bad.base}/${runNo}-${i}` : `${aBase}/n/${runNo}-${i}`), `iso${runNo}`);
          // Started before the other meters: rabbitmqctl is an Erlang VM of its own, and its start is done before the resume.
          if (flags.brokerProbe) probe = await BrokerProbe.start(namesFor(daemon.prefix).workQueue(0), localBrokerPid());
          const sampler = new PssSampler(daemon.pids, 200).start();
          const fds = fdPeak(tier0);
          // One collection of the workers' metrics for both counts.
          const start = await metricsText(daemon.d);
          const before = handlingOf(start);
          const rungsBefore = tier0Rungs(start);
          const broker = BEAM();
          // Without a local broker process there is nothing to meter: the cost is NaN, not 0.
          const rungMeter = new CpuMeter(broker.length > 0 ? { broker } : {}).start();
          const runStart = Date.now();
          const m = await timeUntilSeen(a, healthyCount, { consumer: daemon.pids(), broker }, async () => {
            const r = await daemon.d.admin('POST', '/admin/tiers/0/resume');
            if (r.status !== 200) throw new Error(`resume answered ${r.status}`);
          });
          const runEnd = Date.now();
          if (flags.cpuProf) log(`isolation ${mode} at ${share} % window --from ${m.monoUs[0]} --to ${m.monoUs[1]}`);
          const after = handlingOf(await metricsText(daemon.d));
          // Peaks of the healthy window, as before this measure: not of the wait for tier 0 below.
          const pss = await sampler.stop();
          const tier0Fds = fds.stop();
          // Stopped before the wait for tier 0: the probe's CPU is the broker's, and the window's figures hold it
          // (bad runs' longer windows more of it), the wait's none.
          const probed = probe ? summarizeProbe(await probe.stop(), runStart, runEnd) : null;
          const rungs = await tier0Done(daemon, rungMeter, runStart, rungsBefore, n);
          if (mode === 'control') {
            controlPerS = m.perS;
            controlCpu = m.cpuPer1k;
          }
          await drainDaemon(daemon);
          // Latency at a steady rate: A's notifications carry their sending time in the path.
          const group = `g${runNo}`;
          const steadySent = await steady(daemon, flags.isolationRate, flags.isolationSeconds, (i, sentAt) => (isBad(i) ? `${bad.base}/s${runNo}-${i}` : `${aBase}/lat/${group}/${sentAt}/${i}`), `st${runNo}`);
          await sleep(1500);
          const lat = await a.latencies(group);
          // The merchant's percentiles are of what arrived: more than 1 % of the healthy ones missing puts the p99 past them.
          const healthySent = Array.from({ length: steadySent }, (_, i) => i).filter((i) => !isBad(i)).length;
          const latencyMissing = healthySent - lat.count;
          if (latencyMissing > 0) log(`isolation ${mode}: ${latencyMissing} of ${healthySent} healthy notifications had not arrived 1.5 s after the steady load`);
          await drainDaemon(daemon);
          runs.push({
            mode,
            share,
            round: roundNo,
            healthyPerS: round(m.perS),
            ratio: mode === 'control' ? null : round(m.perS / controlPerS, 2),
            // Without a local broker its CPU reads 0, and the figure would be the daemon's alone.
            badCost: mode === 'control' ? null : broker.length === 0 ? NaN : round(badHandlingCost(controlCpu, m.cpuPer1k, healthyCount, badCount), 2),
            ratioAround: null,
            latencyP50: lat.p50,
            latencyP99: latencyMissing > healthySent * 0.01 ? Infinity : lat.p99,
            latencyMissing,
            pssPeakMiB: round(pss.peakMiB),
            tier0Fds,
            cpuPer1k: m.cpuPer1k,
            handling: { deferred: after.deferred - before.deferred, skipped: after.skipped - before.skipped, failedHandedOn: after.failedHandedOn - before.failedHandedOn, laneMoves: after.laneMoves - before.laneMoves, ackFrames: after.ackFrames - before.ackFrames, singleAcks: after.singleAcks - before.singleAcks, bundles: after.bundles - before.bundles },
            tier0: rungs,
            probe: probed,
          });
        } finally {
          await probe?.stop();
          await bad.stop();
        }
      }
    }
  }
  await res.retire(daemon.d);
  bracket(runs);
  const rows: Row[] = [['bad merchant', 'share', 'round', 'healthy /s', 'vs control', 'vs controls around', 'healthy p50 ms', 'healthy p99 ms', 'PSS MiB', 'tier-0 fds', 'CPU ms/1k daemon', 'broker', 'deferred', 'skipped', 'failed, handed on', 'lane moves', 'ack frames', 'single', 'bundles', 'tier 0 done s', 'broker ms/1k to tier 0 done', 'bad ÷ delivery CPU']];
  if (flags.brokerProbe) rows[0]!.push('probe samples', 'window full %', 'window in use', 'held by moved lanes', 'queue reply ms p50', 'p90');
  for (const r of runs) {
    const row: Row = [r.mode, `${r.share} %`, r.round, r.healthyPerS, r.ratio === null ? '-' : `${r.ratio}x`, r.ratioAround === null ? '-' : `${r.ratioAround}x`, r.latencyP50, r.latencyP99, r.pssPeakMiB, r.tier0Fds, r.cpuPer1k.consumer, r.cpuPer1k.broker, r.handling.deferred, r.handling.skipped, r.handling.failedHandedOn, r.handling.laneMoves, r.handling.ackFrames, r.handling.singleAcks, r.handling.bundles, r.tier0.s, r.tier0.brokerPer1k, r.badCost === null || !Number.isFinite(r.badCost) ? '-' : `${r.badCost}x`];
    if (flags.brokerProbe) {
      const p = r.probe;
      row.push(...(p ? [p.samples, p.windowFullPct, p.upCheckedOutMean, p.cancelledCheckedOutMean, p.replyP50Ms, p.replyP90Ms] : ['-', '-', '-', '-', '-', '-']));
    }
    rows.push(row);
  }
  return { runs, rows, summary: flags.isolationRuns > 1 ? ratioSummary(runs) : null };
}

/** The median of the runs' `bad ÷ delivery CPU`, or '-' when none has one. */
function badCostMedian(runs: readonly BadRun[]): string {
  const xs = runs.flatMap((r) => (r.badCost !== null && Number.isFinite(r.badCost) ? [r.badCost] : []));
  return xs.length === 0 ? '-' : `${round(median(xs), 2)}x`;
}

/** Sets each bad run's `ratioAround` from the controls of its round and the next (same share). */
function bracket(runs: BadRun[]): void {
  const control = new Map<string, number>();
  for (const r of runs) if (r.mode === 'control') control.set(`${r.share}|${r.round}`, r.healthyPerS);
  for (const r of runs) {
    if (r.mode === 'control') continue;
    const before = control.get(`${r.share}|${r.round}`);
    const after = control.get(`${r.share}|${r.round + 1}`);
    if (before !== undefined && after !== undefined) r.ratioAround = round((2 * r.healthyPerS) / (before + after), 2);
  }
}

/**
 * Per mode and share over the rounds: the median ratio and its range, and
 * the runs at or above issue 14's 0.9×. One run of this bench is not a
 * figure: on the 2-core VM single runs of one build ranged 0.53–1.24×
 * (stop 20). The count at 0.9× is of the ratios as rounded to two places.
 */
function ratioSummary(runs: readonly BadRun[]): Row[] {
  const rows: Row[] = [['bad merchant', 'share', 'runs', 'median vs control', 'range', 'runs ≥ 0.9x', 'median vs controls around', 'range', 'runs ≥ 0.9x', 'healthy p99 ms (median)', 'broker ms/1k to tier 0 done (median)', 'bad ÷ delivery CPU (median)']];
  const groups = new Map<string, BadRun[]>();
  for (const r of runs) {
    const key = `${r.mode}|${r.share}`;
    const group = groups.get(key);
    if (group) group.push(r);
    else groups.set(key, [r]);
  }
  for (const mine of groups.values()) {
    const costs = mine.map((r) => r.tier0.brokerPer1k).filter(Number.isFinite);
    const rungCost = costs.length === 0 ? NaN : round(median(costs), 1);
    const p99 = round(median(mine.map((r) => r.latencyP99)));
    if (mine[0]!.mode === 'control') {
      rows.push(['control', `${mine[0]!.share} %`, mine.length, '-', '-', '-', '-', '-', '-', p99, rungCost, '-']);
      continue;
    }
    const spread = (xs: number[]): string[] => {
      const sorted = [...xs].sort((x, y) => x - y);
      if (sorted.length === 0) return ['-', '-', '-'];
      return [`${round(median(sorted), 2)}x`, `${sorted[0]}–${sorted[sorted.length - 1]}x`, `${sorted.filter((x) => x >= 0.9).length} of ${sorted.length}`];
    };
    rows.push([mine[0]!.mode, `${mine[0]!.share} %`, mine.length, ...spread(mine.map((r) => r.ratio!)), ...spread(mine.flatMap((r) => (r.ratioAround === null ? [] : [r.ratioAround]))), p99, rungCost, badCostMedian(mine)]);
  }
  return rows;
}

interface OriginsRun {
  origins: number;
  /** Each origin on an address of its own (none share connections). */
  ownAddresses: boolean;
  perS: number;
  ratio: number | null;
  pssPeakMiB: number;
  /** Tier 0's share of that peak: the process that holds the origins. */
  tier0PssMiB: number;
  tier0Fds: number;
  /** CPU ms per 1,000 deliveries: the daemon (and its tier 0), the merchant process, the broker (who pays for the new connections). */
  cpuPer1k: Measured['cpuPer1k'];
}

async function manyOrigins(ctx: BenchContext): Promise<{ runs: OriginsRun[]; rows: Row[] }> {
  const { flags, res } = ctx;
  const dns = new DnsStub();
  await dns.start();
  res.stops.push(() => dns.close());
  dns.set('*.o.test', { a: ['127.0.0.1'], ttl: 300 });
  // Own addresses: 127.1.0.0 upwards, one per origin (Linux routes all of 127/8 to the loopback interface).
  if (flags.originAddresses) for (let i = 0; i < flags.origins; i++) dns.set(`m${i}.o.test`, { a: [`127.${1 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`], ttl: 300 });
  const m = await MerchantProcess.start({ anyAddress: flags.originAddresses });
  res.stops.push(() => m.stop());
  const port = new URL(m.base).port;
  const daemon = await startDaemon({ res, flags: { ...flags, daemonEnv: { NOTIFY_DNS_SERVERS: dns.address, ...flags.daemonEnv } } }, SCHEDULE, 'origins');
  const tier0 = (await daemon.status()).tiers[0]!.pid!;
  const n = flags.originsN;
  const runs: OriginsRun[] = [];
  let one = NaN;
  // Warm-up, as the bad-merchant runs have: the one-origin run, the ratio's denominator, is then not the
  // daemon's first traffic (cold code, its heap growing, the merchant's connections new).
  await preload(daemon, 2000, (i) => `http://m0.o.test:${port}/warm/${i}`, 'owarm');
  await timeUntilSeen(m, 2000, {}, async () => void (await daemon.d.admin('POST', '/admin/tiers/0/resume')));
  await drainDaemon(daemon);
  for (const k of [1, flags.origins]) {
    log(`origins: ${n} notifications over ${k} origin(s)`);
    await preload(daemon, n, (i) => `http://m${i % k}.o.test:${port}/n/${k}-${i}`, `o${k}`);
    const sampler = new PssSampler(daemon.pids, 200).start();
    const fds = fdPeak(tier0);
    const r = await timeUntilSeen(m, n, { consumer: daemon.pids(), tier0: [tier0], broker: BEAM() }, async () => {
      const x = await daemon.d.admin('POST', '/admin/tiers/0/resume');
      if (x.status !== 200) throw new Error(`resume answered ${x.status}`);
    });
    const pss = await sampler.stop();
    if (flags.cpuProf) log(`origins ${k} window --from ${r.monoUs[0]} --to ${r.monoUs[1]}`);
    if (k === 1) one = r.perS;
    runs.push({ origins: k, ownAddresses: k > 1 && flags.originAddresses, perS: round(r.perS), ratio: k === 1 ? null : round(r.perS / one, 2), pssPeakMiB: round(pss.peakMiB), tier0PssMiB: pss.perPid[tier0] ?? NaN, tier0Fds: fds.stop(), cpuPer1k: r.cpuPer1k });
    await drainDaemon(daemon);
  }
  await res.retire(daemon.d);
  const rows: Row[] = [['origins', 'deliveries /s', 'vs one origin', 'PSS MiB', 'of it tier 0', 'tier-0 fds', 'CPU ms/1k daemon', 'of it tier 0', 'merchant', 'broker']];
  for (const r of runs) rows.push([r.ownAddresses ? `${r.origins} (own addresses)` : r.origins, r.perS, r.ratio === null ? '-' : `${r.ratio}x`, r.pssPeakMiB, r.tier0PssMiB, r.tier0Fds, r.cpuPer1k.consumer, r.cpuPer1k.tier0 ?? '-', r.cpuPer1k.merchant, r.cpuPer1k.broker]);
  return { runs, rows };
}

/** The scenario: bad merchants, then many origins, as the flags ask. */
export async function isolation(ctx: BenchContext): Promise<ScenarioReport> {
  const { flags } = ctx;
  let head = '';
  const record: Record<string, unknown> = { isolation: null, origins: null };
  if (flags.badModes.length > 0) {
    const { runs, rows, summary } = await badMerchantRuns(ctx);
    record.isolation = { n: flags.isolationN, rate: flags.isolationRate, seconds: flags.isolationSeconds, rounds: flags.isolationRuns, runs };
    head += `\n== isolation: the healthy merchant beside a bad one (${flags.isolationN} preloaded in tier 0; latency at ${flags.isolationRate}/s for ${flags.isolationSeconds} s)\n${table(rows)}\n`;
    if (summary !== null) head += `\n== isolation over ${flags.isolationRuns} rounds (and a closing control; each ratio against its own round's control, and against the mean of that control and the next round's)\n${table(summary)}\n`;
  }
  if (flags.origins > 0) {
    const { runs, rows } = await manyOrigins(ctx);
    record.origins = { n: flags.originsN, runs };
    head += `\n== many origins (${flags.originsN} preloaded in tier 0)\n${table(rows)}\n`;
  }
  return { record, head, memory: [], tail: '' };
}
