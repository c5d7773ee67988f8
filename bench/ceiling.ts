/**
 * The ceiling: a hand-written amqplib loop doing tier 0's work with no
 * supervisor, no validation, no metrics, no logging. Consume `P.work.0` of a
 * quorum queue with the daemon's prefetch, POST each body through a keep-alive
 * undici pool, ack one by one; a failure is published (with confirm) to
 * `P.wait.1`, then acked. Runs in a process of its own, as a tier worker does.
 *
 * Parent side: `CeilingProcess`; child side: this file with `--child <json>`.
 */
import diagnostics from 'node:diagnostics_channel';
import { fileURLToPath } from 'node:url';
import amqp from 'amqplib';
import type { ConsumeMessage } from 'amqplib';
import { Agent, request } from 'undici';
import { retryTiming } from '../src/core/schedule.js';
import { GoStopChild, childArgs, toParent } from './bench-util.js';

export interface CeilingOptions {
  readonly amqpUrl: string;
  readonly queue: string;
  /** Where a failed attempt goes (default exchange, routing key = queue name). */
  readonly retryQueue: string;
  readonly retryDelayMs: number;
  readonly prefetch: number;
  readonly connections: number;
  /**
   * Not the naive loop: ack the contiguous prefix of finished deliveries with
   * one `multiple` ack per event-loop turn (what a tuned tier worker can do).
   */
  readonly batchAcks?: boolean;
  /**
   * Count a retry's delay from when its request went out, with notifyd's
   * `delivery.delayFromStart` as the allowance, as notifyd does (the
   * retry-lateness comparisons); absent, from the hand-on.
   */
  readonly delayFromStartMs?: number;
}

/** The loop in a process of its own; `stop()` returns how many it acked and handed on. */
export const CeilingProcess = {
  start: (opts: CeilingOptions, execArgv: string[] = []): Promise<GoStopChild<{ acked: number; retried: number }>> =>
    GoStopChild.start(fileURLToPath(import.meta.url), 'ceiling', opts, execArgv),
};

