import type { Channel, ChannelModel, ConfirmChannel } from 'amqplib';
import { ErrorCodes, NotifyError } from '../core/errors.js';
import { withTimeout } from '../core/with-timeout.js';

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
  if (!(ms > 0)) return opening;
  let late = false;
  void opening
    .then((ch) => {
      if (!late) return;
      // Nobody's now: its errors ignored (amqplib throws an error event no one listens to).
      ch.on('error', () => undefined);
      return ch.close();
    })
    .catch(() => undefined);
  return withTimeout(opening, ms, () => {
    late = true;
    return new NotifyError(ErrorCodes.BROKER_UNAVAILABLE, 'broker did not open a channel in time');
  });
}
