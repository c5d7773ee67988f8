import { randomBytes } from 'node:crypto';
import type { ChannelModel, ConfirmChannel, ConsumeMessage, Message, Options } from 'amqplib';
import { AckBatcher, ackPolicyFor, nodeAckTimers } from '../broker/ack-batcher.js';
import { PublishChannel } from '../broker/publish-channel.js';
import { namesFor } from '../broker/topology.js';
import { ErrorCodes, NotifyError } from '../core/errors.js';
import type { Config } from '../core/config-model.js';
import type { ChannelLink } from './channel-link.js';
import type { GateOptions } from './origin-gate.js';
import { openWarmUpRig, warmUpMessage, type WarmUpRig, type WarmUpSigners } from './warm-up.js';

/**
 * Why this exists (issue 18): the in-process warm-up (src/tier/warm-up.ts)
 * runs the pipeline on deliveries it builds itself, so the code that reads
 * them off the broker's socket never runs, and the code that does run sees
 * objects of other shapes than amqplib's. V8's traces of a cold tier 1 under
 * a burst showed about 90 functions compiled for the first time (amqplib's
 * frame reading and dispatch, the socket's stream code, acks) and about 50
 * optimised ones thrown away ("wrong map": the real socket and deliveries)
 * in the burst's first seconds. So, once connected and before consuming its
 * queue, the worker sends a few hundred synthetic notifications through the
 * broker to itself, on its own connection: published with confirms to a
 * private queue that dead-letters them at once (so they carry the broker's
 * own dead-letter headers), consumed with the tier's prefetch and ack
 * batching, run through a throwaway pipeline against the in-process HTTP
 * server, their hand-ons published (confirmed) to a private sink.
 *
 * Nothing of it is seen outside the process but three exclusive queues
 * under the prefix (`P.warm-up.<tier>.<pid>-<random>.{wait,work,sink}`)
 * that live for the warm-up (and would die with the connection): no queue
 * of the topology is touched, no merchant called, nothing logged or
 * metered. It ends at its count, its budget, its worker's stop, the
 * broker blocking the connection (a resource alarm) or the first broker
 * error, whichever comes first; its teardown is bounded too.
 */

/** What a broker warm-up did. */
export interface BrokerWarmUpReport {
  /** Synthetic notifications handled (received from the broker and run through the pipeline). */
  readonly attempts: number;
  readonly ms: number;
  /** The private queues it declared (and deleted), for the log. */
  readonly queues: readonly string[];
}

/** How much: `count` notifications, within `budgetMs`, `prefetch` unacked at once (the tier's). */
export interface BrokerWarmUpOptions {
  readonly count: number;
  readonly budgetMs: number;
  readonly prefetch: number;
}

/** How long a warm-up's last attempts may take to finish once it is over, and each step of its teardown. */
const SETTLE_MS = 2000;

/** `p`'s value, or null once it failed or `ms` went by (a step of a teardown that must not hang start-up); never rejects. */
function within<T>(p: Promise<T> | undefined, ms = SETTLE_MS): Promise<T | null | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<null>((r) => (timer = setTimeout(() => r(null), ms)));
  return Promise.race([Promise.resolve(p).catch(() => null), late]).finally(() => clearTimeout(timer));
}

/** `fn()` as a bounded step: amqplib throws at once on a channel already closed, so through a promise either way. */
function step<T>(fn: () => Promise<T> | undefined): Promise<T | null | undefined> {
  return within(Promise.resolve().then(fn));
}

/** A link that acks through `acker` on the warm-up's channel and publishes every hand-on to `sink`; closed once `over()`. */
function sinkLink(pubs: PublishChannel, sink: string, acker: AckBatcher, over: () => boolean): ChannelLink {
  return {
    publish: (_exchange, _routingKey, content, options, trackReturns = true) => pubs.publish('', sink, content, options, trackReturns),
    ack: (msg) => acker.complete(msg.fields.deliveryTag),
    // Given back, it would come round again: the warm-up takes it as done.
    requeue: (msg) => acker.complete(msg.fields.deliveryTag),
    // Once over, the pipeline's hand-ons give up instead of retrying on a channel that is gone.
    get closed() {
      return over();
    },
  };
}

/** The publish options of a synthetic delivery, as a hand-on from the tier before would set them. */
function publishOptions(msg: ConsumeMessage): Options.Publish {
  const p = msg.properties;
  return { contentType: p.contentType, headers: p.headers, messageId: p.messageId, timestamp: p.timestamp, persistent: true };
}

/**
 * Runs synthetic notifications through the broker and a throwaway pipeline
 * of `tier` (see the module comment), on a channel of its own of `conn`,
 * closed afterwards. Never throws: a warm-up that fails only leaves the
 * worker colder; the error is returned for the log.
 */
