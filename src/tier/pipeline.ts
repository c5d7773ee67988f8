import type { ConsumeMessage, Options } from 'amqplib';
import { reconnectDelay, sleep } from '../broker/connection.js';
import { handOnFailureReason, handOnOptions } from '../broker/confirm.js';
import { routeForAttempt, type Names } from '../broker/topology.js';
import type { Config } from '../core/config.js';
import { toErrorData } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { H, decodeQueued, numberHeader, renderBody, type DeadReason, type Notification } from '../core/message.js';
import type { WorkerMetrics } from '../core/metrics.js';
import type { HttpDeliverer } from '../delivery/deliverer.js';
import { classifyAttempt, type AttemptResult, type Outcome } from '../delivery/outcome.js';
import type { TimedResult } from '../delivery/deliverer.js';
import { signalOf } from '../delivery/origin-limiter.js';
import { holdDelayMs, retryTiming, waitBudgetMs } from '../core/schedule.js';
import type { Admission, OriginGate } from './origin-gate.js';
import type { FailureMarks } from '../merchants/failure-marks.js';
import type { MerchantEntry } from '../merchants/merchant.js';
import { signingNow, type MerchantSigners } from '../merchants/signers.js';
import { checkMerchant, type MerchantLookup } from './merchant-check.js';
import type { MerchantSlots } from './merchant-slots.js';
import { unsignableReason, type Signer } from '../delivery/signing.js';
import type { ChannelLink } from './channel-link.js';
import { attemptRecord, deadRecord, unrecordedStart, withStart } from './history-records.js';
import { OutcomeEmitter, type OutcomeEvent } from './outcome-events.js';
import { ANSWER_BYTES, type HistoryRecord } from '../history/records.js';
import type { HistorySink } from '../history/sink.js';
import type { HandOnBundler } from './hand-on-bundler.js';

export const USER_AGENT = 'notifyd/0.1.0';
/** Pause before a message whose hand-on failed goes back to its queue. */
const ERROR_REQUEUE_DELAY_MS = 1000;
/** A merchant without a cap holds no slot. */
const NOTHING_TO_RELEASE = (): void => undefined;

/** What the pipeline works with; replaced as a whole on a reload. */
export interface PipelineSettings {
  readonly config: Config;
  /** Signs notifications that name no merchant (the daemon's own scheme). */
  readonly signer: Signer;
  /** Signs notifications of registered merchants. */
  readonly merchantSigners: MerchantSigners;
  readonly deliverer: HttpDeliverer;
}

export interface PipelineDeps {
  readonly tier: number;
  readonly names: Names;
  readonly logger: Logger;
  /** Logger for the one line per attempt (no redaction: its fields are fixed). */
  readonly attemptLogger: Logger;
  readonly metrics: WorkerMetrics;
  /** Aborted when the worker stops: cuts short the pause before a requeue. */
  readonly stopSignal: AbortSignal;
  /** Per-origin admission of this tier worker (kept across reloads). */
  readonly gate: OriginGate;
  /** The merchant registry's copy in this process; null without a database. */
  readonly merchants: MerchantLookup | null;
  /** Merchants' own caps on attempts in flight. */
  readonly slots: MerchantSlots;
  /** Feeds auto-disable; null without a database. */
  readonly failureMarks: FailureMarks | null;
  /** Where attempts are recorded (DESIGN §11); null without history. */
  readonly history: HistorySink | null;
  /** Groups skips and deferrals into bundles (src/tier/hand-on-bundler.ts); null or absent: each is published alone. */
  readonly bundler?: HandOnBundler | null;
}

/** The producer header, when the notification came through the ingress with a token. */
function producerOf(headers: Record<string, unknown> | undefined): string | undefined {
  const p = headers?.[H.producer];
  return typeof p === 'string' && p !== '' ? p : undefined;
}

/** The optional fields of an outcome event: producer and metadata, when there are any. */
function extras(n: Notification | null, headers: Record<string, unknown> | undefined): Pick<OutcomeEvent, 'producer' | 'metadata'> {
  const producer = producerOf(headers);
  return { ...(producer !== undefined ? { producer } : {}), ...(n?.metadata ? { metadata: n.metadata } : {}) };
}

