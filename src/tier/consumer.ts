import type { ChannelModel, ConfirmChannel, ConsumeMessage, Message } from 'amqplib';
import { AckBatcher, ackPolicyFor } from '../broker/ack-batcher.js';
import { diffConfig, type Config } from '../core/config.js';
import { createAddressGuard } from '../delivery/address-guard.js';
import { ReturnTracker, connectBroker, handOnOptions, publishConfirmed, reconnectDelay, sleep } from '../broker/connection.js';
import type { WorkerState } from '../supervisor/control.js';
import { HttpDeliverer } from '../delivery/deliverer.js';
import { toErrorData } from '../core/errors.js';
import type { ManagedWorker } from '../supervisor/worker-process.js';
import type { Logger } from '../core/logger.js';
import { H, decodeNotification, numberHeader, renderBody, type DeadReason, type Notification } from '../core/message.js';
import type { WorkerMetrics } from '../core/metrics.js';
import { classifyAttempt, type Outcome } from '../delivery/outcome.js';
import { createSigner, unsignableReason, type Signer } from '../delivery/signing.js';
import { namesFor, routeForAttempt, verifyQueues, type Names } from '../broker/topology.js';

export const USER_AGENT = 'notifyd/0.1.0';
const OUTCOME_PROBE_MS = 1000;
/** Pause before a message whose hand-on failed goes back to its queue. */
const ERROR_REQUEUE_DELAY_MS = 1000;

export interface TierWorkerDeps {
  readonly config: Config;
  readonly tier: number;
  readonly logger: Logger;
  /** Logger for the one line per attempt (no redaction: its fields are fixed); defaults to `logger`. */
  readonly attemptLogger?: Logger;
  readonly metrics: WorkerMetrics;
  /** Told whenever the worker's own state changes (the entry point forwards it to the master). */
  readonly onState?: (state: WorkerState) => void;
  /** Connect without consuming (the operator had paused this tier before the restart). */
  readonly startPaused?: boolean;
}

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
  readonly metadata?: Readonly<Record<string, unknown>>;
}

/**
 * Consumes `P.work.<tier>`: one HTTP attempt per message, then hands the
 * notification on. Every hand-on is publish → broker confirm → ack of the
 * original, so a crash in between duplicates an attempt but never loses one.
 * A lost connection is re-established with backoff; a delivery is only ever
 * acked on the channel it arrived on.
 */
export class TierWorker implements ManagedWorker {
  private config: Config;
  private readonly tier: number;
  private readonly names: Names;
  private readonly log: Logger;
  private readonly attemptLog: Logger;
  private readonly metrics: WorkerMetrics;
  private deliverer: HttpDeliverer;
  private signer: Signer;
  private conn: ChannelModel | null = null;
  private ch: ConfirmChannel | null = null;
  /** Acks of the current channel; replaced with it (tags never cross channels). */
  private acker: AckBatcher | null = null;
  private consumerTag: string | null = null;
  /**
   * Outcome keys the broker returned as unroutable (nobody bound), until when.
   * A topic exchange drops such events anyway, so they are skipped and probed
   * again after `OUTCOME_PROBE_MS`: a new subscriber gets events within that.
   */
  private readonly outcomeUnroutableUntil = new Map<string, number>();
  private paused = false;
  private stopping = false;
  private readonly stopSignal = new AbortController();
  private readonly inflight = new Set<Promise<void>>();
  private state: WorkerState = 'starting';
  private drainPromise: Promise<void> | null = null;
  private connecting: Promise<void> | null = null;
  private syncing: Promise<void> | null = null;
  private syncAgain = false;
  private resubscribe = false;
  /** Returned (unroutable) hand-ons of each channel fail their publish instead of counting as done. */
  private readonly returnTrackers = new WeakMap<ConfirmChannel, ReturnTracker>();
  private readonly tierLabel: string;
  /** Label children bound once: the hot path then skips prom-client's label hashing. */
  private readonly m: {
    readonly attempts: Readonly<Record<'success' | 'retry' | 'dead' | 'error', { inc(): void }>>;
    readonly delivered: { inc(): void };
    readonly lateness: { observe(v: number): void };
    readonly duration: { observe(v: number): void };
  };

