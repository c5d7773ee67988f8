import type { ChannelModel, ConfirmChannel, ConsumeMessage, Message } from 'amqplib';
import { AckBatcher, ackPolicyFor, nodeAckTimers, type AckStall } from '../broker/ack-batcher.js';
import { lanePolicy, shouldMoveLane, type LanePolicy } from '../broker/consumer-lanes.js';
import { diffConfig, historyOn, warmsUp, type Config } from '../core/config-model.js';
import { createAddressGuard } from '../delivery/address-guard.js';
import { CLOSE_WITHIN_MS, NodeRing, closeWithin, nodeRingFor, openUntil, sleep } from '../broker/connection.js';
import { callWithin, closeChannelWithin, openWithin, settleWithin } from '../broker/open-within.js';
import { watchCalls } from '../broker/call-watchdog.js';
import { PublishChannel } from '../broker/publish-channel.js';
import { WritePush } from '../broker/write-push.js';
import type { WorkerState } from '../supervisor/control.js';
import { SelfAddresses } from '../delivery/connector.js';
import { HttpDeliverer } from '../delivery/deliverer.js';
import { ErrorCodes, NotifyError, toErrorData } from '../core/errors.js';
import type { ManagedWorker } from '../supervisor/worker-process.js';
import type { Logger } from '../core/logger.js';
import type { WorkerMetrics } from '../core/metrics.js';
import { createSigner } from '../delivery/signing.js';
import { namesFor, verifyQueues, type Names } from '../broker/topology.js';
import type { ChannelLink } from './channel-link.js';
import { AttemptPipeline, type PipelineSettings } from './pipeline.js';
import { secretsKeyBytes } from '../core/config-model.js';
import { MerchantDirectory } from '../merchants/directory.js';
import { FailureMarks } from '../merchants/failure-marks.js';
import { MerchantSigners } from '../merchants/signers.js';
import { MerchantSlots } from './merchant-slots.js';
import { HistorySink, historyPublishOptions } from '../history/sink.js';
import { OriginGate, gateOptionsOf } from './origin-gate.js';
import type { OriginSnapshot } from '../delivery/origin-limiter.js';
import { warmUp } from './warm-up.js';
import { warmUpThroughBroker } from './broker-warm-up.js';
import { cancelRetryMs } from '../broker/cancel-backoff.js';
import { HandOnBundler, type BundlerOptions } from './hand-on-bundler.js';
import { handleBundle, type BundleHandling } from './bundle-delivery.js';
import { isBundle } from '../broker/bundle.js';
import { handOnFailureReason } from '../broker/confirm.js';
import { ConfirmDeadlines } from '../broker/confirm-deadlines.js';

const GATE_TICK_MS = 100;
/**
 * The warm-up's bounds: a slow or crowded machine must not hold a worker's
 * start (and so the supervisor's) for long; what has run by then is warm.
 * Its concurrency is that of a small burst: enough to exercise the origin
 * gate's waiting path, not so much that one notification takes long.
 */
const WARM_UP_BUDGET_MS = 5000;
const WARM_UP_CONCURRENCY = 32;
/**
 * A bundle's first skip or deferral waits this long for others: a failing
 * origin's notifications arrive within a few milliseconds of each other, and
 * a rung's delay (a second or more) hides it.
 */
const BUNDLE_LINGER_MS = 10;
/** Far below RabbitMQ's largest message, and a bundle's entries are decoded at once. */
const BUNDLE_MAX_BYTES = 512 * 1024;
/** A consumer sync that has gone round this many times says so and pauses briefly before going on. */
const SYNC_ROUNDS_WARN = 20;
const SYNC_BACKOFF_MS = 50;

/** Pure: the bundler's options from the configuration. */
function bundlerOptions(cfg: Config): BundlerOptions {
  return { max: cfg.delivery.bundleMax, maxBytes: BUNDLE_MAX_BYTES, lingerMs: BUNDLE_LINGER_MS };
}

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

/**
 * The consumer lifecycle of one tier: connection, channel and prefetch,
 * consumer reconcile across pause/resume/drain/reconnect, batched acks.
 * Each delivery goes to the `AttemptPipeline` with the link of the channel
 * it arrived on, so it is only ever acked there. A lost connection is
 * re-established with backoff.
 */
