import { constants as osConstants } from 'node:os';
import cron, { type ScheduledTask } from 'node-cron';
import type { RedriveResult } from '../broker/dead-letters.js';
import type { DeadListing } from '../broker/dead-summary.js';
import { deepFreeze, diffConfig, historyOn, keepRestartOnly, missingPortToken, redactUrl, type Config } from '../core/config-model.js';
import { ErrorCodes, NotifyError, toErrorData } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { createMasterMetrics, type MasterMetrics, type MetricsSnapshot } from '../core/metrics.js';
import { MasterBroker } from './master-broker.js';
import { MasterDatabase } from './master-db.js';
import type { MerchantStore } from '../merchants/store.js';
import { HistoryService } from '../history/service.js';
import { admission } from '../history/admission.js';
import { databaseAway, historyUnavailable } from '../history/database-away.js';
import type { RedriveBatch } from '../history/superseded.js';
import { MetricsLedger } from './metrics-ledger.js';
import { originsReport, type OriginsReport } from './origins-report.js';
import type { WorkerState } from './control.js';
import { ProcessTable, type Slot } from './process-table.js';
import { reloadWarnings, type StartupContext } from './startup-checks.js';

export interface TierStatus {
  readonly index: number;
  readonly delayMs: number;
  readonly state: WorkerState;
  readonly pid: number | null;
  readonly restarts: number;
  readonly inflight: number;
  /** `host:port` of the broker node the tier's worker is connected to, or null. */
  readonly brokerNode: string | null;
  /** Paused by an operator, whatever its worker's state (a paused tier's worker restarting is `backoff`, `starting` or `crashloop`). */
  readonly paused: boolean;
}

/** The `merchant` of a parked notification's body, or null. */
function merchantOf(content: Buffer): string | null {
  try {
    const m = (JSON.parse(content.toString('utf8')) as { merchant?: unknown }).merchant;
    return typeof m === 'string' ? m : null;
  } catch {
    return null;
  }
}

/** Shape of `GET /admin/status` (DESIGN §7). */
export interface DaemonStatus {
  readonly prefix: string;
  readonly tiers: readonly TierStatus[];
  readonly ingress: { readonly pid: number | null; readonly state: WorkerState; readonly restarts: number; readonly port: number | null; readonly brokerNode: string | null };
  /** `url` is every node of `amqpUrl`, redacted; `node` is the master's own (`host:port`). */
  readonly broker: { readonly connected: boolean; readonly url: string; readonly node: string | null };
  /** The history recorder (DESIGN §11); null when history is off. */
  readonly recorder: { readonly pid: number | null; readonly state: WorkerState; readonly restarts: number; readonly brokerNode: string | null } | null;
}

export interface SupervisorOptions {
  readonly config: Config;
  readonly logger: Logger;
  /** Compiled entry points of the two worker kinds. */
  readonly tierEntry: string;
  readonly ingressEntry: string;
  /** The history recorder's entry point (forked only when history is on). */
  readonly recorderEntry: string;
  /** Re-reads config from its sources (SIGHUP, `POST /admin/reload`). */
  readonly reloadConfig: () => Config;
  /** Called once when everything has stopped. */
  readonly onExit: (code: number) => void;
  /** What the master found of its surroundings at start (the service manager's stop timeout), for a reload's warnings. */
  readonly startup?: StartupContext;
}

/**
 * The master: declares the topology (through `MasterBroker`), runs one worker
 * per tier plus the ingress (through `ProcessTable`), and answers the admin
 * API: status, readiness, pause/resume, reload, redrive, metrics. SIGTERM
 * drains everything.
 */
export class Supervisor {
  private config: Config;
  private readonly log: Logger;
  private readonly table: ProcessTable;
  private readonly broker: MasterBroker;
  private readonly metrics: MasterMetrics;
  private readonly ledger: MetricsLedger;
  /** PostgreSQL (migrations, merchant store, registry copy, jobs); null without a database. */
  private readonly db: MasterDatabase | null;
  private started = false;
  private shuttingDown = false;
  private firstSignalAt = 0;
  private readonly cronTasks: ScheduledTask[] = [];
  private loggedListening = false;
  private adminPort: number | null = null;
  private exitPromise: Promise<void> | null = null;
  /** The history API of the admin port (DESIGN §11); null when history is off. */
  readonly history: HistoryService | null;

