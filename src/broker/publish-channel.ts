import type { ChannelModel, ConfirmChannel, Message, Options } from 'amqplib';
import { ReturnTracker, publishConfirmed } from './confirm.js';
import { ConfirmDeadlines } from './confirm-deadlines.js';
import { openWithin } from './open-within.js';
import { ErrorCodes, NotifyError, hasCode } from '../core/errors.js';

/** Least time between two channel renewals after nacks. */
const RENEW_GAP_MS = 250;

/**
 * Where a worker publishes with confirms (a tier's hand-ons and outcome
 * events): the channel it was given, its consumer channel, until the broker
 * nacks a publish there; then a channel of its own on the same connection,
 * replaced in turn after a nack, at most every 250 ms.
 *
 * Why: RabbitMQ 3.10 was seen (test/cluster) to nack every publish to a
 * quorum queue on a channel whose first publish to it came within about a
 * second after the queue's leader was killed, for as long as that node stayed
 * down, while a channel opened later published fine. A tier reconnecting
 * after such a loss had every hand-on refused until the node was back. The
 * consumer channel itself is never replaced for this: its deliveries would
 * all be redelivered and their attempts repeated. Acks stay on the consumer
 * channel; they follow the confirm, whichever channel it came on.
 *
 * A confirm that does not come in time (`deadlines`, 10 s) fails its
 * publish (`BROKER_CONFIRM_TIMEOUT`) and renews the channel as a nack does:
 * the same RabbitMQ was seen to leave a tier's hand-ons to a quorum queue
 * unconfirmed for good after its node and the queue's leader died together
 * (src/broker/confirm-deadlines.ts). The caller may publish again (a
 * hand-on does); should the broker take the first one after all, that is a
 * duplicate, never a loss. A spare renewed after a timeout is closed only
 * once its other publishes have settled (confirmed, refused or timed out):
 * closing it at once would fail those the broker may well have taken, and
 * their copies would be duplicates too.
 */
export class PublishChannel {
  private ch: ConfirmChannel;
  private returns: ReturnTracker;
  private readonly firstReturns: ReturnTracker;
  private renewing: Promise<void> | null = null;
  /**
   * Renewals asked for while one ran, by channel: one renewal after it serves
   * them all, so a sweep that fails N publishes at once while the broker
   * refuses channels queues one more open, not N.
   */
  private readonly wanted = new Map<ConfirmChannel, 'nack' | 'timeout'>();
  private again: Promise<void> | null = null;
  private renewedAt = -Infinity;
  private closed = false;
  /** Publishes not yet confirmed or refused, on whichever channel they went, and who waits for none. */
  private unsettled = 0;
  private idleWaiters: (() => void)[] = [];
  /** Unsettled publishes per channel, and the spares to close once theirs are settled. */
  private readonly pendingOn = new Map<ConfirmChannel, number>();
  private readonly closeWhenIdle = new Set<ConfirmChannel>();

  constructor(
    private readonly conn: Pick<ChannelModel, 'createConfirmChannel'>,
    private readonly first: ConfirmChannel,
    /** Told of every message returned on a channel opened here (the first one's owner listens on it already). */
    private readonly onReturn: (m: Message) => void = () => undefined,
    /** Fails publishes whose confirm is late: the connection's own, paused while the broker blocks it (a new lane's PublishChannel takes its predecessor's). */
    readonly deadlines: ConfirmDeadlines = new ConfirmDeadlines(),
  ) {
    this.ch = first;
    this.firstReturns = new ReturnTracker(first);
    this.returns = this.firstReturns;
  }