export class TierWorker implements ManagedWorker {
  private config: Config;
  private readonly tier: number;
  private readonly names: Names;
  /** The cluster's nodes as this tier walks them: its own first, the next one after a loss. */
  private readonly ring: NodeRing;
  /** Where hand-ons and outcome events go, per consumer channel: a spare channel after a nack (see PublishChannel). */
  private readonly publishing = new WeakMap<ConfirmChannel, PublishChannel>();
  private readonly log: Logger;
  private readonly pipeline: AttemptPipeline;
  private conn: ChannelModel | null = null;
  private ch: ConfirmChannel | null = null;
  /** Acks of the current channel; replaced with it (tags never cross channels). */
  private acker: AckBatcher | null = null;
  /**
   * Earlier consumer channels of this connection that still hold unfinished
   * deliveries, with their acks (src/broker/consumer-lanes.ts); each is
   * closed once it holds none.
   */
  private readonly retired = new Map<ConfirmChannel, AckBatcher>();
  /** `notify_ack_frames_total` of this tier, bound once: a frame goes out every few milliseconds. */
  private readonly multipleAcks: { inc(): void };
  private readonly singleAcks: { inc(): void };
  /** Old lanes whose consumer is not cancelled yet: they may still get deliveries, so they stay open. */
  private readonly cancelling = new Set<ConfirmChannel>();
  /** The lane move under way, awaited by a drain before it counts what is in flight. */
  private movingLane: Promise<void> | null = null;
  /** Pushes acks past Nagle's algorithm, once a tick (see `pushAcks`). */
  private readonly writePush = new WritePush();
  private lastLaneMoveAt = -Infinity;
  /** When to move (from `delivery.consumerLanes`), built once per configuration: stalls are reported every few milliseconds. */
  private lanePolicy: LanePolicy;
  /** The pipeline's view of the current channel (what history batches go out on too). */
  private link: ChannelLink | null = null;
  /** Where this worker's history records go; null without history. */
  private readonly history: HistorySink | null;
  private consumerTag: string | null = null;
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
  /** notifyd's own ports, which no delivery may target; kept across reloads (deliverers are rebuilt). */
  private readonly self = new SelfAddresses();
  /** Per-origin admission; kept across reloads, so what was learned of each origin stays. */
  private readonly gate: OriginGate;
  /** This process's copy of the merchant registry; null without a database. */
  private readonly directory: MerchantDirectory | null;
  /** Runs the gate's tick while it tracks an origin; null while it tracks none (an idle tier sleeps). */
  private gateTimer: NodeJS.Timeout | null = null;
  /** Consumes again after the broker cancelled the consumer (src/broker/cancel-backoff.ts); null when none is due. */
  private cancelTimer: NodeJS.Timeout | null = null;
  private cancelWaitMs = 0;
  private lastCancelAt = -Infinity;
  /** Skips and deferrals sharing broker messages; kept across reloads. */
  private readonly bundler: HandOnBundler;
  /** How this tier opens bundles: entries through the pipeline, given back to its own queue. */
  private readonly bundles: BundleHandling;

  constructor(private readonly deps: TierWorkerDeps) {
    this.config = deps.config;
    this.tier = deps.tier;
    this.names = namesFor(deps.config.prefix);
    this.ring = nodeRingFor(deps.config.amqpUrl, 'tier', deps.tier, deps.config.scheduleMs.length);
    this.log = deps.logger;
    this.paused = deps.startPaused ?? false;
    this.lanePolicy = lanePolicy(deps.config.delivery.consumerLanes);
    this.multipleAcks = deps.metrics.ackFrames.labels({ tier: String(deps.tier), kind: 'multiple' });
    this.singleAcks = deps.metrics.ackFrames.labels({ tier: String(deps.tier), kind: 'single' });
    this.gate = new OriginGate(gateOptionsOf(deps.config), () => this.startGateTick());
    const db = deps.config.database.url;
    this.directory =
      db === null
        ? null
        : new MerchantDirectory({
            url: db,
            key: deps.config.merchants.secretsKey === null ? null : secretsKeyBytes(deps.config.merchants.secretsKey),
            refreshMs: deps.config.merchants.refreshMs,
            name: `notifyd tier ${deps.tier} pid ${process.pid}`,
            log: deps.logger,
            onChange: (id) => deps.logger.info({ merchant: id }, 'merchant changed'),
          });
    const directory = this.directory;
    this.history = historyOn(deps.config) ? new HistorySink((body) => this.publishHistory(body)) : null;
    const bundles = deps.metrics.bundles.labels({ tier: String(deps.tier) });
    this.bundler = new HandOnBundler(bundlerOptions(deps.config), () => bundles.inc());
    this.bundles = {
      handle: (l, m) => this.pipeline.handle(l, m),
      backTo: { exchange: this.names.work, routingKey: this.names.routingKey(this.tier) },
      stopSignal: this.stopSignal.signal,
      onRefused: (err, tries) => {
        const e = toErrorData(err);
        const reason = handOnFailureReason(e);
        deps.metrics.handOnFailures.inc({ tier: String(deps.tier), reason });
        // The first refusal and every tenth, not one line per retry.
        if (tries % 10 === 1) this.log.warn({ err: e, reason, tries }, `the broker did not take a bundle entry given back to ${this.names.workQueue(deps.tier)} (${reason}); retrying`);
      },
    };
    this.pipeline = new AttemptPipeline(
      {
        tier: deps.tier,
        names: this.names,
        logger: deps.logger,
        attemptLogger: deps.attemptLogger ?? deps.logger,
        metrics: deps.metrics,
        stopSignal: this.stopSignal.signal,
        gate: this.gate,
        merchants: directory,
        slots: new MerchantSlots(),
        failureMarks: directory === null ? null : new FailureMarks((id, failing) => directory.markFailing(id, failing)),
        history: this.history,
        bundler: this.bundler,
      },
      this.settingsFor(deps.config),
    );
    if (directory) deps.metrics.sampleRegistry(() => directory.isUp);
    deps.metrics.sampleInflight(String(deps.tier), () => this.inflight.size);
    deps.metrics.sampleOrigins(String(deps.tier), () => this.gate.counts());
  }

