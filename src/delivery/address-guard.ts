/**
 * SSRF guard for webhook destinations (DESIGN §6, last bullet): the class of
 * an address and whether the configuration allows it.
 * {@link AddressGuard.assertHostAllowed} decides literal hosts before a
 * request is made; names are decided by the connector (connector.ts) on the
 * very addresses the socket then connects to, so a name that resolves
 * differently between a check and the connect (DNS rebinding) gains nothing.
 */
import { BlockList, isIP } from 'node:net';
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

// --- parsing ---------------------------------------------------------------

/** Strips an IPv6 zone id (`fe80::1%eth0`): the zone picks an interface, not a different address. */
function stripZone(ip: string): string {
  const i = ip.indexOf('%');
  return i === -1 ? ip : ip.slice(0, i);
}

function parseV4(ip: string): number {
  const p = ip.split('.').map(Number);
  return ((p[0]! << 24) | (p[1]! << 16) | (p[2]! << 8) | p[3]!) >>> 0;
}

/** Eight 16-bit groups; the input has already passed `isIP(...) === 6`. */
function parseV6(ip: string): number[] {
  let text = ip;
  const tail: number[] = [];
  // A trailing dotted quad (`::ffff:1.2.3.4`) stands for the last two groups.
  const lastColon = text.lastIndexOf(':');
  if (text.includes('.', lastColon)) {
    const v4n = parseV4(text.slice(lastColon + 1));
    tail.push(v4n >>> 16, v4n & 0xffff);
    text = text.slice(0, lastColon);
    // `::1.2.3.4` and `a::1.2.3.4` lose one colon of their `::` above.
    if (text.endsWith(':')) text += ':';
  }
  const groups = (s: string): number[] => (s === '' ? [] : s.split(':').map((g) => parseInt(g, 16)));
  const gap = text.indexOf('::');
  if (gap === -1) return [...groups(text), ...tail];
  const left = groups(text.slice(0, gap));
  const right = [...groups(text.slice(gap + 2)), ...tail];
  return [...left, ...new Array<number>(8 - left.length - right.length).fill(0), ...right];
}

// --- classification --------------------------------------------------------

type V4Rule = readonly [base: number, prefix: number, cls: AddressClass];

function v4(cidr: string, cls: AddressClass): V4Rule {
  const [addr, len] = cidr.split('/');
  return [parseV4(addr!), len === undefined ? 32 : Number(len), cls];
}

// First match wins, so the single metadata addresses sit ahead of the
// link-local, CGNAT and reserved ranges that contain them.
const V4_RULES: readonly V4Rule[] = [
  v4('169.254.169.254', 'metadata'), // AWS, GCP, Azure, OpenStack, DigitalOcean
  v4('100.100.100.200', 'metadata'), // Alibaba Cloud
  v4('192.0.0.192', 'metadata'), // Oracle Cloud
  v4('0.0.0.0/8', 'unspecified'),
  v4('127.0.0.0/8', 'loopback'),
  v4('10.0.0.0/8', 'private'),
  v4('172.16.0.0/12', 'private'),
  v4('192.168.0.0/16', 'private'),
  v4('169.254.0.0/16', 'link-local'),
  v4('100.64.0.0/10', 'cgnat'),
  v4('224.0.0.0/4', 'multicast'),
  v4('240.0.0.0/4', 'reserved'), // includes 255.255.255.255
  v4('192.0.0.0/24', 'reserved'), // IETF protocol assignments
  v4('192.0.2.0/24', 'reserved'), // TEST-NET-1
  v4('192.88.99.0/24', 'reserved'), // deprecated 6to4 relay anycast
  v4('198.18.0.0/15', 'reserved'), // benchmarking
  v4('198.51.100.0/24', 'reserved'), // TEST-NET-2
  v4('203.0.113.0/24', 'reserved'), // TEST-NET-3
];

function classifyV4(n: number): AddressClass {
  for (const [base, prefix, cls] of V4_RULES) {
    const mask = prefix === 0 ? 0 : (~0 << (32 - prefix)) >>> 0;
    if (((n & mask) >>> 0) === base) return cls;
  }
  return 'public';
}

