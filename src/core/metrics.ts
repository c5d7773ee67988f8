import { AggregatorRegistry, Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/**
 * Histogram buckets are fixed here, once, so every worker exports identical
 * buckets and the master can sum them.
 */
export const ATTEMPT_BUCKETS = Object.freeze([0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]);
export const LATENESS_BUCKETS = Object.freeze([0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 15, 60, 300]);
export const END_TO_END_BUCKETS = Object.freeze([0.01, 0.05, 0.1, 0.5, 1, 5, 15, 60, 300, 1800, 3600, 21600, 86400]);

/** Every metric name of DESIGN §8 (tests check the exposition and the dashboard against it). */
export const METRIC_NAMES = Object.freeze([
  'notify_attempts_total',
  'notify_delivered_total',
  'notify_dead_total',
  'notify_attempt_duration_seconds',
  'notify_schedule_lateness_seconds',
  'notify_end_to_end_seconds',
  'notify_inflight',
  'notify_worker_up',
  'notify_worker_restarts_total',
  'notify_process_up',
  'notify_process_restarts_total',
  'notify_queue_messages',
  'notify_ingress_requests_total',
  'notify_handon_failures_total',
  'notify_deferrals_total',
  'notify_bundles_total',
  'notify_consumer_lane_moves_total',
  'notify_ack_frames_total',
  'notify_origins',
  'notify_broker_connections_given_up_total',
  'notify_registry_up',
  'notify_history_records_lost_total',
  'notify_history_records_total',
  'notify_history_lag_seconds',
  'notify_history_up',
] as const);

export type AttemptOutcomeLabel = 'success' | 'retry' | 'dead' | 'error' | 'skipped';

/** The metrics a tier or ingress worker updates; one registry per process. */
export interface WorkerMetrics {
  readonly registry: Registry;
  readonly attempts: Counter<'tier' | 'outcome'>;
  readonly delivered: Counter<'tier'>;
  readonly dead: Counter<'reason'>;
  readonly attemptDuration: Histogram<'tier'>;
  readonly lateness: Histogram<'tier'>;
  readonly endToEnd: Histogram<string>;
  readonly inflight: Gauge<'tier'>;
  readonly origins: Gauge<'tier' | 'state'>;
  readonly ingressRequests: Counter<'status'>;
  /** Hand-on publishes the broker did not take (and that are retried), by why. */
  readonly handOnFailures: Counter<'tier' | 'reason'>;
  /** Notifications handed to a hold queue because their origin was saturated (not attempts). */
  readonly deferrals: Counter<'tier'>;
  /** Bundles the broker took: one message carrying several skips or deferrals. */
  readonly bundles: Counter<'tier'>;
  /** Consumer moves to a new channel past long-held deliveries (src/broker/consumer-lanes.ts). */
  readonly laneMoves: Counter<'tier'>;
  /** Broker connections this process gave up because the broker left a call unanswered (the call watchdog). */
  readonly brokerGiveUps: Counter<'role'>;
  /**
   * Ack frames a tier worker sent: `multiple` ones covering a run of
   * deliveries, `single` ones each for one delivery (a lone one, as on a
   * quiet tier, or one finished behind an unfinished one: after its hold,
   * at once when half the window waits so, or at a drain).
   */
  readonly ackFrames: Counter<'tier' | 'kind'>;
  /** History records the broker did not take (delivery went on without them). */
  readonly historyLost: Counter<string>;
  /** Reports a tier's counts of origins by state through `fn`, read at collection. */
  sampleOrigins(tier: string, fn: () => { failing: number; limited: number }): void;
  /**
   * Reports whether this process reaches the merchant registry, read at
   * collection; `notify_registry_up` exists only in processes that call it.
   */
  sampleRegistry(fn: () => boolean): void;
  /**
   * Reports a tier's in-flight count through `fn`, read when the registry is
   * collected: two gauge updates per attempt showed in the hot-path profile.
   */
  sampleInflight(tier: string, fn: () => number): void;
}

/**
 * Creates a worker's registry. `defaultLabels` (role, tier) tell the default
 * process metrics of each process apart after aggregation.
 */
/**
 * Starts the labelled counters an alert reads with `increase()` at 0 for the
 * values they are known to take: a series whose first sample is already 1
 * (the first parked notification, the first 503 after a start) counts as no
 * increase, so a burst right after a start would not alert.
 */
export function startKnownSeries(m: WorkerMetrics, role: 'tier' | 'ingress'): void {
  if (role === 'tier') for (const reason of ['exhausted', 'invalid', 'blocked', 'disabled']) m.dead.inc({ reason }, 0);
  else for (const status of ['202', '400', '503']) m.ingressRequests.inc({ status }, 0);
}

export function createWorkerMetrics(defaultLabels: Record<string, string>, withDefaults = true): WorkerMetrics {
  const registry = new Registry();
  // Only the process metrics carry role/tier: notify_* metrics have their own labels.
  if (withDefaults) collectProcessMetrics(registry, defaultLabels);
  const registers = [registry];
  const inflightSamplers = new Map<string, () => number>();
  const originSamplers = new Map<string, () => { failing: number; limited: number }>();
  let registrySampler: (() => boolean) | null = null;
  let registryUp: Gauge | null = null;
  return {
    registry,
    attempts: new Counter({ name: 'notify_attempts_total', help: 'HTTP attempts by tier and outcome', labelNames: ['tier', 'outcome'], registers }),
    delivered: new Counter({ name: 'notify_delivered_total', help: 'Notifications delivered, by the tier that delivered them', labelNames: ['tier'], registers }),
    dead: new Counter({ name: 'notify_dead_total', help: 'Notifications parked on the dead queue, by reason', labelNames: ['reason'], registers }),
    attemptDuration: new Histogram({ name: 'notify_attempt_duration_seconds', help: 'HTTP round trip of one attempt', labelNames: ['tier'], buckets: [...ATTEMPT_BUCKETS], registers }),
    lateness: new Histogram({ name: 'notify_schedule_lateness_seconds', help: 'Start of attempt minus its due time', labelNames: ['tier'], buckets: [...LATENESS_BUCKETS], registers }),
    endToEnd: new Histogram({ name: 'notify_end_to_end_seconds', help: 'Delivered time minus created time', buckets: [...END_TO_END_BUCKETS], registers }),
    inflight: new Gauge({
      name: 'notify_inflight',
      help: 'Attempts in flight per tier',
      labelNames: ['tier'],
      registers,
      collect() {
        for (const [tier, fn] of inflightSamplers) this.set({ tier }, fn());
      },
    }),
    ingressRequests: new Counter({ name: 'notify_ingress_requests_total', help: 'Ingress HTTP requests by status', labelNames: ['status'], registers }),
    handOnFailures: new Counter({
      name: 'notify_handon_failures_total',
      help: 'Hand-on publishes the broker did not take (refused: a nack, e.g. a max-length policy with reject-publish; unroutable: no queue took it or its channel closed; unconfirmed: no confirm in 10 s, sent again on a new channel; error), each retried',
      labelNames: ['tier', 'reason'],
      registers,
    }),
    historyLost: new Counter({ name: 'notify_history_records_lost_total', help: 'History records the broker refused; delivery went on without them', registers }),
    deferrals: new Counter({ name: 'notify_deferrals_total', help: 'Notifications deferred to a hold queue because their origin was saturated (waits, not attempts)', labelNames: ['tier'], registers }),
    bundles: new Counter({ name: 'notify_bundles_total', help: 'Broker messages that each carried several skips or deferrals to one queue (bundles)', labelNames: ['tier'], registers }),
    brokerGiveUps: brokerGiveUpsCounter(registers, defaultLabels.role),
    laneMoves: new Counter({
      name: 'notify_consumer_lane_moves_total',
      help: 'Times a tier worker moved its consumer to a new channel because long-held deliveries kept its acks from going out together',
      labelNames: ['tier'],
      registers,
    }),
    ackFrames: new Counter({
      name: 'notify_ack_frames_total',
      help: 'Ack frames sent to the broker by kind: multiple (one frame for a run of finished deliveries) or single (one delivery; a lone one, or one finished behind an unfinished one)',
      labelNames: ['tier', 'kind'],
      registers,
    }),
    // Origins are never a label (their number is unbounded): only counts by state.
    origins: new Gauge({
      name: 'notify_origins',
      help: 'Origins by state per tier worker: failing (breaker open, attempts skipped but probes) or limited (at their limit, notifications waiting or deferred)',
      labelNames: ['tier', 'state'],
      registers,
      collect() {
        for (const [tier, fn] of originSamplers) {
          const c = fn();
          this.set({ tier, state: 'failing' }, c.failing);
          this.set({ tier, state: 'limited' }, c.limited);
        }
      },
    }),
    sampleInflight(tier, fn) {
      inflightSamplers.set(tier, fn);
    },
    sampleOrigins(tier, fn) {
      originSamplers.set(tier, fn);
    },
    sampleRegistry(fn) {
      registrySampler = fn;
      // Registered by the processes that read the registry only: an unlabelled gauge exports 0 until set, and the
      // master aggregates with `min`, so one process without a registry (the recorder) read as the registry down.
      if (registryUp) return;
      registryUp = new Gauge({
        name: 'notify_registry_up',
        help: '1 while every process that reads the merchant registry (PostgreSQL) reaches it; they keep serving their last copy meanwhile',
        registers,
        aggregator: 'min',
        collect() {
          this.set(registrySampler?.() ? 1 : 0);
        },
      });
    },
  };
}

/**
 * prom-client's gauges named `*_total`: `promtool check metrics` rejects them
 * (exit 3, "non-counter metrics should not have _total suffix"). The same
 * numbers remain as `nodejs_active_{handles,requests,resources}{type}`.
 */
const LINT_FAILING_DEFAULTS = Object.freeze(['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total']);

/**
 * How often the event-loop lag is sampled (`nodejs_eventloop_lag_*`).
 * prom-client's default, 10 ms, is a timer firing 100 times a second in
 * every process, busy or idle: with eight processes it was most of an idle
 * daemon's wake-ups. Each raw sample is the whole gap between two firings,
 * so an idle process now reads 0.1 s (it read 0.01 s): the dashboard's panel
 * subtracts the interval. A stall of L then shows as L − 100 ms to L, and
 * stalls shorter than the interval are caught in proportion to their length.
 */
const EVENT_LOOP_SAMPLE_MS = 100;

/** prom-client's default process metrics, labelled, minus the ones that fail the Prometheus lint. */
function collectProcessMetrics(registry: Registry, labels: Record<string, string>): void {
  collectDefaultMetrics({ register: registry, labels, eventLoopMonitoringPrecision: EVENT_LOOP_SAMPLE_MS });
  for (const name of LINT_FAILING_DEFAULTS) if (registry.getSingleMetric(name)) registry.removeSingleMetric(name);
}

/** The recorder's own metrics (DESIGN §11), in its worker registry. */
export interface RecorderMetrics {
  /** Records by what became of them: written, duplicate (already there), refused (malformed). */
  readonly records: Counter<'result'>;
  /** 1 while the last write to PostgreSQL succeeded. */
  readonly up: Gauge<string>;
  /** Reports how far behind the recorder is (seconds) through `fn`, read at collection. */
  sampleLag(fn: () => number): void;
}

/** Registers the recorder's metrics in `registry`. */
export function createRecorderMetrics(registry: Registry): RecorderMetrics {
  const registers = [registry];
  let lagSampler: () => number = () => 0;
  new Gauge({
    name: 'notify_history_lag_seconds',
    help: 'Age of the oldest history record the recorder is writing (0 when caught up); records still in P.history show in notify_queue_messages',
    registers,
    aggregator: 'max',
    collect() {
      this.set(lagSampler());
    },
  });
  return {
    records: new Counter({ name: 'notify_history_records_total', help: 'History records the recorder handled: written, duplicate (already there), refused (malformed)', labelNames: ['result'], registers }),
    up: new Gauge({ name: 'notify_history_up', help: '1 while the recorder writes to PostgreSQL', registers, aggregator: 'min' }),
    sampleLag(fn) {
      lagSampler = fn;
    },
  };
}

/** Metrics only the master owns: worker liveness, restarts, queue depths. */
export interface MasterMetrics {
  readonly registry: Registry;
  readonly workerUp: Gauge<'tier'>;
  readonly workerRestarts: Counter<'tier'>;
  readonly processUp: Gauge<'process'>;
  readonly processRestarts: Counter<'process'>;
  readonly queueMessages: Gauge<'queue'>;
  /** The master's own broker connections given up by the call watchdog. */
  readonly brokerGiveUps: Counter<'role'>;
}

/**
 * `notify_broker_connections_given_up_total{role}`: each process registers
 * its own (master, tier, recorder, ingress), and the master's exposition sums
 * them by role.
 */
function brokerGiveUpsCounter(registers: Registry[], role: string | undefined): Counter<'role'> {
  const c = new Counter({
    name: 'notify_broker_connections_given_up_total',
    help: 'Broker connections given up because the broker left a call on them unanswered for 30 s (it kept the connection but answered nothing), by process role',
    labelNames: ['role'],
    registers,
  });
  // Exposed at 0 from the start: Prometheus' increase() sees nothing in a series whose first sample is already 1.
  if (role) c.inc({ role }, 0);
  return c;
}

export function createMasterMetrics(): MasterMetrics {
  const registry = new Registry();
  collectProcessMetrics(registry, { role: 'master' });
  const registers = [registry];
  return {
    registry,
    workerUp: new Gauge({ name: 'notify_worker_up', help: '1 while the worker of a tier is running', labelNames: ['tier'], registers }),
    workerRestarts: new Counter({ name: 'notify_worker_restarts_total', help: 'Worker restarts per tier', labelNames: ['tier'], registers }),
    // `process`, not `role`: every series already says which process exported it in `role` (here the master).
    processUp: new Gauge({ name: 'notify_process_up', help: '1 while the ingress (process="ingress") or the history recorder (process="recorder") is running', labelNames: ['process'], registers }),
    processRestarts: new Counter({ name: 'notify_process_restarts_total', help: 'Restarts of the ingress and the recorder', labelNames: ['process'], registers }),
    queueMessages: new Gauge({ name: 'notify_queue_messages', help: 'Messages ready in each queue (sampled)', labelNames: ['queue'], registers }),
    brokerGiveUps: brokerGiveUpsCounter(registers, 'master'),
  };
}

/** One process's `registry.getMetricsAsJSON()`, as it crosses the IPC pipe. */
export type MetricsSnapshot = object[];

/**
 * Sums snapshots (from `registry.getMetricsAsJSON()`) of several processes into
 * one Prometheus exposition. Counters and histograms add; gauges add too
 * (each process owns distinct label sets or shares meaningfully additive ones).
 */
export async function aggregateExposition(snapshots: readonly MetricsSnapshot[]): Promise<string> {
  const reg = AggregatorRegistry.aggregate(snapshots as object[][] as unknown as object[]);
  return reg.metrics();
}

/** Sums several snapshots into one (so a list of retired workers' counters does not grow). */
export async function foldSnapshots(snapshots: readonly MetricsSnapshot[]): Promise<MetricsSnapshot> {
  return AggregatorRegistry.aggregate(snapshots as object[][] as unknown as object[]).getMetricsAsJSON();
}

/** Content type of the exposition. */
export const EXPOSITION_CONTENT_TYPE = Registry.PROMETHEUS_CONTENT_TYPE;