  /**
   * Waits that ran out, queues past their bound, idle origins: a tenth of a
   * second is fine-grained enough. The timer stops once the gate has
   * forgotten its last origin and starts again with the next one.
   */
  private startGateTick(): void {
    if (this.gateTimer !== null) return;
    const timer = setInterval(() => {
      this.gate.tick();
      if (this.gate.idle && this.gateTimer === timer) this.stopGateTick();
    }, GATE_TICK_MS);
    timer.unref();
    this.gateTimer = timer;
  }

  private stopGateTick(): void {
    if (this.gateTimer !== null) clearInterval(this.gateTimer);
    this.gateTimer = null;
  }

  /** What the pipeline signs and delivers with, built anew on a reload. */
  private settingsFor(cfg: Config, before?: HttpDeliverer): PipelineSettings {
    const signer = createSigner(cfg.signing);
    return { config: cfg, signer, merchantSigners: new MerchantSigners(cfg.signing, signer), deliverer: this.makeDeliverer(cfg, before) };
  }

  /** A deliverer for `cfg`; on a reload it keeps `before`'s DNS answers when the resolver settings are the same. */
  private makeDeliverer(cfg: Config, before?: HttpDeliverer): HttpDeliverer {
    const guard = cfg.delivery.allowPrivateNetworks ? null : createAddressGuard(cfg.delivery);
    return new HttpDeliverer(cfg.delivery, guard, this.self, before?.dnsCacheFor(cfg.delivery));
  }

  /** The worst origins of this tier (`GET /admin/origins`). */
  origins(n: number): OriginSnapshot[] {
    return this.gate.worst(n);
  }

  /** This tier's origins by state, all of them. */
  originCounts(): { failing: number; limited: number } {
    return this.gate.counts();
  }

  /** The master's word on which ports are notifyd's own (admin, ingress). */
  setSelfPorts(ports: readonly number[]): void {
    this.self.setPorts(ports);
  }

  get inflightCount(): number {
    return this.inflight.size;
  }

  get currentState(): WorkerState {
    return this.state;
  }

  /** `host:port` of the node this tier is connected to, or null. */
  get brokerNode(): string | null {
    return this.conn ? (this.ring.node?.label ?? null) : null;
  }

  private setState(s: WorkerState): void {
    if (this.state === s) return;
    this.state = s;
    this.deps.onState?.(s);
  }

  /** Connects and starts consuming; resolves once the first consumer is up. */
  async start(): Promise<{ port?: number }> {
    if (this.directory) {
      // Consume with the registry read, or notifications of merchants would wait for nothing; but not for long.
      this.directory.start();
      if (!(await this.directory.ready(5000))) this.log.warn('merchant registry not read yet; its merchants\' notifications wait until it is');
    }
    await this.warmUp();
    await this.warmUpThroughBroker();
    await this.connectLoop();
    return {};
  }

  /** Runs the hot path on synthetic notifications before consuming (src/tier/warm-up.ts); a failure only costs the warmth. */
  private async warmUp(): Promise<void> {
    if (!warmsUp(this.config, this.tier)) return;
    const count = this.config.delivery.warmUp;
    const { signer, merchantSigners } = this.pipeline.current;
    const r = await warmUp(this.config, this.tier, gateOptionsOf(this.config), { signer, merchantSigners }, { count, budgetMs: WARM_UP_BUDGET_MS, concurrency: Math.min(WARM_UP_CONCURRENCY, this.config.delivery.concurrency) }, this.stopSignal.signal);
    if (this.stopSignal.signal.aborted) return;
    if (r.error) this.log.warn({ err: toErrorData(r.error), attempts: r.attempts, ms: r.ms, frames: r.frames }, 'warm-up failed; the tier starts cold');
    else this.log.info({ attempts: r.attempts, ms: r.ms, frames: r.frames }, 'tier worker warmed up');
  }

