/**
 * What a quorum queue sees of its consumers during a bench run: every 50 ms,
 * its ready messages and, per consumer, deliveries checked out (unsettled)
 * and credit left (`--broker-probe`; RabbitMQ 3.10 on this machine, through
 * `rabbitmqctl eval` of bench/broker-probe.erl). It tells a tier that waits
 * for the broker (credit left, messages ready, nothing delivered) from one
 * that waits on its own window (no credit left: every delivery the prefetch
 * allows is in the worker, unacked).
 */
import { execFile, execFileSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { median, percentile } from './bench-util.js';

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
  // A line is whole once its newline is written: the text after the last one may be half a line.
  for (const line of text.slice(0, text.lastIndexOf('\n') + 1).split('\n')) {
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

/** A run as the queue saw it, over the samples in which it had messages ready and a consumer up. */
export interface ProbeSummary {
  /**
   * Samples with messages ready (the only ones in which a consumer could be
   * waiting for the broker) and a consumer up (not before the consumer
   * registers, nor in the moment of a lane move).
   */
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

/** Pure: the summary of the samples taken within [from, to] (wall clock, ms); null when none had messages ready and a consumer up. */
export function summarizeProbe(samples: readonly ProbeSample[], from: number, to: number): ProbeSummary | null {
  const up = (s: ProbeSample): ProbeConsumer[] => s.consumers.filter((c) => c.status === 'up');
  const mine = samples.filter((s) => s.at >= from && s.at <= to && s.ready > 0 && up(s).length > 0);
  if (mine.length === 0) return null;
  const round1 = (x: number): number => Math.round(x * 10) / 10;
  const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;
  const full = mine.filter((s) => up(s).every((c) => c.credit === 0)).length;
  const replies = mine.map((s) => s.replyUs / 1000).sort((a, b) => a - b);
  return {
    samples: mine.length,
    windowFullPct: round1((100 * full) / mine.length),
    upCheckedOutMean: round1(mean(mine.map((s) => up(s).reduce((n, c) => n + c.checkedOut, 0)))),
    cancelledCheckedOutMean: round1(mean(mine.map((s) => s.consumers.filter((c) => c.status === 'cancelled').reduce((n, c) => n + c.checkedOut, 0)))),
    replyP50Ms: round1(median(replies)),
    replyP90Ms: round1(percentile(replies, 90)),
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

let brokerPid: number | null = null;

/**
 * The process of the broker node `rabbitmqctl` talks to (asked once, then
 * remembered). Throws when that node does not answer.
 */
export function localBrokerPid(): number {
  if (brokerPid === null) {
    const out = execFileSync('rabbitmqctl', ['eval', 'list_to_integer(os:getpid()).'], { encoding: 'utf8', timeout: 30_000 }).trim();
    const pid = Number(out);
    if (!Number.isInteger(pid) || pid <= 0) throw new Error(`--broker-probe: the broker node's pid is not known (rabbitmqctl answered ${out})`);
    brokerPid = pid;
  }
  return brokerPid;
}

/** A probe running inside the local broker. */
export class BrokerProbe {
  private constructor(
    private readonly dir: string,
    private readonly out: string,
    private readonly stopFile: string,
  ) {}

  /**
   * Starts a probe of the quorum queue `queue` (vhost "/") in the broker
   * process `brokerPid` on this host, sampling every `intervalMs` for at most
   * `maxMs` (a bound in case `stop` is never reached). Throws if the queue is
   * not a quorum queue there, or the probe cannot start; nothing is left
   * behind then.
   */
  static async start(queue: string, brokerPid: number, intervalMs = 50, maxMs = 600_000): Promise<BrokerProbe> {
    const dir = mkdtempSync(join(tmpdir(), 'notifyd-probe-'));
    try {
      const out = join(dir, 'samples.txt');
      const stopFile = join(dir, 'stop');
      // The names go into Erlang source, and as root rabbitmqctl hands its arguments to `su -c "…"`, where a
      // shell expands $, ` and \: only characters that neither reads specially.
      for (const x of [queue, out, stopFile]) if (!/^[A-Za-z0-9._/-]+$/.test(x)) throw new Error(`broker probe: ${x} has characters the probe does not pass to rabbitmqctl`);
      // The broker writes the samples as its own user: the directory is its alone (no one else can plant a link there).
      const owner = statSync(`/proc/${brokerPid}`);
      chownSync(dir, owner.uid, owner.gid);
      chmodSync(dir, 0o700);
      const fill: Record<string, string> = { '@OUT@': out, '@STOP@': stopFile, '@QUEUE@': queue, '@INTERVAL@': String(Math.max(1, Math.round(intervalMs))), '@MAX_MS@': String(Math.round(maxMs)) };
      const source = probeSource()
        .split('\n')
        // The comments quote commands in backticks, which that shell would run.
        .filter((l) => !l.trimStart().startsWith('%%'))
        .join('\n')
        .replace(/@[A-Z_]+@/g, (k) => fill[k] ?? k);
      const answer = await new Promise<string>((resolve, reject) =>
        execFile('rabbitmqctl', ['eval', source], { timeout: 30_000 }, (err, stdout, stderr) => (err ? reject(new Error(`broker probe: rabbitmqctl eval failed: ${stderr || stdout || err.message}`)) : resolve(stdout.trim()))),
      );
      if (answer !== 'ok') throw new Error(`broker probe: not started for ${queue}: ${answer}`);
      return new BrokerProbe(dir, out, stopFile);
    } catch (err) {
      rmSync(dir, { recursive: true, force: true });
      throw err;
    }
  }

  /** Stops the probe (idempotent) and returns its samples; its files are removed. */
  async stop(): Promise<ProbeSample[]> {
    if (!existsSync(this.dir)) return [];
    try {
      writeFileSync(this.stopFile, '');
      // The probe ends within one interval (plus a query's reply time); what it wrote by then is what there is.
      let read = parseProbe('');
      for (let i = 0; i < 60; i++) {
        read = parseProbe(existsSync(this.out) ? readFileSync(this.out, 'utf8') : '');
        if (read.ended || i === 59) break;
        await sleep(50);
      }
      return read.samples;
    } finally {
      rmSync(this.dir, { recursive: true, force: true });
    }
  }
}
