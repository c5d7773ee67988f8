/**
 * Issue 14's rule, measured: handling a bad merchant's notification
 * (skipping, deferring, handing on) must cost no more than delivering a
 * good one. The isolation bench meters the CPU of the daemon's processes
 * and of the broker over each run's window (per 1,000 of the healthy
 * merchant's deliveries); merchant processes are left out, as a bad
 * merchant's own CPU is not notifyd's.
 */

/** CPU ms per 1,000 of the healthy merchant's deliveries, as the isolation bench reports it. */
export interface WindowCpu {
  readonly consumer: number;
  readonly broker: number;
}

/**
 * Pure: what one bad notification cost the daemon and the broker within a
 * bad run's window, as a multiple of what one notification cost them in the
 * control of the same round. The control delivers `healthy + bad`
 * notifications in its window, so its cost per notification is its total
 * over all of them; the bad run's healthy deliveries are charged that much
 * each, and the rest of its total is the bad notifications'. The window ends
 * with the healthy merchant's last delivery, so what a bad notification
 * costs after it (a deferral that comes back later, the lower tiers' work)
 * is not in it: the figure is a lower bound, and above 1 misses the rule
 * (with `--broker-probe`, the probe's CPU counts as the broker's and grows
 * with the window, a little against the bad runs). NaN when a figure is
 * missing.
 */
export function badHandlingCost(control: WindowCpu, run: WindowCpu, healthy: number, bad: number): number {
  if (!(healthy > 0) || !(bad > 0)) return NaN;
  const total = (c: WindowCpu): number => ((c.consumer + c.broker) * healthy) / 1000;
  const perNotification = total(control) / (healthy + bad);
  if (!(perNotification > 0)) return NaN;
  return (total(run) - perNotification * healthy) / bad / perNotification;
}