  /**
   * Then sends synthetic notifications through the broker to itself, on a
   * connection of its own to the node it will use (src/tier/broker-warm-up.ts);
   * once per process, before its first connection.
   */
  private async warmUpThroughBroker(): Promise<void> {
    const count = this.config.delivery.warmUpThroughBroker;
    if (count <= 0 || !warmsUp(this.config, this.tier)) return;
    const { signer, merchantSigners } = this.pipeline.current;
    const prefetch = this.config.delivery.prefetch;
    // A ring of its own, from the same start: the worker's ring must not move on to the next node for it.
    const ring = nodeRingFor(this.config.amqpUrl, 'tier', this.tier, this.config.scheduleMs.length);
    const connect = (): Promise<ChannelModel> => ring.connect(`notifyd tier ${this.tier} warm-up pid ${process.pid}`);
    const r = await warmUpThroughBroker(connect, this.config, this.tier, gateOptionsOf(this.config), { signer, merchantSigners }, { count, budgetMs: WARM_UP_BUDGET_MS, prefetch }, this.stopSignal.signal);
    if (this.stopSignal.signal.aborted) return;
    if (r.error) this.log.warn({ err: toErrorData(r.error), attempts: r.attempts, ms: r.ms, queues: r.queues }, 'warm-up through the broker failed; the tier starts less warm');
    else this.log.info({ attempts: r.attempts, ms: r.ms, queues: r.queues }, 'tier worker warmed up through the broker');
  }

  /** One reconnect loop at a time, however many close events arrive. */
  private connectLoop(): Promise<void> {
    this.connecting ??= this.connectUntilOpen().finally(() => {
      this.connecting = null;
    });
    return this.connecting;
  }

  private connectUntilOpen(): Promise<void> {
    return openUntil(() => this.open(), { stopped: () => this.stopping, signal: this.stopSignal.signal, log: this.log, what: 'tier worker cannot reach the broker' });
  }

  private async open(): Promise<void> {
    const conn = await this.ring.connect(`notifyd tier ${this.tier} pid ${process.pid}`);
    watchCalls(conn, { log: this.log, owner: `tier ${this.tier}`, onGiveUp: () => this.deps.metrics.brokerGiveUps.inc({ role: 'tier' }) });
    try {
      conn.on('error', (err: Error) => this.log.warn({ err: err.message }, 'broker connection error'));
      const deadlines = new ConfirmDeadlines();
      conn.on('blocked', () => deadlines.pause());
      conn.on('unblocked', () => deadlines.resume());
      // Each call bounded: a broker that never answers one would keep this worker from ever reconnecting.
      const ch = await openWithin(conn, deadlines.timeoutMs);
      ch.on('error', (err: Error) => this.log.warn({ err: err.message }, 'broker channel error'));
      const within = <T>(call: Promise<T>): Promise<T> => callWithin(call, deadlines.timeoutMs, 'broker did not answer in time while the worker connected');
      await within(verifyQueues(ch, [this.names.workQueue(this.tier), this.names.dead, ...(this.history ? [this.names.history] : [])]));
      // Read once: a reload during start-up must not give the batcher another window than the channel's.
      const prefetch = this.config.delivery.prefetch;
      await within(ch.prefetch(prefetch));
      const lost = (): void => this.connectionLost(conn);
      // A drain that began while this connection opened has closed what it saw, not this one: taken now, it would
      // stay open after the worker says stopped. From here on (no await until it is taken) a drain sees it.
      if (this.stopping) throw new NotifyError(ErrorCodes.DRAINING, 'draining: the connection just opened is closed');
      ch.on('return', (m: Message) => this.pipeline.outcomes.onReturn(m));
      this.publishing.set(ch, new PublishChannel(conn, ch, (m) => this.pipeline.outcomes.onReturn(m), deadlines));
      conn.on('close', lost);
      ch.on('close', () => this.channelClosed(ch, conn));
      this.conn = conn;
      this.ch = ch;
      this.link = this.linkFor(ch);
      this.acker = this.ackerFor(ch, prefetch);
      await within(this.syncConsumer());
      // A change of the consumer still stuck on a connection given up (a lane move's) ends without starting one
      // here once that connection is destroyed: ask once more, then start over.
      const unconsumed = (): boolean => this.ch === ch && this.consumerTag === null && !this.paused && !this.stopping;
      if (unconsumed()) await within(this.syncConsumer());
      if (this.ch !== ch) throw new Error('channel closed during start-up');
      if (unconsumed()) throw new NotifyError(ErrorCodes.BROKER_UNAVAILABLE, 'the consumer did not start');
      if (!this.stopping) this.setState(this.paused ? 'paused' : 'running');
      this.log.info({ queue: this.names.workQueue(this.tier), node: this.ring.node?.label, prefetch, concurrency: this.config.delivery.concurrency, paused: this.paused }, 'tier worker connected');
    } catch (err) {
      // Forget this connection first, so its close does not start a second reconnect loop.
      if (this.conn === conn) this.forgetChannel();
      // A broker that did not answer the open may not answer the close either.
      await closeWithin(conn, CLOSE_WITHIN_MS);
      throw err;
    }
  }

