import type { Channel, ChannelModel, ConfirmChannel } from 'amqplib';
import { ErrorCodes, NotifyError } from '../core/errors.js';
import { withTimeout } from '../core/with-timeout.js';

/**
 * Bounds one broker call: fails with `BROKER_UNAVAILABLE` and `message`
 * when the broker has not answered within `ms` (0 or less: waits for ever).
 * Why: amqplib's calls wait for their answer for as long as the connection
 * lasts, and a broker that keeps the connection but answers nothing on it
 * would hold the caller for ever. The call itself goes on (its late failure
 * is swallowed).
 */
export function callWithin<T>(call: Promise<T>, ms: number, message: string): Promise<T> {
  return ms > 0 ? withTimeout(call, ms, () => new NotifyError(ErrorCodes.BROKER_UNAVAILABLE, message)) : call;
}

/**
 * Opens a confirm channel, or fails after `ms` (0 or less: waits for ever):
 * a broker that never answers the open must not keep a renewal pending for
 * ever (and with it every renewal asked for after it), nor a process from
 * ever reconnecting. A channel that opens too late is closed. Unlike a
 * confirm's deadline this one runs on while the broker blocks the
 * connection (it reads nothing then): an open asked for during an alarm
 * fails, and the next failure asks again.
 */
export function openWithin(conn: Pick<ChannelModel, 'createConfirmChannel'>, ms: number): Promise<ConfirmChannel> {
  return bounded(conn.createConfirmChannel(), ms);
}

/** As `openWithin`, for a channel without confirms. */
export function openPlainWithin(conn: Pick<ChannelModel, 'createChannel'>, ms: number): Promise<Channel> {
  return bounded(conn.createChannel(), ms);
}

function bounded<C extends Channel>(opening: Promise<C>, ms: number): Promise<C> {
  const result = callWithin(opening, ms, 'broker did not open a channel in time');
  // Opened after the open was given up: nobody's now, its errors ignored (amqplib throws an error event no one listens to).
  void Promise.allSettled([opening, result])
    .then(([opened, given]) => {
      if (opened.status !== 'fulfilled' || given.status !== 'rejected') return;
      opened.value.on('error', () => undefined);
      return opened.value.close();
    })
    .catch(() => undefined);
  return result;
}

/**
 * Closes a channel, waiting at most `ms` for the broker's close-ok; never
 * fails. Why: amqplib settles a close only on the close-ok, which a broker
 * that stopped answering never sends (the connection's watchdog frees the
 * socket, not whoever awaits the close).
 */
export async function closeChannelWithin(ch: { close(): Promise<void> }, ms: number): Promise<void> {
  await callWithin(ch.close(), ms, 'no channel close-ok in time').catch(() => undefined);
}

/**
 * Resolves once `p` settles or `ms` went by, whichever is first; never
 * rejects (a step of a drain or a teardown that must not hang it). Resolves
 * true when `p` settled in time (or there was none), false at the bound.
 */
export function settleWithin(p: Promise<unknown> | undefined, ms: number): Promise<boolean> {
  if (p === undefined) return Promise.resolve(true);
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<boolean>((r) => (timer = setTimeout(() => r(false), Math.max(0, ms))));
  return Promise.race([p.then(() => true, () => true), late]).finally(() => clearTimeout(timer));
}
