/**
 * The socket side of a delivery: resolve the name (DnsCache), keep only the
 * addresses the SSRF guard allows, never one that is notifyd itself, and
 * connect to exactly that address, so what was checked is what is used.
 */
import { networkInterfaces } from 'node:os';
import { isIP } from 'node:net';
import type { buildConnector as Connector } from 'undici';
import { buildConnector } from './undici-core.js';
import { classifyAddress, type AddressGuard } from './address-guard.js';
import { addressKey, canonicalAddress, isAddressFailure, nextCandidate, type AddressHealth } from './address-health.js';
import { DnsError, type DnsCache, type ResolvedAddress } from './dns-cache.js';

/** notifyd's own listening ports on this host, and the addresses that are this host. */
export class SelfAddresses {
  private ports = new Set<number>();
  private local = new Set<string>();
  private refreshedAt = -Infinity;
  private changes = 0;

  /** The ports notifyd listens on here (admin, ingress); a delivery never targets them on this host. */
  setPorts(ports: Iterable<number>): void {
    this.ports = new Set([...ports].filter((p) => Number.isInteger(p) && p > 0));
    this.changes++;
  }

  /** Goes up when the ports change, so a verdict remembered from before is decided again. */
  get version(): number {
    return this.changes;
  }

  /** True when `address:port` is one of notifyd's own listeners. */
  isSelf(address: string, port: number): boolean {
    if (!this.ports.has(port)) return false;
    const cls = classifyAddress(address);
    if (cls === 'loopback' || cls === 'unspecified') return true;
    return this.localAddresses().has(canonicalAddress(address));
  }

  private localAddresses(): Set<string> {
    // Interfaces change rarely; a minute-old list is good enough and saves a syscall per connect.
    if (Date.now() - this.refreshedAt > 60_000) {
      this.refreshedAt = Date.now();
      const out = new Set<string>();
      for (const list of Object.values(networkInterfaces())) for (const i of list ?? []) out.add(canonicalAddress(i.address));
      this.local = out;
    }
    return this.local;
  }
}

/** A connect failure with a stable code (the attempt's error code). */
export class ConnectRefusal extends Error {
  constructor(
    /** `DESTINATION_BLOCKED` for an address literal (never changes), `DNS_BLOCKED` for a name (DNS may be wrong for a while). */
    readonly code: 'DESTINATION_BLOCKED' | 'DNS_BLOCKED',
    message: string,
  ) {
    super(message);
    this.name = 'ConnectRefusal';
  }
}

export interface GuardedConnectorOptions {
  readonly timeoutMs: number;
  readonly dns: DnsCache;
  /** Past its TTL, a name's last answer is used once the new one is this late, or at once after DNS failed (`DnsCache.resolveOrLast`). */
  readonly staleAfterMs: number;
  /** null: the guard is off (`allowPrivateNetworks`). */
  readonly guard: AddressGuard | null;
  readonly self: SelfAddresses;
  /** Addresses whose connect failed lately: tried after the others, and told of every connect's end. */
  readonly health: AddressHealth;
}

type ConnectOptions = Parameters<Connector.connector>[0];
type ConnectCallback = Parameters<Connector.connector>[1];

/** What `allowedAddresses` decided: the addresses, or the refusal. */
export type AddressChoice =
  | { readonly addresses: readonly ResolvedAddress[]; readonly refusal: null }
  | { readonly addresses: null; readonly refusal: ConnectRefusal };

/**
 * The addresses of an answer that a delivery may connect to: those the SSRF
 * guard allows and that are not notifyd's own ports here; or why none is. A
 * name whose answer mixes allowed and refused addresses connects only to an
 * allowed one (the refused ones are never tried); an answer with none allowed
 * fails with `DNS_BLOCKED`, which the classification retries down the
 * ladder, since DNS can be wrong for a while (`DESTINATION_BLOCKED` for an
 * address literal, which never changes).
 */
