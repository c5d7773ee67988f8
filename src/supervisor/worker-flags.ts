import { warmsUp, type Config } from '../core/config-model.js';
import type { WorkerRole } from './control.js';

/**
 * V8 flags a worker is forked with beside the master's own (pure).
 *
 * Why (issue 18): a warmed tier worker's optimised code embeds objects of
 * the warm-up weakly (their maps), so a full collection while it idles, once
 * they are garbage, marks that code for deoptimisation. V8's memory reducer
 * runs such collections in an idle process, within about two minutes of the
 * warm-up: the warm-up lasted two minutes, not the quiet hour it is for,
 * and a burst after a quiet spell met a cold tier (docs/performance.md,
 * stop 61). Without the reducer a warmed worker idles without full
 * collections; it keeps its heap as the warm-up or its last burst left it
 * (after a warm-up about 40 MiB more than an idle tier, 10–15 once a
 * scavenge has shrunk its young generation; up to its peak old space after
 * a burst) until its next full collection, which comes with load.
 * Decided when the worker starts, as its warm-up is: a reload changes it for
 * the workers started afterwards.
 */
export function workerV8Flags(role: WorkerRole, tier: number | null, config: Config): string[] {
  if (role !== 'tier' || tier === null || !warmsUp(config, tier)) return [];
  return ['--no-memory-reducer'];
}

/**
 * A worker's node arguments (pure): the master's (`base`, as they were
 * before its first fork), then the slot's own.
 */
export function workerExecArgv(base: readonly string[], role: WorkerRole, tier: number | null, config: Config): string[] {
  return [...base, ...workerV8Flags(role, tier, config)];
}
