/**
 * SSRF guard for webhook destinations (DESIGN §6, last bullet): the class of
 * an address and whether the configuration allows it.
 * {@link AddressGuard.assertHostAllowed} decides literal hosts before a
 * request is made; names are decided by the connector (connector.ts) on the
 * very addresses the socket then connects to, so a name that resolves
 * differently between a check and the connect (DNS rebinding) gains nothing.
 */
import { BlockList, isIP } from 'node:net';
import ipaddr from 'ipaddr.js';
import { ErrorCodes, NotifyError } from '../core/errors.js';

/** What kind of network an address belongs to; everything but `public` is refused by default. */
export type AddressClass =
  | 'public'
  | 'loopback'
  | 'private'
  | 'link-local'
  | 'cgnat'
  | 'unique-local'
  | 'metadata'
  | 'multicast'
  | 'unspecified'
  | 'reserved';

/** Which non-public destinations the guard lets through. */
export interface GuardOptions {
  /** Allow every non-public class (a deployment that delivers inside its own network). */
  allowPrivateNetworks: boolean;
  /** CIDRs (`127.0.0.0/8`, `::1/128`) or single addresses allowed whatever their class. */
  allowCidrs: readonly string[];
}

/** A guard built from {@link GuardOptions}; see {@link createAddressGuard}. */
export interface AddressGuard {
  /**
   * Decides on one IP address: allowed unless its class is not `public` and
   * neither `allowPrivateNetworks` nor an `allowCidrs` entry covers it.
   * Unparsable input is class `reserved`.
   */
  check(ip: string): { allowed: boolean; addressClass: AddressClass };
  /**
   * Throws a `NotifyError` with code `DESTINATION_BLOCKED` when a literal-IP
   * host is refused. Host names pass: they are checked at connect time by
   * the connector. Takes a hostname as `new URL().hostname` gives
   * it (IPv6 in brackets); numeric forms WHATWG would turn into IPv4
   * (`0x7f.1`, `2130706433`) are normalised the same way first.
   */
  assertHostAllowed(hostname: string): void;
}

/** Strips an IPv6 zone id (`fe80::1%eth0`): the zone picks an interface, not a different address. */
function stripZone(ip: string): string {
  const i = ip.indexOf('%');
  return i === -1 ? ip : ip.slice(0, i);
}

// --- classification --------------------------------------------------------
//
// ipaddr.js's range() names the IANA special-purpose ranges; notifyd adds
// only its own policy: the cloud metadata addresses, what an IPv6 address
// carrying an IPv4 one is, and that nothing outside 2000::/3 is public.

type Cidr = [ipaddr.IPv4 | ipaddr.IPv6, number];
const cidr = (text: string): Cidr => (text.includes('/') ? ipaddr.parseCIDR(text) : [ipaddr.parse(text), text.includes(':') ? 128 : 32]);

/** Instance metadata services: a request there reads the cloud credentials of the host. */
const METADATA: readonly Cidr[] = [
  '169.254.169.254', // AWS, GCP, Azure, OpenStack, DigitalOcean
  '100.100.100.200', // Alibaba Cloud
  '192.0.0.192', // Oracle Cloud
  'fd00:ec2::254', // AWS IPv6 IMDS
].map(cidr);

const V4_CLASS: Readonly<Record<string, AddressClass>> = {
  unspecified: 'unspecified',
  broadcast: 'reserved',
  multicast: 'multicast',
  linkLocal: 'link-local',
  loopback: 'loopback',
  carrierGradeNat: 'cgnat',
  private: 'private',
  reserved: 'reserved',
  // as112 and amt are public anycast services: reachable, as any public address.
};

const V6_CLASS: Readonly<Record<string, AddressClass>> = {
  unspecified: 'unspecified',
  loopback: 'loopback',
  linkLocal: 'link-local',
  multicast: 'multicast',
  uniqueLocal: 'unique-local',
  deprecatedSiteLocal: 'private', // the old ULA
  discard: 'reserved',
  // IETF protocol assignments in 2001::/23, Teredo among them, whose embedded
  // client address is obfuscated and which no merchant endpoint needs.
  teredo: 'reserved',
  benchmarking: 'reserved',
  amt: 'reserved',
  deprecatedOrchid: 'reserved',
  orchid2: 'reserved',
  droneRemoteIdProtocolEntityTags: 'reserved',
  segmentRouting: 'reserved',
  reserved: 'reserved',
};

const NAT64_WELL_KNOWN = cidr('64:ff9b::/96');
const IETF_ASSIGNMENTS = cidr('2001::/23');
const GLOBAL_UNICAST = cidr('2000::/3');

const v4Of = (b: readonly number[], at: number): ipaddr.IPv4 => new ipaddr.IPv4([b[at]!, b[at + 1]!, b[at + 2]!, b[at + 3]!]);

/**
 * The IPv4 address an IPv6 address stands for, when the stack or a translator
 * would actually deliver to that IPv4 address: otherwise `::ffff:127.0.0.1`,
 * NAT64 or 6to4 would be a way round the IPv4 rules.
 */
function embeddedV4(a: ipaddr.IPv6, range: string): ipaddr.IPv4 | undefined {
  const b = a.toByteArray();
  switch (range) {
    case 'ipv4Mapped': // ::ffff:0:0/96
    case 'rfc6145': // ::ffff:0:0:0/96 SIIT translated
      return v4Of(b, 12);
    case 'rfc6052': // NAT64: the well-known prefix only (see classifyV6)
      return a.match(NAT64_WELL_KNOWN) ? v4Of(b, 12) : undefined;
    case '6to4': // 2002::/16
      return v4Of(b, 2);
    default:
      // ::/96 IPv4-compatible (deprecated); :: and ::1 have ranges of their own.
      return range === 'unicast' && a.parts.slice(0, 6).every((p) => p === 0) ? v4Of(b, 12) : undefined;
  }
}

