/**
 * Pure: turns a batch of history records into the rows the recorder writes
 * (DESIGN §11). Records of one notification come from several processes and
 * arrive in any order, more than once: rows are keyed so a repeat is a no-op,
 * and the notification's status is its latest ladder's ({@link newerStatus}).
 */
import { CREATED_AT_MAX_AHEAD_MS } from '../core/message.js';
import { runStartOf, type HistoryRecord } from './records.js';

export type HistoryStatus = 'pending' | 'delivered' | 'dead';

export interface RunRow {
  readonly id: string;
  readonly createdAt: number;
  readonly run: string;
  readonly at: number;
  readonly via: string;
  readonly producer: string | null;
}

export interface AttemptRow {
  readonly id: string;
  readonly createdAt: number;
  readonly run: string;
  readonly attempt: number;
  readonly tier: number;
  readonly startedAt: number;
  readonly durationMs: number;
  readonly status: number | null;
  readonly outcome: string;
  readonly skipReason: string | null;
  readonly error: string | null;
  readonly answer: string | null;
}

/** What a batch says about one notification (its `attempts` is filled in once the new attempt rows are known). */
export interface NotificationRow {
  readonly id: string;
  readonly createdAt: number;
  merchant: string | null;
  producer: string | null;
  url: string;
  content: string | null;
  /** The latest status event of the batch (by {@link newerStatus}), or null when it holds none (attempts that ended nothing). */
  status: HistoryStatus | null;
  statusAt: number | null;
  /** When the ladder of that event started (ms epoch), or null when its run id does not say. */
  statusRunAt: number | null;
  deadReason: string | null;
  attempts: number;
  lastAttemptAt: number | null;
  lastStatus: number | null;
  lastError: string | null;
  deliveredAt: number | null;
  deadAt: number | null;
}

export interface Folded {
  /** Sorted by key: recorders of several daemons then lock rows in one order (no deadlock). */
  readonly runs: readonly RunRow[];
  readonly attempts: readonly AttemptRow[];
  readonly notifications: readonly NotificationRow[];
  /** The UTC days (YYYY-MM-DD) of the notifications, whose partitions must exist. */
  readonly days: readonly string[];
  /** The oldest event time in the batch (for the lag). */
  readonly oldestAt: number;
}

/** A row that says nothing yet: every field the upsert keeps as the database has it (COALESCE, GREATEST, no attempts). */
export function emptyRow(id: string, createdAt: number): NotificationRow {
  return { id, createdAt, merchant: null, producer: null, url: '', content: null, status: null, statusAt: null, statusRunAt: null, deadReason: null, attempts: 0, lastAttemptAt: null, lastStatus: null, lastError: null, deliveredAt: null, deadAt: null };
}

/** The key of a notification: id and createdAt (ms, whole). */
export function notificationKey(id: string, createdAt: number): string {
  return `${id}\u0000${createdAt}`;
}

/** The key of an attempt row. */
export function attemptKey(id: string, createdAt: number, run: string, attempt: number): string {
  return `${id}\u0000${createdAt}\u0000${run}\u0000${attempt}`;
}

const RANK: Readonly<Record<HistoryStatus, number>> = { pending: 0, dead: 1, delivered: 2 };

/** How far a ladder's start may be past its event (hosts' clocks apart) before its run id is taken for some other string. */
const SKEW_MS = 60_000;

/**
 * When the ladder of `run` started, as far as its run id can be believed:
 * every event of a ladder keeps its start, so they compare by rank whatever
 * the hosts' clocks (an ingress ahead of the tier that delivered would
 * otherwise put the start after its own end). A start far past its event,
 * or long before its notification was created (more than the day a
 * producer's clock may be ahead, `createdAt` being the producer's), is some
 * other program's run id that decodes to a date by chance (a quarter of
 * random hex ids do): null, the event's time stands in. Also used by the
 * redrive (superseded.ts).
 */
export function ladderStart(run: string, at: number, createdAt: number): number | null {
  const start = runStartOf(run);
  if (start === null) return null;
  if (start > at + SKEW_MS || start < createdAt - CREATED_AT_MAX_AHEAD_MS - SKEW_MS) return null;
  return start;
}

/** A status event: what it says, when, and when its ladder started (null: not known). */
export interface StatusEvent {
  readonly status: HistoryStatus;
  readonly at: number;
  readonly runAt: number | null;
}

/**
 * Whether a status event replaces another (migration 004's
 * `notify_status_newer`, the same order): the latest ladder's, by its
 * start; within a ladder delivered beats dead beats its start; then the
 * later. So a duplicate copy of a delivered ladder that parks later (a
 * redelivery after a lost ack) does not turn it dead, and an older
 * ladder's late event does not replace a newer ladder's. A ladder whose
 * start is not known counts as starting at the event: the order by time.
 */
export function newerStatus(e: StatusEvent, than: StatusEvent | null): boolean {
  if (than === null) return true;
  const ra = e.runAt ?? e.at;
  const rb = than.runAt ?? than.at;
  if (ra !== rb) return ra > rb;
  if (RANK[e.status] !== RANK[than.status]) return RANK[e.status] > RANK[than.status];
  return e.at > than.at;
}

