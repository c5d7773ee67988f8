import { randomBytes } from 'node:crypto';
import type { ChannelModel, ConsumeMessage, Message, Options } from 'amqplib';
import { AckBatcher, ackPolicyFor, nodeAckTimers } from '../broker/ack-batcher.js';
import { settleWithin } from '../broker/open-within.js';
import { PublishChannel } from '../broker/publish-channel.js';
import { namesFor } from '../broker/topology.js';
import type { Config } from '../core/config-model.js';
import type { ChannelLink } from './channel-link.js';
import type { GateOptions } from './origin-gate.js';
import { WARM_UP_EXPIRATION, openWarmUpRig, warmUpExpires, warmUpMessage, type WarmUpRig, type WarmUpSigners } from './warm-up.js';

/**
 * Why this exists (issue 18): the in-process warm-up (src/tier/warm-up.ts)
 * runs the pipeline on deliveries it builds itself, so the code that reads
 * them off the broker's socket never runs, and the code that does run sees
 * objects of other shapes than amqplib's. V8's traces of a cold tier 1 under
 * a burst showed about 90 functions compiled for the first time (amqplib's
 * frame reading and dispatch, the socket's stream code, acks) and about 50
 * optimised ones thrown away ("wrong map": the real socket and deliveries)
 * in the burst's first seconds. So, before it connects to consume its queue,
 * the worker sends synthetic notifications (2,000 by default) through the
 * broker to itself: published with confirms to a
 * private queue that dead-letters them at once (so they carry the broker's
 * own dead-letter headers), consumed with the tier's prefetch and ack
 * batching, run through a throwaway pipeline against the in-process HTTP
 * server, their hand-ons published (confirmed) to a private sink.
 *
 * It runs on a connection of its own, to the node the worker will use,
 * closed afterwards: the worker's own connection never publishes before it
 * consumes (a broker in a memory or disk alarm blocks a connection only
 * once it publishes, and a blocked one would hold up the worker's start),
 * and the three exclusive queues it declares under the prefix
 * (`P.warm-up.<tier>.<pid>-<random>.{wait,work,sink}`) go with that
 * connection whatever happens. The objects are of the same classes as the
 * worker's own (amqplib's connection, channel and socket), so V8 optimises
 * the same shapes. Nothing else is seen outside the process: no queue of
 * the topology is touched, no merchant called, nothing logged or metered.
 * It ends at its count, its budget (set-up included), its worker's stop,
 * the broker blocking the connection or closing it, or the first broker
 * error, whichever comes first; its teardown is bounded too.
 */

