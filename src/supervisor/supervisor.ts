import cluster, { type Worker } from 'node:cluster';
import type { ChannelModel, ConfirmChannel } from 'amqplib';
import cron, { type ScheduledTask } from 'node-cron';
import { deepFreeze, diffConfig, isLoopbackHost, redactUrl, type Config } from '../core/config.js';
import { ReturnTracker, connectBroker, reconnectDelay, sleep } from '../broker/connection.js';
import { WORKER_ENV, assertNever, parseWorkerMessage, wrap, type MasterMessage, type WorkerRole, type WorkerState, type WorkerStats } from './control.js';
import { redrive, type RedriveResult } from '../broker/dead-letters.js';
import { ErrorCodes, NotifyError, toErrorData } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { aggregateExposition, createMasterMetrics, foldSnapshots, type MasterMetrics, type MetricsSnapshot } from '../core/metrics.js';
import { EMPTY_HISTORY, afterStableUptime, decideRestart, type RestartHistory, type RestartPolicy } from './restart-policy.js';
import { buildTopology, declareTopology, type Topology } from '../broker/topology.js';


interface Slot {
  readonly key: string;
  readonly role: WorkerRole;
  readonly tier: number | null;
  worker: Worker | null;
  state: WorkerState;
  restarts: number;
  history: RestartHistory;
  startedAt: number;
  crashloop: boolean;
  timer: NodeJS.Timeout | null;
  stableTimer: NodeJS.Timeout | null;
  stats: WorkerStats | null;
  port: number | null;
  /** Operator asked for a pause: re-applied to every new worker of this slot until resumed. */
  paused: boolean;
  /** The last state the worker itself reported (shown again once a crash loop clears). */
  reported: WorkerState;
  /** The config the current worker was forked with (a reload during its start-up is re-sent). */
  forkedWith: Config | null;
}

export interface TierStatus {
  readonly index: number;
  readonly delayMs: number;
  readonly state: WorkerState;
  readonly pid: number | null;
  readonly restarts: number;
  readonly inflight: number;
}

/** Shape of `GET /admin/status` (DESIGN §7). */
export interface DaemonStatus {
  readonly prefix: string;
  readonly tiers: readonly TierStatus[];
  readonly ingress: { readonly pid: number | null; readonly state: WorkerState; readonly restarts: number; readonly port: number | null };
  readonly broker: { readonly connected: boolean; readonly url: string };
}

export interface SupervisorOptions {
  readonly config: Config;
  readonly logger: Logger;
  /** Compiled entry points of the two worker kinds. */
  readonly tierEntry: string;
  readonly ingressEntry: string;
  /** Re-reads config from its sources (SIGHUP, `POST /admin/reload`). */
  readonly reloadConfig: () => Config;
  /** Called once when everything has stopped. */
  readonly onExit: (code: number) => void;
}

/**
 * The master: declares the topology, forks one worker per tier plus the
 * ingress, restarts them per the restart policy, relays control messages, and
 * drains everything on SIGTERM.
 */
export class Supervisor {
  private config: Config;
  private readonly log: Logger;
  private readonly slots: Slot[] = [];
  private readonly metrics: MasterMetrics;
  private conn: ChannelModel | null = null;
  private ch: ConfirmChannel | null = null;
  private returns: ReturnTracker | null = null;
  /** Redrives run one at a time: two scans on one queue would keep re-marking each other's skips. */
  private redriving: Promise<unknown> = Promise.resolve();
  private topology: Topology;
  private started = false;
  private shuttingDown = false;
  private firstSignalAt = 0;
  private readonly stop = new AbortController();
  private readonly cronTasks: ScheduledTask[] = [];
  private nextRequestId = 1;
  private readonly pending = new Map<number, (s: WorkerStats) => void>();
  /** notify_* counters of workers that exited, so aggregated counters never go backwards. */
  private retired: MetricsSnapshot[] = [];
  private retiredFold: Promise<void> = Promise.resolve();
  private loggedListening = false;
  private adminPort: number | null = null;
  private exitPromise: Promise<void> | null = null;
  private drainDeadlineMs = 0;

