/**
 * `GET /admin/origins` from what the tiers reported with their stats: the
 * worst origins over every tier, and how many are failing and limited. Pure.
 */
import type { OriginSnapshot } from '../delivery/origin-limiter.js';
import type { WorkerStats } from './control.js';

/** Shape of `GET /admin/origins`. */
export interface OriginsReport {
  readonly origins: readonly (OriginSnapshot & { readonly tier: number })[];
  /** Origins failing and limited over every tier, all of them (each tier lists only its worst in `origins`). */
  readonly counts: { readonly failing: number; readonly limited: number };
}

const RANK = { failing: 0, limited: 1, ok: 2 } as const;

/**
 * Failing first, then limited, then those with errors, at most `limit`; the
 * counts from each tier's own (a tier that sent none yet: what its list shows).
 */
export function originsReport(tiers: readonly { readonly tier: number | null; readonly stats: Pick<WorkerStats, 'origins' | 'originCounts'> | null }[], limit: number): OriginsReport {
  const all: (OriginSnapshot & { tier: number })[] = [];
  const counts = { failing: 0, limited: 0 };
  for (const t of tiers) {
    const listed = t.stats?.origins ?? [];
    for (const o of listed) all.push({ ...o, tier: t.tier ?? -1 });
    const c = t.stats?.originCounts;
    if (c) {
      counts.failing += c.failing;
      counts.limited += c.limited;
    } else {
      for (const o of listed) if (o.state !== 'ok') counts[o.state]++;
    }
  }
  all.sort((a, b) => RANK[a.state] - RANK[b.state] || b.waiting - a.waiting || b.deferred + b.skipped - (a.deferred + a.skipped) || (b.lastErrorAt ?? 0) - (a.lastErrorAt ?? 0));
  return { origins: all.slice(0, limit), counts };
}