  constructor(private readonly deps: TierWorkerDeps) {
    this.config = deps.config;
    this.tier = deps.tier;
    this.names = namesFor(deps.config.prefix);
    this.log = deps.logger;
    this.attemptLog = deps.attemptLogger ?? deps.logger;
    this.metrics = deps.metrics;
    this.tierLabel = String(deps.tier);
    const tier = this.tierLabel;
    const mt = deps.metrics;
    this.m = {
      attempts: {
        success: mt.attempts.labels({ tier, outcome: 'success' }),
        retry: mt.attempts.labels({ tier, outcome: 'retry' }),
        dead: mt.attempts.labels({ tier, outcome: 'dead' }),
        error: mt.attempts.labels({ tier, outcome: 'error' }),
      },
      delivered: mt.delivered.labels({ tier }),
      lateness: mt.lateness.labels({ tier }),
      duration: mt.attemptDuration.labels({ tier }),
    };
    mt.sampleInflight(tier, () => this.inflight.size);
    this.paused = deps.startPaused ?? false;
    this.deliverer = this.makeDeliverer(deps.config);
    this.signer = createSigner(deps.config.signing);
  }

  private makeDeliverer(cfg: Config): HttpDeliverer {
    const guard = cfg.delivery.allowPrivateNetworks ? null : createAddressGuard(cfg.delivery);
    return new HttpDeliverer(cfg.delivery, guard);
  }

  get inflightCount(): number {
    return this.inflight.size;
  }

  get currentState(): WorkerState {
    return this.state;
  }

  private setState(s: WorkerState): void {
    if (this.state === s) return;
    this.state = s;
    this.deps.onState?.(s);
  }

  /** Connects and starts consuming; resolves once the first consumer is up. */
  async start(): Promise<{ port?: number }> {
    await this.connectLoop();
    return {};
  }

  /** One reconnect loop at a time, however many close events arrive. */
  private connectLoop(): Promise<void> {
    this.connecting ??= this.connectUntilOpen().finally(() => {
      this.connecting = null;
    });
    return this.connecting;
  }

  private async connectUntilOpen(): Promise<void> {
    for (let attempt = 0; !this.stopping; attempt++) {
      try {
        await this.open();
        return;
      } catch (err) {
        const delay = reconnectDelay(attempt, 200, 5000);
        this.log.warn({ err: toErrorData(err), retryInMs: delay }, 'tier worker cannot reach the broker');
        await sleep(delay, this.stopSignal.signal);
      }
    }
  }

  private async open(): Promise<void> {
    const conn = await connectBroker(this.config.amqpUrl, `notifyd tier ${this.tier} pid ${process.pid}`);
    try {
      conn.on('error', (err: Error) => this.log.warn({ err: err.message }, 'broker connection error'));
      const ch = await conn.createConfirmChannel();
      ch.on('error', (err: Error) => this.log.warn({ err: err.message }, 'broker channel error'));
      await verifyQueues(ch, [this.names.workQueue(this.tier), this.names.dead]);
      // Read once: a reload during start-up must not give the batcher another window than the channel's.
      const prefetch = this.config.delivery.concurrency;
      await ch.prefetch(prefetch);
      const lost = (): void => {
        if (this.conn !== conn) return;
        this.forgetChannel();
        void conn.close().catch(() => undefined);
        if (!this.stopping) {
          this.log.warn('broker connection lost; reconnecting');
          this.setState('starting');
          void this.connectLoop();
        }
      };
      ch.on('return', (m: Message) => {
        if (m.fields.exchange === this.names.outcomes) this.outcomeUnroutableUntil.set(m.fields.routingKey, Date.now() + OUTCOME_PROBE_MS);
      });
      this.returnTrackers.set(ch, new ReturnTracker(ch));
      conn.on('close', lost);
      ch.on('close', lost);
      this.conn = conn;
      this.ch = ch;
      this.acker = new AckBatcher((tag, multiple) => {
        if (this.ch !== ch) return;
        try {
          ch.ack({ fields: { deliveryTag: tag } } as Message, multiple);
        } catch {
          /* channel closing: the broker redelivers */
        }
      }, ackPolicyFor(prefetch));
      await this.syncConsumer();
      if (this.ch !== ch) throw new Error('channel closed during start-up');
      if (!this.stopping) this.setState(this.paused ? 'paused' : 'running');
      this.log.info({ queue: this.names.workQueue(this.tier), prefetch: this.config.delivery.concurrency, paused: this.paused }, 'tier worker connected');
    } catch (err) {
      // Forget this connection first, so its close does not start a second reconnect loop.
      if (this.conn === conn) this.forgetChannel();
      await conn.close().catch(() => undefined);
      throw err;
    }
  }

  /** Drops the current connection's state; its unacked deliveries are the broker's to requeue. */
  private forgetChannel(): void {
    this.conn = null;
    this.ch = null;
    this.acker?.discard();
    this.acker = null;
    this.consumerTag = null;
  }