  /** Drops the current connection's state; its unacked deliveries are the broker's to requeue. */
  private forgetChannel(): void {
    this.conn = null;
    this.ch = null;
    this.link = null;
    this.acker?.discard();
    this.acker = null;
    for (const a of this.retired.values()) a.discard();
    this.retired.clear();
    this.cancelling.clear();
    this.consumerTag = null;
  }

  /** The connection (or its consumer channel) is gone: forget it and reconnect, unless stopping. */
  private connectionLost(conn: ChannelModel): void {
    if (this.conn !== conn) return;
    this.forgetChannel();
    // Bounded: a broker that stopped answering on it would keep the connection (and its socket) for ever.
    void closeWithin(conn, CLOSE_WITHIN_MS);
    if (!this.stopping) {
      this.log.warn({ node: this.ring.node?.label }, 'broker connection lost; reconnecting to the next node');
      this.setState('starting');
      void this.connectLoop();
    }
  }

  /**
   * A consumer channel closed. The current one or an old lane (closed by the
   * broker): the connection is treated as lost, as before lanes, so what was
   * in flight on any of its channels (history batches too) is redelivered
   * and done again. One closed here on purpose was forgotten first.
   */
  private channelClosed(ch: ConfirmChannel, conn: ChannelModel): void {
    if (this.ch === ch || this.retired.has(ch)) this.connectionLost(conn);
  }

  /** Whether a delivery of `ch` can still be acked there. */
  private isLive(ch: ConfirmChannel): boolean {
    return ch === this.ch || this.retired.has(ch);
  }

  private ackerOf(ch: ConfirmChannel): AckBatcher | null {
    return ch === this.ch ? this.acker : (this.retired.get(ch) ?? null);
  }

  /** The ack batcher of one consumer channel; an old lane is closed after the ack that leaves it empty. */
  private ackerFor(ch: ConfirmChannel, prefetch: number): AckBatcher {
    return new AckBatcher(
      (tag, multiple) => {
        if (!this.isLive(ch)) return;
        try {
          ch.ack({ fields: { deliveryTag: tag } } as Message, multiple);
          (multiple ? this.multipleAcks : this.singleAcks).inc();
          this.pushAcks();
        } catch {
          /* channel closing: the broker redelivers */
        }
        // After the flush has dropped what it acked.
        if (this.retired.has(ch)) queueMicrotask(() => this.closeLaneIfEmpty(ch));
      },
      ackPolicyFor(prefetch),
      nodeAckTimers,
      (stall) => this.onAckStall(ch, stall),
    );
  }

  /**
   * Sends the acks (and requeues) just written without waiting for Nagle's
   * algorithm: a worker whose window is full would otherwise wait up to the
   * broker's delayed TCP acknowledgement for new deliveries (stop 36 in
   * docs/performance.md). On the ack's own connection: a drain clears
   * `this.conn` right after its last flush.
   */
  private pushAcks(): void {
    this.writePush.request(this.conn);
  }

  /** A flush of the current channel acked deliveries one by one behind a long-held one: maybe move to a new lane. */
  private onAckStall(ch: ConfirmChannel, stall: AckStall): void {
    if (ch !== this.ch) return;
    const busy = this.movingLane !== null || this.syncing !== null || this.connecting !== null || this.paused || this.stopping || this.consumerTag === null;
    const state = { sinceLastMoveMs: performance.now() - this.lastLaneMoveAt, retired: this.retired.size, busy };
    if (!shouldMoveLane(stall, state, this.lanePolicy)) return;
    this.movingLane = this.moveLane().finally(() => {
      this.movingLane = null;
    });
  }

