import { createHash, timingSafeEqual } from 'node:crypto';
import type { Server } from 'node:http';

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
