import { createSocket, type RemoteInfo, type Socket } from 'node:dgram';
import { isIPv4, isIPv6 } from 'node:net';

/** Records to serve for a name; `ttl` is in seconds (default 60). */
export interface DnsRecords {
  readonly a?: readonly string[];
  readonly aaaa?: readonly string[];
  readonly ttl?: number;
}

/**
 * How the stub answers a name: records (NOERROR, possibly empty for the asked
 * type), an error rcode, or `'blackhole'` to drop the query so the client times out.
 */
export type DnsAnswer = DnsRecords | 'blackhole' | 'nxdomain' | 'servfail';

/** `host` to bind (default `127.0.0.1`) and UDP `port` (default 0 = any free port). */
export interface DnsStubOptions {
  readonly host?: string;
  readonly port?: number;
}

const TYPE_A = 1;
const TYPE_AAAA = 28;
const TYPE_OPT = 41;
const RCODE = { nxdomain: 3, servfail: 2 } as const;

/**
 * A tiny authoritative DNS server over UDP, for pointing `dns.Resolver#setServers`
 * at in tests and benchmarks. Answers A and AAAA from a table; any other type
 * gets an empty NOERROR. No TCP, so answers must fit one datagram (a few dozen
 * addresses): keep record sets small.
 */
export class DnsStub {
  private socket: Socket | null = null;
  private closing: Promise<void> | null = null;
  private readonly exact = new Map<string, DnsAnswer>();
  private readonly wildcards = new Map<string, DnsAnswer>();
  private fallback: DnsAnswer = 'nxdomain';
  private readonly counts = new Map<string, number>();
  private total = 0;
  private readonly host: string;
  private port: number;

  constructor(opts: DnsStubOptions = {}) {
    this.host = opts.host ?? '127.0.0.1';
    this.port = opts.port ?? 0;
  }

  /** Binds the socket; resolves with the UDP port. */
  async start(): Promise<number> {
    const socket = createSocket(isIPv6(this.host) ? 'udp6' : 'udp4');
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.bind(this.port, this.host, () => {
        socket.off('error', reject);
        resolve();
      });
    });
    // A send failure to one client (e.g. it went away) must not crash the test run.
    socket.on('error', () => {});
    socket.on('message', (msg, rinfo) => this.onMessage(msg, rinfo));
    this.socket = socket;
    this.port = socket.address().port;
    return this.port;
  }

  /** `host:port` as `dns.Resolver#setServers` wants it. */
  get address(): string {
    return isIPv6(this.host) ? `[${this.host}]:${this.port}` : `${this.host}:${this.port}`;
  }

  /**
   * Sets the answer for `name` (case-insensitive, trailing dot optional).
   * `*.suffix` matches any name strictly below `suffix`; the longest matching
   * wildcard wins, and an exact name beats any wildcard.
   */
  set(name: string, answer: DnsAnswer): void {
    if (typeof answer === 'object') {
      const ttl = answer.ttl ?? 60;
      if (!Number.isInteger(ttl) || ttl < 0 || ttl > 0x7fffffff) throw new RangeError(`bad ttl: ${ttl}`);
      for (const ip of answer.a ?? []) if (!isIPv4(ip)) throw new TypeError(`not an IPv4 address: ${ip}`);
      for (const ip of answer.aaaa ?? []) if (!isIPv6(ip) || ip.includes('%')) throw new TypeError(`not an IPv6 address (no zone): ${ip}`);
    }
    const key = normalize(name);
    if (key.startsWith('*.')) this.wildcards.set(key.slice(2), answer);
    else this.exact.set(key, answer);
  }

  /** Answer for names matched by no `set` rule (initially `'nxdomain'`). */
  setDefault(answer: DnsAnswer): void {
    this.fallback = answer;
  }

  /** Queries received (answered or not) for `name`, or in total without it. */
  queries(name?: string): number {
    return name === undefined ? this.total : (this.counts.get(normalize(name)) ?? 0);
  }

  /** Closes the socket; safe to call more than once. */
  close(): Promise<void> {
    const socket = this.socket;
    this.closing ??= socket ? new Promise<void>((resolve) => socket.close(() => resolve())) : Promise.resolve();
    return this.closing;
  }

  private lookup(name: string): DnsAnswer {
    const exact = this.exact.get(name);
    if (exact !== undefined) return exact;
    for (let dot = name.indexOf('.'); dot !== -1; dot = name.indexOf('.', dot + 1)) {
      const rule = this.wildcards.get(name.slice(dot + 1));
      if (rule !== undefined) return rule;
    }
    return this.fallback;
  }

  private onMessage(msg: Buffer, rinfo: RemoteInfo): void {
    const q = parseQuery(msg);
    if (!q) return;
    this.total++;
    this.counts.set(q.name, (this.counts.get(q.name) ?? 0) + 1);
    const answer = this.lookup(q.name);
    if (answer === 'blackhole') return;
    const records: Buffer[] = [];
    if (typeof answer === 'object' && q.qclass === 1) {
      const ttl = answer.ttl ?? 60;
      if (q.qtype === TYPE_A) for (const ip of answer.a ?? []) records.push(record(TYPE_A, ttl, Buffer.from(ip.split('.').map(Number))));
      if (q.qtype === TYPE_AAAA) for (const ip of answer.aaaa ?? []) records.push(record(TYPE_AAAA, ttl, ipv6Bytes(ip)));
    }
    const rcode = typeof answer === 'string' ? RCODE[answer] : 0;
    // QR | AA | RD echoed | RA | rcode; then QDCOUNT, ANCOUNT, NSCOUNT, ARCOUNT.
    const flags = 0x8000 | 0x0400 | (msg.readUInt16BE(2) & 0x0100) | 0x0080 | rcode;
    const header = Buffer.alloc(12);
    [msg.readUInt16BE(0), flags, 1, records.length, 0, q.edns ? 1 : 0].forEach((v, i) => header.writeUInt16BE(v, i * 2));
    // RFC 6891: a responder that knows EDNS returns an OPT when the query carried one (UDP size 1232).
    const opt = q.edns ? Buffer.from([0, 0, TYPE_OPT, 0x04, 0xd0, 0, 0, 0, 0, 0, 0]) : Buffer.alloc(0);
    const reply = Buffer.concat([header, msg.subarray(12, q.end), ...records, opt]);
    this.socket?.send(reply, rinfo.port, rinfo.address);
  }
}

