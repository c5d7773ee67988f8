import type { ChannelModel, ConfirmChannel } from 'amqplib';
import { ErrorCodes, NotifyError } from '../core/errors.js';

/**
 * Opens a confirm channel, or fails after `ms` (0 or less: waits for ever):
 * a broker that never answers the open must not keep a renewal pending for
 * ever (and with it every renewal asked for after it). A channel that opens
 * too late is closed.
 */
export function openWithin(conn: Pick<ChannelModel, 'createConfirmChannel'>, ms: number): Promise<ConfirmChannel> {
  const opening = conn.createConfirmChannel();
  if (!(ms > 0)) return opening;
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      void opening.then((ch) => ch.close()).catch(() => undefined);
      reject(new NotifyError(ErrorCodes.BROKER_UNAVAILABLE, 'broker did not open a channel in time'));
    }, ms);
    timer.unref();
  });
  return Promise.race([opening, late]).finally(() => clearTimeout(timer));
}

