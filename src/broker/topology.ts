import type { Channel } from 'amqplib';
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

/**
 * Pure: the declarations for a schedule. A wait queue exists only for a
 * positive delay; its TTL is that delay and expired messages dead-letter into
 * the work exchange with the tier's routing key. On quorum queues the
 * dead-lettering is at-least-once, which RabbitMQ only allows together with
 * `reject-publish` overflow.
 */
export function buildTopology(prefix: string, scheduleMs: readonly number[], queueType: QueueType, opts: { history?: boolean } = {}): Topology {
  const n = namesFor(prefix);
  const base: Record<string, string | number> = { 'x-queue-type': queueType };
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

/** Declares the topology; idempotent for identical arguments. */
export async function declareTopology(ch: Channel, topo: Topology): Promise<void> {
  for (const e of topo.exchanges) await ch.assertExchange(e.name, e.type, { durable: true });
  for (const q of topo.queues) await ch.assertQueue(q.name, { durable: true, arguments: { ...q.arguments } });
  for (const b of topo.bindings) await ch.bindQueue(b.queue, b.exchange, b.routingKey);
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
