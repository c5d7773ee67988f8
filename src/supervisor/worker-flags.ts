import { warmsUp, type Config } from '../core/config-model.js';
import type { WorkerRole } from './control.js';

/**
 * The young generation's floor in a warmed tier worker, MiB per semi-space.
 * It is also node 20's default ceiling on a host with 4 GiB or more, so
 * there the young generation keeps the size a burst grows it to; V8 lowers
 * the floor to the ceiling without a word where that is smaller (a
 * container of 1–2 GiB: 4–8 MiB).
 *
 * Why (issue 18): the first scavenge after a quiet spell finds the
 * allocation rate since the last one near zero, and V8 then shrinks the
 * young generation to about twice what survived (32 MiB committed, both
 * semi-spaces, to about 1). The burst that woke the worker then runs with
 * a young generation grown back a step at a time: scavenges every 50 ms
 * instead of every second, in-flight attempts promoted to the old
 * generation, and a full collection early in it (docs/performance.md,
 * stop 62). V8 flags are the process's: the worker's signing threads
 * (rsa2) get the floor too, for as long as they live (30 s idle at most).
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
 * (tier 1 about 80 MiB of PSS for its first idle minute and 48–65 once a
 * scavenge has shrunk its young generation to the floor above, against
 * about 40 with V8's defaults; up to its peak old space after a burst)
 * until its next full collection, which comes with load.
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
