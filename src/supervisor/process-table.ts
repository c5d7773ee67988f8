import cluster, { type Worker } from 'node:cluster';
import type { Config } from '../core/config.js';
import type { Logger } from '../core/logger.js';
import { WORKER_ENV, assertNever, parseWorkerMessage, wrap, type MasterMessage, type WorkerRole, type WorkerState, type WorkerStats } from './control.js';
import { workerExecArgv } from './worker-flags.js';
import { EMPTY_HISTORY, afterStableUptime, decideRestart, type RestartHistory, type RestartPolicy } from './restart-policy.js';

/** One supervised worker position (a tier, the ingress, …) and what the master knows of it. */
export interface Slot {
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

export interface ProcessTableOptions {
  readonly logger: Logger;
  /** The compiled entry point of each worker kind. */
  readonly entries: Readonly<Record<WorkerRole, string>>;
  /** The config in force: workers are forked with it, and the restart policy is read from it. */
  readonly config: () => Config;
  /** What `init` tells a worker of notifyd's own ports (a tier must refuse them from its first delivery). */
  readonly initPorts?: (slot: Slot) => readonly number[] | undefined;
  /** A worker became ready (e.g. reported its port). */
  readonly onReady?: (slot: Slot) => void;
  /** A worker exited; `lastStats` is what it last reported (its counters must not be lost). */
  readonly onExit?: (slot: Slot, lastStats: WorkerStats | null) => void;
  /** Liveness and restart counters of tier workers. */
  readonly onTierUp?: (tier: number, up: boolean) => void;
  readonly onTierRestart?: (tier: number) => void;
  /** The same for the other processes (the ingress, the recorder). */
  readonly onRoleUp?: (role: WorkerRole, up: boolean) => void;
  readonly onRoleRestart?: (role: WorkerRole) => void;
  /** Every worker has stopped after `drain`. */
  readonly onAllStopped: () => void;
}

/**
 * The master's environment with every `NOTIFY_*` variable taken out (set to
 * undefined, which `fork` leaves out): they may hold secrets, and workers get
 * the parsed config over the IPC pipe instead.
 */
function withoutNotifyVariables(env: NodeJS.ProcessEnv): Record<string, string | undefined> {
  const out: Record<string, string | undefined> = {};
  for (const k of Object.keys(env)) if (k.startsWith('NOTIFY_')) out[k] = undefined;
  return out;
}

function policyOf(c: Config): RestartPolicy {
  const s = c.supervisor;
  return { baseMs: s.restartBaseMs, maxMs: s.restartMaxMs, resetMs: s.restartResetMs, crashloopRestarts: s.crashloopRestarts, windowMs: s.crashloopWindowMs };
}

/**
 * The master's process table: forks (Node `cluster`) one worker per slot,
 * restarts any that exits per the restart policy and marks crash loops,
 * relays control messages, collects stats, and drains everything on
 * shutdown. It knows nothing of the broker.
 */
export class ProcessTable {
  private readonly slots: Slot[] = [];
  private readonly log: Logger;
  private draining = false;
  private drainDeadlineMs = 0;
  private nextRequestId = 1;
  private readonly pending = new Map<number, (s: WorkerStats) => void>();
  private baseExecArgv: readonly string[] | null = null;

  constructor(private readonly opts: ProcessTableOptions) {
    this.log = opts.logger;
  }

  /** Adds a slot (not forked yet). */
  add(key: string, role: WorkerRole, tier: number | null): Slot {
    const slot: Slot = { key, role, tier, worker: null, state: 'starting', restarts: 0, history: EMPTY_HISTORY, startedAt: 0, crashloop: false, timer: null, stableTimer: null, stats: null, port: null, paused: false, reported: 'starting', forkedWith: null };
    this.slots.push(slot);
    return slot;
  }

  all(): readonly Slot[] {
    return this.slots;
  }

  byRole(role: WorkerRole): Slot[] {
    return this.slots.filter((s) => s.role === role);
  }

  /** Forks every slot of a role. */
  startRole(role: WorkerRole): void {
    for (const slot of this.slots) if (slot.role === role) this.fork(slot);
  }