  constructor(private readonly opts: SupervisorOptions) {
    this.config = opts.config;
    this.log = opts.logger;
    this.metrics = createMasterMetrics();
    this.topology = buildTopology(this.config.prefix, this.config.scheduleMs, this.config.queueType);
    this.config.scheduleMs.forEach((_d, i) => this.slots.push(this.newSlot(`tier-${i}`, 'tier', i)));
    this.slots.push(this.newSlot('ingress', 'ingress', null));
  }

  private newSlot(key: string, role: WorkerRole, tier: number | null): Slot {
    return { key, role, tier, worker: null, state: 'starting', restarts: 0, history: EMPTY_HISTORY, startedAt: 0, crashloop: false, timer: null, stableTimer: null, stats: null, port: null, paused: false, reported: 'starting', forkedWith: null };
  }

  private get policy(): RestartPolicy {
    const s = this.config.supervisor;
    return { baseMs: s.restartBaseMs, maxMs: s.restartMaxMs, resetMs: s.restartResetMs, crashloopRestarts: s.crashloopRestarts, windowMs: s.crashloopWindowMs };
  }

  /** Tells the master which admin port it bound (for the `listening` line). */
  setAdminPort(port: number): void {
    this.adminPort = port;
    this.maybeLogListening();
  }

  /** Connects to the broker (retrying without end), declares the topology, forks the workers. */
  async start(): Promise<void> {
    // The ingress first: while the broker is away it answers 503 (and prints its port) instead of refusing connections.
    for (const slot of this.slots) if (slot.role === 'ingress') this.fork(slot);
    await this.connectLoop();
    if (this.shuttingDown) return;
    this.started = true;
    for (const slot of this.slots) if (slot.role === 'tier') this.fork(slot);
    this.cronTasks.push(cron.schedule(this.config.metrics.queueSampleCron, () => this.sampleQueues(), { noOverlap: true }));
    if (this.config.deadRedrive.cron) {
      this.cronTasks.push(
        cron.schedule(this.config.deadRedrive.cron, async () => {
          const r = await this.redrive(this.config.deadRedrive.limit, false).catch((err: unknown) => ({ error: toErrorData(err) }));
          this.log.info({ redrive: r }, 'scheduled dead-letter redrive');
        }, { noOverlap: true }),
      );
    }
  }

  private async connectLoop(): Promise<void> {
    let lastKind: 'unreachable' | 'declare' | null = null;
    for (let attempt = 0; !this.shuttingDown; attempt++) {
      try {
        const conn = await connectBroker(this.config.amqpUrl, `notifyd master pid ${process.pid}`);
        conn.on('error', () => undefined);
        let ch: ConfirmChannel;
        try {
          ch = await conn.createConfirmChannel();
          ch.on('error', () => undefined);
          await declareTopology(ch, this.topology);
        } catch (err) {
          // Each failed try must give its connection back, or a retry loop piles them up on the broker.
          await conn.close().catch(() => undefined);
          throw err;
        }
        const lost = (): void => {
          if (this.conn !== conn) return;
          this.conn = null;
          this.ch = null;
          void conn.close().catch(() => undefined);
          if (!this.shuttingDown) {
            this.log.warn('master lost the broker connection; reconnecting');
            void this.connectLoop();
          }
        };
        conn.on('close', lost);
        ch.on('close', lost);
        this.conn = conn;
        this.ch = ch;
        this.returns = new ReturnTracker(ch);
        this.log.info({ broker: redactUrl(this.config.amqpUrl), prefix: this.config.prefix, schedule: this.config.scheduleMs }, 'broker connected; topology declared');
        return;
      } catch (err) {
        const delay = reconnectDelay(attempt, 250, 5000);
        const unreachable = toErrorData(err).code === ErrorCodes.BROKER_UNAVAILABLE;
        // One line per kind of trouble, not one per retry.
        const kind = unreachable ? 'unreachable' : 'declare';
        if (kind !== lastKind) {
          lastKind = kind;
          if (unreachable) {
            this.log.error(
              { broker: redactUrl(this.config.amqpUrl), err: toErrorData(err).message },
              `RabbitMQ is not reachable at ${redactUrl(this.config.amqpUrl)}; start it (e.g. \`rabbitmq-server -detached\` or \`docker compose up -d rabbitmq\`) — retrying with backoff`,
            );
          } else {
            this.log.error(
              { err: toErrorData(err).message },
              /PRECONDITION/i.test(String((err as Error)?.message))
                ? `the broker refused the topology of prefix "${this.config.prefix}": a queue exists with other arguments (another schedule, queue type or an older notifyd). Use another prefix, or delete the prefix's empty queues; retrying with backoff`
                : 'topology declaration failed; retrying with backoff',
            );
          }
        }
        await sleep(delay, this.stop.signal);
      }
    }
  }