  constructor(private readonly opts: SupervisorOptions) {
    this.config = opts.config;
    this.log = opts.logger;
    this.metrics = createMasterMetrics();
    this.ledger = new MetricsLedger(opts.logger);
    this.broker = new MasterBroker(() => this.config, opts.logger, () => this.metrics.brokerGiveUps.inc({ role: 'master' }));
    this.db =
      opts.config.database.url === null
        ? null
        : new MasterDatabase(opts.config, opts.logger, (d) => {
            void this.broker.publishEvent('merchant.disabled', { type: 'merchant.disabled', merchant: d.id, reason: 'auto', failingSince: d.failingSince, at: Date.now() }).catch((err: unknown) =>
              this.log.warn({ merchant: d.id, err: toErrorData(err) }, 'merchant.disabled event not published'),
            );
          });
    this.table = new ProcessTable({
      logger: opts.logger,
      entries: { tier: opts.tierEntry, ingress: opts.ingressEntry, recorder: opts.recorderEntry },
      config: () => this.config,
      // Before the tier consumes: its first delivery must already refuse notifyd's own ports.
      initPorts: (slot) => (slot.role === 'tier' ? this.ownPorts() : undefined),
      onReady: (slot) => {
        this.maybeLogListening();
        // Tiers must know notifyd's own ports to refuse them as destinations (a restarted ingress may have a new one);
        // a tier got them with its config.
        if (slot.role !== 'tier') this.sendPorts();
      },
      onExit: (_slot, last) => {
        if (last) this.ledger.retire(last.metrics);
      },
      onTierUp: (tier, up) => this.metrics.workerUp.set({ tier: String(tier) }, up ? 1 : 0),
      onTierRestart: (tier) => this.metrics.workerRestarts.inc({ tier: String(tier) }),
      onRoleUp: (role, up) => this.metrics.processUp.set({ process: role }, up ? 1 : 0),
      onRoleRestart: (role) => this.metrics.processRestarts.inc({ process: role }),
      onAllStopped: () => this.finish(),
    });
    this.config.scheduleMs.forEach((_d, i) => {
      this.table.add(`tier-${i}`, 'tier', i);
      // From 0, as the give-up counters: increase() misses a series whose first sample is already 1 (the first restart).
      this.metrics.workerRestarts.inc({ tier: String(i) }, 0);
      // Down until it says it is ready: a worker that never gets there is seen (no series would never alert).
      this.metrics.workerUp.set({ tier: String(i) }, 0);
    });
    const others: ('ingress' | 'recorder')[] = historyOn(opts.config) ? ['ingress', 'recorder'] : ['ingress'];
    for (const role of others) {
      this.table.add(role, role, null);
      this.metrics.processRestarts.inc({ process: role }, 0);
      this.metrics.processUp.set({ process: role }, 0);
    }
    const reader = this.db?.historyReader ?? null;
    const claims = this.db?.historyClaims ?? null;
    const admit = admission({ draining: () => this.shuttingDown, blocked: () => this.broker.blocked, config: () => this.config, merchants: this.db?.directory ?? null });
    this.history = reader === null || claims === null ? null : new HistoryService(reader, claims, (n, via, _producer, at) => this.broker.startLadder(n, via, at), () => this.config.limits, admit);
  }

  /** Tells the master which admin port it bound (for the `listening` line). */
  setAdminPort(port: number): void {
    this.adminPort = port;
    this.maybeLogListening();
    this.sendPorts();
  }

  private ownPorts(): number[] {
    // The configured port until the ingress reports the one it listens on (0 is "any": known only then).
    const configured = this.config.ingress.port === 0 ? null : this.config.ingress.port;
    const ingress = this.table.byRole('ingress')[0]?.port ?? configured;
    return [this.adminPort, ingress].filter((p): p is number => p !== null);
  }

  private sendPorts(): void {
    const ports = this.ownPorts();
    for (const slot of this.table.byRole('tier')) this.table.send(slot, { type: 'ports', ports });
  }