  /**
   * Brings the consumer in line with what is wanted (a channel, not paused,
   * not stopping). One reconcile runs at a time and repeats while the wish
   * changed under it, so pause/resume/drain/reconnect races cannot leave a
   * stray consumer behind.
   */
  private syncConsumer(): Promise<void> {
    if (this.syncing) {
      this.syncAgain = true;
      return this.syncing;
    }
    this.syncing = (async () => {
      for (let rounds = 0; rounds < 10; rounds++) {
        this.syncAgain = false;
        const ch = this.ch;
        const want = ch !== null && !this.paused && !this.stopping;
        if (ch && this.consumerTag && (!want || this.resubscribe)) {
          const tag = this.consumerTag;
          this.consumerTag = null;
          this.resubscribe = false;
          await ch.cancel(tag).catch(() => undefined);
        } else if (ch && want && !this.consumerTag) {
          // A new consumer gets the current prefetch anyway.
          this.resubscribe = false;
          const tag = await this.startConsumer(ch);
          // A channel replaced meanwhile took its consumer with it.
          if (this.ch === ch) this.consumerTag = tag;
        }
        if (this.consumerTag === null) this.resubscribe = false;
        const settled = (this.ch !== null && !this.paused && !this.stopping) === (this.consumerTag !== null) && !this.resubscribe;
        if (settled && !this.syncAgain) return;
      }
    })()
      .catch((err: unknown) => this.log.warn({ err: toErrorData(err) }, 'consumer change failed (the channel is closing; reconnect takes over)'))
      .finally(() => {
        this.syncing = null;
      });
    return this.syncing;
  }

  private async startConsumer(ch: ConfirmChannel): Promise<string> {
    // The batcher of this very channel: tags are never tracked on another one.
    const acker = this.acker;
    const { consumerTag } = await ch.consume(this.names.workQueue(this.tier), (msg) => {
      if (msg === null) {
        this.log.warn('consumer cancelled by the broker (queue deleted?)');
        if (this.ch === ch) this.consumerTag = null;
        return;
      }
      acker?.track(msg.fields.deliveryTag);
      const p = this.handle(ch, msg).catch((err: unknown) => {
        this.log.error({ err: toErrorData(err) }, 'unexpected error handling a message');
      });
      this.inflight.add(p);
      void p.finally(() => this.inflight.delete(p));
    });
    return consumerTag;
  }

  /** Cancels the consumer but keeps the channel (in-flight attempts still ack). */
  async pause(): Promise<void> {
    this.paused = true;
    await this.syncConsumer();
    if (!this.stopping) this.setState('paused');
  }

  async resume(): Promise<void> {
    this.paused = false;
    await this.syncConsumer();
    if (this.ch && !this.stopping) this.setState('running');
  }

  /** Applies what can change without a restart; reports what cannot. */
  reload(next: Config): { restartRequired: boolean; notes: string[] } {
    const { restartRequired, notes } = diffConfig(this.config, next);
    // Build everything new first: if any of it throws, nothing has changed.
    const signer = createSigner(next.signing);
    // A new deliverer, not just new timeouts: the SSRF allowances may have changed too.
    const deliverer = this.makeDeliverer(next);
    this.attemptLog.level = next.logLevel;
    const prefetchChanged = next.delivery.concurrency !== this.config.delivery.concurrency;
    this.config = next;
    const oldDeliverer = this.deliverer;
    this.deliverer = deliverer;
    void oldDeliverer.close();
    const oldSigner = this.signer;
    this.signer = signer;
    // Attempts already signing on the old pool finish on it; closing it now would fail them.
    void Promise.allSettled([...this.inflight])
      .then(() => oldSigner.close())
      .catch((err: unknown) => this.log.warn({ err: toErrorData(err) }, 'closing the old signer failed'));
    if (prefetchChanged) this.acker?.setPolicy(ackPolicyFor(next.delivery.concurrency));
    if (prefetchChanged && this.ch) {
      // basic.qos applies to consumers created afterwards, so re-subscribe.
      const ch = this.ch;
      void ch
        .prefetch(next.delivery.concurrency)
        .then(() => {
          this.resubscribe = true;
          return this.syncConsumer();
        })
        .catch((err: unknown) => this.log.warn({ err: toErrorData(err) }, 'prefetch change failed'));
    }
    return { restartRequired, notes };
  }

  private ack(ch: ConfirmChannel, msg: ConsumeMessage): void {
    // A tag belongs to its channel: after a reconnect the broker has already
    // requeued it, and acking it on a new channel would be a protocol error.
    if (ch !== this.ch) return;
    this.acker?.complete(msg.fields.deliveryTag);
  }