  private fork(slot: Slot): void {
    slot.timer = null;
    if (this.shuttingDown) return;
    cluster.setupPrimary({ exec: slot.role === 'tier' ? this.opts.tierEntry : this.opts.ingressEntry });
    const worker = cluster.fork({
      [WORKER_ENV.role]: slot.role,
      [WORKER_ENV.tier]: slot.tier === null ? '' : String(slot.tier),
      [WORKER_ENV.config]: JSON.stringify(this.config),
      // A paused tier's new worker must not take a single message before the pause would arrive.
      [WORKER_ENV.paused]: slot.paused ? '1' : '',
    });
    slot.worker = worker;
    slot.forkedWith = this.config;
    slot.startedAt = Date.now();
    slot.stats = null;
    if (!slot.crashloop) slot.state = 'starting';
    this.log.info({ worker: slot.key, workerPid: worker.process.pid }, 'forked worker');
    worker.on('message', (raw: unknown) => this.onWorkerMessage(slot, worker, raw));
    worker.on('exit', (code, signal) => this.onWorkerExit(slot, worker, code, signal));
    worker.on('error', (err) => this.log.warn({ worker: slot.key, err: err.message }, 'worker IPC error'));
  }

  private onWorkerMessage(slot: Slot, worker: Worker, raw: unknown): void {
    if (slot.worker !== worker) return;
    const msg = parseWorkerMessage(raw);
    if (!msg) return;
    switch (msg.type) {
      case 'ready': {
        // Messages sent while the worker was still loading its modules may have been
        // dropped (no listener yet): repeat what it must know now.
        if (this.shuttingDown) this.send(slot, { type: 'drain', deadlineMs: this.drainDeadlineMs });
        else if (slot.forkedWith !== this.config) this.send(slot, { type: 'reload', config: this.config });
        if (slot.role === 'tier' && slot.paused !== (msg.state === 'paused')) this.send(slot, { type: slot.paused ? 'pause' : 'resume' });
        slot.reported = msg.state;
        if (!slot.crashloop && !this.shuttingDown) slot.state = msg.state;
        if (msg.port !== undefined) slot.port = msg.port;
        if (slot.tier !== null) this.metrics.workerUp.set({ tier: String(slot.tier) }, 1);
        if (slot.stableTimer) clearTimeout(slot.stableTimer);
        slot.stableTimer = setTimeout(() => {
          slot.history = afterStableUptime(slot.history);
          if (slot.crashloop) {
            slot.crashloop = false;
            slot.state = slot.reported;
            this.log.info({ worker: slot.key }, 'worker stable again; crash loop cleared');
          }
        }, this.config.supervisor.restartResetMs).unref();
        this.maybeLogListening();
        return;
      }
      case 'state':
        slot.reported = msg.state;
        if (!slot.crashloop || msg.state === 'draining') slot.state = msg.state;
        return;
      case 'stats':
        slot.stats = msg.stats;
        this.pending.get(msg.requestId)?.(msg.stats);
        return;
      case 'drained':
        slot.state = 'stopped';
        return;
      case 'reloaded':
        this.log.info({ worker: slot.key, restartRequired: msg.restartRequired, notes: msg.notes }, 'worker reloaded config');
        return;
      case 'fatal':
        this.log.error({ worker: slot.key, err: msg.error }, 'worker reported a fatal error');
        return;
      default:
        assertNever(msg);
    }
  }