async function childMain(opts: CeilingOptions): Promise<void> {
  const conn = await amqp.connect(opts.amqpUrl, { clientProperties: { connection_name: `notifyd bench ceiling pid ${process.pid}` } });
  conn.on('error', () => undefined);
  const ch = await conn.createConfirmChannel();
  ch.on('error', (err: Error) => toParent({ type: 'error', message: `channel error: ${err.message}` }));
  await ch.prefetch(opts.prefetch);
  const agent = new Agent({ connections: opts.connections, keepAliveTimeout: 10_000 });
  // When each request's headers went out (after any wait for a connection in the pool), by its path (one per
  // notification here): notifyd counts from there too (its request start), not from when it was handed to the pool.
  const sentAt = new Map<string, number>();
  if (opts.delayFromStartMs !== undefined) {
    diagnostics.subscribe('undici:client:sendHeaders', (m) => {
      sentAt.set((m as { request: { path: string } }).request.path, Date.now());
    });
  }
  let acked = 0;
  let retried = 0;
  let inflight = 0;
  let tag: string | null = null;
  let idle: (() => void) | null = null;

  // batchAcks: delivery tags in arrival order; the finished prefix is acked with one `multiple` ack.
  const order: number[] = [];
  let head = 0;
  const finished = new Set<number>();
  let flushQueued = false;
  const flush = (): void => {
    flushQueued = false;
    let last = -1;
    while (head < order.length && finished.has(order[head]!)) {
      last = order[head]!;
      finished.delete(last);
      head++;
    }
    if (head > 4096) {
      order.splice(0, head);
      head = 0;
    }
    if (last >= 0) ch.ack({ fields: { deliveryTag: last } } as ConsumeMessage, true);
  };
  const ack = (msg: ConsumeMessage): void => {
    if (!opts.batchAcks) return ch.ack(msg);
    finished.add(msg.fields.deliveryTag);
    if (!flushQueued) {
      flushQueued = true;
      setImmediate(flush);
    }
  };

  const handle = async (msg: ConsumeMessage): Promise<void> => {
    const n = JSON.parse(msg.content.toString('utf8')) as { url: string; method?: string; body: unknown; contentType?: string };
    let ok = false;
    let error = '';
    try {
      const res = await request(n.url, {
        dispatcher: agent,
        method: (n.method ?? 'POST') as 'POST',
        headers: { 'content-type': n.contentType ?? 'application/json', 'user-agent': 'ceiling' },
        body: typeof n.body === 'string' ? n.body : JSON.stringify(n.body),
      });
      await res.body.text();
      ok = res.statusCode >= 200 && res.statusCode < 300;
      if (!ok) error = `status ${res.statusCode}`;
    } catch (err) {
      error = String((err as Error).message);
    }
    if (!ok) {
      const now = Date.now();
      // The delay counted from the request, as notifyd does (stop 38): counted from the hand-on, the loops'
      // lateness also held attempt 1's answer time and the confirm, which notifyd's no longer does.
      const t = opts.delayFromStartMs === undefined ? { dueAt: now + opts.retryDelayMs, expirationMs: null } : retryTiming(opts.retryDelayMs, sentAt.get(pathOf(n.url)) ?? now, now, opts.delayFromStartMs);
      const headers = { ...(msg.properties.headers ?? {}), 'notify-attempt': 1, 'notify-due-at': t.dueAt, 'notify-last-error': error };
      const props = { messageId: msg.properties.messageId, persistent: true, contentType: 'application/json', headers, ...(t.expirationMs === null ? {} : { expiration: String(t.expirationMs) }) };
      await new Promise<void>((resolve, reject) =>
        ch.publish('', opts.retryQueue, msg.content, props, (err) =>
          err ? reject(err) : resolve(),
        ),
      );
      retried++;
    }
    if (opts.delayFromStartMs !== undefined) sentAt.delete(pathOf(n.url));
    ack(msg);
    acked++;
  };

  process.on('message', (m: any) => {
    switch (m?.type) {
      case 'go':
        void ch
          .consume(opts.queue, (msg) => {
            if (!msg) return;
            if (opts.batchAcks) order.push(msg.fields.deliveryTag);
            inflight++;
            handle(msg)
              .catch((err: unknown) => toParent({ type: 'error', message: String(err) }))
              .finally(() => {
                inflight--;
                if (inflight === 0 && idle) idle();
              });
          })
          .then((r) => {
            tag = r.consumerTag;
            toParent({ type: 'going' });
          });
        return;
      case 'pause':
        // Stops consuming and finishes what it holds, keeping the process, its connections and its JIT for the next go.
        void (async () => {
          if (tag) await ch.cancel(tag);
          tag = null;
          if (inflight > 0) await new Promise<void>((r) => (idle = r));
          idle = null;
          flush();
          toParent({ type: 'paused', acked, retried });
        })();
        return;
      case 'stop':
        void (async () => {
          if (tag) await ch.cancel(tag);
          if (inflight > 0) await new Promise<void>((r) => (idle = r));
          flush();
          await ch.close().catch(() => undefined);
          await conn.close().catch(() => undefined);
          await agent.close();
          toParent({ type: 'stopped', acked, retried });
        })();
        return;
      case 'quit':
        process.exit(0);
    }
  });
  process.on('disconnect', () => process.exit(0));
  toParent({ type: 'ready' });
}

/** A URL's path and query: what undici's request says it sent. */
function pathOf(url: string): string {
  const at = url.indexOf('/', url.indexOf('//') + 2);
  return at < 0 ? '/' : url.slice(at);
}

const args = childArgs<CeilingOptions>();
if (args) {
  childMain(args).catch((err: unknown) => {
    toParent({ type: 'error', message: String((err as Error)?.stack ?? err) });
    process.exit(1);
  });
}