  private nackRequeue(ch: ConfirmChannel, msg: ConsumeMessage): void {
    if (ch !== this.ch) return;
    this.acker?.forget(msg.fields.deliveryTag);
    try {
      ch.nack(msg, false, true);
    } catch {
      /* channel closing: the broker redelivers */
    }
  }

  private async handle(ch: ConfirmChannel, msg: ConsumeMessage): Promise<void> {
    try {
      let n: Notification;
      try {
        n = decodeNotification(msg.content);
      } catch (err) {
        await this.parkDead(ch, msg, null, { reason: 'invalid', error: (err as Error).message, attempts: this.tier, status: null, firstAttemptAt: null });
        this.log.warn({ messageId: msg.properties.messageId, tier: this.tier, err: (err as Error).message }, 'parked an invalid message');
        return;
      }
      await this.attemptAndHandOn(ch, msg, n);
    } catch (err) {
      this.m.attempts.error.inc();
      this.log.error({ messageId: msg.properties.messageId, err: toErrorData(err) }, 'hand-on failed; message returned to the queue');
      // A requeued message comes straight back: wait a little so a lasting fault is not a hot loop.
      await sleep(ERROR_REQUEUE_DELAY_MS, this.stopSignal.signal);
      this.nackRequeue(ch, msg);
    }
  }

  private async attemptAndHandOn(ch: ConfirmChannel, msg: ConsumeMessage, n: Notification): Promise<void> {
    const headers = msg.properties.headers ?? {};
    const startedAt = Date.now();
    const dueAt = numberHeader(headers, H.dueAt) ?? n.createdAt;
    this.m.lateness.observe(Math.max(0, startedAt - dueAt) / 1000);

    const rendered = renderBody(n);
    const unsignable = unsignableReason(this.signer.scheme, rendered.contentType);
    if (unsignable) {
      // It fails the same way on every try: park it instead of requeueing it forever.
      this.log.warn({ id: n.id }, 'parked a notification that cannot be signed');
      const firstAttemptAt = numberHeader(headers, H.firstAttemptAt) ?? null;
      await this.parkDead(ch, msg, n, { reason: 'invalid', error: `signing failed: ${unsignable}`, attempts: this.tier, status: null, firstAttemptAt });
      return;
    }
    // Other signing failures (a pool restarting, a key file gone) are operational: they
    // throw to handle(), which returns the message to the queue after a pause.
    const signed =
      this.signer.scheme === 'none'
        ? { headers: {}, body: rendered.body }
        : await this.signer.sign({ id: n.id, timestampSec: Math.floor(startedAt / 1000), body: rendered.body, contentType: rendered.contentType });
    const criteria = n.success ?? this.config.delivery.success;
    const result = await this.deliverer.attempt(
      {
        url: n.url,
        method: n.method,
        headers: { ...n.headers, ...signed.headers, 'content-type': rendered.contentType, 'user-agent': USER_AGENT },
        body: signed.body,
      },
      criteria.bodyEquals !== undefined,
    );
    this.m.duration.observe(result.durationMs / 1000);
    const isLast = this.tier >= this.config.scheduleMs.length - 1;
    const outcome = classifyAttempt(result, criteria, this.config.delivery.deadOnStatus, isLast);
    const status = result.kind === 'response' ? result.status : null;
    this.attemptLog.info(
      {
        id: n.id,
        attempt: this.tier,
        status: result.kind === 'response' ? result.status : result.code,
        ms: Math.round(result.durationMs),
        outcome: outcome.kind === 'delivered' ? 'success' : outcome.kind,
      },
      'attempt',
    );
    await this.handOn(ch, msg, n, outcome, status, startedAt);
  }

  private async handOn(ch: ConfirmChannel, msg: ConsumeMessage, n: Notification, outcome: Outcome, status: number | null, startedAt: number): Promise<void> {
    const headers = msg.properties.headers ?? {};
    const firstAttemptAt = numberHeader(headers, H.firstAttemptAt) ?? startedAt;
    switch (outcome.kind) {
      case 'delivered': {
        await this.publishOutcome(ch, 'delivered', () => ({ id: n.id, outcome: 'delivered', tier: this.tier, attempts: this.tier + 1, status, at: Date.now(), createdAt: n.createdAt, ...(n.metadata ? { metadata: n.metadata } : {}) }));
        this.ack(ch, msg);
        this.m.attempts.success.inc();
        this.m.delivered.inc();
        this.metrics.endToEnd.observe(Math.max(0, Date.now() - n.createdAt) / 1000);
        return;
      }
      case 'retry': {
        const next = this.tier + 1;
        const route = routeForAttempt(this.names, this.config.scheduleMs, next);
        const now = Date.now();
        await publishConfirmed(ch, route.exchange, route.routingKey, msg.content, handOnOptions(msg, {
          [H.attempt]: next,
          [H.firstAttemptAt]: firstAttemptAt,
          [H.dueAt]: now + (this.config.scheduleMs[next] ?? 0),
          [H.lastError]: outcome.error,
        }), this.returnTrackers.get(ch));
        this.ack(ch, msg);
        this.m.attempts.retry.inc();
        return;
      }
      case 'dead':
        await this.parkDead(ch, msg, n, { reason: outcome.reason, error: outcome.error, attempts: this.tier + 1, status, firstAttemptAt });
        return;
    }
  }