  private maybeLogListening(): void {
    const ingress = this.slots.find((s) => s.role === 'ingress');
    if (this.loggedListening || this.adminPort === null || !ingress?.port) return;
    this.loggedListening = true;
    // Always printed, whatever the level: operators and scripts read the bound ports from it.
    this.log.child({}, { level: 'info' }).info({ admin: this.adminPort, ingress: ingress.port }, 'listening');
  }

  private onWorkerExit(slot: Slot, worker: Worker, code: number | null, signal: string | null): void {
    if (slot.worker !== worker) return;
    slot.worker = null;
    if (slot.stableTimer) clearTimeout(slot.stableTimer);
    if (slot.tier !== null) this.metrics.workerUp.set({ tier: String(slot.tier) }, 0);
    if (slot.stats) {
      const counters = slot.stats.metrics.filter((m) => (m as { name?: string }).name?.startsWith('notify_') && (m as { type?: string }).type !== 'gauge');
      // Folded into one snapshot, so a crash-looping worker cannot grow the list (and each scrape) without end.
      this.retiredFold = this.retiredFold
        .then(async () => {
          this.retired = [await foldSnapshots([...this.retired, counters])];
        })
        .catch((err: unknown) => this.log.warn({ err: toErrorData(err) }, 'folding a retired worker\'s metrics failed'));
    }
    slot.stats = null;
    if (this.shuttingDown) {
      slot.state = 'stopped';
      this.log.info({ worker: slot.key, workerPid: worker.process.pid, code, signal }, 'worker exited');
      this.maybeFinish();
      return;
    }
    const uptimeMs = Date.now() - slot.startedAt;
    const d = decideRestart(slot.history, Date.now(), uptimeMs, this.policy);
    slot.history = d.history;
    slot.restarts += 1;
    if (slot.tier !== null) this.metrics.workerRestarts.inc({ tier: String(slot.tier) });
    if (d.crashloop && !slot.crashloop) {
      this.log.error({ worker: slot.key, restartsInWindow: d.history.recent.length }, 'CRASH LOOP: worker keeps exiting; retrying at the capped delay');
    }
    slot.crashloop = d.crashloop;
    slot.state = d.crashloop ? 'crashloop' : 'backoff';
    this.log.warn({ worker: slot.key, workerPid: worker.process.pid, code, signal, uptimeMs, restartInMs: d.delayMs }, 'worker exited unexpectedly; restarting');
    slot.timer = setTimeout(() => this.fork(slot), d.delayMs);
  }

  private send(slot: Slot, msg: MasterMessage): boolean {
    const w = slot.worker;
    if (!w || !w.isConnected()) return false;
    try {
      w.send(wrap(msg));
      return true;
    } catch {
      return false;
    }
  }

  private tierSlot(index: number): Slot {
    const slot = this.slots.find((s) => s.role === 'tier' && s.tier === index);
    if (!slot) throw new NotifyError(ErrorCodes.TIER_UNKNOWN, `no tier ${index} (tiers 0..${this.config.scheduleMs.length - 1})`);
    return slot;
  }

  /** Pauses a tier's consumer (in-flight attempts finish). */
  pause(index: number): TierStatus {
    const slot = this.tierSlot(index);
    slot.paused = true;
    if (this.send(slot, { type: 'pause' }) && !slot.crashloop) slot.state = 'paused';
    return this.tierStatus(slot);
  }

