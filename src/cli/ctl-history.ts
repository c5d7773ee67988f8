/**
 * `notifyd ctl show|find|resend|recover`: the delivery history (DESIGN §11)
 * from a terminal, through the admin API. The formatting is pure (unit-tested).
 */
import { parseInstant } from '../history/query-params.js';
import type { NotificationPage, NotificationTimeline, NotificationView } from '../history/reader.js';
import type { AdminCall } from './admin-client.js';
import { printAnswer } from './admin-client.js';
import { str, table, usage, type Values } from './args.js';

export const HISTORY_USAGE = `notifyd ctl show ID
notifyd ctl find [--merchant M] [--status pending|delivered|dead] [--since 1h|ISO] [--until 30m|ISO] [--limit N] [--cursor C]
notifyd ctl resend ID [--force]
notifyd ctl recover --merchant M --since 2d|ISO [--until 1h|ISO]`;

/** A ms epoch time as UTC ISO 8601, or `-`. */
export function isoTime(ms: number | null): string {
  return ms === null ? '-' : new Date(ms).toISOString();
}

/** A duration in ms, readable: `87ms`, `1.2s`, `3m04s`. */
export function shortDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)}ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)}s`;
  const s = Math.round(ms / 1000);
  return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
}

/** What one attempt came to, in a few words. */
function note(a: NotificationTimeline['attempts'][number]): string {
  if (a.skipped) return `skipped: ${a.reason ?? 'origin isolation'}`;
  return a.error ?? '';
}

function headline(n: NotificationView): string {
  const parts = [`notification ${n.id}`, n.status.toUpperCase() + (n.status === 'dead' && n.deadReason ? ` (${n.deadReason})` : '')];
  if (n.merchant) parts.push(`merchant ${n.merchant}`);
  if (n.producer) parts.push(`producer ${n.producer}`);
  return parts.join('  ');
}

/** The timeline `ctl show` prints: the notification, then each ladder with its attempts in order. */
export function formatTimeline(t: NotificationTimeline): string {
  const n = t.notification;
  const lines = [
    headline(n),
    `url      ${n.url}`,
    `created  ${isoTime(n.createdAt)}   attempts ${n.attempts}` +
      (n.deliveredAt !== null ? `   delivered ${isoTime(n.deliveredAt)}` : '') +
      (n.deadAt !== null ? `   dead ${isoTime(n.deadAt)}` : '') +
      (n.resendable ? '' : '   (not resendable: the history holds only its attempts)'),
  ];
  // Ladders in order; attempts of a ladder whose start was never recorded ('') come under their own heading.
  const runs = t.runs.map((r) => ({ key: r.run, head: `run ${r.run}  ${r.via}  ${isoTime(r.startedAt)}${r.producer ? `  by ${r.producer}` : ''}` }));
  for (const a of t.attempts) if (!runs.some((r) => r.key === a.run)) runs.push({ key: a.run, head: a.run === '' ? 'run (start not recorded)' : `run ${a.run}` });
  for (const r of runs) {
    lines.push('', r.head);
    const attempts = t.attempts.filter((a) => a.run === r.key);
    if (attempts.length === 0) {
      lines.push('  (no attempt yet)');
      continue;
    }
    const rows: (string | number)[][] = [['  #', 'TIER', 'TIME', 'DURATION', 'STATUS', 'OUTCOME', 'NOTE']];
    for (const a of attempts) rows.push([`  ${a.attempt + 1}`, a.tier, isoTime(a.startedAt), shortDuration(a.durationMs), a.status ?? '-', a.outcome, note(a)]);
    lines.push(table(rows));
  }
  return lines.join('\n');
}

/** The table `ctl find` prints, and where the next page starts (with `window`, the flags that keep its time window). */
export function formatPage(p: NotificationPage, window: readonly string[] = []): string {
  if (p.notifications.length === 0) return '(no notification matches)';
  const rows: (string | number)[][] = [['ID', 'CREATED', 'MERCHANT', 'STATUS', 'ATTEMPTS', 'LAST']];
  for (const n of p.notifications) {
    const last = n.status === 'dead' ? (n.deadReason ?? 'dead') : n.lastStatus !== null ? String(n.lastStatus) : (n.lastError ?? '-');
    rows.push([n.id, isoTime(n.createdAt), n.merchant ?? '-', n.status, n.attempts, last.slice(0, 60)]);
  }
  return table(rows) + (p.nextCursor ? `\nmore: ${[...window, `--cursor ${p.nextCursor}`].join(' ')}` : '');
}

/** Runs one history command; the exit status. */
export async function historyCommand(cmd: string, id: string | undefined, values: Values, call: AdminCall): Promise<number> {
  switch (cmd) {
    case 'show': {
      if (!id) return usage(HISTORY_USAGE);
      const r = await call('GET', `/admin/notifications/${encodeURIComponent(id)}`);
      if (r.status !== 200 || values.json) return printAnswer(r);
      process.stdout.write(`${formatTimeline(r.body as NotificationTimeline)}\n`);
      return 0;
    }
    case 'find': {
      const q = new URLSearchParams();
      const now = Date.now();
      for (const k of ['merchant', 'status', 'since', 'until', 'limit', 'cursor']) {
        let v = str(values, k);
        if (v === undefined) continue;
        // A time is sent as one ISO string made here, once: a duration back from now then keeps its window on the
        // next page (`more:`), and the hint pastes as one word whatever was typed ('2026-01-31 12:00').
        if (k === 'since' || k === 'until') {
          try {
            v = new Date(parseInstant(v, now, k)).toISOString();
          } catch {
            /* the daemon answers what is wrong with it */
          }
        }
        q.set(k, v);
      }
      const r = await call('GET', `/admin/notifications?${q}`);
      if (r.status !== 200 || values.json) return printAnswer(r);
      const window = ['since', 'until'].flatMap((k) => (q.has(k) ? [`--${k} ${q.get(k)}`] : []));
      process.stdout.write(`${formatPage(r.body as NotificationPage, window)}\n`);
      return 0;
    }
    case 'resend': {
      if (!id) return usage(HISTORY_USAGE);
      return printAnswer(await call('POST', `/admin/notifications/${encodeURIComponent(id)}/resend${values.force ? '?force=true' : ''}`));
    }
    case 'recover': {
      const merchant = str(values, 'merchant');
      const since = str(values, 'since');
      if (!merchant || !since) return usage(HISTORY_USAGE);
      const until = str(values, 'until');
      return printAnswer(await call('POST', '/admin/notifications:recover', { merchant, since, ...(until !== undefined ? { until } : {}) }));
    }
    default:
      return usage(HISTORY_USAGE);
  }
}
