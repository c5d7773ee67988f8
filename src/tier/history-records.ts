/**
 * What a tier worker records of a notification (DESIGN §11): pure builders
 * from the message, the notification and the attempt's result.
 */
import type { ConsumeMessage } from 'amqplib';
import { H, type DeadReason, type Notification } from '../core/message.js';
import type { AttemptResult, Outcome } from '../delivery/outcome.js';
import { answerText, storableText, type AttemptRecord, type DeadRecord, type HistoryRecord, type RunRecord } from '../history/records.js';

/** The ladder a message is on, and whether its start was recorded by whoever published it. */
export function ladderOf(msg: ConsumeMessage): { run: string; recorded: boolean } {
  const h = msg.properties.headers ?? {};
  const run = h[H.run];
  return { run: typeof run === 'string' ? run : '', recorded: h[H.recorded] !== undefined };
}

/**
 * The start of a ladder nobody recorded (a message a client or another
 * program published straight to the broker): recorded by tier 0 with its
 * first attempt, so the history holds the notification itself too.
 */
export function unrecordedStart(msg: ConsumeMessage, n: Notification, tier: number, now: number): RunRecord | null {
  const { run, recorded } = ladderOf(msg);
  if (recorded || tier !== 0) return null;
  const producer = msg.properties.headers?.[H.producer];
  return {
    t: 'run',
    id: n.id,
    createdAt: n.createdAt,
    run,
    at: now,
    via: run === '' ? 'direct' : 'client',
    merchant: n.merchant ?? null,
    producer: typeof producer === 'string' ? producer : null,
    url: n.url,
    content: msg.content.toString('utf8'),
  };
}

/** One attempt (or skip) and, when it ended the ladder, how. */
export function attemptRecord(
  msg: ConsumeMessage,
  n: Notification,
  a: { tier: number; startedAt: number; result: AttemptResult & { durationMs: number }; outcome: Outcome },
): AttemptRecord {
  const r = a.result;
  const o = a.outcome;
  return {
    t: 'attempt',
    id: n.id,
    createdAt: n.createdAt,
    run: ladderOf(msg).run,
    attempt: a.tier,
    tier: a.tier,
    startedAt: a.startedAt,
    durationMs: Math.round(r.durationMs),
    status: r.kind === 'response' ? r.status : null,
    outcome: r.kind === 'skipped' ? 'skipped' : o.kind === 'delivered' ? 'success' : o.kind,
    skipReason: r.kind === 'skipped' ? r.reason : null,
    error: o.kind === 'delivered' ? null : storableText(r.kind === 'skipped' ? r.message : o.error),
    answer: r.kind === 'response' ? answerText(r.body) : null,
    final: o.kind === 'delivered' ? { status: 'delivered' } : o.kind === 'dead' ? { status: 'dead', reason: o.reason } : null,
  };
}

/** Parked before any attempt of this tier (invalid, merchant disabled, out of attempts for its merchant). */
export function deadRecord(msg: ConsumeMessage, n: Notification, reason: DeadReason, error: string, now: number): DeadRecord {
  return { t: 'dead', id: n.id, createdAt: n.createdAt, run: ladderOf(msg).run, at: now, reason, error: storableText(error) ?? reason, merchant: n.merchant ?? null, url: n.url };
}

/** The records to send, with the unrecorded start in front when there is one. */
export function withStart(start: RunRecord | null, rec: HistoryRecord): HistoryRecord[] {
  return start ? [start, rec] : [rec];
}
