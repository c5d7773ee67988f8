import type { ChannelModel, ConfirmChannel, Options } from 'amqplib';
import { UNANSWERED_CALL_MS, watchCalls } from './call-watchdog.js';
import { CLOSE_WITHIN_MS, NodeRing, closeWithin, nodeRingFor, reconnectDelay, sleep, type OpenNode } from './connection.js';
import { ReturnTracker, publishConfirmed } from './confirm.js';
import { CONFIRM_TIMEOUT_MS } from './confirm-deadlines.js';
import { openWithin } from './open-within.js';
import { ErrorCodes, NotifyError, hasCode } from '../core/errors.js';
import { H, encodeNotification, type Notification } from '../core/message.js';
import { namesFor, routeForAttempt, type Names } from './topology.js';

/** Least time between two channel renewals after nacks. */
const RENEW_GAP_MS = 250;
/** Most sends of one publish (the first and what goes again after a nack or a lost channel). */
const MAX_SENDS = 5;

/** The headers a new ladder starts with. */
function ladderHeaders(dueAt: number, opts: PublishOptions): Record<string, unknown> {
  const h: Record<string, unknown> = { [H.attempt]: 0, [H.dueAt]: dueAt };
  if (opts.producer) h[H.producer] = opts.producer;
  if (opts.run !== undefined) h[H.run] = opts.run;
  if (opts.recorded) h[H.recorded] = 1;
  return h;
}

export interface PublisherOptions {
  /** One AMQP URL or the comma-separated nodes of one cluster. */
  readonly amqpUrl: string;
  /** Whose connection this is, for the node it starts at (default: a library client's). */
  readonly role?: 'ingress' | 'client';
  /**
   * How long a publish waits for a connection being opened (a failover to
   * the next node) before it fails, and for how long after a first failure
   * (a nack, its channel closed under it) it may be sent again on another
   * channel. Default 2 s.
   */
  readonly failoverWaitMs?: number;
  readonly prefix: string;
  /** Only entry 0 matters here: where a new notification waits for its first attempt. */
  readonly scheduleMs: readonly number[];
  /** Connection name in the broker. */
  readonly name: string;
  /** How long a publish may wait for the confirm before it counts as failed. */
  readonly confirmTimeoutMs?: number;
  /** Keep reconnecting in the background (ingress) rather than on demand (client). */
  readonly keepConnected?: boolean;
  /** Most publishes waiting for their confirm at once (read per publish, so a reload applies); past it a publish fails with `OVERLOADED`. Default unbounded. */
  readonly maxInflight?: () => number;
  readonly onStateChange?: (connected: boolean, err?: Error) => void;
  /** The broker nacked a publish and the channel was replaced (see `renewChannel`). */
  readonly onChannelRenewed?: () => void;
  /** How a connection to one node is opened (tests put a fake here). */
  readonly openNode?: OpenNode;
  /** The broker blocked (a memory or disk alarm) or unblocked this connection. */
  readonly onBlocked?: (blocked: boolean, reason?: string) => void;
  /** The call watchdog gave the connection up (the broker left a call unanswered); its loss is reported too. */
  readonly onGiveUp?: () => void;
}

/** Options of one publish. */
export interface PublishOptions {
  /** The producer (ingress token name) that submitted it, carried as `notify-producer`. */
  readonly producer?: string | null;
  /** The ladder's id (`notify-run`), for the history. */
  readonly run?: string;
  /** The publisher records the ladder's start in the history itself (`notify-recorded`). */
  readonly recorded?: boolean;
  /** The notification already encoded (`encodeNotification`), when the caller needed it too. */
  readonly body?: Buffer;
}

/**
 * Publishes new notifications into tier 0 with publisher confirms. Messages are
 * `mandatory`: one that no queue takes (topology missing) is returned and the
 * publish fails instead of being silently dropped. Not connected → fails fast
 * with `BROKER_UNAVAILABLE` so the caller can answer 503, unless a connection
 * is being opened (a failover to the next node): then it waits for it, a
 * short while. A publish whose channel closed under it (its node went away)
 * or that the broker nacked is sent again on the next channel, for a short
 * while, with the same id: at worst a duplicate the merchant dedupes, never
 * a loss.
 */