function dayOf(ms: number): string {
  return new Date(ms).toISOString().slice(0, 10);
}

const byKey = <T>(key: (x: T) => string) => (a: T, b: T): number => {
  const ka = key(a);
  const kb = key(b);
  return ka < kb ? -1 : ka > kb ? 1 : 0;
};

/** Folds records into rows; `now` bounds the lag of a batch with no event time. */
export function foldRecords(records: readonly HistoryRecord[], now = Date.now()): Folded {
  const runs = new Map<string, RunRow>();
  const attempts = new Map<string, AttemptRow>();
  const notes = new Map<string, NotificationRow>();
  const days = new Set<string>();
  let oldestAt = now;

  const noteFor = (r: HistoryRecord, createdAt: number): NotificationRow => {
    const key = notificationKey(r.id, createdAt);
    // Attempts do not carry the URL and merchant: until a record that does arrives, the row has ''.
    const merchant = r.t === 'attempt' ? null : r.merchant;
    let n = notes.get(key);
    if (!n) {
      n = { ...emptyRow(r.id, createdAt), merchant, url: r.t === 'attempt' ? '' : r.url };
      notes.set(key, n);
      days.add(dayOf(createdAt));
    }
    n.merchant ??= merchant;
    if (n.url === '' && r.t !== 'attempt') n.url = r.url;
    return n;
  };
  const setStatus = (n: NotificationRow, status: HistoryStatus, at: number, run: string, deadReason: string | null): void => {
    const runAt = ladderStart(run, at, n.createdAt);
    if (!newerStatus({ status, at, runAt }, n.status === null || n.statusAt === null ? null : { status: n.status, at: n.statusAt, runAt: n.statusRunAt })) return;
    n.status = status;
    n.statusAt = at;
    n.statusRunAt = runAt;
    n.deadReason = deadReason;
  };

  for (const r of records) {
    // A createdAt with a fraction of a ms is kept whole: every record of the notification agrees on its key.
    const createdAt = Math.trunc(r.createdAt);
    const n = noteFor(r, createdAt);
    switch (r.t) {
      case 'run': {
        oldestAt = Math.min(oldestAt, r.at);
        runs.set(attemptKey(r.id, createdAt, r.run, -1), { id: r.id, createdAt, run: r.run, at: r.at, via: r.via, producer: r.producer });
        n.producer ??= r.producer;
        if (n.content === null) {
          n.content = r.content;
          n.url = r.url;
        }
        setStatus(n, 'pending', r.at, r.run, null);
        break;
      }
      case 'attempt': {
        const end = r.startedAt + r.durationMs;
        oldestAt = Math.min(oldestAt, end);
        attempts.set(attemptKey(r.id, createdAt, r.run, r.attempt), {
          id: r.id,
          createdAt,
          run: r.run,
          attempt: r.attempt,
          tier: r.tier,
          startedAt: r.startedAt,
          durationMs: Math.max(0, Math.round(r.durationMs)),
          status: r.status,
          outcome: r.outcome,
          skipReason: r.skipReason,
          error: r.error,
          answer: r.answer,
        });
        if (n.lastAttemptAt === null || r.startedAt >= n.lastAttemptAt) {
          n.lastAttemptAt = r.startedAt;
          n.lastStatus = r.status;
          n.lastError = r.error;
        }
        if (r.final?.status === 'delivered') {
          setStatus(n, 'delivered', end, r.run, null);
          n.deliveredAt = Math.max(n.deliveredAt ?? 0, end);
        } else if (r.final?.status === 'dead') {
          setStatus(n, 'dead', end, r.run, r.final.reason);
          n.deadAt = Math.max(n.deadAt ?? 0, end);
        }
        break;
      }
      case 'dead': {
        oldestAt = Math.min(oldestAt, r.at);
        setStatus(n, 'dead', r.at, r.run, r.reason);
        n.deadAt = Math.max(n.deadAt ?? 0, r.at);
        if (n.lastError === null) n.lastError = r.error;
        break;
      }
    }
  }
  const runKey = (x: RunRow): string => attemptKey(x.id, x.createdAt, x.run, -1);
  const aKey = (x: AttemptRow): string => attemptKey(x.id, x.createdAt, x.run, x.attempt);
  const nKey = (x: NotificationRow): string => notificationKey(x.id, x.createdAt);
  return {
    runs: [...runs.values()].sort(byKey(runKey)),
    attempts: [...attempts.values()].sort(byKey(aKey)),
    notifications: [...notes.values()].sort(byKey(nKey)),
    days: [...days].sort(),
    oldestAt,
  };
}

/**
 * Counts, per notification, the attempt rows the database took as new (the
 * others were there already: a record sent twice counts once).
 */
export function countNewAttempts(notifications: readonly NotificationRow[], inserted: Iterable<{ id: string; createdAt: number }>): void {
  const byKeyMap = new Map(notifications.map((n) => [notificationKey(n.id, n.createdAt), n]));
  for (const a of inserted) {
    const n = byKeyMap.get(notificationKey(a.id, a.createdAt));
    if (n) n.attempts++;
  }
}
