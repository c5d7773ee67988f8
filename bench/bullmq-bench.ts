/**
 * The same job on BullMQ (what a Node user would pick instead): jobs added up
 * front to a Redis-backed queue, then one Worker with the daemon's concurrency in a
 * process of its own POSTs each through a keep-alive undici pool; a non-2xx
 * throws (BullMQ retries with its own backoff). Completed jobs are removed, as
 * an acked AMQP message is.
 *
 * Parent side: `bullmqAvailable`, `BullmqQueue`, `BullmqWorkerProcess`;
 * child side: this file with `--child <json>`.
 */
import { createConnection } from 'node:net';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { Queue, Worker, type Job } from 'bullmq';
import { Agent, request } from 'undici';
import { GoStopChild, childArgs, toParent } from './bench-util.js';
import type { Notification } from '../src/core/message.js';

export const REDIS = { host: '127.0.0.1', port: 6379 } as const;
const QUEUE_NAME = 'notify';

/** True when Redis answers PING on 127.0.0.1:6379 within `timeoutMs`. */
export function bullmqAvailable(timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createConnection(REDIS.port, REDIS.host);
    const done = (ok: boolean): void => {
      clearTimeout(t);
      s.destroy();
      resolve(ok);
    };
    const t = setTimeout(() => done(false), timeoutMs);
    s.once('connect', () => s.write('PING\r\n'));
    s.once('data', (d) => done(d.toString().startsWith('+PONG')));
    s.once('error', () => done(false));
  });
}

export interface BullJobData {
  readonly id: string;
  readonly url: string;
  readonly body: string;
  readonly contentType: string;
}

/** A queue under a unique key prefix; `destroy()` removes every key of it. */
export class BullmqQueue {
  readonly prefix = `notifyd-bench-${randomBytes(4).toString('hex')}`;
  private readonly queue = new Queue<BullJobData>(QUEUE_NAME, { connection: { ...REDIS }, prefix: this.prefix });

  /** `keepCompleted`: BullMQ's own default (every completed job stays in Redis) instead of removing it like an ack. */
  async addMany(notes: Iterable<Notification>, keepCompleted = false, chunk = 1000): Promise<number> {
    let batch: { name: string; data: BullJobData; opts: object }[] = [];
    let added = 0;
    const flush = async (): Promise<void> => {
      if (batch.length === 0) return;
      await this.queue.addBulk(batch);
      added += batch.length;
      batch = [];
    };
    for (const n of notes) {
      batch.push({
        name: 'notify',
        data: { id: n.id, url: n.url, body: typeof n.body === 'string' ? n.body : JSON.stringify(n.body), contentType: n.contentType },
        opts: { jobId: n.id, attempts: 6, backoff: { type: 'exponential', delay: 1000 }, removeOnComplete: !keepCompleted, removeOnFail: 1000 },
      });
      if (batch.length >= chunk) await flush();
    }
    await flush();
    return added;
  }

  async waiting(): Promise<number> {
    return this.queue.getWaitingCount();
  }

  async destroy(): Promise<void> {
    await this.queue.obliterate({ force: true }).catch(() => undefined);
    await this.queue.close().catch(() => undefined);
  }
}

export interface BullmqWorkerOptions {
  readonly prefix: string;
  readonly concurrency: number;
  readonly connections: number;
}

/** The BullMQ worker in a process of its own; `stop()` returns its completed and failed counts. */
export const BullmqWorkerProcess = {
  start: (opts: BullmqWorkerOptions, execArgv: string[] = []): Promise<GoStopChild<{ completed: number; failed: number }>> =>
    GoStopChild.start(fileURLToPath(import.meta.url), 'bullmq-worker', opts, execArgv),
};

async function childMain(opts: BullmqWorkerOptions): Promise<void> {
  const agent = new Agent({ connections: opts.connections, keepAliveTimeout: 10_000 });
  let completed = 0;
  let failed = 0;
  const worker = new Worker<BullJobData>(
    QUEUE_NAME,
    async (job: Job<BullJobData>) => {
      const d = job.data;
      const res = await request(d.url, {
        dispatcher: agent,
        method: 'POST',
        headers: { 'content-type': d.contentType, 'user-agent': 'bullmq-bench' },
        body: d.body,
      });
      await res.body.text();
      if (res.statusCode < 200 || res.statusCode >= 300) throw new Error(`status ${res.statusCode}`);
    },
    { connection: { ...REDIS, maxRetriesPerRequest: null }, prefix: opts.prefix, concurrency: opts.concurrency, autorun: false },
  );
  worker.on('completed', () => completed++);
  worker.on('failed', () => failed++);
  worker.on('error', (err) => toParent({ type: 'error', message: `bullmq worker: ${err.message}` }));
  await worker.waitUntilReady();
  let running = false;
  process.on('message', (m: any) => {
    switch (m?.type) {
      case 'go':
        // The first go starts the worker; a later one resumes it (kept between runs, warm, as notifyd's worker is).
        if (running) worker.resume();
        else {
          running = true;
          void worker.run().catch((err: unknown) => toParent({ type: 'error', message: String(err) }));
        }
        toParent({ type: 'going' });
        return;
      case 'pause':
        void worker.pause().then(() => toParent({ type: 'paused', completed, failed }));
        return;
      case 'stop':
        void (async () => {
          await worker.close();
          await agent.close();
          toParent({ type: 'stopped', completed, failed });
        })();
        return;
      case 'quit':
        process.exit(0);
    }
  });
  process.on('disconnect', () => process.exit(0));
  toParent({ type: 'ready' });
}

const args = childArgs<BullmqWorkerOptions>();
if (args) {
  childMain(args).catch((err: unknown) => {
    toParent({ type: 'error', message: String((err as Error)?.stack ?? err) });
    process.exit(1);
  });
}