  resume(index: number): TierStatus {
    const slot = this.tierSlot(index);
    slot.paused = false;
    if (this.send(slot, { type: 'resume' }) && !slot.crashloop) slot.state = 'running';
    return this.tierStatus(slot);
  }

  /** Re-reads the config; applies what can change live and says what needs a restart. */
  reload(): { applied: boolean; restartRequired: boolean; notes: readonly string[] } {
    const next = this.opts.reloadConfig();
    const diff = diffConfig(this.config, next);
    // Broker-shaped settings stay as they are until a restart: applying half of them would split the daemon.
    const old = this.config;
    const pinned = diff.restartRequired ? { amqpUrl: old.amqpUrl, prefix: old.prefix, queueType: old.queueType, scheduleMs: old.scheduleMs } : {};
    // Listen addresses stay as bound until a restart, whatever the file says now.
    const effective: Config = deepFreeze({
      ...next,
      ...pinned,
      ingress: { ...next.ingress, host: old.ingress.host, port: old.ingress.port },
      admin: { ...next.admin, host: old.admin.host, port: old.admin.port },
    });
    if (!isLoopbackHost(effective.admin.host) && !effective.admin.token) {
      throw new NotifyError(ErrorCodes.CONFIG_INVALID, `config: admin.token: required while the admin port is bound to ${effective.admin.host}`, 'admin.token');
    }
    this.config = effective;
    for (const slot of this.slots) this.send(slot, { type: 'reload', config: effective });
    this.log.info({ restartRequired: diff.restartRequired, notes: diff.notes }, 'config reloaded');
    return { applied: true, restartRequired: diff.restartRequired, notes: diff.notes };
  }

  /** Moves parked notifications back to tier 0. */
  async redrive(limit: number, force: boolean): Promise<RedriveResult> {
    const run = this.redriving.then(() => {
      const ch = this.ch;
      if (!ch) throw new NotifyError(ErrorCodes.BROKER_UNAVAILABLE, 'broker not connected');
      return redrive(ch, this.config, limit, force, this.returns ?? undefined);
    });
    this.redriving = run.catch(() => undefined);
    return run;
  }

