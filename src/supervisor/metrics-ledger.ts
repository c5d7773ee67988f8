import { aggregateExposition, foldSnapshots, type MetricsSnapshot } from '../core/metrics.js';
import type { Logger } from '../core/logger.js';
import { toErrorData } from '../core/errors.js';

/**
 * The daemon's metrics as one exposition: the master's own, every live
 * worker's latest snapshot, and the counters of workers that have exited,
 * so that aggregated counters never go backwards across restarts.
 */
export class MetricsLedger {
  /** notify_* counters and histograms of exited workers, folded into one snapshot. */
  private retired: MetricsSnapshot[] = [];
  private folding: Promise<void> = Promise.resolve();

  constructor(private readonly log: Logger) {}

  /** Keeps the counters of a worker that exited (gauges die with it). */
  retire(snapshot: MetricsSnapshot): void {
    const counters = snapshot.filter((m) => (m as { name?: string }).name?.startsWith('notify_') && (m as { type?: string }).type !== 'gauge');
    // Folded into one snapshot, so a crash-looping worker cannot grow the list (and each scrape) without end.
    this.folding = this.folding
      .then(async () => {
        this.retired = [await foldSnapshots([...this.retired, counters])];
      })
      .catch((err: unknown) => this.log.warn({ err: toErrorData(err) }, "folding a retired worker's metrics failed"));
  }

  /** Prometheus text of `live` snapshots plus what was retired. */
  async exposition(live: readonly MetricsSnapshot[]): Promise<string> {
    await this.folding;
    return aggregateExposition([...live, ...this.retired]);
  }
}
