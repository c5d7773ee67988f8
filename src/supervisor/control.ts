import type { Config } from '../core/config.js';
import type { ErrorData } from '../core/errors.js';
import type { MetricsSnapshot } from '../core/metrics.js';
import type { OriginSnapshot } from '../delivery/origin-limiter.js';

/**
 * Environment keys a forked worker reads (set by the master only). The
 * config is not among them: it holds secrets, and a process's environment
 * is readable in /proc and inherited by whatever it runs; it comes down the
 * IPC pipe (`init`).
 */
export const WORKER_ENV = Object.freeze({ role: 'NOTIFYD_ROLE', tier: 'NOTIFYD_TIER', paused: 'NOTIFYD_START_PAUSED' });

/** Worker states as the master reports them (DESIGN §7). */
export type WorkerState = 'starting' | 'running' | 'paused' | 'backoff' | 'crashloop' | 'draining' | 'stopped';

export type WorkerRole = 'tier' | 'ingress' | 'recorder';

/** master → worker, over the cluster IPC pipe. */
export type MasterMessage =
  /** The answer to `hello`: the config to start with. */
  /**
   * The worker's config; `ports`, notifyd's own (admin, ingress) for a tier, which its first delivery must
   * refuse: sent with the config, since a message sent after it may be read only once the worker has started.
   */
  | { readonly type: 'init'; readonly config: Config; readonly ports?: readonly number[] }
  | { readonly type: 'pause' }
  | { readonly type: 'resume' }
  | { readonly type: 'drain'; readonly deadlineMs: number }
  | { readonly type: 'reload'; readonly config: Config }
  | { readonly type: 'stats'; readonly requestId: number }
  /** notifyd's own listening ports (admin, ingress): no delivery may target them. */
  | { readonly type: 'ports'; readonly ports: readonly number[] };

/** What a worker reports about itself. */
export interface WorkerStats {
  readonly role: WorkerRole;
  readonly tier: number | null;
  readonly state: WorkerState;
  readonly inflight: number;
  /** `host:port` of the broker node the worker is connected to, or null (never a URL: no credentials cross the pipe back). */
  readonly brokerNode: string | null;
  readonly metrics: MetricsSnapshot;
  /** A tier's worst origins (failing, limited, with errors), at most a few dozen. */
  readonly origins?: readonly OriginSnapshot[];
  /** A tier's origins by state, all of them (`origins` holds only the worst). */
  readonly originCounts?: { readonly failing: number; readonly limited: number };
}

/** worker → master. */
export type WorkerMessage =
  /** The worker listens on the pipe and waits for its config (`init`). */
  | { readonly type: 'hello' }
  /** Start-up finished; `state` is the worker's own (e.g. `starting` for an ingress without a broker). */
  | { readonly type: 'ready'; readonly role: WorkerRole; readonly tier: number | null; readonly state: WorkerState; readonly port?: number }
  | { readonly type: 'stats'; readonly requestId: number; readonly stats: WorkerStats }
  | { readonly type: 'state'; readonly state: WorkerState }
  | { readonly type: 'drained' }
  | { readonly type: 'reloaded'; readonly restartRequired: boolean; readonly notes: readonly string[] }
  | { readonly type: 'fatal'; readonly error: ErrorData };

/** Marker so unrelated IPC traffic (e.g. cluster internals) is never mistaken for ours. */
export const CONTROL_TAG = 'notifyd';

export type Envelope<T> = { readonly [CONTROL_TAG]: 1; readonly msg: T };

export function wrap<T>(msg: T): Envelope<T> {
  return { [CONTROL_TAG]: 1, msg };
}

const MASTER_TYPES = new Set(['init', 'pause', 'resume', 'drain', 'reload', 'stats', 'ports']);
const WORKER_TYPES = new Set(['hello', 'ready', 'stats', 'state', 'drained', 'reloaded', 'fatal']);

function unwrap(raw: unknown, types: Set<string>): unknown | null {
  if (typeof raw !== 'object' || raw === null || (raw as Record<string, unknown>)[CONTROL_TAG] !== 1) return null;
  const msg = (raw as { msg?: unknown }).msg;
  if (typeof msg !== 'object' || msg === null) return null;
  const type = (msg as { type?: unknown }).type;
  return typeof type === 'string' && types.has(type) ? msg : null;
}

/** Parses an IPC payload into a master message, or null when it is not one. */
export function parseMasterMessage(raw: unknown): MasterMessage | null {
  return unwrap(raw, MASTER_TYPES) as MasterMessage | null;
}

/** Parses an IPC payload into a worker message, or null when it is not one. */
export function parseWorkerMessage(raw: unknown): WorkerMessage | null {
  return unwrap(raw, WORKER_TYPES) as WorkerMessage | null;
}

/** Compile-time exhaustiveness guard for `switch` over tagged unions. */
export function assertNever(x: never): never {
  throw new Error(`unhandled control message: ${JSON.stringify(x)}`);
}