export class NotificationPublisher {
  private conn: ChannelModel | null = null;
  private ch: ConfirmChannel | null = null;
  private connecting: Promise<void> | null = null;
  private closed = false;
  private readonly stop = new AbortController();
  private readonly names: Names;
  private readonly ring: NodeRing;
  /** Returned-message trackers, one per channel. */
  private readonly returns = new WeakMap<ConfirmChannel, ReturnTracker>();
  /** Channels replaced on purpose: their close is not a lost connection. */
  private readonly retired = new WeakSet<ConfirmChannel>();
  /** What to do when the current connection is lost (set while there is one). */
  private lost: (() => void) | null = null;
  private renewing: Promise<void> | null = null;
  private renewedAt = -Infinity;
  private blockedReason: string | null = null;
  /** The errors of confirms that did not come in time (same code as a lost channel's, handled otherwise). */
  private readonly timedOut = new WeakSet<Error>();
  private inflight = 0;
  /** Publishes waiting for their confirm, to be failed at once when the broker blocks the connection. */
  private readonly waiting = new Set<(err: Error) => void>();

  constructor(private readonly opts: PublisherOptions) {
    this.names = namesFor(opts.prefix);
    this.ring = nodeRingFor(opts.amqpUrl, opts.role ?? 'client', null, 0, opts.openNode);
  }

  get connected(): boolean {
    return this.ch !== null;
  }

  /** `host:port` of the node this publisher is connected to, or null. */
  get node(): string | null {
    return this.ch ? (this.ring.node?.label ?? null) : null;
  }

  /** Why the broker blocks publishing on this connection (memory or disk alarm), or null. */
  get blocked(): string | null {
    return this.blockedReason;
  }

  /** Publishes waiting for their confirm. */
  get inflightCount(): number {
    return this.inflight;
  }

  /** Connects once; with `keepConnected`, keeps retrying in the background after losses. */
  async start(): Promise<void> {
    await this.ensure().catch(() => {
      // A broker that is down at start must be retried too, not only one lost later.
      if (this.opts.keepConnected) void this.reconnectLoop();
    });
  }

  private ensure(): Promise<void> {
    if (this.ch) return Promise.resolve();
    if (this.closed) return Promise.reject(new NotifyError(ErrorCodes.BROKER_UNAVAILABLE, 'publisher closed'));
    this.connecting ??= this.open().finally(() => {
      this.connecting = null;
    });
    return this.connecting;
  }

