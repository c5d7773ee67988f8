import type { Channel, ChannelModel } from 'amqplib';
import { callWithin, closeChannelWithin, openPlainWithin } from './open-within.js';
import type { QueueType } from '../core/config.js';
import { holdDelayMs } from '../core/schedule.js';

/** Broker object names for one installation (DESIGN §3). */
export interface Names {
  readonly work: string;
  readonly dead: string;
  readonly outcomes: string;
  /** History records on their way to the recorder (DESIGN §11). */
  readonly history: string;
  workQueue(tier: number): string;
  waitQueue(tier: number): string;
  holdQueue(tier: number): string;
  routingKey(tier: number): string;
  /**
   * A private queue of one tier worker's warm-up through the broker
   * (src/tier/broker-warm-up.ts): exclusive to the warm-up's own
   * connection and gone with it, never part of the topology.
   */
  warmUpQueue(tier: number, owner: string, part: string): string;
}

export function namesFor(prefix: string): Names {
  return Object.freeze({
    work: `${prefix}.work`,
    dead: `${prefix}.dead`,
    outcomes: `${prefix}.outcomes`,
    history: `${prefix}.history`,
    workQueue: (tier: number) => `${prefix}.work.${tier}`,
    waitQueue: (tier: number) => `${prefix}.wait.${tier}`,
    holdQueue: (tier: number) => `${prefix}.hold.${tier}`,
    routingKey: (tier: number) => `tier.${tier}`,
    warmUpQueue: (tier: number, owner: string, part: string) => `${prefix}.warm-up.${tier}.${owner}.${part}`,
  });
}

export interface ExchangeDecl {
  readonly name: string;
  readonly type: 'direct' | 'topic';
}

export interface QueueDecl {
  readonly name: string;
  readonly arguments: Readonly<Record<string, string | number>>;
}

export interface BindingDecl {
  readonly queue: string;
  readonly exchange: string;
  readonly routingKey: string;
}

/** Everything the master declares; workers only verify. */
export interface Topology {
  readonly exchanges: readonly ExchangeDecl[];
  readonly queues: readonly QueueDecl[];
  readonly bindings: readonly BindingDecl[];
}

/** The queue argument that places a new quorum queue's leader (RabbitMQ ≥ 3.10). */
export const LEADER_LOCATOR = 'x-queue-leader-locator';

/**
 * Pure: the declarations for a schedule. A wait queue exists only for a
 * positive delay; its TTL is that delay and expired messages dead-letter into
 * the work exchange with the tier's routing key. On quorum queues the
 * dead-lettering is at-least-once, which RabbitMQ only allows together with
 * `reject-publish` overflow. Quorum queues are replicated on the broker's
 * default group size (3 nodes) and their leaders are placed `balanced`: the
 * default, `client-local`, would put every leader on the node the declaring
 * master happens to be on, so that one node would do all the queue work and
 * its loss would move every leader at once.
 */
export function buildTopology(prefix: string, scheduleMs: readonly number[], queueType: QueueType, opts: { history?: boolean } = {}): Topology {
  const n = namesFor(prefix);
  const base: Record<string, string | number> = queueType === 'quorum' ? { 'x-queue-type': queueType, [LEADER_LOCATOR]: 'balanced' } : { 'x-queue-type': queueType };
  const queues: QueueDecl[] = [];
  const bindings: BindingDecl[] = [];
  // A work queue dead-letters into P.dead: nothing does so on purpose, but a
  // broker that gives up on a message (RabbitMQ 4's default delivery limit of
  // 20 on quorum queues) then parks it instead of dropping it.
  const workArgs: Record<string, string | number> = { ...base, 'x-dead-letter-exchange': '', 'x-dead-letter-routing-key': n.dead };
  if (queueType === 'quorum') {
    workArgs['x-dead-letter-strategy'] = 'at-least-once';
    workArgs['x-overflow'] = 'reject-publish';
  }
  /** A queue whose messages go back to tier `tier`'s work queue after `ttlMs`. */
  const delayQueue = (name: string, ttlMs: number, tier: number): QueueDecl => {
    const args: Record<string, string | number> = {
      ...base,
      'x-message-ttl': ttlMs,
      'x-dead-letter-exchange': n.work,
      'x-dead-letter-routing-key': n.routingKey(tier),
    };
    if (queueType === 'quorum') {
      args['x-dead-letter-strategy'] = 'at-least-once';
      args['x-overflow'] = 'reject-publish';
    }
    return { name, arguments: args };
  };
  scheduleMs.forEach((delayMs, tier) => {
    queues.push({ name: n.workQueue(tier), arguments: { ...workArgs } });
    bindings.push({ queue: n.workQueue(tier), exchange: n.work, routingKey: n.routingKey(tier) });
    if (delayMs > 0) queues.push(delayQueue(n.waitQueue(tier), delayMs, tier));
    // Notifications for a saturated origin wait here, outside the tier's window, and come back to the same tier.
    const holdMs = holdDelayMs(scheduleMs, tier);
    if (holdMs > 0) queues.push(delayQueue(n.holdQueue(tier), holdMs, tier));
  });
  queues.push({ name: n.dead, arguments: { ...base } });
  // Only with history on: nothing else would consume it.
  if (opts.history) queues.push({ name: n.history, arguments: { ...base } });
  return Object.freeze({
    exchanges: Object.freeze([
      { name: n.work, type: 'direct' as const },
      { name: n.outcomes, type: 'topic' as const },
    ]),
    queues: Object.freeze(queues),
    bindings: Object.freeze(bindings),
  });
}