interface DeadDetails {
  readonly reason: DeadReason;
  readonly error: string;
  readonly attempts: number;
  readonly status: number | null;
  readonly firstAttemptAt: number | null;
}

/**
 * One message of `P.work.<tier>` from start to finish: decode → sign →
 * deliver → classify → hand on (next wait queue), or park on `P.dead`, or
 * report delivered; then the outcome event and the ack. Every hand-on is
 * publish → broker confirm → ack of the original, so a crash in between
 * duplicates an attempt but never loses one.
 */
export class AttemptPipeline {
  private settings: PipelineSettings;
  private readonly tier: number;
  private readonly names: Names;
  private readonly log: Logger;
  private readonly attemptLog: Logger;
  private readonly metrics: WorkerMetrics;
  readonly outcomes: OutcomeEmitter;
  private lastHistoryWarn = 0;
  /** How long a notification of this tier may wait for its origin, and the hold queue's TTL. */
  private budgetMs: number;
  private holdMs: number;
  /** Label children bound once: the hot path then skips prom-client's label hashing. */
  private readonly m: {
    readonly attempts: Readonly<Record<'success' | 'retry' | 'dead' | 'error' | 'skipped', { inc(): void }>>;
    readonly deferrals: { inc(): void };
    readonly delivered: { inc(): void };
    readonly lateness: { observe(v: number): void };
    readonly duration: { observe(v: number): void };
  };

  constructor(
    private readonly deps: PipelineDeps,
    settings: PipelineSettings,
  ) {
    this.settings = settings;
    this.tier = deps.tier;
    this.budgetMs = waitBudgetMs(settings.config.scheduleMs, deps.tier);
    this.holdMs = holdDelayMs(settings.config.scheduleMs, deps.tier);
    this.names = deps.names;
    this.log = deps.logger;
    this.attemptLog = deps.attemptLogger;
    this.metrics = deps.metrics;
    this.outcomes = new OutcomeEmitter(deps.names.outcomes, deps.logger);
    const tier = String(deps.tier);
    const mt = deps.metrics;
    this.m = {
      attempts: {
        success: mt.attempts.labels({ tier, outcome: 'success' }),
        retry: mt.attempts.labels({ tier, outcome: 'retry' }),
        dead: mt.attempts.labels({ tier, outcome: 'dead' }),
        error: mt.attempts.labels({ tier, outcome: 'error' }),
        skipped: mt.attempts.labels({ tier, outcome: 'skipped' }),
      },
      deferrals: mt.deferrals.labels({ tier }),
      delivered: mt.delivered.labels({ tier }),
      lateness: mt.lateness.labels({ tier }),
      duration: mt.attemptDuration.labels({ tier }),
    };
  }

  get current(): PipelineSettings {
    return this.settings;
  }

  /** Messages from now on use these; attempts already under way finish with what they started with. */
  configure(settings: PipelineSettings): void {
    this.settings = settings;
  }

  /** Handles one delivery; never throws. */
  async handle(link: ChannelLink, msg: ConsumeMessage): Promise<void> {
    try {
      let n: Notification;
      try {
        const decoded = decodeQueued(msg.content, this.settings.config.limits);
        n = decoded.n;
        // Handed on, parked and recorded from here on with the createdAt it was given, if it lacked one.
        msg.content = decoded.content;
      } catch (err) {
        await this.parkDead(link, msg, null, { reason: 'invalid', error: (err as Error).message, attempts: this.tier, status: null, firstAttemptAt: null });
        this.log.warn({ messageId: msg.properties.messageId, tier: this.tier, err: (err as Error).message }, 'parked an invalid message');
        return;
      }
      await this.attemptAndHandOn(link, msg, n);
    } catch (err) {
      this.m.attempts.error.inc();
      this.log.error({ messageId: msg.properties.messageId, err: toErrorData(err) }, 'hand-on failed; message returned to the queue');
      // A requeued message comes straight back: wait a little so a lasting fault is not a hot loop.
      await sleep(ERROR_REQUEUE_DELAY_MS, this.deps.stopSignal);
      link.requeue(msg);
    }
  }