  private async requestStats(slot: Slot, timeoutMs: number): Promise<WorkerStats | null> {
    const requestId = this.nextRequestId++;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.pending.delete(requestId);
        resolve(slot.stats);
      }, timeoutMs);
      this.pending.set(requestId, (s) => {
        clearTimeout(timer);
        this.pending.delete(requestId);
        resolve(s);
      });
      if (!this.send(slot, { type: 'stats', requestId })) {
        clearTimeout(timer);
        this.pending.delete(requestId);
        resolve(slot.stats);
      }
    });
  }

  /** Fresh stats from every live worker, falling back to the last known within `timeoutMs`. */
  async collect(timeoutMs = 500): Promise<void> {
    await Promise.all(this.slots.filter((s) => s.worker).map((s) => this.requestStats(s, timeoutMs)));
  }

  /** Aggregated Prometheus exposition of master and all workers. Never waits on a restarting worker. */
  async metricsText(): Promise<string> {
    await Promise.all([this.collect(500), this.retiredFold]);
    const snapshots: MetricsSnapshot[] = [await this.metrics.registry.getMetricsAsJSON(), ...this.retired];
    for (const s of this.slots) if (s.stats) snapshots.push(s.stats.metrics);
    return aggregateExposition(snapshots);
  }

  private tierStatus(slot: Slot): TierStatus {
    return {
      index: slot.tier ?? -1,
      delayMs: this.config.scheduleMs[slot.tier ?? 0] ?? 0,
      state: slot.state,
      pid: slot.worker?.process.pid ?? null,
      restarts: slot.restarts,
      inflight: slot.stats?.inflight ?? 0,
    };
  }

  async status(): Promise<DaemonStatus> {
    await this.collect(300);
    const ingress = this.slots.find((s) => s.role === 'ingress')!;
    return {
      prefix: this.config.prefix,
      tiers: this.slots.filter((s) => s.role === 'tier').map((s) => this.tierStatus(s)),
      ingress: { pid: ingress.worker?.process.pid ?? null, state: ingress.state, restarts: ingress.restarts, port: ingress.port },
      broker: { connected: this.ch !== null, url: redactUrl(this.config.amqpUrl) },
    };
  }

  /** `/readyz`: broker connected and every worker up (a paused tier is up: it was paused on purpose). */
  readiness(): { ready: boolean; reasons: string[] } {
    const reasons: string[] = [];
    if (!this.ch) reasons.push('broker not connected');
    if (this.shuttingDown) reasons.push('draining');
    for (const s of this.slots) if (s.state !== 'running' && s.state !== 'paused') reasons.push(`${s.key} ${s.state}`);
    return { ready: reasons.length === 0, reasons };
  }

  private async sampleQueues(): Promise<void> {
    const conn = this.conn;
    if (!conn) return;
    // A separate channel: checkQueue on a missing queue closes the channel it ran on.
    const ch = await conn.createChannel().catch(() => null);
    if (!ch) return;
    ch.on('error', () => undefined);
    try {
      for (const q of this.topology.queues) {
        const r = await ch.checkQueue(q.name);
        this.metrics.queueMessages.set({ queue: q.name }, r.messageCount);
      }
    } catch (err) {
      this.log.debug({ err: toErrorData(err) }, 'queue sampling failed');
    } finally {
      await ch.close().catch(() => undefined);
    }
  }

  /**
   * SIGTERM/SIGINT: drain. Repeats within 1 s count once (a process group gets
   * the signal from several senders); a repeat 1 s or more later forces exit.
   */
  shutdown(signal: string): void {
    const now = Date.now();
    if (this.shuttingDown) {
      if (now - this.firstSignalAt >= 1000) {
        this.log.warn({ signal }, 'second signal: forcing exit');
        for (const s of this.slots) s.worker?.process.kill('SIGKILL');
        this.opts.onExit(1);
      }
      return;
    }
    this.shuttingDown = true;
    this.firstSignalAt = now;
    this.stop.abort();
    const deadlineMs = now + this.config.supervisor.drainTimeoutMs;
    this.drainDeadlineMs = deadlineMs;
    this.log.info({ signal, drainTimeoutMs: this.config.supervisor.drainTimeoutMs }, 'draining');
    for (const s of this.slots) {
      if (s.timer) clearTimeout(s.timer);
      s.timer = null;
      if (s.worker) s.state = 'draining';
      else s.state = 'stopped';
    }
    // The ingress first, so no new notification is accepted while tiers drain.
    const ingress = this.slots.find((s) => s.role === 'ingress');
    if (ingress) this.send(ingress, { type: 'drain', deadlineMs });
    for (const s of this.slots) if (s.role === 'tier') this.send(s, { type: 'drain', deadlineMs });
    setTimeout(() => {
      for (const s of this.slots) {
        if (s.worker) {
          this.log.warn({ worker: s.key, workerPid: s.worker.process.pid }, 'drain deadline passed; killing straggler');
          s.worker.process.kill('SIGKILL');
        }
      }
    }, Math.max(0, deadlineMs - Date.now()) + 2000).unref();
    this.maybeFinish();
  }

  private maybeFinish(): void {
    if (!this.shuttingDown || this.slots.some((s) => s.worker)) return;
    this.exitPromise ??= (async () => {
      for (const t of this.cronTasks) await t.destroy();
      const { ch, conn } = this;
      this.ch = null;
      this.conn = null;
      await ch?.close().catch(() => undefined);
      await conn?.close().catch(() => undefined);
      this.log.info('all workers stopped; exiting');
      this.opts.onExit(0);
    })();
  }

  get isStarted(): boolean {
    return this.started;
  }

  /** The config in force (after reloads). */
  get currentConfig(): Config {
    return this.config;
  }
}
