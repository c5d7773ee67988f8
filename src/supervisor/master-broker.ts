import type { ChannelModel, ConfirmChannel } from 'amqplib';
import { ReturnTracker, confirmedWithin, publishConfirmed } from '../broker/confirm.js';
import { CLOSE_WITHIN_MS, NodeRing, closeWithin, nodeRingFor, reconnectDelay, sleep } from '../broker/connection.js';
import { callWithin, closeChannelWithin, openPlainWithin, openWithin, settleWithin } from '../broker/open-within.js';
import { watchCalls } from '../broker/call-watchdog.js';
import { redrive, type RedriveResult } from '../broker/dead-letters.js';
import { listDead } from '../broker/dead-listing.js';
import type { DeadListing } from '../broker/dead-summary.js';
import { buildTopology, declareTopology, namesFor, routeForAttempt, type Topology } from '../broker/topology.js';
import { H, encodeNotification, type Notification } from '../core/message.js';
import { historyOn, redactUrl, type Config } from '../core/config-model.js';
import { ErrorCodes, NotifyError, toErrorData } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { newRunId, type RunVia } from '../history/records.js';
import { HistorySink, historyPublishOptions } from '../history/sink.js';
import type { RedriveBatch } from '../history/superseded.js';
import { withTimeout } from '../core/with-timeout.js';
import { CONFIRM_TIMEOUT_MS } from '../broker/confirm-deadlines.js';

/** How long a resend or recover waits for the broker's confirm, as the ingress does (`confirmTimeoutMs`). */
export const LADDER_CONFIRM_TIMEOUT_MS = CONFIRM_TIMEOUT_MS;

/**
 * What the master does on the broker: one connection, kept up for as long
 * as the daemon runs; the topology declared on every (re)connect;
 * dead-letter redrives, one at a time; queue-depth sampling.
 */
export class MasterBroker {
  private conn: ChannelModel | null = null;
  private ch: ConfirmChannel | null = null;
  private returns: ReturnTracker | null = null;
  /** Scans of P.dead (redrives, listings) run one at a time: two scans on one queue would keep re-marking each other's copies. */
  private redriving: Promise<unknown> = Promise.resolve();
  private readonly topology: Topology;
  private readonly ring: NodeRing;
  /** Queues kept without the leader locator were reported once; every reconnect finds them again. */
  private reportedLegacy = false;
  private closed = false;
  private readonly stop = new AbortController();
  /** History records of the ladders the master starts (redrives); null without history. */
  private readonly history: HistorySink | null;
  private lastHistoryWarn = 0;
  /** Connections that closed with an error (not only their channel): a scan that failed on one failed for that. */
  private readonly closedConns = new WeakSet<ChannelModel>();
  /** Gives the current connection up and reconnects (what losing it does). */
  private dropConnection: (() => void) | null = null;
  /** Why the broker blocks this connection's publishes (a memory or disk alarm), or null. */
  private blockedReason: string | null = null;
  /** How long `startLadder` waits for a confirm (a field so tests can shorten it). */
  ladderConfirmTimeoutMs = LADDER_CONFIRM_TIMEOUT_MS;
  /**
   * How long each broker call of a (re)connect (a channel open, a declaration)
   * and the sampling's channel open may take: a broker that keeps the
   * connection but answers nothing on it must not hold the master for ever.
   */
  callTimeoutMs = CONFIRM_TIMEOUT_MS;
  /**
   * How long the master's other publishes (a scan's moves and copies, its
   * history batches, its events) wait for a confirm: a lost confirm (a
   * quorum leader change) must not hold a scan, and every scan queued
   * behind it, for ever (a field so tests can shorten it).
   */
  confirmTimeoutMs = CONFIRM_TIMEOUT_MS;

  constructor(
    private readonly config: () => Config,
    private readonly log: Logger,
    /** Told when the call watchdog gives the master's connection up (its metric). */
    private readonly onGiveUp: () => void = () => undefined,
  ) {
    const c = config();
    this.topology = buildTopology(c.prefix, c.scheduleMs, c.queueType, { history: historyOn(c) });
    this.ring = nodeRingFor(c.amqpUrl, 'master', null, c.scheduleMs.length);
    const queue = namesFor(c.prefix).history;
    this.history = historyOn(c)
      ? new HistorySink((body) => {
          const ch = this.ch;
          if (!ch) return Promise.reject(new NotifyError(ErrorCodes.BROKER_UNAVAILABLE, 'broker not connected'));
          return confirmedWithin(this.confirmTimeoutMs, publishConfirmed(ch, '', queue, body, historyPublishOptions(), this.returns ?? undefined));
        })
      : null;
  }