function classifyV4(a: ipaddr.IPv4): AddressClass {
  if (METADATA.some((m) => m[0].kind() === 'ipv4' && a.match(m))) return 'metadata';
  return V4_CLASS[a.range()] ?? 'public';
}

function classifyV6(a: ipaddr.IPv6): AddressClass {
  const range = a.range();
  const v4 = embeddedV4(a, range);
  if (v4 !== undefined) return classifyV4(v4);
  if (METADATA.some((m) => m[0].kind() === 'ipv6' && a.match(m))) return 'metadata';
  // Local-use NAT64 (RFC 8215): where the IPv4 sits depends on the operator's
  // prefix length, so it cannot be decoded; refuse it rather than guess.
  if (range === 'rfc6052') return 'reserved';
  if (range === 'as112v6' && a.match(IETF_ASSIGNMENTS)) return 'reserved';
  const cls = V6_CLASS[range];
  if (cls !== undefined) return cls;
  // Only 2000::/3 is allocated as global unicast; anything else is not a
  // destination on the public Internet.
  return a.match(GLOBAL_UNICAST) ? 'public' : 'reserved';
}

/**
 * Classifies an IPv4 or IPv6 address (zone ids allowed, no brackets). IPv6
 * forms that carry an IPv4 address (mapped, compatible, SIIT, NAT64
 * `64:ff9b::/96`, 6to4 `2002::/16`) take the class of that IPv4 address.
 * Anything unparsable is `reserved`. Pure.
 */
export function classifyAddress(ip: string): AddressClass {
  const bare = stripZone(ip);
  // node's isIP decides what an address is (only dotted quads for IPv4), as the connector sees it:
  // ipaddr.js would also read `0x7f.1` or `127.1` as addresses.
  switch (isIP(bare)) {
    case 4:
      return classifyV4(ipaddr.IPv4.parse(bare));
    case 6:
      return classifyV6(ipaddr.IPv6.parse(bare));
    default:
      return 'reserved';
  }
}

// --- guard -----------------------------------------------------------------

function buildAllowList(cidrs: readonly string[]): BlockList {
  const list = new BlockList();
  for (const entry of cidrs) {
    const [addr = '', len, extra] = entry.trim().split('/');
    const family = isIP(addr);
    const max = family === 4 ? 32 : 128;
    const prefix = len === undefined ? max : Number(len);
    if (family === 0 || extra !== undefined || !/^\d+$/.test(len ?? String(max)) || prefix > max) {
      throw new NotifyError(
        ErrorCodes.CONFIG_INVALID,
        `delivery.allowCidrs: "${entry}" is not a CIDR (use e.g. 127.0.0.0/8 or ::1/128)`,
        'delivery.allowCidrs',
      );
    }
    list.addSubnet(addr, prefix, family === 4 ? 'ipv4' : 'ipv6');
  }
  return list;
}

/**
 * WHATWG's "ends in a number" test: such a host is an IPv4 address in some
 * notation (`0x7f.1`, `2130706433`, `0177.0.0.1`) or invalid, never a name,
 * and getaddrinfo would read it as an address too.
 */
function endsInNumber(host: string): boolean {
  const labels = host.split('.');
  if (labels.length > 1 && labels[labels.length - 1] === '') labels.pop();
  const last = labels[labels.length - 1] ?? '';
  return /^\d+$/.test(last) || /^0x[0-9a-f]*$/i.test(last);
}

function blocked(what: string, ip: string, cls: AddressClass): NotifyError {
  return new NotifyError(
    ErrorCodes.DESTINATION_BLOCKED,
    `destination ${what} is ${cls} address ${ip}; allow it with delivery.allowPrivateNetworks or delivery.allowCidrs`,
  );
}

/**
 * Builds the guard.
 * Throws `CONFIG_INVALID` (field `delivery.allowCidrs`) for a malformed entry.
 */
export function createAddressGuard(opts: GuardOptions): AddressGuard {
  const allowList = buildAllowList(opts.allowCidrs);
  // Read once: the options object is the worker's delivery configuration, and a tier's warm-up builds its guard
  // from another (src/tier/warm-up.ts); `check` then runs on no object of either.
  const allowAll = opts.allowPrivateNetworks;

  function check(ip: string): { allowed: boolean; addressClass: AddressClass } {
    const bare = stripZone(ip);
    const addressClass = classifyAddress(bare);
    if (addressClass === 'public' || allowAll) return { allowed: true, addressClass };
    const family = isIP(bare);
    // BlockList itself matches ::ffff:a.b.c.d against IPv4 entries, which is
    // right: the kernel connects a mapped address as that IPv4 address.
    const allowed = family !== 0 && allowList.check(bare, family === 4 ? 'ipv4' : 'ipv6');
    return { allowed, addressClass };
  }

  function assertHostAllowed(hostname: string): void {
    let host = hostname.startsWith('[') && hostname.endsWith(']') ? hostname.slice(1, -1) : hostname;
    if (isIP(stripZone(host)) === 0) {
      if (!endsInNumber(host)) return;
      try {
        host = new URL(`http://${host}/`).hostname;
      } catch {
        throw blocked(hostname, hostname, 'reserved');
      }
    }
    const { allowed, addressClass } = check(host);
    if (!allowed) throw blocked(hostname, host, addressClass);
  }

  return { check, assertHostAllowed };
}