  private async attemptAndHandOn(link: ChannelLink, msg: ConsumeMessage, n: Notification): Promise<void> {
    const { config, deliverer } = this.settings;
    const headers = msg.properties.headers ?? {};
    const dueAt = numberHeader(headers, H.dueAt) ?? n.createdAt;
    // The budget is for waiting on its origin (or the registry), from when it first reached this tier's
    // worker: time spent in the tier's own backlog (a burst, a paused tier) is no merchant's doing, and
    // counting it would skip a healthy merchant's notifications merely for being late.
    const waitingSince = numberHeader(headers, H.waitingSince) ?? Date.now();
    const firstAttemptAt = numberHeader(headers, H.firstAttemptAt) ?? null;
    const budgetLeft = (): number => waitingSince + this.budgetMs - Date.now();
    const origin = deliverer.originOf(n.url);

    // The merchant's word first (DESIGN §10): disabled, elsewhere, or not known yet.
    const verdict = checkMerchant(n, origin, this.deps.merchants, budgetLeft(), requiredHere(config, this.tier, firstAttemptAt));
    if (verdict.kind === 'park') {
      await this.parkDead(link, msg, n, { reason: verdict.reason, error: verdict.error, attempts: this.tier, status: null, firstAttemptAt });
      return;
    }
    if (verdict.kind === 'wait') {
      await this.waitForRegistry(link, msg, verdict.why, waitingSince);
      return;
    }
    const merchant = verdict.kind === 'ok' ? verdict.entry : null;
    const lastTier = Math.min(config.scheduleMs.length, merchant?.maxAttempts ?? Infinity) - 1;
    if (this.tier > lastTier) {
      // Its merchant allows fewer attempts than this ladder (maxAttempts lowered since): its schedule has run out.
      await this.parkDead(link, msg, n, { reason: 'exhausted', error: `merchant ${merchant!.id} allows ${merchant!.maxAttempts} attempts`, attempts: this.tier, status: null, firstAttemptAt });
      return;
    }
    if (merchant !== null && merchant.signing === 'standard' && (merchant.unopened ?? 0) > 0 && signingNow(merchant, Date.now()).length === 0) {
      // A key that does not open the merchant's secrets (NOTIFY_SECRETS_KEY changed) is this daemon's configuration,
      // not the notification's fault: it waits, as for a registry that cannot be read, until the key is put right.
      await this.waitForRegistry(link, msg, `no secret of merchant ${merchant.id} opens with this daemon's NOTIFY_SECRETS_KEY`, waitingSince);
      return;
    }
    const signer = merchant === null ? this.settings.signer : this.settings.merchantSigners.for(merchant);
    const rendered = renderBody(n);
    const unsignable = typeof signer === 'string' ? signer : unsignableReason(signer.scheme, rendered)?.problem;
    if (unsignable) {
      // It fails the same way on every try: park it instead of requeueing it forever.
      this.log.warn({ id: n.id }, 'parked a notification that cannot be signed');
      await this.parkDead(link, msg, n, { reason: 'invalid', error: `signing failed: ${unsignable}`, attempts: this.tier, status: null, firstAttemptAt });
      return;
    }
    const sign = signer as Signer;
    // On the last rung a skip for saturation would park the notification exhausted without one more
    // request to a merchant that answers (seen on a cold tier whose origin limits were still ramping up):
    // there it waits for a slot, deferred to the hold queue as long as it takes. A failing origin's
    // attempt is still skipped (its probes decide), as on every rung.
    const gateBudget = this.tier === lastTier ? (): number => Infinity : budgetLeft;

    // Isolation: the merchant's own cap, then a slot of this origin's, or a wait, a deferral or a skip.
    let ticket: Extract<Admission, { kind: 'go' }> | null = null;
    let skipped: Extract<AttemptResult, { kind: 'skipped' }> | null = null;
    let merchantSlot = false;
    // Given back when the request ends (or is never made), as the origin's slot is: not held while the hand-on
    // publishes, where a slow confirm would have the merchant's next notifications skipped with nothing in flight.
    // (A closure only for a merchant with a cap: no allocation per delivery otherwise.)
    let releaseMerchant = NOTHING_TO_RELEASE;
    if (merchant?.maxConcurrency != null) {
      const id = merchant.id;
      releaseMerchant = (): void => {
        if (!merchantSlot) return;
        merchantSlot = false;
        this.deps.slots.release(id);
      };
      merchantSlot = this.deps.slots.tryAcquire(merchant.id, merchant.maxConcurrency);
      if (!merchantSlot) {
        if (gateBudget() > 0 && this.holdMs > 0) {
          await this.defer(link, msg, waitingSince);
          return;
        }
        skipped = { kind: 'skipped', reason: 'origin-saturated', message: `merchant ${merchant.id} at its maxConcurrency (${merchant.maxConcurrency})` };
      }
    }
    try {
      if (origin !== null && skipped === null) {
        const pending = this.deps.gate.admit(origin, gateBudget(), this.holdMs > 0);
        const admission = pending instanceof Promise ? await pending : pending;
        switch (admission.kind) {
          case 'requeue':
            releaseMerchant();
            link.requeue(msg);
            return;
          case 'defer':
            // No request is made here: the merchant's slot is not held through the hold queue's publish.
            releaseMerchant();
            await this.defer(link, msg, waitingSince);
            return;
          case 'skip':
            skipped = { kind: 'skipped', reason: admission.reason, message: `${origin}${admission.lastError ? ` (last error: ${admission.lastError})` : ''}` };
            break;
          case 'go':
            ticket = admission;
            break;
        }
      }
      await this.attempt(link, msg, n, { sign, rendered, ticket, skipped, merchant, lastTier, dueAt, requestDone: releaseMerchant });
    } finally {
      releaseMerchant();
    }
  }

