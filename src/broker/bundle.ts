import type { Message, Options } from 'amqplib';
import { ErrorCodes, NotifyError } from '../core/errors.js';
import { H, uuidv7 } from '../core/message.js';

/**
 * Many hand-ons that are not attempts (skips past a failing origin,
 * deferrals for a saturated one) travel as one broker message: a rung in a
 * quorum queue costs the broker several deliveries' worth of work (stop 21),
 * and a failing merchant's notifications take their rungs together. A bundle
 * is published where each of them would have gone (the same wait or hold
 * queue, so the same TTL and dead-lettering) and opened by the tier that
 * consumes it, which handles every entry as the message it stands for.
 */
export const BUNDLE_CONTENT_TYPE = 'application/vnd.notifyd.bundle+json';
const VERSION = 1;

/** One notification's hand-on as it would have been published alone. */
export interface BundleEntry {
  readonly content: Buffer;
  /** Its publish properties; only messageId, contentType, timestamp and headers are carried. */
  readonly options: Options.Publish;
}

/** Pure: whether a delivery is a bundle (by the header and content type notifyd sets on it). */
export function isBundle(msg: Pick<Message, 'properties'>): boolean {
  return typeof msg.properties.headers?.[H.bundle] === 'number' && msg.properties.contentType === BUNDLE_CONTENT_TYPE;
}

/**
 * Pure: whether an entry survives JSON unchanged. Headers a producer set with
 * AMQP types JSON cannot carry (byte arrays, nested tables, dates) are
 * published alone instead.
 */
export function bundleable(options: Options.Publish): boolean {
  for (const v of Object.values(options.headers ?? {})) {
    if (v !== null && typeof v !== 'string' && typeof v !== 'number' && typeof v !== 'boolean') return false;
    if (typeof v === 'number' && !Number.isFinite(v)) return false;
  }
  return true;
}

/** Pure: the bytes an entry adds to an encoded bundle, at most (to keep bundles under a bound). */
export function entrySize(e: BundleEntry): number {
  const o = e.options;
  const text = JSON.stringify([o.messageId ?? null, o.contentType ?? null, o.timestamp ?? null, o.headers ?? {}]);
  // base64 of the body, the JSON of the rest, and the entry's keys and punctuation.
  return Math.ceil(e.content.length / 3) * 4 + Buffer.byteLength(text) + 64;
}

/** The content and publish options of a bundle of `entries` (two or more); its id is new. */
export function encodeBundle(entries: readonly BundleEntry[], now = Date.now()): { content: Buffer; options: Options.Publish } {
  const body = {
    v: VERSION,
    entries: entries.map((e) => ({
      id: e.options.messageId ?? null,
      type: e.options.contentType ?? null,
      ts: e.options.timestamp ?? null,
      headers: e.options.headers ?? {},
      body: e.content.toString('base64'),
    })),
  };
  return {
    content: Buffer.from(JSON.stringify(body)),
    options: {
      messageId: `bundle-${uuidv7(now)}`,
      persistent: true,
      mandatory: true,
      contentType: BUNDLE_CONTENT_TYPE,
      timestamp: Math.floor(now / 1000),
      headers: { [H.bundle]: entries.length },
    },
  };
}

/**
 * Pure: the messages a bundle stands for, each with the delivery's fields and
 * its own properties. Throws `MESSAGE_INVALID` on anything else (the
 * pipeline then parks the bundle as it came, like any unreadable message).
 */
export function decodeBundle<M extends Pick<Message, 'content' | 'fields' | 'properties'>>(msg: M): M[] {
  let body: unknown;
  try {
    body = JSON.parse(msg.content.toString('utf8'));
  } catch (err) {
    throw new NotifyError(ErrorCodes.MESSAGE_INVALID, `bundle is not JSON: ${(err as Error).message}`, 'body');
  }
  const b = body as { v?: unknown; entries?: unknown };
  if (b === null || typeof b !== 'object' || b.v !== VERSION || !Array.isArray(b.entries) || b.entries.length === 0) {
    throw new NotifyError(ErrorCodes.MESSAGE_INVALID, `not a version ${VERSION} bundle with entries`, 'body');
  }
  return b.entries.map((raw: unknown, i: number) => {
    const e = raw as { id?: unknown; type?: unknown; ts?: unknown; headers?: unknown; body?: unknown };
    if (e === null || typeof e !== 'object' || typeof e.body !== 'string' || e.headers === null || typeof e.headers !== 'object' || Array.isArray(e.headers)) {
      throw new NotifyError(ErrorCodes.MESSAGE_INVALID, `bundle entry #${i + 1} has no body or headers`, 'body');
    }
    return {
      ...msg,
      content: Buffer.from(e.body, 'base64'),
      properties: {
        ...msg.properties,
        messageId: typeof e.id === 'string' ? e.id : undefined,
        contentType: typeof e.type === 'string' ? e.type : undefined,
        timestamp: typeof e.ts === 'number' ? e.ts : undefined,
        headers: e.headers as Record<string, unknown>,
      },
    };
  });
}
