import { newRunId } from './history/records.js';
import { loadConfig, type LimitsConfig } from './core/config.js';
import { validateNotification, type Notification } from './core/message.js';
import { NotificationPublisher } from './broker/publisher.js';

export interface NotifyClientOptions {
  /** Default `amqp://guest:guest@127.0.0.1:5672`. */
  readonly amqpUrl?: string;
  /** Broker name prefix of the daemon to feed; default `notify`. */
  readonly prefix?: string;
  /** Delay before the first attempt, when the daemon's schedule starts with one. Default 0. */
  readonly initialDelayMs?: number;
  /** Input limits; default the daemon's defaults. */
  readonly limits?: LimitsConfig;
}

/**
 * Library entry for producers: `new NotifyClient({ amqpUrl, prefix }).publish(n)`
 * validates exactly as the ingress does and resolves after the broker's confirm.
 */
export class NotifyClient {
  private readonly publisher: NotificationPublisher;
  private readonly limits: LimitsConfig;

  constructor(opts: NotifyClientOptions = {}) {
    const defaults = loadConfig({ env: {} });
    this.limits = opts.limits ?? defaults.limits;
    const delay0 = opts.initialDelayMs ?? 0;
    this.publisher = new NotificationPublisher({
      amqpUrl: opts.amqpUrl ?? defaults.amqpUrl,
      prefix: opts.prefix ?? defaults.prefix,
      scheduleMs: [delay0],
      name: `notifyd client pid ${process.pid}`,
    });
  }

  /**
   * Validates (throws `VALIDATION` with `field`) and publishes; resolves with
   * the id once confirmed. A publish that fails carries the notification's
   * id as `err.id` (the one given or the one made here): retry with it, since
   * after a confirm timeout the broker may still have taken it.
   */
  async publish(input: unknown): Promise<{ id: string }> {
    const n: Notification = validateNotification(input, this.limits);
    try {
      // A ladder id of its own: the tier worker records it in the history, as a client's.
      await this.publisher.publish(n, { run: newRunId() });
    } catch (err) {
      throw typeof err === 'object' && err !== null ? Object.assign(err, { id: n.id }) : err;
    }
    return { id: n.id };
  }

  async close(): Promise<void> {
    await this.publisher.close();
  }
}