  /**
   * The registry cannot say yet whether the notification's merchant exists:
   * not an attempt; it waits in the hold queue (or, on a tier with none,
   * back in its queue after a pause) and is looked at again.
   */
  private async waitForRegistry(link: ChannelLink, msg: ConsumeMessage, why: string, waitingSince: number): Promise<void> {
    this.log.debug({ messageId: msg.properties.messageId, why }, 'waiting for the merchant registry');
    if (this.holdMs > 0) return this.defer(link, msg, waitingSince);
    await sleep(ERROR_REQUEUE_DELAY_MS, this.deps.stopSignal);
    link.requeue(msg);
  }

  /** Gives back the origin's slot of an attempt not made (its channel is gone), counting nothing against the origin. */
  private letGo(ticket: Extract<Admission, { kind: 'go' }> | null, id: string): void {
    ticket?.release('none', 0);
    this.log.debug({ id }, 'not attempted: its channel is gone, the broker redelivers it');
  }

  /** The attempt itself (or its skip), then the classification, the log line and the hand-on. */
  private async attempt(
    link: ChannelLink,
    msg: ConsumeMessage,
    n: Notification,
    a: {
      sign: Signer;
      rendered: { body: string; contentType: string };
      ticket: Extract<Admission, { kind: 'go' }> | null;
      skipped: Extract<AttemptResult, { kind: 'skipped' }> | null;
      merchant: MerchantEntry | null;
      lastTier: number;
      dueAt: number;
      /** Called once no request is under way any more (made, failed, or not to be made). */
      requestDone: () => void;
    },
  ): Promise<void> {
    const { config } = this.settings;
    const { sign: signer, rendered, ticket, skipped, merchant, dueAt } = a;
    const headers = msg.properties.headers ?? {};
    // A delivery whose channel went while it waited for its origin's slot is the broker's again (requeued with
    // the channel, and soon on the new one): calling the merchant now would call it twice, count the attempt
    // twice and take the slot its live copy waits for. A skip likewise: its record would stand beside the one the
    // redelivered copy makes.
    if (link.closed) return this.letGo(ticket, n.id);
    const startedAt = Date.now();
    const lateness = (): void => this.m.lateness.observe(Math.max(0, startedAt - dueAt) / 1000);
    const criteria = n.success ?? merchant?.success ?? config.delivery.success;
    let result: TimedResult | (Extract<AttemptResult, { kind: 'skipped' }> & { durationMs: number });
    if (skipped !== null) {
      lateness();
      a.requestDone();
      result = { ...skipped, durationMs: 0 };
    } else {
      try {
        // Other signing failures (a pool restarting, a key file gone) are operational: they
        // throw to handle(), which returns the message to the queue after a pause.
        const signed =
          signer.scheme === 'none'
            ? { headers: {}, body: rendered.body }
            : await signer.sign({ id: n.id, timestampSec: Math.floor(startedAt / 1000), body: rendered.body, contentType: rendered.contentType });
        // Signing in a thread takes a while; the channel may have gone meanwhile.
        if (link.closed) return this.letGo(ticket, n.id);
        // Observed once the attempt is sure to be made: a copy let go here is observed again when redelivered.
        lateness();
        // The deliverer of now, not of before the signing: a reload meanwhile closed that one, and an attempt on it
        // would fail without a request and count against the origin (its limit halved, the notification handed on).
        result = await this.settings.deliverer.attempt(
          {
            url: n.url,
            method: n.method,
            // webhook-id on every request, whatever the scheme: it is what merchants deduplicate on.
            headers: { ...n.headers, 'webhook-id': n.id, ...signed.headers, 'content-type': rendered.contentType, 'user-agent': USER_AGENT },
            body: signed.body,
          },
          criteria.bodyEquals !== undefined,
          this.deps.history === null ? 0 : ANSWER_BYTES,
        );
      } catch (err) {
        ticket?.release('none', 0);
        a.requestDone();
        throw err;
      }
      // The slot is the origin's only while the request is under way, not while the hand-on publishes.
      ticket?.release(signalOf(result), result.durationMs, result.kind === 'error' ? result.code : `status ${result.status}`);
      a.requestDone();
      this.m.duration.observe(result.durationMs / 1000);
    }
    const outcome = classifyAttempt(result, criteria, config.delivery.deadOnStatus, this.tier >= a.lastTier);
    // Auto-disable (DESIGN §10) learns from real attempts only: a skip says nothing new.
    if (merchant !== null && result.kind !== 'skipped') this.deps.failureMarks?.note(merchant.id, outcome.kind !== 'delivered', merchant.failing);
    const status = result.kind === 'response' ? result.status : null;
    const logMode = config.log.attempts;
    if (logMode === 'all' || (logMode === 'failures' && outcome.kind !== 'delivered')) {
      const producer = producerOf(headers);
      const line: Record<string, unknown> = {
        id: n.id,
        attempt: this.tier,
        status: result.kind === 'response' ? result.status : result.kind === 'error' ? result.code : 'SKIPPED',
        ms: Math.round(result.durationMs),
        outcome: outcome.kind === 'delivered' ? 'success' : outcome.kind,
      };
      if (result.kind === 'skipped') line.skipped = result.reason;
      if (producer !== undefined) line.producer = producer;
      this.attemptLog.info(line, 'attempt');
    }
    const recs = this.deps.history === null ? [] : withStart(unrecordedStart(msg, n, this.tier, startedAt), attemptRecord(msg, n, { tier: this.tier, startedAt, result, outcome }));
    // Its delay is counted from when the request went out (a wait for a connection, or its connect, is not the
    // merchant's), or from when the attempt began if none went out.
    const sentAt = result.kind !== 'skipped' && result.sentAt !== undefined ? result.sentAt : startedAt;
    await this.handOn(link, msg, n, outcome, status, startedAt, sentAt, result.kind === 'skipped', recs);
  }

