import { performance } from 'node:perf_hooks';
import { ErrorCodes, NotifyError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { amqpInternalsOf, type AmqpInternals } from './connection.js';
import { StuckCalls } from './stuck-calls.js';

/**
 * How long a call may go unanswered before its connection is given up:
 * twice RabbitMQ's own `channel_operation_timeout` (15 s), after which a
 * broker that is slow but alive answers even an operation it could not
 * finish (with an error), and a quorum queue's leader election is over; and
 * past the bounds set on single calls while connecting (the confirm timeout,
 * then `CLOSE_WITHIN_MS` for the close), so those act first and say which
 * call it was. An operator's pause or dead listing on a node that stopped
 * answering fails after this, instead of never.
 */
export const UNANSWERED_CALL_MS = 30_000;

/**
 * What a channel waits for: the pending call's reply callback, else its close
 * handler while it waits for a close-ok (amqplib sets `accept` on a channel
 * itself only once it closes; a closed one leaves the list), else null.
 */
function channelWait(ch: object): unknown {
  const reply = (ch as { readonly reply?: unknown }).reply;
  if (reply !== null && reply !== undefined) return reply;
  return Object.hasOwn(ch, 'accept') ? (ch as { accept: unknown }).accept : null;
}

/**
 * The waits of an amqplib connection (a ChannelModel's `connection`): its own
 * close (its `accept` is no longer `openAccept`, the frame handler it had
 * while open, and it is not closed yet), then each channel's call or close.
 * Empty when it has not the shape amqplib gives it (a test's stand-in).
 */
export function waitsOf(connection: unknown, openAccept: unknown): Array<readonly [object, unknown]> {
  const c = connection as AmqpInternals | null | undefined;
  if (c === null || typeof c !== 'object' || !Array.isArray(c.channels)) return [];
  const closing = c.expectSocketClose !== true && c.accept !== openAccept;
  const out: Array<readonly [object, unknown]> = [[c, closing ? c.accept : null]];
  for (let i = 1; i < c.channels.length; i++) {
    const ch = c.channels[i]?.channel;
    if (ch !== undefined && ch !== null) out.push([ch, channelWait(ch)]);
  }
  return out;
}

/** Options of `watchCalls`. */
export interface WatchCallsOptions {
  /** Gives the connection up when a call has waited this long (ms). */
  readonly timeoutMs?: number;
  /** How often the waits are sampled (ms); a stuck call is noticed at most this much late. */
  readonly everyMs?: number;
  /** Where the give-up is logged; without one, only the error the connection closes with says it. */
  readonly log?: Logger;
  /** Who owns the connection, for the log line and error (e.g. 'tier 0'). */
  readonly owner: string;
  /** Told when it gives the connection up (the owner's metric). */
  readonly onGiveUp?: () => void;
}

/**
 * Watches every call on an amqplib connection (`conn`, a ChannelModel) and,
 * when the broker has left one unanswered for `timeoutMs`, logs it and
 * destroys the connection's socket: amqplib then fails the calls waiting on
 * it and emits `error` and `close`, which every owner already handles by
 * reconnecting (to the next node). Time while the broker blocks the
 * connection does not count (it reads nothing then, by design, and another
 * connection would fare no better); the clock is monotonic. amqplib settles
 * a close's promise only on the broker's close-ok, so a caller that awaits a
 * close must bound it itself (`closeWithin`, `callWithin`): the watchdog
 * frees the socket, not that caller. Confirms are not calls: their waits
 * are bounded where they are made. Stops by itself when the connection
 * closes; returns a stop function for an owner that closes it first.
 *
 * Why: amqplib's calls wait for as long as the connection lasts, and a node
 * that keeps the connection (and its heartbeats) but answers nothing on it
 * would hold a tier's pause, a dead listing, the recorder's consume or a
 * channel's close for ever. Bounding each call where it is made left some
 * unbounded; this covers all of them, on one timer per connection.
 */
export function watchCalls(
  conn: { readonly connection?: unknown; once?(event: 'close', fn: () => void): unknown; on?(event: 'blocked' | 'unblocked', fn: () => void): unknown },
  o: WatchCallsOptions,
): () => void {
  const connection = amqpInternalsOf(conn);
  if (connection === undefined || !Array.isArray(connection.channels)) return () => undefined;
  const timeoutMs = o.timeoutMs ?? UNANSWERED_CALL_MS;
  // Watched once open: its frame handler now is the one it keeps until it closes.
  const openAccept = connection.accept;
  const stuck = new StuckCalls();
  // Runs only while the broker does not block the connection: a wait keeps its age through an alarm, however often
  // it flaps. Moved on at each tick and at each change of the block, so a change between ticks is counted exactly.
  let clock = 0;
  let last = performance.now();
  let blocked = connection.blocked === true;
  const advance = (): void => {
    const now = performance.now();
    if (!blocked) clock += now - last;
    last = now;
  };
  conn.on?.('blocked', () => {
    advance();
    blocked = true;
  });
  conn.on?.('unblocked', () => {
    advance();
    blocked = false;
  });
  const timer = setInterval(() => {
    if (connection.expectSocketClose === true) return stop();
    advance();
    if (blocked) return;
    const waited = Math.round(stuck.observe(clock, waitsOf(connection, openAccept)));
    if (waited < timeoutMs) return;
    stop();
    const why = `the broker left a call on ${o.owner}'s connection unanswered for ${Math.round(waited / 1000)} s`;
    o.log?.error({ owner: o.owner, waitedMs: waited }, `${why}; giving the connection up (reconnecting)`);
    connection.stream?.destroy?.(new NotifyError(ErrorCodes.BROKER_UNAVAILABLE, why));
    o.onGiveUp?.();
  }, o.everyMs ?? 1000);
  timer.unref();
  function stop(): void {
    clearInterval(timer);
  }
  conn.once?.('close', stop);
  return stop;
}