export async function warmUpThroughBroker(
  conn: ChannelModel,
  config: Config,
  tier: number,
  gate: GateOptions,
  signers: WarmUpSigners,
  opts: BrokerWarmUpOptions,
  stop: AbortSignal,
): Promise<BrokerWarmUpReport & { error?: Error }> {
  const started = Date.now();
  if (opts.count <= 0 || stop.aborted) return { attempts: 0, ms: 0, queues: [] };
  // Blocked already (a memory or disk alarm): its publishes would only wait for the alarm to clear.
  if ((conn as unknown as { connection?: { blocked?: boolean } }).connection?.blocked === true) {
    return { attempts: 0, ms: 0, queues: [], error: new NotifyError(ErrorCodes.BROKER_BLOCKED, 'the broker has blocked the connection (a resource alarm): no warm-up through it') };
  }
  const prefetch = Math.max(1, opts.prefetch);
  let rig: WarmUpRig | null = null;
  let ch: ConfirmChannel | null = null;
  let pubs: PublishChannel | null = null;
  let acker: AckBatcher | null = null;
  let consumerTag: string | null = null;
  let handled = 0;
  let over = false;
  let ownClosed = false;
  let allDone: () => void = () => undefined;
  const done = new Promise<void>((r) => (allDone = r));
  const end = (): void => {
    over = true;
    allDone();
  };
  let budget: NodeJS.Timeout | undefined;
  const queues: string[] = [];
  const inflight = new Set<Promise<void>>();
  stop.addEventListener('abort', end);
  // A resource alarm blocks the connection: publishing on would only wait for it.
  conn.on('blocked', end);
  try {
    rig = await openWarmUpRig(config, tier, gate, signers, stop);
    const { pipeline, base } = rig;
    ch = await conn.createConfirmChannel();
    const own = ch;
    own.on('error', () => undefined);
    own.on('close', () => {
      ownClosed = true;
      end();
    });
    const queue = { durable: false, exclusive: true, autoDelete: false };
    const classic = { 'x-queue-type': 'classic' };
    const names = namesFor(config.prefix);
    // The pid for whoever reads the queue list, a random part because pids repeat across hosts and containers.
    const owner = `${process.pid}-${randomBytes(4).toString('hex')}`;
    const declare = async (part: string, args: Record<string, unknown>): Promise<string> => {
      const name = names.warmUpQueue(tier, owner, part);
      // Listed before the declare: one that succeeds but whose answer is lost is still deleted.
      queues.push(name);
      return (await own.assertQueue(name, { ...queue, arguments: { ...classic, ...args } })).queue;
    };
    const work = await declare('work', {});
    // A message published here expires at once and is dead-lettered to `work` with the broker's x-death headers, as a retry is.
    const wait = await declare('wait', { 'x-message-ttl': 0, 'x-dead-letter-exchange': '', 'x-dead-letter-routing-key': work });
    // Hand-ons land here; only the latest is kept.
    const sink = await declare('sink', { 'x-max-length': 1 });
    pubs = new PublishChannel(conn, own);
    const batcher = new AckBatcher(
      (tag, multiple) => {
        try {
          own.ack({ fields: { deliveryTag: tag } } as Message, multiple);
        } catch {
          /* channel closing: nothing to keep */
        }
      },
      ackPolicyFor(prefetch),
      nodeAckTimers,
    );
    acker = batcher;
    const link = sinkLink(pubs, sink, batcher, () => over);
    await own.prefetch(prefetch);
    consumerTag = (
      await own.consume(work, (msg) => {
        if (msg === null) return end();
        // Over: left unacked, it goes with its queue.
        if (over) return;
        batcher.track(msg.fields.deliveryTag);
        const p = pipeline.handle(link, msg).finally(() => {
          inflight.delete(p);
          if (++handled >= opts.count) end();
        });
        inflight.add(p);
      })
    ).consumerTag;
    budget = setTimeout(end, Math.max(0, started + opts.budgetMs - Date.now()));
    // A prefetch window at a time, each confirmed before the next: the broker is never handed more than the
    // warm-up can take, and the end (count, budget, stop, a closed channel) stops the publishing too.
    for (let i = 0; i < opts.count && !over; ) {
      const batch: Promise<void>[] = [];
      for (const last = Math.min(opts.count, i + prefetch); i < last; i++) {
        const m = warmUpMessage(tier, i, base, Date.now());
        batch.push(pubs.publish('', wait, m.content, publishOptions(m)));
      }
      await Promise.race([Promise.all(batch), done]);
    }
    await done;
    return { attempts: handled, ms: Date.now() - started, queues };
  } catch (err) {
    return { attempts: handled, ms: Date.now() - started, queues, error: err as Error };
  } finally {
    over = true;
    clearTimeout(budget);
    stop.removeEventListener('abort', end);
    conn.off('blocked', end);
    // In order, each step bounded: no new deliveries; the last attempts finish; their acks and hand-ons go out;
    // then the queues and the channel go, and the rig.
    const own = ch;
    const tag = consumerTag;
    if (own !== null && tag !== null && !ownClosed) await step(() => own.cancel(tag));
    await within(Promise.allSettled([...inflight]));
    acker?.flush();
    acker?.discard();
    await within(pubs?.settled());
    await within(pubs?.close());
    // Exclusive queues live as long as the connection, which stays: deleted here, on a fresh channel if the
    // warm-up's own was closed by an error.
    if (queues.length > 0) {
      const via = own !== null && !ownClosed ? own : await step(() => conn.createChannel());
      via?.on('error', () => undefined);
      for (const q of queues) if (via) await step(() => via.deleteQueue(q));
      if (via && via !== own) await step(() => via.close());
    }
    if (own !== null && !ownClosed) await step(() => own.close());
    await within(rig?.close());
  }
}