  private async open(): Promise<void> {
    const conn = await this.ring.connect(this.opts.name);
    // Why the connection went (the watchdog giving it up, a heartbeat timeout, a reset): amqplib emits it before it
    // closes the channel. A broker's close of the connection comes with its close event instead.
    let why: Error | undefined;
    // Never before a confirm's own bound (a library client may set it above the watchdog's).
    const timeoutMs = Math.max(UNANSWERED_CALL_MS, 2 * (this.opts.confirmTimeoutMs ?? CONFIRM_TIMEOUT_MS));
    watchCalls(conn, { owner: this.opts.name, timeoutMs, onGiveUp: () => this.opts.onGiveUp?.() });
    conn.on('error', (err: Error) => (why ??= err));
    // While blocked the broker reads nothing from this connection: publishes
    // would sit in memory until the alarm clears, so they are refused at once.
    conn.on('blocked', (reason: string) => {
      if (this.conn !== conn) return;
      this.blockedReason = reason || 'blocked';
      const err = new NotifyError(ErrorCodes.BROKER_BLOCKED, `the broker blocks publishing (${this.blockedReason}); retry later`);
      for (const fail of this.waiting) fail(err);
      this.opts.onBlocked?.(true, this.blockedReason);
    });
    conn.on('unblocked', () => {
      if (this.conn !== conn) return;
      this.blockedReason = null;
      this.opts.onBlocked?.(false);
    });
    const lost = (err?: Error): void => {
      if (this.conn !== conn) return;
      this.conn = null;
      this.ch = null;
      this.lost = null;
      if (this.blockedReason !== null) {
        this.blockedReason = null;
        this.opts.onBlocked?.(false);
      }
      this.opts.onStateChange?.(false, why ?? err);
      if (this.opts.keepConnected && !this.closed) void this.reconnectLoop();
    };
    // amqplib handles every frame of a read at once: a connection.close arriving with the channel's open-ok
    // closes both before newChannel resumes, before `lost` listens. Kept, they would leave this publisher
    // "connected" on a dead channel for good.
    let gone = false;
    conn.once('close', () => (gone = true));
    let ch: ConfirmChannel;
    try {
      ch = await this.newChannel(conn, lost);
      // Closed while the channel was opening (which can take up to the confirm timeout): not kept.
      if (this.closed) throw new NotifyError(ErrorCodes.BROKER_UNAVAILABLE, 'publisher closed');
      if (gone) throw new NotifyError(ErrorCodes.BROKER_UNAVAILABLE, 'the connection closed as the channel opened');
    } catch (err) {
      // Not awaited: the next node need not wait for this one's close.
      void closeWithin(conn, CLOSE_WITHIN_MS);
      throw err;
    }
    conn.on('close', lost);
    this.conn = conn;
    this.ch = ch;
    this.lost = lost;
    this.opts.onStateChange?.(true);
  }

  /** A confirm channel on `conn`; when it closes, unless it was replaced on purpose, the connection goes with it. */
  private async newChannel(conn: ChannelModel, lost: () => void): Promise<ConfirmChannel> {
    // As long as a confirm may take: an open the broker never answers would hold every publish waiting on it.
    const ch = await openWithin(conn, this.opts.confirmTimeoutMs ?? CONFIRM_TIMEOUT_MS);
    ch.on('error', () => undefined);
    this.returns.set(ch, new ReturnTracker(ch));
    ch.on('close', () => {
      if (this.retired.has(ch)) return;
      void closeWithin(conn, CLOSE_WITHIN_MS);
      // A turn later: when the connection itself is going, amqplib closes its channels first, and its own close
      // event (which carries the reason) should report the loss.
      queueMicrotask(lost);
    });
    return ch;
  }

  /**
   * Replaces a channel the broker nacks on; the connection stays. RabbitMQ
   * 3.10 was seen (test/cluster) to nack every publish to a quorum queue on a
   * channel whose first publish to it came within about a second after the
   * queue's leader was killed, for as long as that node stayed down, while a
   * channel opened later published fine. Renewals are `RENEW_GAP_MS` apart at
   * least: a nack for any other reason costs a channel now and then.
   */
  private renewChannel(bad: ConfirmChannel, closeOld: 'now' | 'later' = 'now'): Promise<void> {
    if (this.ch !== bad) return this.renewing ?? Promise.resolve();
    this.renewing ??= (async () => {
      const wait = this.renewedAt + RENEW_GAP_MS - Date.now();
      if (wait > 0) await sleep(wait, this.stop.signal);
      const { conn, lost } = this;
      if (this.ch !== bad || !conn || !lost) return;
      this.renewedAt = Date.now();
      const next = await this.newChannel(conn, lost);
      if (this.ch !== bad) return void next.close().catch(() => undefined);
      this.retired.add(bad);
      this.ch = next;
      this.opts.onChannelRenewed?.();
      // After a nack, publishes still waiting on the old channel fail as closed and are sent again on this one.
      // After a confirm timeout the broker may just be slow: closing it now would send all of them again, so it
      // is closed once each has been confirmed or has timed out itself (and is not sent again).
      if (closeOld === 'now') void bad.close().catch(() => undefined);
      else setTimeout(() => void bad.close().catch(() => undefined), (this.opts.confirmTimeoutMs ?? CONFIRM_TIMEOUT_MS) + 1000).unref();
    })()
      .catch(() => undefined)
      .finally(() => {
        this.renewing = null;
      });
    return this.renewing;
  }