  /** Connects to the broker (retrying without end), declares the topology, forks the workers. */
  async start(): Promise<void> {
    // The ingress first: while the broker is away it answers 503 (and prints its port) instead of refusing connections.
    this.table.startRole('ingress');
    void this.db?.start();
    await this.broker.connect();
    if (this.shuttingDown) return;
    this.started = true;
    this.table.startRole('tier');
    this.table.startRole('recorder');
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

  private maybeLogListening(): void {
    const ingress = this.table.byRole('ingress')[0];
    if (this.loggedListening || this.adminPort === null || !ingress?.port) return;
    this.loggedListening = true;
    // Always printed, whatever the level: operators and scripts read the bound ports from it.
    this.log.child({}, { level: 'info' }).info({ admin: this.adminPort, ingress: ingress.port }, 'listening');
  }

  private tierSlot(index: number): Slot {
    const slot = this.table.byRole('tier').find((s) => s.tier === index);
    if (!slot) throw new NotifyError(ErrorCodes.TIER_UNKNOWN, `no tier ${index} (tiers 0..${this.config.scheduleMs.length - 1})`);
    return slot;
  }

  /** Pauses a tier's consumer (in-flight attempts finish). */
  pause(index: number): TierStatus {
    const slot = this.tierSlot(index);
    this.table.setPaused(slot, true);
    return this.tierStatus(slot);
  }

  resume(index: number): TierStatus {
    const slot = this.tierSlot(index);
    this.table.setPaused(slot, false);
    return this.tierStatus(slot);
  }

  /** Re-reads the config; applies what can change live and says what needs a restart. */
  reload(): { applied: boolean; restartRequired: boolean; notes: readonly string[] } {
    const next = this.opts.reloadConfig();
    const diff = diffConfig(this.config, next);
    // What needs a restart (broker-shaped settings, listen addresses as bound, the database and history, the
    // master's jobs) stays as it runs until then: applying half of it would split the daemon.
    const effective: Config = deepFreeze(keepRestartOnly(this.config, next));
    // Checked against the addresses kept, not the file's: a file that moved a port to loopback and dropped its
    // tokens would otherwise leave the port bound where it was with no authentication until a restart.
    const unguarded = missingPortToken(effective.ingress, effective.admin);
    if (unguarded) throw new NotifyError(ErrorCodes.CONFIG_INVALID, `config: ${unguarded.key}: ${unguarded.why}`, unguarded.key);
    const warnings = reloadWarnings(effective, this.opts.startup ?? { stopTimeoutMs: null });
    this.config = effective;
    // The master's own lines too (its broker, redrives, jobs), as each worker sets its own on `reload`.
    this.log.level = effective.logLevel;
    this.table.broadcast({ type: 'reload', config: effective });
    for (const line of warnings) this.log.warn(line);
    const notes = [...diff.notes, ...warnings];
    this.log.info({ restartRequired: diff.restartRequired, notes }, 'config reloaded');
    return { applied: true, restartRequired: diff.restartRequired, notes };
  }

  /**
   * Moves parked notifications back to tier 0 (those of a merchant still
   * disabled stay); with history, copies of notifications resent since they
   * were parked are dropped (`superseded`), and those moved are claimed in
   * the history as a resend's are.
   */
  redrive(limit: number, force: boolean): Promise<RedriveResult> {
    const directory = this.db?.directory;
    const stuck = directory
      ? (reason: string, content: Buffer): boolean => {
          if (reason !== 'disabled') return false;
          const merchant = merchantOf(content);
          return merchant !== null && directory.get(merchant)?.enabled === false;
        }
      : undefined;
    const claims = this.db?.redriveClaims;
    const away = (err: unknown): Promise<never> => Promise.reject(databaseAway(err) ? historyUnavailable(err) : err);
    const history = claims
      ? async (): Promise<RedriveBatch> => {
          const b = await claims.open().catch(away);
          return { ...b, decide: (copies, at) => b.decide(copies, at).catch(away) };
        }
      : undefined;
    return this.broker.redrive(limit, force, stuck, history);
  }

  /** The merchant store for the admin API; null without a database. */
  get merchants(): MerchantStore | null {
    return this.db?.store ?? null;
  }

  /** Lists up to `limit` parked notifications without consuming them (`GET /admin/dead`). */
  listDead(limit: number): Promise<DeadListing> {
    return this.broker.listDead(limit);
  }

  /** Aggregated Prometheus exposition of master and all workers. Never waits on a restarting worker. */
  async metricsText(): Promise<string> {
    await this.table.collect(500);
    const live: MetricsSnapshot[] = [await this.metrics.registry.getMetricsAsJSON()];
    for (const s of this.table.all()) if (s.stats) live.push(s.stats.metrics);
    return this.ledger.exposition(live);
  }

  private tierStatus(slot: Slot): TierStatus {
    return {
      index: slot.tier ?? -1,
      delayMs: this.config.scheduleMs[slot.tier ?? 0] ?? 0,
      state: slot.state,
      pid: slot.worker?.process.pid ?? null,
      restarts: slot.restarts,
      inflight: slot.stats?.inflight ?? 0,
      brokerNode: slot.worker ? (slot.stats?.brokerNode ?? null) : null,
      paused: slot.paused,
    };
  }

  async status(): Promise<DaemonStatus> {
    await this.table.collect(300);
    const ingress = this.table.byRole('ingress')[0]!;
    const recorder = this.table.byRole('recorder')[0];
    return {
      prefix: this.config.prefix,
      tiers: this.table.byRole('tier').map((s) => this.tierStatus(s)),
      ingress: { pid: ingress.worker?.process.pid ?? null, state: ingress.state, restarts: ingress.restarts, port: ingress.port, brokerNode: ingress.worker ? (ingress.stats?.brokerNode ?? null) : null },
      broker: { connected: this.broker.connected, url: redactUrl(this.config.amqpUrl), node: this.broker.node },
      recorder: recorder
        ? { pid: recorder.worker?.process.pid ?? null, state: recorder.state, restarts: recorder.restarts, brokerNode: recorder.worker ? (recorder.stats?.brokerNode ?? null) : null }
        : null,
    };
  }

  /** `GET /admin/origins`: the worst origins over every tier, and how many are failing and limited. */
  async origins(limit: number): Promise<OriginsReport> {
    await this.table.collect(300);
    return originsReport(this.table.byRole('tier'), limit);
  }

  /**
   * `/readyz`: broker connected and every delivering worker up (a paused tier
   * is up: it was paused on purpose). The recorder is not among them: history
   * waits in the broker while it restarts, and delivery goes on.
   */
  readiness(): { ready: boolean; reasons: string[] } {
    const reasons: string[] = [];
    if (!this.broker.connected) reasons.push('broker not connected');
    if (this.shuttingDown) reasons.push('draining');
    for (const s of this.table.all()) if (s.role !== 'recorder' && s.state !== 'running' && s.state !== 'paused') reasons.push(`${s.key} ${s.state}`);
    return { ready: reasons.length === 0, reasons };
  }

  private async sampleQueues(): Promise<void> {
    for (const [queue, n] of await this.broker.queueDepths()) this.metrics.queueMessages.set({ queue }, n);
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
        this.table.killAll();
        // As a process killed by the signal reports it (128 + its number: 143, 130): what the systemd unit's
        // SuccessExitStatus and a shell read as "stopped on purpose", not a failure to restart from.
        const n = osConstants.signals[signal as NodeJS.Signals] as number | undefined;
        this.opts.onExit(n === undefined ? 1 : 128 + n);
      }
      return;
    }
    this.shuttingDown = true;
    this.firstSignalAt = now;
    this.broker.halt();
    this.log.info({ signal, drainTimeoutMs: this.config.supervisor.drainTimeoutMs }, 'draining');
    this.table.drain(now + this.config.supervisor.drainTimeoutMs);
  }

  /** Every worker is gone: stop the jobs, close the broker link, exit 0. Once. */
  private finish(): void {
    this.exitPromise ??= (async () => {
      for (const t of this.cronTasks) await t.destroy();
      await this.db?.close();
      await this.broker.close();
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
