import { execFileSync, fork, type ChildProcess } from 'node:child_process';
import amqp from 'amqplib';
import type { ConfirmChannel } from 'amqplib';
import type { LimitsConfig } from '../src/core/config.js';
import { H, encodeNotification, validateNotification, type Notification } from '../src/core/message.js';
import { namesFor } from '../src/broker/topology.js';

/** The limits of config/default.json (the bench validates what it publishes like the ingress would). */
export const BENCH_LIMITS: LimitsConfig = Object.freeze({
  urlMaxLength: 2048,
  idMaxLength: 128,
  maxHeaders: 32,
  headerMaxBytes: 4096,
  bodyMaxBytes: 262144,
});

/** A payment callback of a realistic size (~300 bytes on the wire). */
export function makeNotification(id: string, url: string, now = Date.now()): Notification {
  return validateNotification(
    {
      id,
      url,
      body: {
        event: 'payment.succeeded',
        out_trade_no: id,
        trade_no: `2026${id.replace(/[^0-9a-f]/g, '').padEnd(24, '0').slice(0, 24)}`,
        total_amount: '88.88',
        currency: 'CNY',
        buyer_id: '2088102177846875',
        trade_status: 'TRADE_SUCCESS',
        gmt_payment: new Date(now).toISOString(),
      },
      createdAt: now,
    },
    BENCH_LIMITS,
    { requireId: true },
  );
}

/** AMQP properties exactly as src/publisher.ts sets them for a new notification. */
export function tier0Props(n: Notification, dueAt: number): amqp.Options.Publish {
  return {
    messageId: n.id,
    persistent: true,
    mandatory: true,
    contentType: 'application/json',
    timestamp: Math.floor(n.createdAt / 1000),
    headers: { [H.attempt]: 0, [H.dueAt]: dueAt },
  };
}

/** A confirm channel on its own connection, for the bench's publishers. */
export async function openConfirm(url: string, name: string): Promise<{ ch: ConfirmChannel; close: () => Promise<void> }> {
  const conn = await amqp.connect(url, { clientProperties: { connection_name: name } });
  conn.on('error', () => undefined);
  const ch = await conn.createConfirmChannel();
  ch.on('error', () => undefined);
  let returned = 0;
  ch.on('return', () => {
    returned++;
  });
  return {
    ch,
    close: async () => {
      await ch.close().catch(() => undefined);
      await conn.close().catch(() => undefined);
      if (returned > 0) throw new Error(`${returned} bench messages were returned unroutable (topology missing?)`);
    },
  };
}

/**
 * Publishes `count` messages with confirms, `window` at a time, honouring the
 * socket's back-pressure. `make(i)` returns exchange, routing key, body, props.
 */
export async function publishMany(
  ch: ConfirmChannel,
  count: number,
  make: (i: number) => { exchange: string; routingKey: string; content: Buffer; options: amqp.Options.Publish },
  window = 2000,
): Promise<void> {
  for (let start = 0; start < count; start += window) {
    const end = Math.min(count, start + window);
    for (let i = start; i < end; i++) {
      const m = make(i);
      const ok = ch.publish(m.exchange, m.routingKey, m.content, m.options);
      if (!ok) await new Promise<void>((r) => ch.once('drain', () => r()));
    }
    await ch.waitForConfirms();
  }
}

/** Preloads `n` fresh notifications to `url` into `P.work.0` (the tier-0 ready queue). */
export async function preloadTier0(amqpUrl: string, prefix: string, n: number, url: (id: string) => string, label: string): Promise<void> {
  const names = namesFor(prefix);
  const { ch, close } = await openConfirm(amqpUrl, `notifyd bench preload ${prefix}`);
  try {
    const now = Date.now();
    await publishMany(ch, n, (i) => {
      const id = `${label}-${i}`;
      const note = makeNotification(id, url(id), now);
      return { exchange: names.work, routingKey: names.routingKey(0), content: encodeNotification(note), options: tier0Props(note, now) };
    });
  } finally {
    await close();
  }
}

/** Messages ready and consumers of one queue (passive). */
export async function queueInfo(amqpUrl: string, queue: string): Promise<{ messageCount: number; consumerCount: number }> {
  const conn = await amqp.connect(amqpUrl);
  try {
    const ch = await conn.createChannel();
    ch.on('error', () => undefined);
    const r = await ch.checkQueue(queue);
    return { messageCount: r.messageCount, consumerCount: r.consumerCount };
  } finally {
    await conn.close().catch(() => undefined);
  }
}

export function median(xs: readonly number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** Nearest-rank percentile of an ascending-sorted array. */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))]!;
}

