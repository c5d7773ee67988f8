import type { Config } from '../core/config-model.js';
import type { WorkerRole } from './control.js';

/** Every flag {@link workerV8Flags} may add, so a worker's arguments never carry one twice or one no longer due. */
const OWN_FLAGS: ReadonlySet<string> = new Set(['--no-memory-reducer']);

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
 * (about 40 MiB more than an idle tier) until its next full collection, which
 * comes with load.
 */
export function workerV8Flags(role: WorkerRole, tier: number | null, config: Config): string[] {
  const d = config.delivery;
  if (role !== 'tier' || tier === null || d.warmUp <= 0 || !d.warmUpTiers.includes(tier)) return [];
  return ['--no-memory-reducer'];
}

/**
 * A worker's node arguments (pure): the master's (`base`, e.g.
 * `cluster.settings.execArgv`), without any flag of {@link workerV8Flags},
 * then the slot's own.
 */
export function workerExecArgv(base: readonly string[], role: WorkerRole, tier: number | null, config: Config): string[] {
  return [...base.filter((a) => !OWN_FLAGS.has(a)), ...workerV8Flags(role, tier, config)];
}
