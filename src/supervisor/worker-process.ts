import { deepFreeze, type Config } from '../core/config-model.js';
import { WORKER_ENV, assertNever, parseMasterMessage, wrap, type MasterMessage, type WorkerMessage, type WorkerRole, type WorkerState, type WorkerStats } from './control.js';
import { toErrorData } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { WorkerMetrics } from '../core/metrics.js';
import type { OriginSnapshot } from '../delivery/origin-limiter.js';

/** What the process glue needs of a tier or ingress worker. */
export interface ManagedWorker {
  start(): Promise<{ port?: number }>;
  pause(): Promise<void>;
  resume(): Promise<void>;
  /** Idempotent; resolves once everything is closed. */
  drain(deadlineMs: number): Promise<void>;
  reload(config: Config): { restartRequired: boolean; notes: string[] };
  /** notifyd's own ports, for workers that must never deliver to them. */
  setSelfPorts?(ports: readonly number[]): void;
  /** The worst origins (tier workers). */
  origins?(n: number): OriginSnapshot[];
  /** How many origins are failing and limited, all of them (tier workers). */
  originCounts?(): { failing: number; limited: number };
  readonly inflightCount: number;
  readonly currentState: WorkerState;
  /** `host:port` of the broker node the worker is connected to, or null. */
  readonly brokerNode: string | null;
}

/**
 * Control messages that reached the worker before its switch listened
 * (`runManagedWorker`): before `init`, a drain (the master began to drain
 * while this worker was loading) and the latest pause or resume (newer than
 * the state the worker was forked with); after `init`, everything (the
 * master sends notifyd's own ports then). A reload or stats request before
 * `init` is dropped: `init` carries the newer config, and a stats request
 * is asked again.
 */
export interface EarlyMessages {
  /** Stops collecting; the messages collected, in order. */
  take(): MasterMessage[];
}

/**
 * Starts a worker process: says `hello` on the IPC pipe and resolves with
 * the config the master answers with, and the messages that come before the
 * worker listens (`early`, for `runManagedWorker`). The role and tier come
 * from the environment. SIGHUP (systemd's `kill -s HUP` reaches the whole
 * group; only the master reloads) is ignored from the entry's first import
 * on (early-hangup.ts), before this runs.
 */
export function receiveWorkerConfig(timeoutMs = 30_000): Promise<{ config: Config; tier: number | null; startPaused: boolean; early: EarlyMessages }> {
  if (!process.send) return Promise.reject(new Error('no IPC pipe: workers are started by the master (notifyd start)'));
  const tierText = process.env[WORKER_ENV.tier];
  const tier = tierText ? Number(tierText) : null;
  const startPaused = process.env[WORKER_ENV.paused] === '1';
  const held: MasterMessage[] = [];
  let initSeen = false;
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      process.off('message', onMessage);
      reject(new Error(`no config from the master within ${timeoutMs}ms`));
    }, timeoutMs);
    function onMessage(raw: unknown): void {
      const msg = parseMasterMessage(raw);
      if (!msg) return;
      if (initSeen) {
        held.push(msg);
        return;
      }
      // Before init only what init does not carry: a drain, and the latest pause or resume.
      if (msg.type === 'pause' || msg.type === 'resume') {
        const last = held.findIndex((m) => m.type === 'pause' || m.type === 'resume');
        if (last >= 0) held.splice(last, 1);
      }
      if (msg.type === 'drain' || msg.type === 'pause' || msg.type === 'resume') held.push(msg);
      if (msg.type !== 'init') return;
      initSeen = true;
      clearTimeout(timer);
      // First of what runs before the worker starts.
      if (msg.ports !== undefined) held.unshift({ type: 'ports', ports: msg.ports });
      const early: EarlyMessages = {
        take: () => {
          process.off('message', onMessage);
          return held.splice(0);
        },
      };
      resolve({ config: deepFreeze(msg.config), tier, startPaused, early });
    }
    process.on('message', onMessage);
    sendToMaster({ type: 'hello' });
  });
}

/** How many of its worst origins a tier reports with its stats. */
const ORIGINS_REPORTED = 50;

export function sendToMaster(msg: WorkerMessage): void {
  if (process.send && process.connected) {
    try {
      process.send(wrap(msg));
    } catch {
      /* pipe closing: the master is gone and we are exiting */
    }
  }
}