  /** Publishes on the current channel and resolves on the confirm; see `publishConfirmed`. Fails with `BROKER_CONFIRM_TIMEOUT` when the confirm is late. */
  publish(exchange: string, routingKey: string, content: Buffer, options: Options.Publish, trackReturns = true): Promise<void> {
    const ch = this.ch;
    this.unsettled++;
    this.pendingOn.set(ch, (this.pendingOn.get(ch) ?? 0) + 1);
    const confirmed = publishConfirmed(ch, exchange, routingKey, content, options, trackReturns ? this.returns : undefined);
    return new Promise<void>((resolve, reject) => {
      // The first of the confirm, its failure and the timeout settles the publish; whatever comes later is ignored.
      let done = false;
      const settle = (): boolean => {
        if (done) return false;
        done = true;
        this.settledOne(ch);
        return true;
      };
      const untrack = this.deadlines.track(() => {
        if (!settle()) return;
        void this.renew(ch, 'timeout');
        reject(new NotifyError(ErrorCodes.BROKER_CONFIRM_TIMEOUT, 'broker did not confirm in time; the channel is renewed'));
      });
      confirmed.then(
        () => {
          untrack();
          if (settle()) resolve();
        },
        (err: unknown) => {
          untrack();
          if (!settle()) return;
          if (hasCode(err, ErrorCodes.BROKER_NACK)) void this.renew(ch, 'nack');
          reject(err as Error);
        },
      );
    });
  }

  private settledOne(ch: ConfirmChannel): void {
    const left = (this.pendingOn.get(ch) ?? 1) - 1;
    if (left > 0) this.pendingOn.set(ch, left);
    else {
      this.pendingOn.delete(ch);
      if (this.closeWhenIdle.delete(ch)) void ch.close().catch(() => undefined);
    }
    if (--this.unsettled > 0) return;
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const w of waiters) w();
  }

  /** Whether publishes go on a channel of their own (after a nack). */
  get renewed(): boolean {
    return this.ch !== this.first;
  }

  private renew(bad: ConfirmChannel, why: 'nack' | 'timeout'): Promise<void> {
    if (this.ch !== bad || this.closed) return this.renewing ?? Promise.resolve();
    // A renewal still finishing may already have made `bad` current (a spare it just opened): after it, again.
    if (this.renewing) {
      // A timeout wins: its channel may still confirm what waits on it, so it is closed only once idle.
      this.wanted.set(bad, this.wanted.get(bad) === 'timeout' ? 'timeout' : why);
      this.again ??= this.renewing.then(() => {
        this.again = null;
        const asked = [...this.wanted];
        this.wanted.clear();
        const current = asked.find(([c]) => c === this.ch);
        return current ? this.renew(current[0], current[1]) : undefined;
      });
      return this.again;
    }
    this.renewing = (async () => {
      const wait = this.renewedAt + RENEW_GAP_MS - Date.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      if (this.ch !== bad || this.closed) return;
      this.renewedAt = Date.now();
      // As long as a confirm may take; the next failure tries again.
      const next = await openWithin(this.conn, this.deadlines.timeoutMs);
      next.on('error', () => undefined);
      next.on('return', this.onReturn);
      // A channel of ours that closes under us (a channel error) hands publishing back to the first one.
      next.on('close', () => {
        if (this.ch !== next) return;
        this.ch = this.first;
        this.returns = this.firstReturns;
      });
      if (this.ch !== bad || this.closed) return void next.close().catch(() => undefined);
      this.ch = next;
      this.returns = new ReturnTracker(next);
      // After a nack, what waits on it is failed now (that channel refuses); after a timeout it may be taken yet.
      if (bad === this.first) return;
      if (why === 'timeout' && (this.pendingOn.get(bad) ?? 0) > 0) this.closeWhenIdle.add(bad);
      else void bad.close().catch(() => undefined);
    })()
      .catch(() => undefined)
      .finally(() => {
        this.renewing = null;
      });
    return this.renewing;
  }

  /**
   * Resolves once no publish made here is waiting for its confirm (each
   * confirmed, refused or failed). For a channel nothing new is published
   * on (an old consumer lane), that is every publish made so far.
   */
  settled(): Promise<void> {
    if (this.unsettled === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** Closes the channels opened here (not the first one). Idempotent. */
  async close(): Promise<void> {
    this.closed = true;
    const ch = this.ch;
    this.ch = this.first;
    this.returns = this.firstReturns;
    const spares = [...this.closeWhenIdle, ...(ch !== this.first ? [ch] : [])];
    this.closeWhenIdle.clear();
    await Promise.all(spares.map((c) => c.close().catch(() => undefined)));
  }
}
