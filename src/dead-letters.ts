import type { ConfirmChannel, GetMessage } from 'amqplib';
import { publishConfirmed } from './broker.js';
import type { Config } from './config.js';
import { H } from './message.js';
import { namesFor, routeForAttempt } from './topology.js';

/** Reasons that would fail again the same way; redriven only when forced. */
const STICKY_REASONS = new Set(['blocked', 'invalid']);
/** Most skipped messages held unacked during one scan (bounds memory and the broker's unacked count). */
const MAX_HELD = 10_000;

export interface RedriveResult {
  readonly moved: number;
  readonly skipped: number;
  readonly remaining: number;
}

/**
 * Moves up to `limit` parked notifications from `P.dead` back to tier 0,
 * keeping their history headers (first attempt, last error) and counting the
 * redrive. Each move is publish → confirm → ack. Skipped messages are held
 * unacked during the scan (so the scan advances) and returned at the end.
 * Messages parked while the scan runs may be moved too.
 */
export async function redrive(ch: ConfirmChannel, config: Config, limit: number, force: boolean): Promise<RedriveResult> {
  const names = namesFor(config.prefix);
  const route = routeForAttempt(names, config.scheduleMs, 0);
  const held: GetMessage[] = [];
  let moved = 0;
  try {
    // Skipped messages stay unacked until the end, so `get` never hands the same one back twice.
    while (moved < limit && held.length < MAX_HELD) {
      const msg = await ch.get(names.dead, { noAck: false });
      if (!msg) break;
      const old = msg.properties.headers ?? {};
      const reason = String(old[H.deadReason] ?? '');
      if (!force && STICKY_REASONS.has(reason)) {
        held.push(msg);
        continue;
      }
      const headers: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(old)) if (!k.startsWith('x-') && k !== H.deadReason) headers[k] = v;
      headers[H.attempt] = 0;
      headers[H.dueAt] = Date.now() + (config.scheduleMs[0] ?? 0);
      headers[H.redriven] = Number(old[H.redriven] ?? 0) + 1;
      headers['notify-redriven-from'] = reason;
      await publishConfirmed(ch, route.exchange, route.routingKey, msg.content, {
        messageId: msg.properties.messageId,
        persistent: true,
        contentType: msg.properties.contentType ?? 'application/json',
        timestamp: msg.properties.timestamp,
        headers,
      });
      ch.ack(msg);
      moved++;
    }
  } finally {
    for (const m of held) ch.nack(m, false, true);
  }
  const after = await ch.checkQueue(names.dead);
  return { moved, skipped: held.length, remaining: after.messageCount };
}