  /**
   * Sends history records, resolving once the broker has them, so the ack
   * that follows never outruns them. Never rejects: history must not hold
   * up delivery, so a batch the broker refused is counted and logged, and
   * the notification goes on (a channel lost under it is the broker's to
   * redeliver, and the attempt is then recorded again).
   */
  private async remember(link: ChannelLink, records: HistoryRecord[]): Promise<void> {
    const sink = this.deps.history;
    if (sink === null || records.length === 0) return;
    try {
      await sink.record(...records);
    } catch (err) {
      if (link.closed) return;
      this.metrics.historyLost.inc(records.length);
      const now = Date.now();
      if (now - this.lastHistoryWarn > 10_000) {
        this.lastHistoryWarn = now;
        this.log.warn({ err: toErrorData(err), records: records.length }, 'history records not taken by the broker; delivery goes on without them');
      }
    }
  }

  /**
   * Hands a notification whose origin is saturated to the tier's hold queue,
   * out of the tier's window: it comes back to this tier after the hold TTL.
   * Not an attempt: `notify-attempt` stays, `notify-deferred` counts it.
   */
  private async defer(link: ChannelLink, msg: ConsumeMessage, waitingSince: number): Promise<void> {
    const headers = msg.properties.headers ?? {};
    const deferred = (numberHeader(headers, H.deferred) ?? 0) + 1;
    const handed = await this.handOnBundled(link, msg, '', this.names.holdQueue(this.tier), handOnOptions(msg, { [H.deferred]: deferred, [H.waitingSince]: waitingSince }));
    if (!handed) return;
    link.ack(msg);
    this.m.deferrals.inc();
  }