  /**
   * Records a ladder the master started (a redrive) from the notification's
   * message body. Never throws: history must not hold up a redrive; a body
   * that is not a notification (a forced redrive of an invalid one) has no
   * history to add to.
   */
  async recordRun(content: Buffer, run: string, at: number, via: RunVia): Promise<void> {
    if (!this.history) return;
    let n: { id?: unknown; createdAt?: unknown; merchant?: unknown; url?: unknown };
    try {
      n = JSON.parse(content.toString('utf8')) as typeof n;
    } catch {
      return;
    }
    if (typeof n?.id !== 'string' || typeof n.createdAt !== 'number' || typeof n.url !== 'string') return;
    const merchant = typeof n.merchant === 'string' ? n.merchant : null;
    try {
      await this.history.record({ t: 'run', id: n.id, createdAt: n.createdAt, run, at, via, merchant, producer: null, url: n.url, content: content.toString('utf8') });
    } catch (err) {
      if (Date.now() - this.lastHistoryWarn > 10_000) {
        this.lastHistoryWarn = Date.now();
        this.log.warn({ err: toErrorData(err) }, 'history record of a redrive not taken by the broker');
      }
    }
  }

  /**
   * Starts a new ladder for a notification from the history (an operator's
   * resend or recover, DESIGN §11): published to tier 0 with the same id,
   * confirmed, then recorded as a run. Stamped before the publish, like the
   * ingress's: the tier may attempt it before this returns, and the history
   * orders a ladder's start before its attempts by time (`at`: the resend's
   * claim time). Bounded like the ingress's publishes: `BROKER_BLOCKED` at
   * once while the broker blocks publishing, `BROKER_UNAVAILABLE` while it
   * is away, `BROKER_CONFIRM_TIMEOUT` when no confirm comes within
   * `LADDER_CONFIRM_TIMEOUT_MS` (an admin call must not hang on a broker that
   * reads nothing) or the channel closes first: the ladder may have started.
   */
  async startLadder(n: Notification, via: RunVia, at = Date.now()): Promise<{ run: string }> {
    const ch = this.publishingChannel();
    const c = this.config();
    const run = newRunId(at);
    const body = encodeNotification(n);
    const route = routeForAttempt(namesFor(c.prefix), c.scheduleMs, 0);
    const headers: Record<string, unknown> = { [H.attempt]: 0, [H.dueAt]: at + (c.scheduleMs[0] ?? 0), [H.run]: run };
    if (this.history) headers[H.recorded] = 1;
    try {
      await withTimeout(
        publishConfirmed(
          ch,
          route.exchange,
          route.routingKey,
          body,
          { messageId: n.id, persistent: true, mandatory: true, contentType: 'application/json', timestamp: Math.floor(n.createdAt / 1000), headers },
          this.returns ?? undefined,
        ),
        this.ladderConfirmTimeoutMs,
        () => new NotifyError(ErrorCodes.BROKER_CONFIRM_TIMEOUT, `the broker did not confirm within ${this.ladderConfirmTimeoutMs / 1000} s`),
      );
    } catch (err) {
      // Only a nack or a publish that never left surely started nothing. A confirm that never came (its channel
      // closed, or too late) may have: said as BROKER_CONFIRM_TIMEOUT, on which the caller keeps its claim.
      const code = (err as { code?: unknown }).code;
      if (code === ErrorCodes.BROKER_NACK || code === ErrorCodes.INTERNAL) throw err;
      throw new NotifyError(
        ErrorCodes.BROKER_CONFIRM_TIMEOUT,
        `no confirm from the broker (${(err as Error).message}): it may still have taken the notification, which stays pending; look it up before sending it again with force`,
        undefined,
        { cause: err },
      );
    }
    await this.recordRun(body, run, at, via);
    return { run };
  }