  private fork(slot: Slot): void {
    slot.timer = null;
    if (this.draining) return;
    // The master's arguments as they were before the first fork: cluster keeps the last fork's, a slot's own flags included.
    this.baseExecArgv ??= [...(cluster.settings.execArgv ?? process.execArgv)];
    cluster.setupPrimary({ exec: this.opts.entries[slot.role], execArgv: workerExecArgv(this.baseExecArgv, slot.role, slot.tier, this.opts.config()) });
    let worker: Worker;
    try {
      worker = cluster.fork({
        ...withoutNotifyVariables(process.env),
        [WORKER_ENV.role]: slot.role,
        [WORKER_ENV.tier]: slot.tier === null ? '' : String(slot.tier),
        // A paused tier's new worker must not take a single message before the pause would arrive.
        [WORKER_ENV.paused]: slot.paused ? '1' : '',
      });
    } catch (err) {
      // Thrown from a restart timer it would end the master: a worker that could not start is one that exited.
      this.log.error({ worker: slot.key, err: (err as Error).message }, 'could not start worker');
      slot.startedAt = Date.now();
      this.afterExit(slot, undefined, null, null);
      return;
    }
    slot.worker = worker;
    slot.forkedWith = null;
    slot.startedAt = Date.now();
    slot.stats = null;
    if (!slot.crashloop) slot.state = 'starting';
    this.log.info({ worker: slot.key, workerPid: worker.process.pid }, 'forked worker');
    worker.on('message', (raw: unknown) => this.onWorkerMessage(slot, worker, raw));
    worker.on('exit', (code, signal) => this.onWorkerExit(slot, worker, code, signal));
    worker.on('error', (err) => {
      // A process that never started (EAGAIN, EMFILE, ENOENT: out of processes or file descriptors) emits only
      // 'error', never 'exit': taken as an exit, so it is restarted and a drain does not wait for it for ever.
      if (worker.process.pid === undefined) {
        this.log.error({ worker: slot.key, err: err.message }, 'could not start worker');
        this.onWorkerExit(slot, worker, null, null);
        return;
      }
      this.log.warn({ worker: slot.key, err: err.message }, 'worker IPC error');
    });
  }

