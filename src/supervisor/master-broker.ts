import type { ChannelModel, ConfirmChannel } from 'amqplib';
import { ReturnTracker } from '../broker/confirm.js';
import { NodeRing, nodeRingFor, reconnectDelay, sleep } from '../broker/connection.js';
import { redrive, type RedriveResult } from '../broker/dead-letters.js';
import { buildTopology, declareTopology, type Topology } from '../broker/topology.js';
import { redactUrl, type Config } from '../core/config.js';
import { ErrorCodes, NotifyError, toErrorData } from '../core/errors.js';
import type { Logger } from '../core/logger.js';

/**
 * What the master does on the broker: one connection, kept up for as long
 * as the daemon runs; the topology declared on every (re)connect;
 * dead-letter redrives, one at a time; queue-depth sampling.
 */
export class MasterBroker {
  private conn: ChannelModel | null = null;
  private ch: ConfirmChannel | null = null;
  private returns: ReturnTracker | null = null;
  /** Redrives run one at a time: two scans on one queue would keep re-marking each other's skips. */
  private redriving: Promise<unknown> = Promise.resolve();
  private readonly topology: Topology;
  private readonly ring: NodeRing;
  /** Queues kept without the leader locator were reported once; every reconnect finds them again. */
  private reportedLegacy = false;
  private closed = false;
  private readonly stop = new AbortController();

  constructor(
    private readonly config: () => Config,
    private readonly log: Logger,
  ) {
    const c = config();
    this.topology = buildTopology(c.prefix, c.scheduleMs, c.queueType);
    this.ring = nodeRingFor(c.amqpUrl, 'master', null, c.scheduleMs.length);
  }

  get connected(): boolean {
    return this.ch !== null;
  }

  /** `host:port` of the node the master is connected to, or null. */
  get node(): string | null {
    return this.ch ? (this.ring.node?.label ?? null) : null;
  }

  get queues(): readonly string[] {
    return this.topology.queues.map((q) => q.name);
  }

  /** Connects (retrying without end until closed) and declares the topology. */
  async connect(): Promise<void> {
    let lastKind: 'unreachable' | 'declare' | null = null;
    for (let attempt = 0; !this.closed; attempt++) {
      const { amqpUrl, prefix, scheduleMs } = this.config();
      try {
        const conn = await this.ring.connect(`notifyd master pid ${process.pid}`);
        conn.on('error', () => undefined);
        let ch: ConfirmChannel;
        try {
          const declared = await declareTopology(conn, this.topology);
          if (declared.withoutLeaderLocator.length > 0 && !this.reportedLegacy) {
            this.reportedLegacy = true;
            this.log.warn(
              { queues: declared.withoutLeaderLocator },
              'these quorum queues were declared by an older notifyd without x-queue-leader-locator: kept as they are (nothing to do; `rabbitmq-queues rebalance quorum` spreads their leaders over the cluster)',
            );
          }
          ch = await conn.createConfirmChannel();
          ch.on('error', () => undefined);
        } catch (err) {
          // Each failed try must give its connection back, or a retry loop piles them up on the broker.
          await conn.close().catch(() => undefined);
          throw err;
        }
        const lost = (): void => {
          if (this.conn !== conn) return;
          this.conn = null;
          this.ch = null;
          void conn.close().catch(() => undefined);
          if (!this.closed) {
            this.log.warn('master lost the broker connection; reconnecting');
            void this.connect();
          }
        };
        conn.on('close', lost);
        ch.on('close', lost);
        this.conn = conn;
        this.ch = ch;
        this.returns = new ReturnTracker(ch);
        this.log.info({ broker: redactUrl(amqpUrl), node: this.ring.node?.label, prefix, schedule: scheduleMs }, 'broker connected; topology declared');
        return;
      } catch (err) {
        const delay = reconnectDelay(attempt, 250, 5000);
        const unreachable = toErrorData(err).code === ErrorCodes.BROKER_UNAVAILABLE;
        // One line per kind of trouble, not one per retry.
        const kind = unreachable ? 'unreachable' : 'declare';
        if (kind !== lastKind) {
          lastKind = kind;
          if (unreachable) {
            this.log.error(
              { broker: redactUrl(amqpUrl), err: toErrorData(err).message },
              `RabbitMQ is not reachable at ${redactUrl(amqpUrl)}; start it (e.g. \`rabbitmq-server -detached\` or \`docker compose up -d rabbitmq\`) — retrying with backoff`,
            );
          } else {
            this.log.error(
              { err: toErrorData(err).message },
              /PRECONDITION/i.test(String((err as Error)?.message))
                ? `the broker refused the topology of prefix "${prefix}": a queue exists with other arguments (another schedule, queue type or an older notifyd). Use another prefix, or delete the prefix's empty queues; retrying with backoff`
                : 'topology declaration failed; retrying with backoff',
            );
          }
        }
        await sleep(delay, this.stop.signal);
      }
    }
  }

  /** Moves parked notifications back to tier 0 (one redrive at a time). */
  redrive(limit: number, force: boolean): Promise<RedriveResult> {
    const run = this.redriving.then(() => {
      const ch = this.ch;
      if (!ch) throw new NotifyError(ErrorCodes.BROKER_UNAVAILABLE, 'broker not connected');
      return redrive(ch, this.config(), limit, force, this.returns ?? undefined);
    });
    this.redriving = run.catch(() => undefined);
    return run;
  }

  /** Ready messages per queue of the topology; nothing when not connected. */
  async queueDepths(): Promise<Map<string, number>> {
    const out = new Map<string, number>();
    const conn = this.conn;
    if (!conn) return out;
    // A separate channel: checkQueue on a missing queue closes the channel it ran on.
    const ch = await conn.createChannel().catch(() => null);
    if (!ch) return out;
    ch.on('error', () => undefined);
    try {
      for (const q of this.topology.queues) out.set(q.name, (await ch.checkQueue(q.name)).messageCount);
    } catch (err) {
      this.log.debug({ err: toErrorData(err) }, 'queue sampling failed');
    } finally {
      await ch.close().catch(() => undefined);
    }
    return out;
  }

  /** Stops connecting and reconnecting; what is open stays open until `close`. */
  halt(): void {
    this.closed = true;
    this.stop.abort();
  }

  /** Stops reconnecting, closes channel then connection. Idempotent. */
  async close(): Promise<void> {
    this.halt();
    const { ch, conn } = this;
    this.ch = null;
    this.conn = null;
    await ch?.close().catch(() => undefined);
    await conn?.close().catch(() => undefined);
  }
}
