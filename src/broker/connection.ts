import { hostname } from 'node:os';
import amqp from 'amqplib';
import type { ChannelModel } from 'amqplib';
import { connectionSlot, parseBrokerNodes, rotation, startNodeIndex, type BrokerNode, type ConnectionRole } from '../core/broker-nodes.js';
import { ErrorCodes, NotifyError, toErrorData } from '../core/errors.js';
import { withTimeout } from '../core/with-timeout.js';
import type { Logger } from '../core/logger.js';

/**
 * Short heartbeats so a silent peer (a VM gone, a cable cut) is noticed in
 * 10-15 s (amqplib gives up after two missed intervals), not minutes; a node
 * that stops or is killed closes its sockets and is noticed at once. Below
 * 5 s, RabbitMQ's own docs warn of false positives under load (unless the
 * URL sets its own).
 */
function withHeartbeat(url: string): string {
  return /[?&]heartbeat=/.test(url) ? url : `${url}${url.includes('?') ? '&' : '?'}heartbeat=5`;
}

/** Opens one AMQP connection to one node. */
export type OpenNode = (node: BrokerNode, name: string) => Promise<ChannelModel>;

const openNode: OpenNode = (node, name) =>
  // Nagle stays on (amqplib's default): with TCP_NODELAY every frame goes
  // out as its own packet, and a cold tier 1's retries were later (stop 36 in
  // docs/performance.md; stop 25 had also measured the clean bench slower,
  // which stop 36 did not see again). What Nagle must not hold, a tier
  // worker's acks, is pushed instead (`pushPendingWrites`).
  amqp.connect(withHeartbeat(node.url), { clientProperties: { connection_name: name }, timeout: 5000 });

/** A connection and the node it is on. */
export interface BrokerLink {
  readonly conn: ChannelModel;
  readonly index: number;
  readonly node: BrokerNode;
}

/**
 * Opens an AMQP connection named after its role (shown in the management UI)
 * to the first node of `nodes` that answers, trying them in turn from
 * `startIndex`. When none does, throws `BROKER_UNAVAILABLE` saying why for
 * each node by `host:port`, never by URL.
 */
export async function connectBroker(nodes: readonly BrokerNode[], name: string, startIndex = 0, open: OpenNode = openNode): Promise<BrokerLink> {
  const why: string[] = [];
  let last: unknown;
  for (const index of rotation(nodes.length, startIndex)) {
    const node = nodes[index]!;
    try {
      return { conn: await open(node, name), index, node };
    } catch (err) {
      last = err;
      why.push(nodes.length === 1 ? (err as Error).message : `${node.label}: ${(err as Error).message}`);
    }
  }
  throw new NotifyError(ErrorCodes.BROKER_UNAVAILABLE, `broker unreachable: ${why.join('; ')}`, undefined, { cause: last });
}

/**
 * The cluster as one process walks it: it starts at its own node and, on
 * every new connection, at the node after the one it was on, so a node that
 * was lost is tried last rather than first (a node that vanished silently
 * costs a 5 s connect timeout per try).
 */
export class NodeRing {
  private next: number;
  private current: BrokerNode | null = null;

  constructor(
    readonly nodes: readonly BrokerNode[],
    start: number,
    private readonly open: OpenNode = openNode,
  ) {
    this.next = start;
  }

  /** Connects to the first node that answers; see `connectBroker`. */
  async connect(name: string): Promise<ChannelModel> {
    const link = await connectBroker(this.nodes, name, this.next, this.open);
    this.next = link.index + 1;
    this.current = link.node;
    return link.conn;
  }

  /** The node of the latest connection made; whether it is still up is the caller's to know. */
  get node(): BrokerNode | null {
    return this.current;
  }
}

/**
 * The ring of one process, from the config's `amqpUrl`. Each process of a
 * daemon starts at its own node (see `startNodeIndex`); the seed is the
 * host and the daemon's master pid, which a worker knows as its parent
 * (Node cluster forks it), so no process needs to be told.
 */
export function nodeRingFor(amqpUrl: string, role: ConnectionRole, tier: number | null = null, tierCount = 0, open: OpenNode = openNode): NodeRing {
  const nodes = parseBrokerNodes(amqpUrl);
  const daemonPid = role === 'tier' || role === 'ingress' || role === 'recorder' ? process.ppid : process.pid;
  return new NodeRing(nodes, startNodeIndex(`${hostname()}/${daemonPid}`, connectionSlot(role, tier, tierCount), nodes.length), open);
}

/** Exponential backoff with jitter for reconnect loops. */
export function reconnectDelay(attempt: number, baseMs = 100, maxMs = 5000): number {
  const d = Math.min(maxMs, baseMs * 2 ** Math.min(attempt, 20));
  return Math.round(d * (0.8 + Math.random() * 0.4));
}

/**
 * Calls `open` until it succeeds or `stopped()` says to give up, backing off
 * between tries (200 ms doubling to 5 s, with jitter) and logging each
 * failure as `what`: the reconnect loop of a worker's broker link.
 */
