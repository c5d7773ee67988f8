// Reads what the Overview needs out of the admin port's /metrics text, and
// turns two scrapes into rates and a windowed p99. Pure (no DOM, no imports)
// so the unit tests run it under Node.

/** One sample line of the Prometheus text exposition. */
export interface Sample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

/** A scrape: its samples and when it was taken (ms epoch). */
export interface Scrape {
  readonly at: number;
  readonly samples: readonly Sample[];
}

const LINE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+-?\d+)?$/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;

function unescapeLabel(v: string): string {
  return v.replace(/\\(["\\n])/g, (_m, c: string) => (c === 'n' ? '\n' : c));
}

function parseValue(raw: string): number {
  if (raw === '+Inf') return Infinity;
  if (raw === '-Inf') return -Infinity;
  return Number(raw);
}

/**
 * Parses the text exposition; comments and lines it cannot read are left out
 * (a page must keep working when a newer daemon exports more).
 */
export function parseExposition(text: string, at: number): Scrape {
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = LINE.exec(line.trim());
    if (!m) continue;
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(LABEL)) labels[l[1]!] = unescapeLabel(l[2]!);
    samples.push({ name: m[1]!, labels, value: parseValue(m[3]!) });
  }
  return { at, samples };
}

/** Samples of `name` whose labels include every pair of `match`. */
export function select(s: Scrape, name: string, match: Readonly<Record<string, string>> = {}): Sample[] {
  return s.samples.filter((x) => x.name === name && Object.entries(match).every(([k, v]) => x.labels[k] === v));
}

/** Sum of `name{match}`; 0 when absent. */
export function total(s: Scrape, name: string, match: Readonly<Record<string, string>> = {}): number {
  return select(s, name, match).reduce((a, x) => a + x.value, 0);
}

/** Growth of a counter between two scrapes; a counter that went back (the master restarted) counts from 0. */
function increase(before: number, after: number): number {
  return after >= before ? after - before : after;
}

/** Per-second rate of `name{match}` (summed over other labels) between two scrapes; null without a time span. */
export function ratePerSecond(prev: Scrape, cur: Scrape, name: string, match: Readonly<Record<string, string>> = {}): number | null {
  const seconds = (cur.at - prev.at) / 1000;
  if (!(seconds > 0)) return null;
  return increase(total(prev, name, match), total(cur, name, match)) / seconds;
}

/** Cumulative bucket counts of a histogram by upper bound, summed over labels outside `match`, sorted by bound. */
function buckets(s: Scrape, histogram: string, match: Readonly<Record<string, string>>): [number, number][] {
  const byLe = new Map<number, number>();
  for (const x of select(s, `${histogram}_bucket`, match)) {
    const le = parseValue(x.labels.le ?? '');
    if (Number.isNaN(le)) continue;
    byLe.set(le, (byLe.get(le) ?? 0) + x.value);
  }
  return [...byLe.entries()].sort((a, b) => a[0] - b[0]);
}

/**
 * The q-quantile of the observations a histogram gained between two scrapes,
 * as Prometheus' `histogram_quantile` computes it: linear inside the bucket
 * that holds the rank, the lower bound of the first bucket taken as 0, and the
 * largest finite bound when the rank falls in the `+Inf` bucket. Null when
 * nothing was observed in between.
 */
export function windowQuantile(prev: Scrape, cur: Scrape, histogram: string, q: number, match: Readonly<Record<string, string>> = {}): number | null {
  const before = new Map(buckets(prev, histogram, match));
  const deltas = buckets(cur, histogram, match).map(([le, n]) => [le, increase(before.get(le) ?? 0, n)] as const);
  return quantileOfBuckets(deltas, q);
}

/** `histogram_quantile` over cumulative `[upperBound, count]` pairs sorted by bound; null when empty. */
export function quantileOfBuckets(cumulative: readonly (readonly [number, number])[], q: number): number | null {
  if (cumulative.length === 0) return null;
  const count = cumulative[cumulative.length - 1]![1];
  if (!(count > 0)) return null;
  const rank = q * count;
  let lowerBound = 0;
  let lowerCount = 0;
  for (const [le, n] of cumulative) {
    if (n >= rank) {
      if (le === Infinity) return lowerBound;
      if (n === lowerCount) return le;
      return lowerBound + (le - lowerBound) * ((rank - lowerCount) / (n - lowerCount));
    }
    lowerBound = le;
    lowerCount = n;
  }
  return lowerBound;
}
