import type { Message } from 'amqplib';
import type { Logger } from '../core/logger.js';
import { toErrorData } from '../core/errors.js';
import type { DeadReason } from '../core/message.js';
import type { ChannelLink } from './channel-link.js';

/** Outcome event published on `P.outcomes` (key `delivered` or `dead`). */
export interface OutcomeEvent {
  readonly id: string;
  readonly outcome: 'delivered' | 'dead';
  readonly tier: number;
  readonly attempts: number;
  readonly status: number | null;
  readonly reason?: DeadReason;
  readonly error?: string;
  readonly at: number;
  readonly createdAt: number | null;
  /** The producer (ingress token name) that submitted it, when known. */
  readonly producer?: string;
  readonly metadata?: Readonly<Record<string, unknown>>;
}

/** How long an outcome key the broker returned as unroutable is skipped before it is tried again. */
const OUTCOME_PROBE_MS = 1000;

/**
 * Publishes outcome events. Events go out `mandatory`: a topic exchange drops
 * what no queue is bound for, so a key the broker returns is skipped (not
 * even built) for `OUTCOME_PROBE_MS` and then tried again, and a new
 * subscriber gets events within that.
 */
export class OutcomeEmitter {
  /** Outcome keys returned as unroutable, until when. */
  private readonly unroutableUntil = new Map<string, number>();

  constructor(
    private readonly exchange: string,
    private readonly log: Logger,
  ) {}

  /** Hook for the channel's `return` event. */
  onReturn(m: Message): void {
    if (m.fields.exchange === this.exchange) this.unroutableUntil.set(m.fields.routingKey, Date.now() + OUTCOME_PROBE_MS);
  }

  /**
   * Best effort: the notification's own hand-on is already confirmed, so a
   * failed event must not send it round again (that would call the merchant
   * twice, or park it twice). A failure is logged and the caller acks.
   * `build` runs only when the event can be routed.
   */
  async emit(link: ChannelLink, outcome: OutcomeEvent['outcome'], build: () => OutcomeEvent): Promise<void> {
    const until = this.unroutableUntil.get(outcome);
    if (until !== undefined && Date.now() < until) return;
    const ev = build();
    try {
      await link.publish(this.exchange, ev.outcome, Buffer.from(JSON.stringify(ev)), {
        messageId: ev.id,
        persistent: true,
        mandatory: true,
        contentType: 'application/json',
      }, false);
    } catch (err) {
      this.log.warn({ id: ev.id, outcome: ev.outcome, err: toErrorData(err) }, 'outcome event not published');
    }
  }
}
