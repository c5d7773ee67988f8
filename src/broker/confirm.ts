import type { ConfirmChannel, Message, Options } from 'amqplib';
import { ErrorCodes, NotifyError } from '../core/errors.js';
import { withTimeout } from '../core/with-timeout.js';

/**
 * Turns `basic.return`s of one channel into publish failures. A `mandatory`
 * message no queue takes is returned before its confirm, so a publish waiting
 * on the confirm must learn of the return first, or it would count a dropped
 * message as accepted. Keyed by exchange, routing key and message id; several
 * publishes may share a key (a retried id), and a return fails them all
 * (each is safe to retry).
 */
export class ReturnTracker {
  private readonly waiting = new Map<string, Set<(err: Error) => void>>();

  constructor(ch: ConfirmChannel) {
    ch.on('return', (m: Message) => {
      const set = this.waiting.get(ReturnTracker.key(m.fields.exchange, m.fields.routingKey, String(m.properties.messageId ?? '')));
      if (!set) return;
      const err = new NotifyError(ErrorCodes.BROKER_UNAVAILABLE, `no queue took the message (exchange "${m.fields.exchange}", key "${m.fields.routingKey}"): is the topology declared for this prefix?`);
      for (const reject of set) reject(err);
    });
  }

  static key(exchange: string, routingKey: string, messageId: string): string {
    return `${exchange}\u0000${routingKey}\u0000${messageId}`;
  }

  /** Registers a publish; returns the function that unregisters it. */
  watch(key: string, reject: (err: Error) => void): () => void {
    let set = this.waiting.get(key);
    if (!set) this.waiting.set(key, (set = new Set()));
    set.add(reject);
    return () => {
      set.delete(reject);
      if (set.size === 0 && this.waiting.get(key) === set) this.waiting.delete(key);
    };
  }
}

/**
 * Publishes on a confirm channel and resolves when the broker confirms.
 * Rejects with `BROKER_NACK` on a nack and `BROKER_UNAVAILABLE` when the
 * channel closes first. Confirms are tracked per message by amqplib's
 * callback, so many publishes can be outstanding at once.
 */
export function publishConfirmed(
  ch: ConfirmChannel,
  exchange: string,
  routingKey: string,
  content: Buffer,
  options: Options.Publish,
  returns?: ReturnTracker,
): Promise<void> {
  return new Promise((resolve, reject) => {
    let unwatch: (() => void) | undefined;
    if (returns && options.mandatory) {
      unwatch = returns.watch(ReturnTracker.key(exchange, routingKey, String(options.messageId ?? '')), (err) => {
        unwatch?.();
        reject(err);
      });
    }
    try {
      ch.publish(exchange, routingKey, content, options, (err) => {
        unwatch?.();
        if (err) {
          // amqplib says 'Channel closed', or 'Channel closing' / 'Connection closing' while a close awaits its close-ok.
          const closed = /clos(ed|ing)/i.test(String((err as Error)?.message ?? err));
          reject(
            new NotifyError(
              closed ? ErrorCodes.BROKER_UNAVAILABLE : ErrorCodes.BROKER_NACK,
              closed ? 'channel closed before the broker confirmed' : 'broker refused the message (nack)',
            ),
          );
        } else {
          resolve();
        }
      });
    } catch (err) {
      unwatch?.();
      // A closed channel is the broker's absence (retry later); anything else
      // (e.g. a value amqplib cannot encode) would fail the same way again.
      const closed = /clos(ed|ing)/i.test(String((err as Error)?.message ?? err));
      reject(new NotifyError(closed ? ErrorCodes.BROKER_UNAVAILABLE : ErrorCodes.INTERNAL, `publish failed: ${(err as Error).message}`, undefined, { cause: err }));
    }
  });
}

/**
 * A `publishConfirmed`, failing with `BROKER_CONFIRM_TIMEOUT` when no confirm
 * came within `ms` (0 or less: waits for ever). Why: a quorum queue's leader
 * change can drop a pending confirm for good while the channel answers
 * everything else, and a connection the broker blocks (an alarm) confirms
 * nothing. The broker may still take the message: the caller gives back
 * what it was moving, and a later copy is a duplicate, never a loss.
 */
export function confirmedWithin(ms: number, publish: Promise<void>): Promise<void> {
  return ms > 0 ? withTimeout(publish, ms, () => new NotifyError(ErrorCodes.BROKER_CONFIRM_TIMEOUT, `the broker did not confirm within ${ms / 1000} s`)) : publish;
}

/** Pure: the `reason` label of `notify_handon_failures_total` for a publish that failed with `err`. */
export function handOnFailureReason(err: { code?: string }): 'refused' | 'unroutable' | 'unconfirmed' | 'error' {
  switch (err.code) {
    case ErrorCodes.BROKER_NACK:
      return 'refused';
    case ErrorCodes.BROKER_UNAVAILABLE:
      return 'unroutable';
    case ErrorCodes.BROKER_CONFIRM_TIMEOUT:
      return 'unconfirmed';
    default:
      return 'error';
  }
}

/**
 * Publish options that hand a message on (to a wait queue, `P.dead`, back to
 * tier 0): same id and properties, persistent, `mandatory` (a hand-on no queue
 * takes must fail, not be acked away), and its own headers minus the broker's
 * `x-` ones (x-death and friends grow with every hop and mean nothing to the
 * next stop) and `drop`, plus `set`.
 */
export function handOnOptions(msg: Message, set: Record<string, unknown>, drop: readonly string[] = []): Options.Publish {
  const headers: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(msg.properties.headers ?? {})) if (!k.startsWith('x-') && !drop.includes(k)) headers[k] = v;
  Object.assign(headers, set);
  return {
    messageId: msg.properties.messageId,
    persistent: true,
    mandatory: true,
    contentType: msg.properties.contentType ?? 'application/json',
    timestamp: msg.properties.timestamp,
    headers,
  };
}