  /** Why the broker blocks publishing on the master's connection (a memory or disk alarm), or null. */
  get blocked(): string | null {
    return this.ch ? this.blockedReason : null;
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
    let lastKind: 'unreachable' | 'stalled' | 'declare' | null = null;
    for (let attempt = 0; !this.closed; attempt++) {
      const { amqpUrl, prefix, scheduleMs } = this.config();
      // Whether the failure came after the connection was made: then the broker is there but did not answer in time.
      let connected = false;
      try {
        const conn = await this.ring.connect(`notifyd master pid ${process.pid}`);
        connected = true;
        watchCalls(conn, { log: this.log, owner: 'the master', onGiveUp: this.onGiveUp });
        conn.on('error', () => undefined);
        // amqplib handles every frame of a read at once: a connection.close arriving with the channel's open-ok
        // closes both before the awaits below resume, before `lost` listens. Kept, they would leave the master
        // "connected" on a dead channel for good.
        let gone = false;
        conn.once('close', () => (gone = true));
        let ch: ConfirmChannel;
        try {
          const declared = await declareTopology(conn, this.topology, this.callTimeoutMs);
          if (declared.withoutLeaderLocator.length > 0 && !this.reportedLegacy) {
            this.reportedLegacy = true;
            this.log.warn(
              { queues: declared.withoutLeaderLocator },
              'these quorum queues were declared by an older notifyd without x-queue-leader-locator: kept as they are (nothing to do; `rabbitmq-queues rebalance quorum` spreads their leaders over the cluster)',
            );
          }
          ch = await openWithin(conn, this.callTimeoutMs);
          ch.on('error', () => undefined);
          if (this.closed) throw new NotifyError(ErrorCodes.BROKER_UNAVAILABLE, 'master closed while connecting');
          if (gone) throw new NotifyError(ErrorCodes.BROKER_UNAVAILABLE, 'the connection closed as the channel opened');
        } catch (err) {
          // Each failed try must give its connection back, or a retry loop piles them up on the broker; and a
          // broker that did not answer a call may not answer the close either. Awaited, so that a broker that
          // answers nothing has at most one connection closing from this loop at a time.
          await closeWithin(conn, CLOSE_WITHIN_MS);
          throw err;
        }
        const lost = (): void => {
          if (this.conn !== conn) return;
          this.conn = null;
          this.ch = null;
          // Bounded: a broker that stopped answering on it would keep the connection (and its socket) for ever.
          void closeWithin(conn, CLOSE_WITHIN_MS);
          if (!this.closed) {
            this.log.warn('master lost the broker connection; reconnecting');
            void this.connect();
          }
        };
        conn.on('close', (err?: Error) => {
          // With an error: the node went, or the watchdog (or a bounded close) gave the connection up; not the close
          // `lost` itself asks for after a channel error.
          if (err) this.closedConns.add(conn);
          lost();
        });
        ch.on('close', lost);
        // While blocked the broker reads nothing from this connection: a publish would wait for ever.
        this.blockedReason = null;
        conn.on('blocked', (reason: string) => {
          if (this.conn === conn) this.blockedReason = reason || 'blocked';
        });
        conn.on('unblocked', () => {
          if (this.conn === conn) this.blockedReason = null;
        });
        this.conn = conn;
        this.ch = ch;
        this.dropConnection = lost;
        this.returns = new ReturnTracker(ch);
        this.log.info({ broker: redactUrl(amqpUrl), node: this.ring.node?.label, prefix, schedule: scheduleMs }, 'broker connected; topology declared');
        return;
      } catch (err) {
        const delay = reconnectDelay(attempt, 250, 5000);
        const unavailable = toErrorData(err).code === ErrorCodes.BROKER_UNAVAILABLE;
        // One line per kind of trouble, not one per retry.
        const kind = unavailable ? (connected ? 'stalled' : 'unreachable') : 'declare';
        if (this.closed) return;
        if (kind !== lastKind) {
          lastKind = kind;
          if (kind === 'stalled') {
            this.log.error(
              { broker: redactUrl(amqpUrl), node: this.ring.node?.label, err: toErrorData(err).message },
              `RabbitMQ at ${redactUrl(amqpUrl)} took the connection but did not answer on it in time; reconnecting (to the next node) with backoff`,
            );
          } else if (kind === 'unreachable') {
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

  /**
   * Moves parked notifications back to tier 0 (one scan of P.dead at a time).
   * `stuck` says which parked ones would only be parked again (a merchant
   * still disabled), to be stepped over like `blocked` and `invalid` ones;
   * `history` opens each batch's part in the history: which ones were
   * resent since (dropped) or are being resent (held), and claims of the
   * ones moved.
   */
  redrive(
    limit: number,
    force: boolean,
    stuck?: (reason: string, content: Buffer) => boolean,
    history?: () => Promise<RedriveBatch>,
  ): Promise<RedriveResult> {
    return this.deadScan(() => {
      const ch = this.publishingChannel();
      return redrive(ch, this.config(), limit, force, {
        returns: this.returns ?? undefined,
        confirmTimeoutMs: this.confirmTimeoutMs,
        stuck,
        ...(this.history ? { recordRun: (content: Buffer, run: string, at: number) => this.recordRun(content, run, at, 'redrive') } : {}),
        ...(history
          ? {
              history,
              onSuperseded: (id: string, reason: string) =>
                this.log.info({ id, reason }, 'redrive dropped a parked copy: the notification was resent or recovered after it was parked (moving it would deliver it twice)'),
            }
          : {}),
      });
    });
  }

  /** Lists parked notifications without consuming them (one scan of P.dead at a time). */
  listDead(limit: number): Promise<DeadListing> {
    return this.deadScan(() => {
      const ch = this.publishingChannel();
      // A failed copy gives the originals back by dropping the connection: closing only the channel would wait for a
      // close-ok, and leave a closing channel in place meanwhile.
      const giveBack = async (): Promise<void> => {
        if (this.ch === ch) this.dropConnection?.();
      };
      return listDead(ch, this.config(), limit, this.returns ?? undefined, giveBack, this.confirmTimeoutMs);
    });
  }

  /**
   * The channel a ladder start or a scan of P.dead publishes on. Refused
   * while the broker blocks the connection (an alarm): an admin call must not
   * wait the alarm out, and a scan's first publish would stop the broker
   * reading the connection, its next `get` then waiting with every scan
   * queued behind it.
   */
  private publishingChannel(): ConfirmChannel {
    const ch = this.ch;
    if (!ch) throw new NotifyError(ErrorCodes.BROKER_UNAVAILABLE, 'broker not connected');
    if (this.blockedReason !== null) throw new NotifyError(ErrorCodes.BROKER_BLOCKED, `the broker blocks publishing (${this.blockedReason}); retry later`);
    return ch;
  }

  /**
   * Runs `scan` after every scan of P.dead asked for before it. A scan whose
   * connection closed under it (a node gone, or given up by the call
   * watchdog) fails with `BROKER_UNAVAILABLE`, not as an internal error:
   * amqplib fails its pending call with a plain error. Only the connection's
   * close counts: an error of the scan's own that closed just the channel
   * (a missing queue, a bad delivery tag) keeps its own answer.
   */
  private deadScan<T>(scan: () => Promise<T>): Promise<T> {
    const run = this.redriving.then(async () => {
      const conn = this.conn;
      try {
        return await scan();
      } catch (err) {
        if (conn === null || !this.closedConns.has(conn) || toErrorData(err).code !== ErrorCodes.INTERNAL) throw err;
        throw new NotifyError(ErrorCodes.BROKER_UNAVAILABLE, `the broker connection was lost during the scan (${toErrorData(err).message}); it stopped there: retry`, undefined, { cause: err });
      }
    });
    this.redriving = run.catch(() => undefined);
    return run;
  }

  /**
   * Publishes an operational event on `P.outcomes` (e.g. `merchant.disabled`),
   * best effort: like outcome events, it reaches the queues bound to its key.
   */
  async publishEvent(key: string, body: object): Promise<void> {
    const ch = this.ch;
    if (!ch) throw new NotifyError(ErrorCodes.BROKER_UNAVAILABLE, 'broker not connected');
    const { outcomes } = namesFor(this.config().prefix);
    await confirmedWithin(this.confirmTimeoutMs, publishConfirmed(ch, outcomes, key, Buffer.from(JSON.stringify(body)), { persistent: true, contentType: 'application/json' }));
  }

  /** Ready messages per queue of the topology; nothing when not connected. */
  async queueDepths(): Promise<Map<string, number>> {
    const out = new Map<string, number>();
    const conn = this.conn;
    if (!conn) return out;
    // A separate channel: checkQueue on a missing queue closes the channel it ran on.
    // Bounded: a stalled open would stop the sampling (its runs do not overlap) for as long as the connection lasts.
    const ch = await openPlainWithin(conn, this.callTimeoutMs).catch(() => null);
    if (!ch) return out;
    ch.on('error', () => undefined);
    const stalled = 'broker did not answer a queue check in time';
    try {
      for (const q of this.topology.queues) out.set(q.name, (await callWithin(ch.checkQueue(q.name), this.callTimeoutMs, stalled)).messageCount);
    } catch (err) {
      this.log.debug({ err: toErrorData(err) }, 'queue sampling failed');
    } finally {
      // Its close too: amqplib's waits for a close-ok a stalled broker never sends.
      await closeChannelWithin(ch, this.callTimeoutMs);
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
    // Bounded: a batch whose confirm never comes would hold the master's exit.
    await settleWithin(this.history?.close(), this.confirmTimeoutMs);
    const { ch, conn } = this;
    this.ch = null;
    this.conn = null;
    // Bounded: amqplib's closes wait for a close-ok that a broker which stopped answering never sends.
    if (ch) await closeChannelWithin(ch, CLOSE_WITHIN_MS);
    if (conn) await closeWithin(conn, CLOSE_WITHIN_MS);
  }
}