  private reconnecting = false;

  private async reconnectLoop(): Promise<void> {
    if (this.reconnecting) return;
    this.reconnecting = true;
    try {
      await this.reconnectUntilConnected();
    } finally {
      this.reconnecting = false;
    }
  }

  private async reconnectUntilConnected(): Promise<void> {
    for (let attempt = 0; !this.closed && !this.ch; attempt++) {
      // The first try goes at once (to the next node: a failover); later rounds back off.
      if (attempt > 0) await sleep(reconnectDelay(attempt - 1), this.stop.signal);
      if (this.closed) return;
      await this.ensure().catch(() => undefined);
    }
  }

  /**
   * A channel to publish on other than `not`: the current one; else the one
   * being made (a renewal, a connection being opened, or for a client one it
   * opens now), waiting until `deadline` at most. Null when there is none by then.
   */
  private async channelBy(deadline: number, not: ConfirmChannel | null = null): Promise<ConfirmChannel | null> {
    if (this.ch && this.ch !== not) return this.ch;
    const coming = this.renewing ?? (this.opts.keepConnected ? this.connecting : this.ch ? null : this.ensure());
    const left = deadline - Date.now();
    if (!coming || left <= 0) return null;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([coming.catch(() => undefined), new Promise((r) => (timer = setTimeout(r, left)))]);
    clearTimeout(timer);
    return this.ch && this.ch !== not ? this.ch : null;
  }

  /**
   * Publishes one validated notification; resolves once the broker confirmed
   * it. Fails at once, accepting nothing, while the broker blocks publishing
   * (`BROKER_BLOCKED`) or when `maxInflight` publishes already wait
   * (`OVERLOADED`). A publish the broker did not take because its channel
   * closed under it (the node went away) or nacked it (the channel is
   * renewed) is sent again on the next channel, for up to `failoverWaitMs`
   * after the first failure and `MAX_SENDS` sends: same id, so at worst a
   * duplicate (a confirm lost with its channel), never a loss. A confirm
   * that times out on a channel still up is not sent again.
   */
  async publish(n: Notification, opts: PublishOptions = {}): Promise<void> {
    const waitMs = this.opts.failoverWaitMs ?? 2000;
    const ch = this.ch ?? (this.opts.keepConnected ? await this.channelBy(Date.now() + waitMs) : (await this.ensure(), this.ch));
    if (!ch) throw new NotifyError(ErrorCodes.BROKER_UNAVAILABLE, 'broker not connected');
    if (this.blockedReason !== null) throw new NotifyError(ErrorCodes.BROKER_BLOCKED, `the broker blocks publishing (${this.blockedReason}); retry later`);
    if (this.opts.maxInflight && this.inflight >= this.opts.maxInflight()) throw new NotifyError(ErrorCodes.OVERLOADED, `${this.inflight} publishes already wait for the broker; retry later`);
    this.inflight++;
    try {
      await this.withFailover(ch, (c) => this.publishOn(c, n, opts));
    } finally {
      this.inflight--;
    }
  }

  /**
   * Sends on `ch`, and again on the next channel when the broker nacked it
   * (the channel is renewed) or the channel closed under it, for up to
   * `failoverWaitMs` after the first failure and `MAX_SENDS` sends.
   */
  private async withFailover(first: ConfirmChannel, send: (ch: ConfirmChannel) => Promise<void>): Promise<void> {
    const waitMs = this.opts.failoverWaitMs ?? 2000;
    let ch = first;
    let deadline = 0;
    for (let sends = 1; ; sends++) {
      try {
        return await send(ch);
      } catch (err) {
        deadline ||= Date.now() + waitMs;
        // Not sent again (the caller has waited long enough), but the channel is renewed, unless the broker
        // blocks the connection (then no confirm comes on any channel): RabbitMQ 3.10 can lose a channel's
        // pending publishes to a quorum queue across a leader change for good (src/broker/confirm-deadlines.ts).
        if (this.timedOut.has(err as Error)) {
          if (this.blockedReason === null && !this.closed) void this.renewChannel(ch, 'later');
          throw err;
        }
        const nacked = hasCode(err, ErrorCodes.BROKER_NACK);
        const closedUnder = hasCode(err, ErrorCodes.BROKER_UNAVAILABLE) && this.ch !== ch;
        if (this.closed || sends >= MAX_SENDS || !(nacked || closedUnder)) throw err;
        if (nacked) void this.renewChannel(ch);
        const next = await this.channelBy(deadline, ch);
        if (!next) throw err;
        ch = next;
      }
    }
  }

