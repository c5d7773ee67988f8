import { ErrorCodes, NotifyError } from './errors.js';

/**
 * The nodes of one RabbitMQ cluster as `amqpUrl` lists them (comma-separated),
 * and which one a process tries first. Pure: no sockets, no clock, so the
 * config check, the connection code and the tests share one reading.
 */

/** One node of the broker cluster. */
export interface BrokerNode {
  /** The URL as written, credentials included: for connecting only, never for logs. */
  readonly url: string;
  /** `host:port`, safe for logs and status answers. */
  readonly label: string;
}

/** Who opens a connection; the order spreads one daemon's busiest connections over different nodes. */
export type ConnectionRole = 'ingress' | 'tier' | 'master' | 'recorder' | 'client';

function invalid(why: string): never {
  throw new NotifyError(ErrorCodes.CONFIG_INVALID, `amqpUrl: ${why}`, 'amqpUrl');
}

/**
 * Reads `amqpUrl`: one AMQP URL or a comma-separated list of the nodes of one
 * cluster. Throws `CONFIG_INVALID` (field `amqpUrl`) on a malformed entry;
 * the message says which entry by position and never repeats its text, which
 * may hold a password in a form no redaction recognises.
 */
export function parseBrokerNodes(text: string): readonly BrokerNode[] {
  const parts = text.split(',').map((p) => p.trim());
  const nodes: BrokerNode[] = [];
  let vhost: string | null = null;
  parts.forEach((part, i) => {
    const which = parts.length === 1 ? 'the URL' : `entry ${i + 1} of ${parts.length}`;
    if (part === '') invalid(`${which} is empty`);
    let u: URL;
    try {
      u = new URL(part);
    } catch {
      invalid(`${which} is not a URL such as amqp://user:password@host:5672/vhost`);
    }
    if (u.protocol !== 'amqp:' && u.protocol !== 'amqps:') invalid(`${which} must start with amqp:// or amqps://`);
    if (u.hostname === '') invalid(`${which} has no host`);
    const label = `${u.hostname}:${u.port || (u.protocol === 'amqps:' ? '5671' : '5672')}`;
    const dup = nodes.findIndex((n) => n.label === label);
    if (dup >= 0) invalid(`entries ${dup + 1} and ${i + 1} both name ${label}`);
    // One cluster, one set of queues: a node list that mixes virtual hosts would split the topology.
    const path = u.pathname === '' ? '/' : u.pathname;
    if (vhost !== null && path !== vhost) invalid(`${which} names another virtual host than entry 1 (every entry must name the same)`);
    vhost = path;
    nodes.push(Object.freeze({ url: part, label }));
  });
  return Object.freeze(nodes);
}

/** Indices of `count` nodes in the order to try them: `start` first, then the ones after it, wrapping. */
export function rotation(count: number, start: number): number[] {
  const s = ((start % count) + count) % count;
  return Array.from({ length: count }, (_, k) => (s + k) % count);
}

/**
 * A process's position among its daemon's broker connections: the ingress
 * first and tier 0 next (the two busiest, so they land on different nodes),
 * then the other tiers, the master, and the history recorder last. A library
 * client is position 0 of its own process.
 */
export function connectionSlot(role: ConnectionRole, tier: number | null, tierCount: number): number {
  switch (role) {
    case 'ingress':
    case 'client':
      return 0;
    case 'tier':
      return 1 + (tier ?? 0);
    case 'master':
      return 1 + tierCount;
    case 'recorder':
      return 2 + tierCount;
  }
}

/** FNV-1a, 32 bits: a stable, well-spread number from a short string. */
function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}

/**
 * The node a process tries first: its slot, shifted by an offset that
 * depends only on `seed` (one per daemon: its host and master pid). Within a
 * daemon consecutive slots go to consecutive nodes, so its connections are
 * spread as evenly as their number allows; the offset gives each daemon's
 * surplus to another node, so N daemons do not all pile their extra ones on
 * the first node of the list.
 */
export function startNodeIndex(seed: string, slot: number, count: number): number {
  if (count <= 1) return 0;
  return (fnv1a(seed) + slot) % count;
}
