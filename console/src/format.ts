// How numbers and times read on the page.

/** `0ms`, `1s`, `1.5s`, `3m`, `2h` for a schedule delay. */
export function delay(ms: number): string {
  if (ms < 1000) return `${ms}ms`;
  if (ms < 60_000) return `${+(ms / 1000).toFixed(1)}s`;
  if (ms < 3_600_000) return `${+(ms / 60_000).toFixed(1)}m`;
  return `${+(ms / 3_600_000).toFixed(1)}h`;
}

/** A rate per second, or a dash when unknown. */
export function rate(perSecond: number | null): string {
  if (perSecond === null) return '—';
  if (perSecond === 0) return '0';
  if (perSecond < 10) return perSecond.toFixed(2);
  return Math.round(perSecond).toLocaleString('en');
}

/** Seconds as `12 ms` / `1.20 s`, or a dash when unknown. */
export function seconds(s: number | null): string {
  if (s === null) return '—';
  if (s < 1) return `${Math.round(s * 1000)} ms`;
  return `${s.toFixed(2)} s`;
}

/** A count with thousands separators. */
export function count(n: number | null | undefined): string {
  return n === null || n === undefined ? '—' : n.toLocaleString('en');
}

/**
 * Local date and time with the offset from UTC, `2025-06-01 14:03:07 +08:00`:
 * the daemon's logs and a merchant's reports are read beside it, often in
 * another zone.
 */
export function dateTime(at: number | string | null | undefined): string {
  if (at === null || at === undefined) return '—';
  const d = new Date(at);
  if (Number.isNaN(d.getTime())) return String(at);
  const p = (n: number): string => String(n).padStart(2, '0');
  const east = -d.getTimezoneOffset();
  const offset = `${east < 0 ? '-' : '+'}${p(Math.floor(Math.abs(east) / 60))}:${p(Math.abs(east) % 60)}`;
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())} ${offset}`;
}

/** `just now`, `42 s ago`, `5 min ago`, `3 h ago`, `2 d ago`. */
export function ago(at: number | null | undefined, now = Date.now()): string {
  if (at === null || at === undefined) return '—';
  const s = Math.max(0, Math.round((now - at) / 1000));
  if (s < 5) return 'just now';
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86_400) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86_400)} d ago`;
}