/** What a broker warm-up did. */
export interface BrokerWarmUpReport {
  /** Synthetic notifications handled (received from the broker and run through the pipeline). */
  readonly attempts: number;
  readonly ms: number;
  /** The private queues it declared (gone with its connection), for the log. */
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

/** A step of the teardown, which must not hang start-up: at most SETTLE_MS; never rejects. */
function within(p: Promise<unknown> | undefined): Promise<boolean> {
  return settleWithin(p, SETTLE_MS);
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

/**
 * The publish options of the i-th synthetic delivery, as a hand-on from the
 * tier before would set them: with an expiration of its own for those that
 * `warmUpExpires` (it expires at once all the same, the queue's TTL being 0,
 * and the broker then adds `original-expiration` to its x-death, as it does
 * to a retry whose attempt took part of its delay).
 */
function publishOptions(msg: ConsumeMessage, i: number): Options.Publish {
  const p = msg.properties;
  const options: Options.Publish = { contentType: p.contentType, headers: p.headers, messageId: p.messageId, timestamp: p.timestamp, persistent: true };
  if (warmUpExpires(i)) options.expiration = WARM_UP_EXPIRATION;
  return options;
}

/**
 * Runs synthetic notifications through the broker and a throwaway pipeline
 * of `tier` (see the module comment), on a connection of its own made by
 * `connect` and closed afterwards. Never throws: a warm-up that fails only
 * leaves the worker colder; the error is returned for the log.
 */
export async function warmUpThroughBroker(
  connect: () => Promise<ChannelModel>,
  config: Config,
  tier: number,
  gate: GateOptions,
  signers: WarmUpSigners,
  opts: BrokerWarmUpOptions,
  stop: AbortSignal,
): Promise<BrokerWarmUpReport & { error?: Error }> {
  const started = Date.now();
  if (opts.count <= 0 || stop.aborted) return { attempts: 0, ms: 0, queues: [] };
  const prefetch = Math.max(1, opts.prefetch);
  // What the body has opened so far, for the teardown (set inside the body, so not narrowed away).
  const got: { rig: WarmUpRig | null; conn: ChannelModel | null; pubs: PublishChannel | null; acker: AckBatcher | null } = { rig: null, conn: null, pubs: null, acker: null };
  let handled = 0;
  let over = false;
  // Set once the teardown has taken what the body opened: a connect or a rig the body gets later is its to close.
  let tornDown = false;
  let error: Error | undefined;
  let allDone: () => void = () => undefined;
  const done = new Promise<void>((r) => (allDone = r));
  const end = (): void => {
    over = true;
    allDone();
  };
  const queues: string[] = [];
  const inflight = new Set<Promise<void>>();
  // The budget covers the set-up too: a connect or a declare that hangs ends the warm-up, not the start.
  const budget = setTimeout(end, opts.budgetMs);
  stop.addEventListener('abort', end);
  const body = async (): Promise<void> => {
    const rig = await openWarmUpRig(config, tier, gate, signers, stop);
    if (tornDown) return void (await rig.close());
    got.rig = rig;
    const { pipeline, base } = rig;
    if (over) return;
    const c = await connect();
    if (tornDown) return void (await c.close().catch(() => undefined));
    got.conn = c;
    c.on('error', () => undefined);
    // A resource alarm (publishing on would only wait for it to clear), or the connection gone.
    c.on('blocked', end);
    c.on('close', end);
    if (over) return;
    const own = await c.createConfirmChannel();
    own.on('error', () => undefined);
    own.on('close', end);
    const queue = { durable: false, exclusive: true, autoDelete: false };
    const classic = { 'x-queue-type': 'classic' };
    const names = namesFor(config.prefix);
    // The pid for whoever reads the queue list, a random part because pids repeat across hosts and containers.
    const owner = `${process.pid}-${randomBytes(4).toString('hex')}`;
    const declare = async (part: string, args: Record<string, unknown>): Promise<string> => {
      const name = names.warmUpQueue(tier, owner, part);
      queues.push(name);
      return (await own.assertQueue(name, { ...queue, arguments: { ...classic, ...args } })).queue;
    };
    const work = await declare('work', {});
    // A message published here expires at once and is dead-lettered to `work` with the broker's x-death headers, as a retry is.
    const wait = await declare('wait', { 'x-message-ttl': 0, 'x-dead-letter-exchange': '', 'x-dead-letter-routing-key': work });
    // Hand-ons land here; only the latest is kept.
    const sink = await declare('sink', { 'x-max-length': 1 });
    const publisher = new PublishChannel(c, own);
    got.pubs = publisher;
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
    got.acker = batcher;
    const link = sinkLink(publisher, sink, batcher, () => over);
    await own.prefetch(prefetch);
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
    });
    // A prefetch window at a time, each confirmed before the next, so the end (count, budget, stop, a closed
    // channel) cuts the publishing short; what is published but not yet consumed goes with the queue.
    for (let i = 0; i < opts.count && !over; ) {
      const batch: Promise<void>[] = [];
      for (const last = Math.min(opts.count, i + prefetch); i < last; i++) {
        const m = warmUpMessage(tier, i, base, Date.now(), config.limits);
        batch.push(publisher.publish('', wait, m.content, publishOptions(m, i)));
      }
      await Promise.race([Promise.all(batch), done]);
    }
  };
  try {
    // The body may still hang in a broker call once the end came: the race lets go of it, and closing the
    // connection below settles it (its error then ignored).
    await Promise.race([
      body().then(
        () => done,
        (err: unknown) => {
          error = err as Error;
        },
      ),
      done,
    ]);
  } finally {
    over = true;
    clearTimeout(budget);
    stop.removeEventListener('abort', end);
    // In order, each step bounded: the last attempts finish (their hand-ons give up on the closed link), their
    // acks go out, the publishes settle; then the connection goes, its queues with it, and the rig.
    await within(Promise.allSettled([...inflight]));
    got.acker?.flush();
    got.acker?.discard();
    await within(got.pubs?.settled());
    tornDown = true;
    const { conn: c, rig } = got;
    // amqplib closes a blocked connection at once instead of waiting for the broker.
    if (c !== null) await within(Promise.resolve().then(() => c.close()));
    await within(rig?.close());
  }
  return { attempts: handled, ms: Date.now() - started, queues, ...(error ? { error } : {}) };
}