  /**
   * Consumes on a new channel of the same connection and cancels the old
   * channel's consumer; the old channel keeps its deliveries, acks them as
   * they finish and is closed once it holds none (src/broker/consumer-lanes.ts).
   * Gives up, leaving things as they were, if anything changed meanwhile.
   */
  private async moveLane(): Promise<void> {
    const conn = this.conn;
    const old = this.ch;
    const oldTag = this.consumerTag;
    const oldAcker = this.acker;
    if (conn === null || old === null || oldTag === null || oldAcker === null) return;
    this.lastLaneMoveAt = performance.now();
    let next: ConfirmChannel | null = null;
    try {
      // Each call bounded: a move that never ends would keep every later stall from moving (and a drain waiting).
      const ms = this.publishing.get(old)!.deadlines.timeoutMs;
      const within = <T>(call: Promise<T>): Promise<T> => callWithin(call, ms, 'broker did not answer in time while the consumer moved');
      next = await openWithin(conn, ms);
      const ch = next;
      ch.on('error', (err: Error) => this.log.warn({ err: err.message }, 'broker channel error'));
      const prefetch = this.config.delivery.prefetch;
      await within(ch.prefetch(prefetch));
      // A reload that changed the prefetch meanwhile applied it to the old channel: give up, a later stall moves again.
      if (this.conn !== conn || this.ch !== old || this.consumerTag !== oldTag || this.paused || this.stopping || this.config.delivery.prefetch !== prefetch) {
        // Not waited for, as below.
        void ch.close().catch(() => undefined);
        return;
      }
      ch.on('return', (m: Message) => this.pipeline.outcomes.onReturn(m));
      // The same connection's deadlines: one sweep, paused and resumed with it.
      this.publishing.set(ch, new PublishChannel(conn, ch, (m) => this.pipeline.outcomes.onReturn(m), this.publishing.get(old)!.deadlines));
      ch.on('close', () => this.channelClosed(ch, conn));
      this.cancelling.add(old);
      this.retired.set(old, oldAcker);
      this.ch = ch;
      this.acker = this.ackerFor(ch, prefetch);
      this.link = this.linkFor(ch);
      this.consumerTag = null;
      // The new consumer first, so the queue never waits for one; what the old one still gets stays on its channel.
      // A consume the broker does not answer leaves this connection unusable: start over on a new one.
      if (!(await within(this.syncConsumer()).then(() => true, () => false))) {
        // A drain that stopped waiting for this move closes the connection itself; losing it here would drop the acks it still sends.
        if (this.stopping) return;
        this.log.warn('the broker did not answer the move of the consumer; reconnecting');
        this.connectionLost(conn);
        return;
      }
      if (this.ch === ch && this.consumerTag === null && !this.paused && !this.stopping) {
        // The new channel took no consumer (and did not close): start over on a new connection rather than consume nothing.
        this.log.warn('the consumer did not start on its new channel; reconnecting');
        this.connectionLost(conn);
        return;
      }
      // A cancel refused (the old channel closing) is fine; one not answered means a stalled connection, whose old lane
      // might still get deliveries after it were closed: start over instead.
      const cancel = await within(old.cancel(oldTag).then(() => 'done', () => 'refused')).catch(() => 'stalled');
      if (cancel === 'stalled') {
        if (this.stopping) return;
        this.log.warn('the broker did not answer the cancel of the old consumer; reconnecting');
        this.connectionLost(conn);
        return;
      }
      this.cancelling.delete(old);
      if (this.ch === ch && this.consumerTag !== null) this.deps.metrics.laneMoves.inc({ tier: String(this.tier) });
      this.closeLaneIfEmpty(old);
    } catch (err) {
      // Not waited for: amqplib's close waits for a close-ok a broker that did not answer may never send.
      if (next !== null && this.ch !== next) void next.close().catch(() => undefined);
      this.log.warn({ err: toErrorData(err) }, 'moving the consumer to a new channel failed');
    }
  }