/** True when the first `bits` bits of `g` equal those of `prefix` (groups, zero-padded). */
function hasPrefix(g: readonly number[], prefix: readonly number[], bits: number): boolean {
  for (let i = 0; bits > 0; i++, bits -= 16) {
    const take = Math.min(16, bits);
    const mask = (0xffff << (16 - take)) & 0xffff;
    if ((g[i]! & mask) !== ((prefix[i] ?? 0) & mask)) return false;
  }
  return true;
}

const embedded = (hi: number, lo: number): number => ((hi << 16) | lo) >>> 0;

/**
 * The IPv4 address an IPv6 address stands for, when the stack or a translator
 * would actually deliver to that IPv4 address: otherwise `::ffff:127.0.0.1`,
 * NAT64 or 6to4 would be a way round the IPv4 rules.
 */
function embeddedV4(g: readonly number[]): number | undefined {
  const zero5 = g[0] === 0 && g[1] === 0 && g[2] === 0 && g[3] === 0 && g[4] === 0;
  if (zero5 && g[5] === 0xffff) return embedded(g[6]!, g[7]!); // ::ffff:0:0/96 mapped
  if (zero5 && g[5] === 0) return embedded(g[6]!, g[7]!); // ::/96 compatible (deprecated)
  if (g[0] === 0 && g[1] === 0 && g[2] === 0 && g[3] === 0 && g[4] === 0xffff && g[5] === 0) {
    return embedded(g[6]!, g[7]!); // ::ffff:0:0:0/96 SIIT translated
  }
  if (hasPrefix(g, [0x64, 0xff9b], 96)) return embedded(g[6]!, g[7]!); // NAT64 well-known prefix
  if (g[0] === 0x2002) return embedded(g[1]!, g[2]!); // 6to4
  return undefined;
}

function classifyV6(g: readonly number[]): AddressClass {
  const isAll = (last: number): boolean => g.slice(0, 7).every((x) => x === 0) && g[7] === last;
  if (isAll(0)) return 'unspecified';
  if (isAll(1)) return 'loopback';
  const v4n = embeddedV4(g);
  if (v4n !== undefined) return classifyV4(v4n);
  if (hasPrefix(g, [0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x254], 128)) return 'metadata'; // AWS IPv6 IMDS
  if (hasPrefix(g, [0xff00], 8)) return 'multicast';
  if (hasPrefix(g, [0xfe80], 10)) return 'link-local';
  if (hasPrefix(g, [0xfec0], 10)) return 'private'; // deprecated site-local, the old ULA
  if (hasPrefix(g, [0xfc00], 7)) return 'unique-local';
  // Local-use NAT64 (RFC 8215): where the IPv4 sits depends on the operator's
  // prefix length, so it cannot be decoded; refuse it rather than guess.
  if (hasPrefix(g, [0x64, 0xff9b, 0x1], 48)) return 'reserved';
  if (hasPrefix(g, [0x100], 64)) return 'reserved'; // discard-only
  if (hasPrefix(g, [0x2001, 0xdb8], 32)) return 'reserved'; // documentation
  // IETF protocol assignments, Teredo among them, whose embedded client
  // address is obfuscated and which no merchant endpoint needs.
  if (hasPrefix(g, [0x2001], 23)) return 'reserved';
  if (hasPrefix(g, [0x3fff], 20)) return 'reserved'; // documentation (RFC 9637)
  if (hasPrefix(g, [0x5f00], 16)) return 'reserved'; // SRv6 SIDs (RFC 9602)
  // Only 2000::/3 is allocated as global unicast; anything else is not a
  // destination on the public Internet.
  if (!hasPrefix(g, [0x2000], 3)) return 'reserved';
  return 'public';
}

/**
 * Classifies an IPv4 or IPv6 address (zone ids allowed, no brackets). IPv6
 * forms that carry an IPv4 address (mapped, compatible, SIIT, NAT64
 * `64:ff9b::/96`, 6to4 `2002::/16`) take the class of that IPv4 address.
 * Anything unparsable is `reserved`. Pure.
 */
export function classifyAddress(ip: string): AddressClass {
  const bare = stripZone(ip);
  switch (isIP(bare)) {
    case 4:
      return classifyV4(parseV4(bare));
    case 6:
      return classifyV6(parseV6(bare));
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

  function check(ip: string): { allowed: boolean; addressClass: AddressClass } {
    const bare = stripZone(ip);
    const addressClass = classifyAddress(bare);
    if (addressClass === 'public' || opts.allowPrivateNetworks) return { allowed: true, addressClass };
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