export function round(x: number, digits = 0): number {
  if (!Number.isFinite(x)) return x;
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * A child process speaking tagged request/response messages over IPC:
 * `request({type, ...})` resolves with the child's first message of type `reply`.
 */
export class Child {
  private readonly waiters: { type: string; resolve: (m: any) => void; reject: (e: Error) => void }[] = [];
  private exited = false;
  readonly exit: Promise<number | null>;

  constructor(readonly proc: ChildProcess, readonly name: string) {
    proc.on('message', (m: any) => {
      const i = this.waiters.findIndex((w) => w.type === m?.type);
      if (m?.type === 'error') {
        const w = this.waiters.splice(0);
        for (const x of w) x.reject(new Error(`${name}: ${m.message}`));
        return;
      }
      if (i >= 0) this.waiters.splice(i, 1)[0]!.resolve(m);
    });
    this.exit = new Promise((r) =>
      proc.on('exit', (code) => {
        this.exited = true;
        for (const w of this.waiters.splice(0)) w.reject(new Error(`${name} exited (code ${code}) while waiting for ${w.type}`));
        r(code);
      }),
    );
  }

  static fork(modulePath: string, name: string, args: unknown, execArgv: string[] = []): Child {
    const proc = fork(modulePath, ['--child', JSON.stringify(args)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], execArgv });
    return new Child(proc, name);
  }

  /** Waits for the next message of `type` (sent by the child on its own or in answer to `send`). */
  waitFor<T = any>(type: string, timeoutMs = 120_000): Promise<T> {
    if (this.exited) return Promise.reject(new Error(`${this.name} has exited`));
    return new Promise<T>((resolve, reject) => {
      const t = setTimeout(() => {
        const i = this.waiters.findIndex((w) => w.resolve === res);
        if (i >= 0) this.waiters.splice(i, 1);
        reject(new Error(`${this.name}: no '${type}' within ${timeoutMs}ms`));
      }, timeoutMs);
      const res = (m: T): void => {
        clearTimeout(t);
        resolve(m);
      };
      this.waiters.push({ type, resolve: res, reject: (e) => (clearTimeout(t), reject(e)) });
    });
  }

  send(msg: unknown): void {
    if (!this.exited && this.proc.connected) this.proc.send(msg as object);
  }

  async request<T = any>(msg: { type: string } & Record<string, unknown>, reply: string, timeoutMs?: number): Promise<T> {
    const p = this.waitFor<T>(reply, timeoutMs);
    this.send(msg);
    return p;
  }

  /** Asks the child to quit, then kills it if it lingers. */
  async stop(timeoutMs = 10_000): Promise<void> {
    if (this.exited) return;
    this.send({ type: 'quit' });
    const t = setTimeout(() => this.proc.kill('SIGKILL'), timeoutMs);
    await this.exit;
    clearTimeout(t);
  }
}

/**
 * A bench engine in a process of its own (the ceiling loop, the BullMQ
 * worker): forked, ready, started with `go()`, and `stop()` returns what it
 * counted.
 */
export class GoStopChild<R> {
  private constructor(private readonly child: Child) {}

  static async start<R>(modulePath: string, name: string, opts: unknown, execArgv: string[] = []): Promise<GoStopChild<R>> {
    const child = Child.fork(modulePath, name, opts, execArgv);
    await child.waitFor('ready', 15_000);
    return new GoStopChild<R>(child);
  }

  get pid(): number | undefined {
    return this.child.proc.pid;
  }

  /** Starts consuming. */
  async go(): Promise<void> {
    await this.child.request({ type: 'go' }, 'going');
  }

  /** Stops consuming and lets in-flight work finish, keeping the process for another `go` (children that support it). */
  async pause(): Promise<R> {
    return this.child.request<R>({ type: 'pause' }, 'paused', 30_000);
  }

  /** Stops consuming, lets in-flight work finish, closes; returns what the child counted. */
  async stop(): Promise<R> {
    const r = await this.child.request<R>({ type: 'stop' }, 'stopped', 30_000);
    await this.child.stop();
    return r;
  }
}

/** In a child: the JSON arguments passed by `Child.fork`, or null when not run as a child. */
export function childArgs<T>(): T | null {
  const i = process.argv.indexOf('--child');
  if (i < 0 || !process.send) return null;
  return JSON.parse(process.argv[i + 1] ?? '{}') as T;
}

export function toParent(msg: object): void {
  process.send?.(msg);
}

/** The commit a checkout is at; null when it is not a git checkout. */
export function commitOf(dir: string): string | null {
  try {
    return execFileSync('git', ['-C', dir, 'rev-parse', 'HEAD'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return null;
  }
}
