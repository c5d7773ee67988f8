/**
 * Reading numbers out of a daemon's Prometheus text (`GET /metrics`), for
 * the bench scenarios. Pure: text in, numbers out.
 */

/** One sample line: its labels and value. */
export interface Sample {
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

/** The samples of metric `name` (exactly that name: `_bucket` and the like are names of their own). */
export function samples(metrics: string, name: string): Sample[] {
  const out: Sample[] = [];
  for (const line of metrics.split('\n')) {
    // `# HELP` and `# TYPE` lines start with '#', never with a metric's name.
    if (!line.startsWith(name)) continue;
    const rest = line.slice(name.length);
    let labels: Record<string, string> = {};
    let valueText: string;
    if (rest.startsWith('{')) {
      const end = rest.lastIndexOf('}');
      if (end < 0) continue;
      labels = Object.fromEntries([...rest.slice(1, end).matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((m) => [m[1]!, m[2]!]));
      valueText = rest.slice(end + 1);
    } else if (rest.startsWith(' ')) {
      valueText = rest;
    } else {
      continue; // another metric whose name starts with this one
    }
    out.push({ labels, value: Number(valueText.trim().split(/\s+/)[0]) });
  }
  return out;
}

/** Sum of metric `name`'s samples whose labels match `where` (each label equal to the string, or matching the pattern). */
export function counterSum(metrics: string, name: string, where: Readonly<Record<string, string | RegExp>> = {}): number {
  const match = (s: Sample): boolean =>
    Object.entries(where).every(([k, want]) => {
      const v = s.labels[k];
      return v !== undefined && (typeof want === 'string' ? v === want : want.test(v));
    });
  return samples(metrics, name).filter(match).reduce((a, s) => a + s.value, 0);
}

/** Upper bound (ms) of the histogram bucket holding the p-th percentile of `notify_schedule_lateness_seconds{tier}`. */
export function histogramPercentileMs(metrics: string, tier: string, p: number): number | null {
  const buckets = samples(metrics, 'notify_schedule_lateness_seconds_bucket')
    .filter((s) => s.labels.tier === tier && s.labels.le !== undefined)
    .map((s) => ({ le: s.labels.le === '+Inf' ? Infinity : Number(s.labels.le), count: s.value }));
  if (buckets.length === 0) return null;
  buckets.sort((a, b) => a.le - b.le);
  const total = buckets[buckets.length - 1]!.count;
  if (total === 0) return null;
  const want = (p / 100) * total;
  const b = buckets.find((x) => x.count >= want)!;
  return b.le === Infinity ? Infinity : b.le * 1000;
}