export async function openUntil(open: () => Promise<void>, o: { readonly stopped: () => boolean; readonly signal: AbortSignal; readonly log: Logger; readonly what: string }): Promise<void> {
  for (let attempt = 0; !o.stopped(); attempt++) {
    try {
      await open();
      return;
    } catch (err) {
      // Stopped while it opened (a drain): what it opened was closed, nothing to retry or warn of.
      if (o.stopped()) return;
      const delay = reconnectDelay(attempt, 200, 5000);
      o.log.warn({ err: toErrorData(err), retryInMs: delay }, o.what);
      await sleep(delay, o.signal);
    }
  }
}

/** Resolves after `ms`, or at once when `signal` aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done(): void {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}

/** How long a connection given up while connecting (a call the broker did not answer in time) gets to close before its socket is destroyed. */
export const CLOSE_WITHIN_MS = 2000;

/**
 * What notifyd reads of amqplib's internal connection (a ChannelModel's
 * `connection`; the version notifyd pins, which unit tests run against):
 * its socket, whether it is closed, blocked or closing (`accept`, its frame
 * handler, is replaced when it closes), and its channels' pending calls.
 */
export interface AmqpInternals {
  /** Index 0 is the connection's own; the rest are channels or null. */
  readonly channels?: readonly ({ readonly channel?: { readonly reply?: unknown } } | null)[];
  readonly accept?: unknown;
  /** True while the broker blocks the connection (a memory or disk alarm). */
  readonly blocked?: boolean;
  /** Set once amqplib expects the socket to close: the connection is closed. */
  readonly expectSocketClose?: boolean;
  readonly stream?: { destroy?(err?: Error): void; setNoDelay?(on: boolean): unknown };
}

/** amqplib's internal connection under `conn` (a ChannelModel), or undefined when it has none (a test's stand-in). */
export function amqpInternalsOf(conn: unknown): AmqpInternals | undefined {
  const c = (conn as { connection?: unknown } | null)?.connection;
  return typeof c === 'object' && c !== null ? (c as AmqpInternals) : undefined;
}

/** What `closeWithin` uses of an amqplib ChannelModel (its `connection` is amqplib's internal one). */
export interface ClosableConnection {
  close(): Promise<void>;
  once?(event: 'close', fn: () => void): unknown;
  /** amqplib's internal connection: read for `expectSocketClose` (closed) and `stream` (the socket). */
  readonly connection?: unknown;
}

/**
 * Closes an amqplib connection, waiting at most `ms` for the broker's
 * close-ok; then its socket is destroyed with an error (amqplib listens for
 * the socket's errors, not its close, so that ends its closing state and its
 * heartbeat timers at once). A close already under way (amqplib's close then
 * fails at once) gets the same grace to end, and a connection that closes
 * by itself meanwhile ends the wait. Why: a broker that stopped
 * answering (a channel open that never came back) may not answer the close
 * either, and amqplib's close waits for ever.
 */
export async function closeWithin(conn: ClosableConnection, ms: number): Promise<void> {
  const inner = amqpInternalsOf(conn);
  if (inner?.expectSocketClose === true) return;
  const closed = new Promise<void>((resolve) => void conn.once?.('close', () => resolve()));
  // A failed close: closed already (nothing to do), or closing (wait for it, when the connection can say it ended).
  // Either way it also ends when the connection closes by itself meanwhile (asked from a channel's close handler
  // while amqplib is closing the connection, before it marks it closed: its close-ok then never comes).
  const closing = Promise.race([conn.close().catch(() => (conn.once !== undefined && inner?.expectSocketClose !== true ? closed : undefined)), closed]);
  const ended = await withTimeout(closing, ms, () => new Error('no close-ok in time')).then(
    () => true,
    () => false,
  );
  if (!ended) inner?.stream?.destroy?.(new Error('broker sent no close-ok in time'));
}

/** The part of amqplib's socket `pushPendingWrites` uses. */
export interface NagleSocket {
  setNoDelay(on: boolean): unknown;
}

/**
 * The socket under an amqplib connection (its `connection.stream`), or null
 * when it is not there (an amqplib that keeps it elsewhere: an integration
 * test checks the version notifyd pins).
 */
export function amqpSocketOf(conn: unknown): NagleSocket | null {
  const sock = amqpInternalsOf(conn)?.stream;
  return typeof sock?.setNoDelay === 'function' ? (sock as NagleSocket) : null;
}

/**
 * Sends at once what Nagle's algorithm holds on `conn`'s socket: TCP_NODELAY
 * on and off again (Linux pushes the pending segments when it is turned
 * on; the socket caches the setting, so this assumes Nagle is on, as
 * `openNode` leaves it). False when there is no such socket; a destroyed
 * socket only changes its cached setting.
 *
 * Why: with Nagle a small segment waits while an earlier one is
 * unacknowledged, and a broker with nothing to send back delays its TCP
 * acknowledgement (about 40 ms on Linux). A tier worker whose whole prefetch
 * window is checked out gets nothing from the broker until its acks arrive,
 * so its acks waited for that timer: beside a hanging merchant tier 0 idled
 * 20–40 ms every 60–100 ms while the broker had applied about 250 fewer
 * acks than it had sent, and the healthy merchant got 0.64–0.68× its rate
 * at 10 % (docs/performance.md, stop 36).
 */
export function pushPendingWrites(conn: unknown): boolean {
  const sock = amqpSocketOf(conn);
  if (sock === null) return false;
  sock.setNoDelay(true);
  sock.setNoDelay(false);
  return true;
}
