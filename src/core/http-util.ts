import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, Server } from 'node:http';
import { ErrorCodes, NotifyError, hasCode, type ErrorData } from './errors.js';

/**
 * Constant-time check of an `Authorization: Bearer <token>` header. Both sides
 * are hashed first so the comparison takes the same time whatever the lengths.
 */
export function tokenMatches(header: string | undefined, expected: string): boolean {
  return new BearerTokens({ '': expected }).match(header) !== null;
}

const sha256 = (s: string): Buffer => createHash('sha256').update(s).digest();

/**
 * Named bearer tokens (producer → token). `match` compares the presented
 * token with every one, hashed, in constant time, whichever matches, so the
 * time taken tells nothing about which one did or how much of one matched.
 */
export class BearerTokens {
  private readonly digests: readonly (readonly [string, Buffer])[];

  constructor(named: Readonly<Record<string, string>>) {
    this.digests = Object.entries(named).map(([name, token]) => [name, sha256(token)] as const);
  }

  get size(): number {
    return this.digests.length;
  }

  /** The name of the token an `Authorization: Bearer <token>` header carries, or null. */
  match(header: string | undefined): string | null {
    const m = header ? /^Bearer\s+(.+)$/i.exec(header.trim()) : null;
    const presented = sha256(m ? m[1]! : '');
    let found: string | null = null;
    for (const [name, digest] of this.digests) {
      if (timingSafeEqual(presented, digest) && m && found === null) found = name;
    }
    return found;
  }
}

/** Closes an HTTP server now: open keep-alive connections are cut, not waited for. */
export async function closeServerNow(server: Server | null): Promise<void> {
  if (!server) return;
  server.closeAllConnections();
  await new Promise<void>((r) => server.close(() => r()));
}

const STATUS_FOR: Partial<Record<ErrorData['code'], number>> = {
  VALIDATION: 400,
  BAD_JSON: 400,
  BODY_TOO_LARGE: 413,
  NOT_FOUND: 404,
  METHOD_NOT_ALLOWED: 405,
  UNSUPPORTED_MEDIA_TYPE: 415,
  UNAUTHORIZED: 401,
  FORBIDDEN: 403,
  BROKER_UNAVAILABLE: 503,
  BROKER_NACK: 503,
  BROKER_CONFIRM_TIMEOUT: 503,
  BROKER_BLOCKED: 503,
  OVERLOADED: 503,
  DRAINING: 503,
  TIER_UNKNOWN: 404,
  CONFIG_INVALID: 400,
  UNKNOWN_MERCHANT: 400,
  MERCHANT_DISABLED: 409,
  MERCHANT_NOT_FOUND: 404,
  MERCHANT_EXISTS: 409,
  MERCHANTS_DISABLED: 501,
  REGISTRY_UNAVAILABLE: 503,
  HISTORY_DISABLED: 501,
  NOTIFICATION_PENDING: 409,
  NOT_RESENDABLE: 409,
  HISTORY_UNAVAILABLE: 503,
  REQUEST_TIMEOUT: 504,
};

/**
 * A 405 for a path that takes only `allow` (listed in the `Allow` header the
 * servers send with it, as RFC 9110 requires of a 405). HEAD goes in the
 * header where GET answers it, not in the message.
 */
export function methodNotAllowed(allow: readonly [string, ...string[]]): NotifyError {
  const named = allow.length > 1 ? allow.filter((m) => m !== 'HEAD') : allow;
  const words = named.length === 1 ? named[0] : `${named.slice(0, -1).join(', ')} or ${named[named.length - 1]}`;
  return Object.assign(new NotifyError(ErrorCodes.METHOD_NOT_ALLOWED, `use ${words}`), { allow: allow.join(', ') });
}

/** The `Allow` header for an error made by `methodNotAllowed`; undefined for any other. */
export function allowHeaderOf(err: unknown): string | undefined {
  const allow = (err as { code?: unknown; allow?: unknown } | null)?.allow;
  return hasCode(err, ErrorCodes.METHOD_NOT_ALLOWED) && typeof allow === 'string' ? allow : undefined;
}

/** HTTP status for an error code (anything unknown is a 500). */
export function statusForError(code: ErrorData['code']): number {
  return STATUS_FOR[code] ?? 500;
}

/** Reads a request body up to `limit` bytes; past it, fails with `BODY_TOO_LARGE` without buffering the rest. */
export function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length']);
    if (Number.isFinite(declared) && declared > limit) {
      req.resume();
      return reject(new NotifyError(ErrorCodes.BODY_TOO_LARGE, `body over ${limit} bytes`));
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let failed = false;
    req.on('data', (c: Buffer) => {
      if (failed) return;
      size += c.length;
      if (size > limit) {
        failed = true;
        reject(new NotifyError(ErrorCodes.BODY_TOO_LARGE, `body over ${limit} bytes`));
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => {
      if (!failed) resolve(Buffer.concat(chunks));
    });
    req.on('error', (err) => {
      if (!failed) reject(err);
    });
  });
}
