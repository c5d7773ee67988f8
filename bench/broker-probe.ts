/**
 * What a quorum queue sees of its consumers during a bench run: every 50 ms,
 * its ready messages and, per consumer, deliveries checked out (unsettled)
 * and credit left (`--broker-probe`; RabbitMQ 3.10 on this machine, through
 * `rabbitmqctl eval` of bench/broker-probe.erl). It tells a tier that waits
 * for the broker (credit left, messages ready, nothing delivered) from one
 * that waits on its own window (no credit left: every delivery the prefetch
 * allows is in the worker, unacked).
 */
import { execFile } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { median } from './bench-util.js';

/** One consumer of the queue, as its state machine holds it. */
export interface ProbeConsumer {
  /** up, cancelled (a moved lane still holding deliveries), suspected_down, … */
  readonly status: string;
  /** Delivered and not yet settled. */
  readonly checkedOut: number;
  /** Deliveries the queue may still send it. */
  readonly credit: number;
}

/** One look at the queue. */
export interface ProbeSample {
  /** Wall clock, ms. */
  readonly at: number;
  /** How long the queue's process took to answer, µs. */
  readonly replyUs: number;
  readonly ready: number;
  readonly consumers: readonly ProbeConsumer[];
}

/** Pure: the samples of a probe's output (bench/broker-probe.erl's lines), and whether it ended. */
export function parseProbe(text: string): { samples: ProbeSample[]; ended: boolean } {
  const samples: ProbeSample[] = [];
  let ended = false;
  for (const line of text.split('\n')) {
    if (line === 'end') {
      ended = true;
      continue;
    }
    const [at, replyUs, ready, ...rest] = line.split(' ');
    if (at === undefined || replyUs === undefined || ready === undefined) continue;
    const nums = [Number(at), Number(replyUs), Number(ready)];
    if (!nums.every(Number.isFinite)) continue;
    const consumers: ProbeConsumer[] = [];
    for (const c of rest) {
      const [status, checkedOut, credit] = c.split(':');
      if (status && Number.isFinite(Number(checkedOut)) && Number.isFinite(Number(credit))) consumers.push({ status, checkedOut: Number(checkedOut), credit: Number(credit) });
    }
    samples.push({ at: nums[0]!, replyUs: nums[1]!, ready: nums[2]!, consumers });
  }
  return { samples, ended };
}

/** A run as the queue saw it, over the samples in which it had messages ready. */
export interface ProbeSummary {
  /** Samples with messages ready (the only ones in which a consumer could be waiting for the broker). */
  readonly samples: number;
  /** Percent of them in which no consumer that is up had credit left: the worker's window was full. */
  readonly windowFullPct: number;
  /** Mean deliveries checked out to consumers that are up (the window in use). */
  readonly upCheckedOutMean: number;
  /** Mean deliveries checked out to cancelled consumers: held by moved lanes, outside the window. */
  readonly cancelledCheckedOutMean: number;
  /** The queue process's reply time, ms: median and 90th percentile. */
  readonly replyP50Ms: number;
  readonly replyP90Ms: number;
}

/** Pure: the summary of the samples taken within [from, to] (wall clock, ms); null when none had messages ready. */
export function summarizeProbe(samples: readonly ProbeSample[], from: number, to: number): ProbeSummary | null {
  const mine = samples.filter((s) => s.at >= from && s.at <= to && s.ready > 0);
  if (mine.length === 0) return null;
  const round1 = (x: number): number => Math.round(x * 10) / 10;
  const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;
  const up = (s: ProbeSample): ProbeConsumer[] => s.consumers.filter((c) => c.status === 'up');
  const full = mine.filter((s) => up(s).length > 0 && up(s).every((c) => c.credit === 0)).length;
  const replies = mine.map((s) => s.replyUs / 1000).sort((a, b) => a - b);
  return {
    samples: mine.length,
    windowFullPct: round1((100 * full) / mine.length),
    upCheckedOutMean: round1(mean(mine.map((s) => up(s).reduce((n, c) => n + c.checkedOut, 0)))),
    cancelledCheckedOutMean: round1(mean(mine.map((s) => s.consumers.filter((c) => c.status === 'cancelled').reduce((n, c) => n + c.checkedOut, 0)))),
    replyP50Ms: round1(median(replies)),
    replyP90Ms: round1(replies[Math.min(replies.length - 1, Math.floor(replies.length * 0.9))]!),
  };
}

/** The probe's Erlang source, beside this file in the source tree (dist/bench/… reads bench/…). */
function probeSource(): string {
  for (const rel of ['./broker-probe.erl', '../../bench/broker-probe.erl']) {
    const p = fileURLToPath(new URL(rel, import.meta.url));
    if (existsSync(p)) return readFileSync(p, 'utf8');
  }
  throw new Error('bench/broker-probe.erl not found');
}

/** A probe running inside the local broker. */
export class BrokerProbe {
  private constructor(
    private readonly dir: string,
    private readonly out: string,
    private readonly stopFile: string,
  ) {}

  /**
   * Starts a probe of `queue` (vhost "/") in the local broker, sampling every
   * `intervalMs` for at most `maxMs`. Throws if `rabbitmqctl eval` fails.
   */
  static async start(queue: string, intervalMs = 50, maxMs = 120_000): Promise<BrokerProbe> {
    // The name goes into Erlang source: only the characters notifyd's names use.
    if (!/^[A-Za-z0-9._-]+$/.test(queue)) throw new Error(`broker probe: unexpected queue name ${queue}`);
    const dir = mkdtempSync(join(tmpdir(), 'notifyd-probe-'));
    // The broker runs as its own user; it writes the samples here.
    chmodSync(dir, 0o777);
    const out = join(dir, 'samples.txt');
    const stopFile = join(dir, 'stop');
    const fill: Record<string, string> = { '@OUT@': out, '@STOP@': stopFile, '@QUEUE@': queue, '@INTERVAL@': String(Math.max(1, Math.round(intervalMs))), '@MAX_MS@': String(Math.round(maxMs)) };
    const source = probeSource()
      .split('\n')
      .filter((l) => !l.startsWith('%%'))
      .join('\n')
      .replace(/@[A-Z_]+@/g, (k) => fill[k] ?? k);
    await new Promise<void>((resolve, reject) =>
      execFile('rabbitmqctl', ['eval', source], { timeout: 30_000 }, (err, stdout, stderr) => (err ? reject(new Error(`broker probe: rabbitmqctl eval failed: ${stderr || stdout || err.message}`)) : resolve())),
    );
    return new BrokerProbe(dir, out, stopFile);
  }

  /** Stops the probe (idempotent) and returns its samples; its files are removed. */
  async stop(): Promise<ProbeSample[]> {
    if (!existsSync(this.dir)) return [];
    try {
      writeFileSync(this.stopFile, '');
      // The probe ends within one interval (plus a query's reply time).
      for (let i = 0; i < 60; i++) {
        const text = existsSync(this.out) ? readFileSync(this.out, 'utf8') : '';
        if (parseProbe(text).ended) break;
        await sleep(50);
      }
      return parseProbe(existsSync(this.out) ? readFileSync(this.out, 'utf8') : '').samples;
    } finally {
      rmSync(this.dir, { recursive: true, force: true });
    }
  }
}