  /**
   * Closes an old lane that holds no delivery any more, once what was
   * published on it is confirmed: a history batch sent while it was current
   * may cover deliveries of other channels.
   */
  private closeLaneIfEmpty(ch: ConfirmChannel): void {
    const acker = this.retired.get(ch);
    if (acker === undefined || acker.outstanding > 0 || this.cancelling.has(ch)) return;
    this.retired.delete(ch);
    const pubs = this.publishing.get(ch);
    void (async () => {
      await pubs?.settled();
      await pubs?.close();
      await ch.close().catch(() => undefined);
    })();
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
    const run = async (): Promise<void> => {
      // Never finishes in the call itself: `this.syncing` is set below before the finally clears it.
      await null;
      try {
        // The rounds inline, not awaited from another function: its result would reach this one a turn later.
        // No cap on them: leaving with a wish unmet would tell its caller it was met (a pause with a live
        // consumer, a drain still taking deliveries). Each round that does not settle waits for a broker call.
        for (let rounds = 1; ; rounds++) {
          if (rounds % SYNC_ROUNDS_WARN === 0) {
            this.log.warn({ rounds }, 'consumer wishes keep changing; still bringing the consumer in line');
            await sleep(SYNC_BACKOFF_MS);
          }
          this.syncAgain = false;
          const ch = this.ch;
          // A consumer goes with its channel: a tag left without one (a drain let the channel go) would never settle.
          if (ch === null) this.consumerTag = null;
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
            // Cancelled by the broker before its consume-ok was read. On the current channel consumeAgainLater is
            // armed and takes over (going round here would consume again at once, without its back-off), and a
            // caller that needs a consumer now (a connect, a lane move) starts over on a new connection. On a
            // channel replaced meanwhile, go round: the new one needs its consumer.
            if (tag === null) {
              if (this.ch === ch) return;
              continue;
            }
            // A channel replaced meanwhile took its consumer with it.
            if (this.ch === ch) this.consumerTag = tag;
          }
          if (this.consumerTag === null) this.resubscribe = false;
          const settled = (this.ch !== null && !this.paused && !this.stopping) === (this.consumerTag !== null) && !this.resubscribe;
          if (settled && !this.syncAgain) return;
        }
      } catch (err) {
        this.log.warn({ err: toErrorData(err) }, 'consumer change failed (the channel is closing; reconnect takes over)');
      } finally {
        // Cleared in the same step as the last round's check: a request after it starts a sync of its own
        // (cleared a few turns later, a request in between was told to wait for a sync that had already decided).
        this.syncing = null;
      }
    };
    this.syncing = run();
    return this.syncing;
  }

  /** The pipeline's view of one channel: acks and requeues that stay on it, confirmed publishes through its PublishChannel. */
  private linkFor(ch: ConfirmChannel): ChannelLink {
    // Returned (unroutable) hand-ons fail their publish instead of counting as done (PublishChannel tracks returns).
    const pubs = this.publishing.get(ch)!;
    const worker = this;
    return {
      publish: (exchange, routingKey, content, options, trackReturns = true) => pubs.publish(exchange, routingKey, content, options, trackReturns),
      ack: (msg) => this.ack(ch, msg),
      requeue: (msg) => this.nackRequeue(ch, msg),
      get closed() {
        return !worker.isLive(ch);
      },
    };
  }

  /**
   * Consumes the tier's queue on `ch`; its tag, or null when the broker
   * cancelled it already. amqplib handles every frame of one socket read
   * before the awaiting code resumes, so a `basic.cancel` read with the
   * consume-ok comes first: the tag would name a consumer already gone, and
   * the worker would stay `running` with none.
   */
  private async startConsumer(ch: ConfirmChannel): Promise<string | null> {
    // The batcher of this very channel: tags are never tracked on another one.
    const acker = this.acker;
    const link = this.ch === ch && this.link ? this.link : this.linkFor(ch);
    let cancelled = false;
    const { consumerTag } = await ch.consume(this.names.workQueue(this.tier), (msg) => {
      if (msg === null) {
        cancelled = true;
        if (this.ch === ch) {
          this.consumerTag = null;
          this.consumeAgainLater();
        } else {
          this.log.warn({ queue: this.names.workQueue(this.tier) }, 'consumer of an old lane cancelled by the broker');
        }
        return;
      }
      acker?.track(msg.fields.deliveryTag);
      const p = isBundle(msg) ? handleBundle(link, msg, this.bundles) : this.pipeline.handle(link, msg);
      this.inflight.add(p);
      void p.finally(() => this.inflight.delete(p));
    });
    return cancelled ? null : consumerTag;
  }

  /**
   * The broker cancelled the consumer (its queue deleted, or a classic
   * queue's node lost): consume again after a back-off, or the worker would
   * stay connected and consume nothing until someone paused and resumed it.
   * A queue still missing then fails the consume, and the channel's close
   * hands over to the reconnect loop.
   */
  private consumeAgainLater(): void {
    // A drain cleared the timer and wants no consumer: a cancel after it must not arm another.
    if (this.stopping) return;
    const now = Date.now();
    this.cancelWaitMs = cancelRetryMs(this.cancelWaitMs, now - this.lastCancelAt);
    this.lastCancelAt = now;
    this.log.warn({ queue: this.names.workQueue(this.tier), retryInMs: this.cancelWaitMs }, 'consumer cancelled by the broker (queue deleted, or its node lost?); consuming again shortly');
    if (this.cancelTimer !== null) clearTimeout(this.cancelTimer);
    this.cancelTimer = setTimeout(() => {
      this.cancelTimer = null;
      if (!this.stopping) void this.syncConsumer();
    }, this.cancelWaitMs);
  }

  /** One batch of history records, on the current channel (a lost channel fails it: see AttemptPipeline.remember). */
  private publishHistory(body: Buffer): Promise<void> {
    const link = this.link;
    if (!link) return Promise.reject(new NotifyError(ErrorCodes.BROKER_UNAVAILABLE, 'no broker channel for history records'));
    return link.publish('', this.names.history, body, historyPublishOptions());
  }

  /** Cancels the consumer but keeps the channel (in-flight attempts still ack). */
  async pause(): Promise<void> {
    this.paused = true;
    await this.syncConsumer();
    // Not connected (starting, or in backoff): the connect reports it paused.
    if (this.ch && !this.stopping) this.setState('paused');
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
    // A new deliverer, not just new timeouts: the SSRF allowances may have changed too.
    const settings = this.settingsFor(next, this.pipeline.current.deliverer);
    (this.deps.attemptLogger ?? this.log).level = next.logLevel;
    const prefetchChanged = next.delivery.prefetch !== this.config.delivery.prefetch;
    this.gate.configure(gateOptionsOf(next));
    this.bundler.configure(bundlerOptions(next));
    this.config = next;
    this.lanePolicy = lanePolicy(next.delivery.consumerLanes);
    const old = this.pipeline.current;
    this.pipeline.configure(settings);
    void old.deliverer.close();
    // Attempts already signing on the old pool finish on it; closing it now would fail them.
    void Promise.allSettled([...this.inflight])
      .then(() => Promise.all([old.signer.close(), old.merchantSigners.close()]))
      .catch((err: unknown) => this.log.warn({ err: toErrorData(err) }, 'closing the old signer failed'));
    if (prefetchChanged) this.acker?.setPolicy(ackPolicyFor(next.delivery.prefetch));
    if (prefetchChanged && this.ch) {
      // basic.qos applies to consumers created afterwards, so re-subscribe.
      const ch = this.ch;
      void ch
        .prefetch(next.delivery.prefetch)
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
    this.ackerOf(ch)?.complete(msg.fields.deliveryTag);
  }

  private nackRequeue(ch: ConfirmChannel, msg: ConsumeMessage): void {
    const acker = this.ackerOf(ch);
    if (acker === null) return;
    acker.forget(msg.fields.deliveryTag);
    try {
      ch.nack(msg, false, true);
      this.pushAcks();
    } catch {
      /* channel closing: the broker redelivers */
    }
    if (ch !== this.ch) this.closeLaneIfEmpty(ch);
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
      if (this.cancelTimer !== null) clearTimeout(this.cancelTimer);
      this.cancelTimer = null;
      // A lane move under way finishes first (its old consumer cancelled), so what is in flight below is all there is;
      // within the deadline: each of its calls has a bound of its own, but together they could outlast a short one
      // (cut short, its next call fails on the closed connection and it gives up).
      await settleWithin(this.movingLane ?? undefined, deadlineMs - Date.now());
      // Bounded by the drain's deadline: a broker that never answers the cancel must not hold the drain past it.
      await settleWithin(this.syncConsumer(), deadlineMs - Date.now());
      // Waiting for a busy origin is not worth the drain deadline: they were never attempted, so they go back now.
      this.gate.requeueAll();
      // Skips and deferrals waiting for company go now (later ones still go after the linger).
      this.bundler.flushAll();
      // settleWithin clears its timer: a worker drained inside another process (a test) leaves nothing running.
      if (!(await settleWithin(Promise.allSettled([...this.inflight]), deadlineMs - Date.now()))) this.log.warn({ unfinished: this.inflight.size }, 'drain deadline reached; unacked messages go back to the queue');
      this.stopSignal.abort();
      this.stopGateTick();
      // Acks first: they need nothing from the broker, and a drain cut short below must not lose them (duplicates).
      const flushAcks = (): void => {
        this.acker?.flush();
        for (const a of this.retired.values()) a.flush();
      };
      flushAcks();
      // History batches wait for their confirms, which a blocked broker holds: what is left of the deadline, or a
      // short grace when none is; a batch still unconfirmed then is counted lost when its channel closes. Deliveries
      // whose ack waited for such a confirm ack meanwhile, through the batchers kept till now: flushed again after.
      await settleWithin(this.history?.close(), Math.max(deadlineMs - Date.now(), CLOSE_WITHIN_MS));
      flushAcks();
      this.acker = null;
      const lanes = [...this.retired.keys()];
      this.retired.clear();
      this.cancelling.clear();
      // The current channel now: a lane may have moved during the drain.
      const ch = this.ch;
      const conn = this.conn;
      this.ch = null;
      this.conn = null;
      // Bounded: amqplib's closes wait for a close-ok that a broker which stopped answering never sends.
      await Promise.all([...lanes, ...(ch ? [ch] : [])].map((c) => closeChannelWithin(c, CLOSE_WITHIN_MS)));
      if (conn) await closeWithin(conn, CLOSE_WITHIN_MS);
      await this.pipeline.current.deliverer.close();
      await this.pipeline.current.signer.close();
      await this.pipeline.current.merchantSigners.close();
      await this.directory?.close();
      this.setState('stopped');
    })();
    return this.drainPromise;
  }
}