export function allowedAddresses(
  hostname: string,
  port: number,
  addresses: readonly ResolvedAddress[],
  guard: AddressGuard | null,
  self: SelfAddresses,
): AddressChoice {
  const literal = isIP(hostname) !== 0;
  let allowed = addresses;
  if (guard) {
    const refused: string[] = [];
    allowed = addresses.filter((a) => {
      const v = guard.check(a.address);
      if (!v.allowed) refused.push(`${a.address} (${v.addressClass})`);
      return v.allowed;
    });
    if (allowed.length === 0) {
      const what = `destination ${hostname} is ${refused.join(', ')}; allow it with delivery.allowPrivateNetworks or delivery.allowCidrs`;
      return { addresses: null, refusal: new ConnectRefusal(literal ? 'DESTINATION_BLOCKED' : 'DNS_BLOCKED', what) };
    }
  }
  const notSelf = allowed.filter((a) => !self.isSelf(a.address, port));
  if (notSelf.length === 0) {
    const why = `destination ${hostname}:${port} is notifyd's own admin or ingress port`;
    return { addresses: null, refusal: new ConnectRefusal(literal ? 'DESTINATION_BLOCKED' : 'DNS_BLOCKED', why) };
  }
  return { addresses: notSelf, refusal: null };
}

/**
 * An undici `connect` function: resolves the name (past its TTL, the last
 * answer while DNS fails or is late), keeps the `allowedAddresses` and
 * connects to one of them; when that connect fails on the address (refused,
 * unreachable) within the connect timeout, to the next, each address once,
 * those that failed lately last. A connect that timed out is not followed by
 * another, so a connection opens or fails within about one connect timeout;
 * its address is held back for the next ones. The TLS server name stays the
 * URL's host.
 */
export function guardedConnector(opts: GuardedConnectorOptions): Connector.connector {
  const base = buildConnector({ timeout: opts.timeoutMs });
  const health = opts.health;
  let turn = 0;
  return (options: ConnectOptions, callback: ConnectCallback): void => {
    const hostname = options.hostname;
    const port = Number(options.port) || (options.protocol === 'https:' ? 443 : 80);
    const pick = (addresses: readonly ResolvedAddress[]): void => {
      const choice = allowedAddresses(hostname, port, addresses, opts.guard, opts.self);
      if (choice.refusal !== null) return callback(choice.refusal, null);
      const list = choice.addresses;
      // Spread new connections over the allowed addresses of a multi-address answer.
      const first = turn++;
      const began = performance.now();
      const tried = new Array<boolean>(list.length).fill(false);
      const next = (lastError: Error | null): void => {
        // No key is worked out while nothing is held (most connects).
        const i = nextCandidate(list.length, first, (k) => tried[k]!, (k) => health.size > 0 && health.isHeld(addressKey(list[k]!.address, port)));
        if (i === -1) return callback(lastError!, null);
        tried[i] = true;
        const address = list[i]!.address;
        try {
          base({ ...options, hostname: address }, (err, socket) => {
            if (err === null) {
              if (health.size > 0) health.succeeded(addressKey(address, port));
              return callback(null, socket);
            }
            if (!isAddressFailure(err)) return callback(err, null);
            health.failed(addressKey(address, port));
            if (performance.now() - began >= opts.timeoutMs) return callback(err, null);
            next(err);
          });
        } catch (err) {
          callback(err as Error, null);
        }
      };
      next(null);
    };
    const family = isIP(hostname);
    if (family !== 0) return pick([{ address: hostname, family: family as 4 | 6 }]);
    opts.dns.resolveOrLast(hostname, opts.staleAfterMs).then(pick, (err: unknown) => callback(asLookupError(err), null));
  };
}

/** A lookup's failure as a `DnsError` (its code is the attempt's). */
export function asLookupError(err: unknown): DnsError {
  return err instanceof DnsError ? err : new DnsError('DNS_FAILURE', String((err as Error)?.message ?? err));
}