  /**
   * Parks on `P.dead`, publishes the `dead` outcome event, acks, counts. `n` is
   * null when the message could not even be read (its id then comes from the
   * AMQP messageId).
   */
  private async parkDead(
    ch: ConfirmChannel,
    msg: ConsumeMessage,
    n: Notification | null,
    d: { reason: DeadReason; error: string; attempts: number; status: number | null; firstAttemptAt: number | null },
  ): Promise<void> {
    await this.park(ch, msg, d.reason, d.error, d.firstAttemptAt);
    await this.publishOutcome(ch, 'dead', () => ({
      id: n?.id ?? String(msg.properties.messageId ?? ''),
      outcome: 'dead',
      tier: this.tier,
      attempts: d.attempts,
      status: d.status,
      reason: d.reason,
      error: d.error,
      at: Date.now(),
      createdAt: n?.createdAt ?? null,
      ...(n?.metadata ? { metadata: n.metadata } : {}),
    }));
    this.ack(ch, msg);
    this.m.attempts.dead.inc();
  }

  private async park(ch: ConfirmChannel, msg: ConsumeMessage, reason: DeadReason, error: string, firstAttemptAt: number | null): Promise<void> {
    const set: Record<string, unknown> = {
      [H.deadReason]: reason,
      [H.lastError]: error.slice(0, 500),
      [H.attempt]: this.tier,
      'notify-dead-at': Date.now(),
      'notify-dead-tier': this.tier,
    };
    if (firstAttemptAt !== null) set[H.firstAttemptAt] = firstAttemptAt;
    await publishConfirmed(ch, '', this.names.dead, msg.content, handOnOptions(msg, set), this.returnTrackers.get(ch));
    this.metrics.dead.inc({ reason });
  }

  /**
   * Best effort: the notification's own hand-on is already confirmed, so a
   * failed event must not send it round again (that would call the merchant
   * twice, or park it twice). A failure is logged and the ack goes ahead.
   * `build` runs only when the event can be routed: while events of this kind
   * were recently returned unroutable, none is even built.
   */
  private async publishOutcome(ch: ConfirmChannel, outcome: OutcomeEvent['outcome'], build: () => OutcomeEvent): Promise<void> {
    const until = this.outcomeUnroutableUntil.get(outcome);
    if (until !== undefined && Date.now() < until) return;
    const ev = build();
    try {
      await publishConfirmed(ch, this.names.outcomes, ev.outcome, Buffer.from(JSON.stringify(ev)), {
        messageId: ev.id,
        persistent: true,
        mandatory: true,
        contentType: 'application/json',
      });
    } catch (err) {
      this.log.warn({ id: ev.id, outcome: ev.outcome, err: toErrorData(err) }, 'outcome event not published');
    }
  }

  /**
   * Graceful stop: stop consuming, let in-flight attempts finish (ack or hand
   * on) until the deadline, then close channel (the broker requeues whatever
   * is still unacked) and connection. Idempotent.
   */
  drain(deadlineMs: number): Promise<void> {
    this.drainPromise ??= (async () => {
      this.stopping = true;
      this.setState('draining');
      await this.syncConsumer();
      const ch = this.ch;
      const deadline = sleep(Math.max(0, deadlineMs - Date.now())).then(() => 'deadline' as const);
      const left = await Promise.race([Promise.allSettled([...this.inflight]).then(() => 'done' as const), deadline]);
      if (left === 'deadline') this.log.warn({ unfinished: this.inflight.size }, 'drain deadline reached; unacked messages go back to the queue');
      this.stopSignal.abort();
      this.acker?.flush();
      this.acker = null;
      const conn = this.conn;
      this.ch = null;
      this.conn = null;
      await ch?.close().catch(() => undefined);
      await conn?.close().catch(() => undefined);
      await this.deliverer.close();
      await this.signer.close();
      this.setState('stopped');
    })();
    return this.drainPromise;
  }
}