  private onWorkerMessage(slot: Slot, worker: Worker, raw: unknown): void {
    if (slot.worker !== worker) return;
    const msg = parseWorkerMessage(raw);
    if (!msg) return;
    switch (msg.type) {
      case 'hello': {
        const config = this.opts.config();
        slot.forkedWith = config;
        const ports = this.opts.initPorts?.(slot);
        this.send(slot, { type: 'init', config, ...(ports !== undefined ? { ports } : {}) });
        // A drain, pause or resume sent while the worker was loading, before it listened, is lost: say it again
        // (the worker keeps the latest pause or resume until it starts).
        if (this.draining) this.send(slot, { type: 'drain', deadlineMs: this.drainDeadlineMs });
        else if (slot.role === 'tier') this.send(slot, { type: slot.paused ? 'pause' : 'resume' });
        return;
      }
      case 'ready': {
        // Messages sent while the worker was still loading its modules may have been
        // dropped (no listener yet): repeat what it must know now.
        const config = this.opts.config();
        if (this.draining) this.send(slot, { type: 'drain', deadlineMs: this.drainDeadlineMs });
        else if (slot.forkedWith !== config) this.send(slot, { type: 'reload', config });
        if (slot.role === 'tier' && slot.paused !== (msg.state === 'paused')) this.send(slot, { type: slot.paused ? 'pause' : 'resume' });
        slot.reported = msg.state;
        if (!slot.crashloop && !this.draining) slot.state = msg.state;
        if (msg.port !== undefined) slot.port = msg.port;
        this.up(slot, true);
        if (slot.stableTimer) clearTimeout(slot.stableTimer);
        slot.stableTimer = setTimeout(() => {
          slot.history = afterStableUptime(slot.history);
          if (slot.crashloop) {
            slot.crashloop = false;
            slot.state = slot.reported;
            this.log.info({ worker: slot.key }, 'worker stable again; crash loop cleared');
          }
        }, config.supervisor.restartResetMs).unref();
        this.opts.onReady?.(slot);
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

  private up(slot: Slot, up: boolean): void {
    if (slot.tier !== null) this.opts.onTierUp?.(slot.tier, up);
    else this.opts.onRoleUp?.(slot.role, up);
  }

  private onWorkerExit(slot: Slot, worker: Worker, code: number | null, signal: string | null): void {
    if (slot.worker !== worker) return;
    slot.worker = null;
    this.afterExit(slot, worker.process.pid, code, signal);
  }

  /** A slot's worker is gone (exited, or never started): stopped while draining, else restarted after its backoff. */
  private afterExit(slot: Slot, workerPid: number | undefined, code: number | null, signal: string | null): void {
    if (slot.stableTimer) clearTimeout(slot.stableTimer);
    this.up(slot, false);
    const lastStats = slot.stats;
    slot.stats = null;
    this.opts.onExit?.(slot, lastStats);
    if (this.draining) {
      slot.state = 'stopped';
      this.log.info({ worker: slot.key, workerPid, code, signal }, 'worker exited');
      this.maybeAllStopped();
      return;
    }
    const uptimeMs = Date.now() - slot.startedAt;
    const d = decideRestart(slot.history, Date.now(), uptimeMs, policyOf(this.opts.config()));
    slot.history = d.history;
    slot.restarts += 1;
    if (slot.tier !== null) this.opts.onTierRestart?.(slot.tier);
    else this.opts.onRoleRestart?.(slot.role);
    if (d.crashloop && !slot.crashloop) {
      this.log.error({ worker: slot.key, restartsInWindow: d.history.recent.length }, 'CRASH LOOP: worker keeps exiting; retrying at the capped delay');
    }
    slot.crashloop = d.crashloop;
    slot.state = d.crashloop ? 'crashloop' : 'backoff';
    this.log.warn({ worker: slot.key, workerPid, code, signal, uptimeMs, restartInMs: d.delayMs }, 'worker exited unexpectedly; restarting');
    slot.timer = setTimeout(() => this.fork(slot), d.delayMs);
  }

  /** Sends a control message to a slot's worker; false when there is none to take it. */
  send(slot: Slot, msg: MasterMessage): boolean {
    const w = slot.worker;
    if (!w || !w.isConnected()) return false;
    try {
      w.send(wrap(msg));
      return true;
    } catch {
      return false;
    }
  }

  /** Sends a message to every worker. */
  broadcast(msg: MasterMessage): void {
    for (const slot of this.slots) this.send(slot, msg);
  }

  /** Pauses or resumes a tier; remembered for the slot's future workers. */
  setPaused(slot: Slot, paused: boolean): void {
    slot.paused = paused;
    // Only a worker that reported ready is running or paused: one still starting (waiting for the broker) or
    // draining says so itself when it gets there, and /readyz must not count it meanwhile.
    const ready = slot.state === 'running' || slot.state === 'paused';
    if (this.send(slot, { type: paused ? 'pause' : 'resume' }) && !slot.crashloop && ready) slot.state = paused ? 'paused' : 'running';
  }

  private requestStats(slot: Slot, timeoutMs: number): Promise<WorkerStats | null> {
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

  /**
   * Drains every worker by `deadlineMs`: the ingress first, so nothing new is
   * accepted while the rest finish; stragglers are killed 2 s after the
   * deadline. Idempotent.
   */
  drain(deadlineMs: number): void {
    if (this.draining) return;
    this.draining = true;
    this.drainDeadlineMs = deadlineMs;
    for (const s of this.slots) {
      if (s.timer) clearTimeout(s.timer);
      s.timer = null;
      s.state = s.worker ? 'draining' : 'stopped';
    }
    for (const s of this.byRole('ingress')) this.send(s, { type: 'drain', deadlineMs });
    for (const s of this.slots) if (s.role !== 'ingress') this.send(s, { type: 'drain', deadlineMs });
    setTimeout(() => {
      for (const s of this.slots) {
        if (s.worker) {
          this.log.warn({ worker: s.key, workerPid: s.worker.process.pid }, 'drain deadline passed; killing straggler');
          s.worker.process.kill('SIGKILL');
        }
      }
    }, Math.max(0, deadlineMs - Date.now()) + 2000).unref();
    this.maybeAllStopped();
  }

  /** SIGKILLs every worker (a forced exit). */
  killAll(): void {
    for (const s of this.slots) s.worker?.process.kill('SIGKILL');
  }

  private maybeAllStopped(): void {
    if (this.draining && !this.slots.some((s) => s.worker)) this.opts.onAllStopped();
  }
}