  private async handOn(
    link: ChannelLink,
    msg: ConsumeMessage,
    n: Notification,
    outcome: Outcome,
    status: number | null,
    startedAt: number,
    /** When its request went out (`startedAt` when none did). */
    sentAt: number,
    skipped: boolean,
    records: HistoryRecord[],
  ): Promise<void> {
    const { config } = this.settings;
    const headers = msg.properties.headers ?? {};
    const firstAttemptAt = numberHeader(headers, H.firstAttemptAt) ?? startedAt;
    switch (outcome.kind) {
      case 'delivered': {
        await Promise.all([
          this.outcomes.emit(link, 'delivered', () => ({ id: n.id, outcome: 'delivered', tier: this.tier, attempts: this.tier + 1, status, at: Date.now(), createdAt: n.createdAt, ...extras(n, headers) })),
          this.remember(link, records),
        ]);
        link.ack(msg);
        this.m.attempts.success.inc();
        this.m.delivered.inc();
        this.metrics.endToEnd.observe(Math.max(0, Date.now() - n.createdAt) / 1000);
        return;
      }
      case 'retry': {
        const next = this.tier + 1;
        const route = routeForAttempt(this.names, config.scheduleMs, next);
        const now = Date.now();
        const delayMs = config.scheduleMs[next] ?? 0;
        // A skip began when it was handed on; only a real attempt's own time comes off its delay.
        const timing = retryTiming(delayMs, sentAt, now, skipped ? 0 : config.delivery.delayFromStartMs);
        const options = handOnOptions(msg, {
          [H.attempt]: next,
          [H.firstAttemptAt]: firstAttemptAt,
          [H.dueAt]: timing.dueAt,
          [H.lastError]: outcome.error,
        }, [H.waitingSince]);
        if (timing.expirationMs !== null) options.expiration = String(timing.expirationMs);
        // Skips come many at once (a failing origin) and share a broker message; a failed attempt goes
        // alone: failures come one answer at a time, and waiting for others would make its retry late.
        const [handed] = await Promise.all([
          skipped ? this.handOnBundled(link, msg, route.exchange, route.routingKey, options) : this.handOnPublish(link, msg, route.exchange, route.routingKey, options),
          this.remember(link, records),
        ]);
        if (!handed) return;
        link.ack(msg);
        (skipped ? this.m.attempts.skipped : this.m.attempts.retry).inc();
        return;
      }
      case 'dead':
        await this.parkDead(link, msg, n, { reason: outcome.reason, error: outcome.error, attempts: this.tier + 1, status, firstAttemptAt }, skipped, records);
        return;
    }
  }

  /** A hand-on that may travel in a bundle; alone (with `handOnPublish`'s retries) when the bundle was not taken. */
  private async handOnBundled(link: ChannelLink, msg: ConsumeMessage, exchange: string, routingKey: string, options: Options.Publish): Promise<boolean> {
    const bundler = this.deps.bundler;
    if (bundler && (await bundler.add(link, exchange, routingKey, { content: msg.content, options }))) return true;
    return this.handOnPublish(link, msg, exchange, routingKey, options);
  }