/**
 * Where a notification goes to wait for attempt `tier`: its wait queue through
 * the default exchange, or straight to the work exchange when the delay is 0.
 */
export function routeForAttempt(names: Names, scheduleMs: readonly number[], tier: number): { exchange: string; routingKey: string } {
  return (scheduleMs[tier] ?? 0) > 0
    ? { exchange: '', routingKey: names.waitQueue(tier) }
    : { exchange: names.work, routingKey: names.routingKey(tier) };
}

/** Pure: the same queue without the leader locator (as earlier notifyd versions declared it). */
export function withoutLeaderLocator(q: QueueDecl): QueueDecl {
  const args: Record<string, string | number> = { ...q.arguments };
  delete args[LEADER_LOCATOR];
  return { name: q.name, arguments: args };
}

/** Pure: whether a declare failed only because the queue exists without (or with another) leader locator. */
export function isLeaderLocatorConflict(err: unknown): boolean {
  const msg = String((err as Error)?.message ?? err);
  return /PRECONDITION/i.test(msg) && msg.includes(`'${LEADER_LOCATOR}'`);
}

/** What `declareTopology` found. */
export interface DeclareResult {
  /** Existing quorum queues kept as they are, without the leader locator. */
  readonly withoutLeaderLocator: readonly string[];
}

/**
 * Declares the topology on channels of its own (closed afterwards);
 * idempotent for identical arguments. A quorum queue that exists without
 * the leader locator (declared by an older notifyd) is accepted as it is:
 * the locator only places a new queue's leader, and the broker refuses to
 * re-declare a queue with another value (PRECONDITION_FAILED, which closes
 * the channel). Any other difference fails as before.
 *
 * `callMs` bounds each call (the channel's open, each declaration and
 * binding; 0: no bound), not the whole: creating quorum queues on a busy
 * cluster may take long in sum while nothing is stuck. A call the broker
 * does not answer in time fails with `BROKER_UNAVAILABLE`.
 */
export async function declareTopology(conn: Pick<ChannelModel, 'createChannel'>, topo: Topology, callMs = 0): Promise<DeclareResult> {
  const within = <T>(p: Promise<T>): Promise<T> => callWithin(p, callMs, 'broker did not declare the topology in time');
  const legacy: string[] = [];
  let ch = await openPlainWithin(conn, callMs);
  ch.on('error', () => undefined);
  try {
    for (const e of topo.exchanges) await within(ch.assertExchange(e.name, e.type, { durable: true }));
    for (const q of topo.queues) {
      try {
        await within(ch.assertQueue(q.name, { durable: true, arguments: { ...q.arguments } }));
      } catch (err) {
        if (!(LEADER_LOCATOR in q.arguments) || !isLeaderLocatorConflict(err)) throw err;
        ch = await openPlainWithin(conn, callMs);
        ch.on('error', () => undefined);
        await within(ch.assertQueue(q.name, { durable: true, arguments: { ...withoutLeaderLocator(q).arguments } }));
        legacy.push(q.name);
      }
    }
    for (const b of topo.bindings) await within(ch.bindQueue(b.queue, b.exchange, b.routingKey));
  } catch (err) {
    // Not waited for: amqplib's close waits for the broker's close-ok, which a broker that answered nothing in time
    // may never send; the caller gives the connection up (a refused declaration has closed the channel already).
    void ch.close().catch(() => undefined);
    throw err;
  }
  await closeChannelWithin(ch, callMs);
  return { withoutLeaderLocator: legacy };
}

/** Passive check that the queues exist (workers never redeclare). Throws if one is missing. */
export async function verifyQueues(ch: Channel, queues: readonly string[]): Promise<void> {
  for (const q of queues) await ch.checkQueue(q);
}

/** Deletes every object of a topology (tests and `notifyd` teardown). */
export async function deleteTopology(ch: Channel, topo: Topology): Promise<void> {
  for (const q of topo.queues) await ch.deleteQueue(q.name);
  for (const e of topo.exchanges) await ch.deleteExchange(e.name);
}
