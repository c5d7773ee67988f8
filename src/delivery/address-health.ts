/**
 * Which of a name's addresses failed a connect lately. A merchant behind two
 * A records, one of them down, answers on the other: a delivery that only
 * spread its connections over both would fail every other attempt. So a
 * connect that fails on one address tries the next, and for a while the
 * address that failed is tried after the others (browsers and curl fall back
 * the same way; RFC 8305 §5). Pure: the clock is passed in.
 */
import ipaddr from 'ipaddr.js';

/**
 * Connect failures that say something about the address, not the merchant's
 * service as a whole: another address of the same name may answer. A TLS or
 * certificate error is the same on every address, so it is not one of them.
 */
const ADDRESS_FAILURES: ReadonlySet<string> = new Set([
  'ECONNREFUSED',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EHOSTDOWN',
  'ENETDOWN',
  'ETIMEDOUT',
  'UND_ERR_CONNECT_TIMEOUT',
]);

/** True when a connect's error says this address failed, so another of the name's addresses is worth a try. */
export function isAddressFailure(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && ADDRESS_FAILURES.has(code);
}

/**
 * One spelling per address: an IPv4-mapped IPv6 address as its IPv4 (the URL
 * parser writes `[::ffff:10.0.0.5]` as `::ffff:a00:5`, which a prefix strip
 * does not undo), IPv6 compressed and lower case.
 */
export function canonicalAddress(address: string): string {
  try {
    return ipaddr.process(address).toString();
  } catch {
    return address.toLowerCase();
  }
}

/**
 * The key an address and port are remembered under, however the address is
 * written: a route has it as DNS spelled it, the connector as undici took it
 * from the endpoint's URL.
 */
export function addressKey(address: string, port: number): string {
  return `${canonicalAddress(address)}|${port}`;
}

export interface AddressHealthOptions {
  /** How long an address that failed a connect is tried after the others. */
  readonly holdMs: number;
  /** Addresses remembered at most (the oldest failure is forgotten first). */
  readonly maxEntries: number;
  /** The clock, in ms (tests pass their own). */
  readonly now?: () => number;
}

/** Addresses whose last connect failed, each until its hold ends; bounded. */
export class AddressHealth {
  private readonly until = new Map<string, number>();
  private readonly now: () => number;

  constructor(private readonly opts: AddressHealthOptions) {
    this.now = opts.now ?? (() => performance.now());
  }

  /** A connect to `key` failed: try it after the others until the hold ends. */
  failed(key: string): void {
    this.until.delete(key);
    if (this.until.size >= this.opts.maxEntries) this.until.delete(this.until.keys().next().value!);
    this.until.set(key, this.now() + this.opts.holdMs);
  }

  /** A connect to `key` succeeded: it is as good as any again. */
  succeeded(key: string): void {
    // Most connects are to addresses that never failed: a size check is cheaper than a delete.
    if (this.until.size > 0) this.until.delete(key);
  }

  /** True while `key` is held back after a failed connect. */
  isHeld(key: string): boolean {
    if (this.until.size === 0) return false;
    const end = this.until.get(key);
    if (end === undefined) return false;
    if (this.now() < end) return true;
    this.until.delete(key);
    return false;
  }

  /** True when one of `keys` is held back (no allocation: an attempt asks it). */
  anyHeld(keys: readonly string[]): boolean {
    if (this.until.size === 0) return false;
    for (const k of keys) if (this.isHeld(k)) return true;
    return false;
  }

  /** Addresses held back now (for tests and the bound). */
  get size(): number {
    return this.until.size;
  }
}

/**
 * The index of the candidate to try next: of those not yet tried and not
 * held back, the one `turn` falls on (so connections spread evenly over the
 * addresses that work); when every untried one is held, the one `turn` falls
 * on among them (a held address is still better than none); -1 once every
 * one has been tried.
 */
export function nextCandidate(count: number, turn: number, tried: (i: number) => boolean, held: (i: number) => boolean): number {
  const good: number[] = [];
  const late: number[] = [];
  for (let i = 0; i < count; i++) {
    if (tried(i)) continue;
    (held(i) ? late : good).push(i);
  }
  const from = good.length > 0 ? good : late;
  return from.length === 0 ? -1 : from[turn % from.length]!;
}