  /**
   * Publishes a hand-on until the broker takes it, with backoff. The attempt
   * behind it is made and its result kept: a hand-on the broker refuses (a
   * nack, e.g. a max-length policy with `reject-publish`) or returns (no queue
   * took it) is tried again, never turned into a second HTTP call by a
   * requeue. False when it could not be done here: the channel is gone (the
   * broker redelivers the message; the attempt will be made again, which
   * at-least-once allows) or the worker stops (the message goes back now).
   */
  private async handOnPublish(link: ChannelLink, msg: ConsumeMessage, exchange: string, routingKey: string, options: Options.Publish): Promise<boolean> {
    for (let tries = 0; ; tries++) {
      try {
        await link.publish(exchange, routingKey, msg.content, options);
        if (tries > 0) this.log.info({ messageId: msg.properties.messageId, tries: tries + 1, to: routingKey }, 'hand-on went through');
        return true;
      } catch (err) {
        if (link.closed) return false;
        const e = toErrorData(err);
        const reason = handOnFailureReason(e);
        this.metrics.handOnFailures.inc({ tier: String(this.tier), reason });
        const delay = reconnectDelay(tries, 100, 5000);
        // The first failure and every tenth, not one line per retry.
        if (tries % 10 === 0) {
          this.log.warn({ messageId: msg.properties.messageId, to: routingKey, reason, err: e, tries: tries + 1, retryInMs: delay }, `the broker did not take a hand-on (${reason}); keeping the attempt's result and retrying the publish`);
        }
        await sleep(delay, this.deps.stopSignal);
        if (this.deps.stopSignal.aborted) {
          link.requeue(msg);
          return false;
        }
      }
    }
  }

  /**
   * Parks on `P.dead`, publishes the `dead` outcome event, acks, counts. `n` is
   * null when the message could not even be read (its id then comes from the
   * AMQP messageId).
   */
  private async parkDead(link: ChannelLink, msg: ConsumeMessage, n: Notification | null, d: DeadDetails, skipped = false, records?: HistoryRecord[]): Promise<void> {
    const set: Record<string, unknown> = {
      [H.deadReason]: d.reason,
      [H.lastError]: d.error.slice(0, 500),
      [H.attempt]: this.tier,
      [H.deadAt]: Date.now(),
      [H.deadTier]: this.tier,
      [H.deadAttempts]: d.attempts,
    };
    if (d.firstAttemptAt !== null) set[H.firstAttemptAt] = d.firstAttemptAt;
    // Parked before an attempt: that is its history's last word.
    const recs = records ?? (n === null ? [] : withStart(unrecordedStart(msg, n, this.tier, Date.now()), deadRecord(msg, n, d.reason, d.error, Date.now())));
    const [handed] = await Promise.all([this.handOnPublish(link, msg, '', this.names.dead, handOnOptions(msg, set)), this.remember(link, recs)]);
    if (!handed) return;
    this.metrics.dead.inc({ reason: d.reason });
    await this.outcomes.emit(link, 'dead', () => ({
      id: n?.id ?? String(msg.properties.messageId ?? ''),
      outcome: 'dead',
      tier: this.tier,
      attempts: d.attempts,
      status: d.status,
      reason: d.reason,
      error: d.error,
      at: Date.now(),
      createdAt: n?.createdAt ?? null,
      ...extras(n, msg.properties.headers),
    }));
    link.ack(msg);
    (skipped ? this.m.attempts.skipped : this.m.attempts.dead).inc();
  }
}

/**
 * Whether this tier holds a notification to `merchants.required`: at tier 0,
 * and at a later tier one that was never attempted (published straight to
 * it). A retry under way passed tier 0 already, or was accepted before the
 * setting was turned on: parking it now would drop what was promised.
 */
function requiredHere(config: Config, tier: number, firstAttemptAt: number | null): boolean {
  return config.merchants.required && (tier === 0 || firstAttemptAt === null);
}