  private async publishOn(ch: ConfirmChannel, n: Notification, opts: PublishOptions): Promise<void> {
    const route = routeForAttempt(this.names, this.opts.scheduleMs, 0);
    const delay0 = this.opts.scheduleMs[0] ?? 0;
    const confirm = publishConfirmed(
      ch,
      route.exchange,
      route.routingKey,
      opts.body ?? encodeNotification(n),
      {
        messageId: n.id,
        persistent: true,
        mandatory: true,
        contentType: 'application/json',
        timestamp: Math.floor(n.createdAt / 1000),
        headers: ladderHeaders(Date.now() + delay0, opts),
      },
      this.returns.get(ch),
    );
    await this.confirmedInTime(ch, confirm);
  }

  /**
   * Waits for `confirm` of a publish on `ch`, failing with
   * `BROKER_CONFIRM_TIMEOUT` (one of `timedOut`) once `confirmTimeoutMs` went by first.
   */
  private async confirmedInTime(ch: ConfirmChannel, confirm: Promise<void>): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    let stopWaiting: ((err: Error) => void) | undefined;
    // A confirm that does not come in time is answered as a failure, and so is
    // one caught by the broker blocking the connection (it says so only when
    // the first publish after an alarm arrives, and then reads nothing until
    // the alarm clears). The broker may still take the message later, which
    // gives a duplicate (same id), never a loss.
    const giveUp = new Promise<never>((_, reject) => {
      stopWaiting = reject;
      timer = setTimeout(() => {
        // Not BROKER_UNAVAILABLE (nothing accepted): the broker may have it, which a resend's claim must know.
        const err = new NotifyError(ErrorCodes.BROKER_CONFIRM_TIMEOUT, 'broker did not confirm in time; it may still take the message');
        this.timedOut.add(err);
        reject(err);
      }, this.opts.confirmTimeoutMs ?? CONFIRM_TIMEOUT_MS);
    });
    this.waiting.add(stopWaiting!);
    try {
      await Promise.race([confirm, giveUp]);
    } finally {
      clearTimeout(timer);
      this.waiting.delete(stopWaiting!);
    }
  }

  /**
   * Publishes a finished body straight to one queue (history batches), with
   * confirm in time, failing over like `publish`.
   */
  async publishToQueue(queue: string, body: Buffer, options: Options.Publish): Promise<void> {
    const ch = this.ch ?? (await this.channelBy(Date.now() + (this.opts.failoverWaitMs ?? 2000)));
    if (!ch) throw new NotifyError(ErrorCodes.BROKER_UNAVAILABLE, 'broker not connected');
    await this.withFailover(ch, (c) => this.confirmedInTime(c, publishConfirmed(c, '', queue, body, options, this.returns.get(c))));
  }

  /** Closes channel then connection; idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.stop.abort();
    const { ch, conn } = this;
    this.ch = null;
    this.conn = null;
    // The connection's close closes its channel too. Bounded: amqplib's close waits for a close-ok that a broker
    // which stopped answering never sends. (Closing the channel first would make its close handler start an
    // unbounded connection close of its own, and this one then fail at once.)
    if (ch) this.retired.add(ch);
    if (conn) await closeWithin(conn, CLOSE_WITHIN_MS);
  }
}