interface Query {
  readonly name: string;
  readonly qtype: number;
  readonly qclass: number;
  /** Offset just past the question, so the reply can echo it byte for byte (c-ares compares it). */
  readonly end: number;
  readonly edns: boolean;
}

/** Parses a standard query with one question; `null` for anything else. */
function parseQuery(msg: Buffer): Query | null {
  if (msg.length < 12) return null;
  const flags = msg.readUInt16BE(2);
  if (flags & 0x8000 || (flags >> 11) & 0xf || msg.readUInt16BE(4) !== 1) return null;
  const labels: string[] = [];
  let off = 12;
  for (;;) {
    if (off >= msg.length) return null;
    const len = msg[off]!;
    // A query's QNAME has nothing earlier to point at, so a compression pointer (or reserved 0x40/0x80 bits) is malformed.
    if (len & 0xc0) return null;
    off++;
    if (len === 0) break;
    if (off + len > msg.length) return null;
    labels.push(msg.toString('latin1', off, off + len));
    off += len;
  }
  if (off - 12 > 255 || off + 4 > msg.length) return null;
  const end = off + 4;
  // Only look for OPT where it would sit if the query has no answer/authority records, which is all a stub resolver sends.
  const edns = msg.readUInt16BE(10) > 0 && msg[end] === 0 && end + 3 <= msg.length && msg.readUInt16BE(end + 1) === TYPE_OPT;
  return { name: normalize(labels.join('.')), qtype: msg.readUInt16BE(off), qclass: msg.readUInt16BE(off + 2), end, edns };
}

function normalize(name: string): string {
  return name.toLowerCase().replace(/\.$/, '');
}

/** One answer record whose owner is a pointer to the question name at offset 12. */
function record(type: number, ttl: number, rdata: Buffer): Buffer {
  const rr = Buffer.from([0xc0, 0x0c, type >> 8, type & 0xff, 0, 1, 0, 0, 0, 0, rdata.length >> 8, rdata.length & 0xff]);
  rr.writeUInt32BE(ttl, 6);
  return Buffer.concat([rr, rdata]);
}

function ipv6Bytes(ip: string): Buffer {
  let text = ip;
  // An embedded IPv4 tail (::ffff:1.2.3.4) becomes two hex groups so one split handles every form.
  const v4 = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text);
  if (v4) {
    const [a, b, c, d] = v4.slice(1).map(Number) as [number, number, number, number];
    text = text.slice(0, v4.index) + `${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head, tail] = text.split('::') as [string, string | undefined];
  const [h, t] = [head, tail].map((s) => (s ? s.split(':') : [])) as [string[], string[]];
  const all = tail === undefined ? h : [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t];
  const out = Buffer.alloc(16);
  all.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), i * 2));
  return out;
}