/**
 * Runs a worker under the master: answers control messages with an exhaustive
 * switch, drains on the master's order, on its own SIGTERM/SIGINT (repeats
 * within 1 s count once, a later one forces exit) and when the master's pipe
 * closes, so no worker outlives a killed master. The messages that came
 * early are answered first; a drain among them (or a signal before then)
 * exits without starting the worker: it has taken nothing to drain.
 */
export async function runManagedWorker(opts: {
  worker: ManagedWorker;
  role: WorkerRole;
  tier: number | null;
  config: Config;
  log: Logger & { flush: () => void };
  metrics: WorkerMetrics;
  /** From `receiveWorkerConfig`. */
  early: EarlyMessages;
}): Promise<void> {
  const { worker, role, tier, log, metrics } = opts;
  let config = opts.config;
  let drainStartedAt = 0;
  let started = false;

  const drainAndExit = (deadlineMs: number, why: string): void => {
    if (drainStartedAt) return;
    drainStartedAt = Date.now();
    if (!started) {
      log.info({ why }, 'worker asked to drain before it started; exiting');
      sendToMaster({ type: 'drained' });
      log.flush();
      process.exit(0);
    }
    log.info({ why, deadlineInMs: deadlineMs - Date.now() }, 'worker draining');
    void worker
      .drain(deadlineMs)
      .then(() => {
        sendToMaster({ type: 'drained' });
        log.info('worker drained; exiting');
      })
      .catch((err: unknown) => log.error({ err: toErrorData(err) }, 'drain failed'))
      .finally(() => {
        log.flush();
        process.exit(0);
      });
  };

  const onSignal = (signal: NodeJS.Signals): void => {
    if (!drainStartedAt) return drainAndExit(Date.now() + config.supervisor.drainTimeoutMs, signal);
    if (Date.now() - drainStartedAt >= 1000) {
      log.warn({ signal }, 'second signal: forcing exit (unacked messages return to the queue)');
      log.flush();
      process.exit(1);
    }
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  process.on('disconnect', () => drainAndExit(Date.now() + config.supervisor.drainTimeoutMs, 'master gone'));
  process.on('uncaughtException', (err) => {
    log.fatal({ err: toErrorData(err), stack: err.stack }, 'uncaught exception; exiting');
    sendToMaster({ type: 'fatal', error: toErrorData(err) });
    log.flush();
    process.exit(70);
  });

  const handle = (msg: MasterMessage): void => {
    switch (msg.type) {
      case 'init':
        // Only the first one counts (received before this switch existed); a late repeat changes nothing.
        return;
      case 'pause':
        void worker.pause().catch((err: unknown) => log.error({ err: toErrorData(err) }, 'pause failed'));
        return;
      case 'resume':
        void worker.resume().catch((err: unknown) => log.error({ err: toErrorData(err) }, 'resume failed'));
        return;
      case 'drain':
        drainAndExit(msg.deadlineMs, 'master asked');
        return;
      case 'reload': {
        try {
          const r = worker.reload(msg.config);
          config = msg.config;
          log.level = config.logLevel;
          sendToMaster({ type: 'reloaded', restartRequired: r.restartRequired, notes: r.notes });
        } catch (err) {
          // Keep running on the old config rather than die on a bad new one.
          log.error({ err: toErrorData(err) }, 'reload refused; keeping the running config');
        }
        return;
      }
      case 'ports':
        worker.setSelfPorts?.(msg.ports);
        return;
      case 'stats':
        void metrics.registry.getMetricsAsJSON().then((m) => {
          const origins = worker.origins?.(ORIGINS_REPORTED);
          const originCounts = worker.originCounts?.();
          const stats: WorkerStats = { role, tier, state: worker.currentState, inflight: worker.inflightCount, brokerNode: worker.brokerNode, metrics: m, ...(origins ? { origins } : {}), ...(originCounts ? { originCounts } : {}) };
          sendToMaster({ type: 'stats', requestId: msg.requestId, stats });
        });
        return;
      default:
        assertNever(msg);
    }
  };
  process.on('message', (raw: unknown) => {
    const msg = parseMasterMessage(raw);
    if (msg) handle(msg);
  });
  // A drain among them exits here (nothing started).
  for (const msg of opts.early.take()) handle(msg);

  started = true;
  const { port } = await worker.start();
  if (!drainStartedAt) sendToMaster({ type: 'ready', role, tier, state: worker.currentState, ...(port !== undefined ? { port } : {}) });
}
