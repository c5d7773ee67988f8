import { warmsUp, type Config } from '../core/config-model.js';
import type { WorkerRole } from './control.js';

/**
 * The young generation's floor in a warmed tier worker, MiB per semi-space
 * (the most it grows to under node 20's defaults on this machine class).
 *
 * Why (issue 18): the first scavenge after a quiet spell finds the
 * allocation rate since the last one near zero, and V8 then shrinks the
 * young generation to about twice what survived (32 MiB to about 3). The
 * burst that woke the worker then runs with a young generation grown back
 * a step at a time: scavenges every 50 ms instead of every second, in-flight
 * attempts promoted to the old generation, and a full collection early in
 * it (docs/performance.md, stop 62).
 */
export const WARMED_MIN_SEMI_SPACE_MIB = 16;

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
  return ['--no-memory-reducer', `--min-semi-space-size=${WARMED_MIN_SEMI_SPACE_MIB}`];
}

/**
 * A worker's node arguments (pure): the master's (`base`, as they were
 * before its first fork), then the slot's own.
 */
export function workerExecArgv(base: readonly string[], role: WorkerRole, tier: number | null, config: Config): string[] {
  return [...base, ...workerV8Flags(role, tier, config)];
}
