// A broker that keeps a connection but answers nothing on it (a node stuck
// after a partition, an overloaded channel process) must not keep the master
// or a tier worker from ever reconnecting: their calls while connecting are
// bounded (src/broker/open-within.ts, withTimeout), and the connection they
// give up is closed within a grace, its socket destroyed when the broker sends
// no close-ok. Real daemon, real RabbitMQ, behind a proxy that, from a chosen
// call of a chosen connection on, drops everything the client sends but its
// heartbeats, so the broker never sees those calls nor the close.
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import net from 'node:net';
import { AMQP_URL, DaemonProcess, deletePrefix, uniquePrefix, waitFor } from '../../bench/daemon-process.js';
import { queueInfo } from '../../bench/bench-util.js';
import { namesFor } from '../../src/broker/topology.js';
import { MerchantStub } from '../../bench/merchant-stub.js';

const SCHEDULE = '0s,200ms';

/** AMQP 0-9-1 frame types and method ids the proxy looks at. */
const FRAME_METHOD = 1;
const FRAME_HEARTBEAT = 8;
const CONNECTION_START_OK = [10, 11] as const;
const CONNECTION_CLOSE = [10, 50] as const;
/** Channel.Open, Queue.Declare, Basic.Consume and Basic.Cancel, the calls the tests stall. */
const CHANNEL_OPEN = [20, 10] as const;
const QUEUE_DECLARE = [50, 10] as const;
const BASIC_CONSUME = [60, 20] as const;
const BASIC_CANCEL = [60, 30] as const;

interface ProxiedConnection {
  /** The client's connection name, read from its Connection.StartOk properties ('' until then). */
  name: string;
  /** Method frames the client sent, by `class.method`. */
  readonly calls: Map<string, number>;
  /** When the proxy began to drop this connection's frames, and when the client's socket closed (ms since the epoch; 0: not yet). */
  stalledAt: number;
  closedAt: number;
  /** Frames dropped since, heartbeats aside, and of them Connection.Close frames. */
  dropped: number;
  closesDropped: number;
}

/** Which connection to stall, and at the how-manieth (from 0) of which call. */
interface StallRule {
  readonly name: string;
  /** Which connection of that name, from 0. */
  readonly connection: number;
  readonly call: readonly [number, number];
  readonly nth: number;
}

/**
 * A TCP proxy to the broker. On a connection a rule names, from the chosen
 * call on, it drops every frame the client sends but its heartbeats: to the
 * client the broker keeps the connection and answers nothing on it (the
 * broker never sees those calls, nor the Connection.Close that follows).
 */
class StallingProxy {
  readonly conns: ProxiedConnection[] = [];
  private readonly sockets = new Set<net.Socket>();
  private readonly server: net.Server;
  port = 0;

  constructor(private readonly rules: StallRule[]) {
    const upstream = new URL(AMQP_URL);
    this.server = net.createServer((client) => {
      const broker = net.connect(Number(upstream.port || 5672), upstream.hostname);
      for (const s of [client, broker]) {
        this.sockets.add(s);
        s.on('error', () => undefined);
        s.on('close', () => {
          this.sockets.delete(s);
          client.destroy();
          broker.destroy();
        });
      }
      broker.pipe(client);
      const c: ProxiedConnection = { name: '', calls: new Map(), stalledAt: 0, closedAt: 0, dropped: 0, closesDropped: 0 };
      this.conns.push(c);
      client.on('close', () => (c.closedAt ||= Date.now()));
      broker.on('drain', () => client.resume());
      let buf = Buffer.alloc(0);
      let headerPassed = false;
      client.on('data', (chunk: Buffer) => {
        buf = Buffer.concat([buf, chunk]);
        if (!headerPassed) {
          if (buf.length < 8) return;
          broker.write(buf.subarray(0, 8));
          buf = buf.subarray(8);
          headerPassed = true;
        }
        // Whole frames only: type (1), channel (2), size (4), payload, end (1).
        while (buf.length >= 7 && buf.length >= 8 + buf.readUInt32BE(3)) {
          const size = buf.readUInt32BE(3);
          const frame = buf.subarray(0, 8 + size);
          buf = buf.subarray(8 + size);
          if (frame[0] === FRAME_METHOD && size >= 4) {
            const cls = frame.readUInt16BE(7);
            const method = frame.readUInt16BE(9);
            if (cls === CONNECTION_START_OK[0] && method === CONNECTION_START_OK[1]) {
              // amqplib sends the name as the client property connection_name: a longstr inside the table.
              const m = /notifyd [a-z0-9 -]+? pid \d+/.exec(frame.toString('latin1'));
              c.name = m ? m[0].replace(/ pid \d+$/, '') : '';
            }
            const key = `${cls}.${method}`;
            const nth = c.calls.get(key) ?? 0;
            c.calls.set(key, nth + 1);
            if (c.stalledAt === 0 && this.stallsAt(c, cls, method, nth)) c.stalledAt = Date.now();
            if (c.stalledAt > 0 && cls === CONNECTION_CLOSE[0] && method === CONNECTION_CLOSE[1]) c.closesDropped++;
          }
          if (c.stalledAt > 0 && frame[0] !== FRAME_HEARTBEAT) {
            c.dropped++;
            continue;
          }
          if (!broker.write(frame)) client.pause();
        }
      });
    });
  }

  private stallsAt(c: ProxiedConnection, cls: number, method: number, nth: number): boolean {
    const sameName = this.conns.filter((o) => o.name === c.name).indexOf(c);
    return this.rules.some((r) => r.name === c.name && r.connection === sameName && r.call[0] === cls && r.call[1] === method && r.nth === nth);
  }

  async listen(): Promise<void> {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    this.port = (this.server.address() as net.AddressInfo).port;
  }

  get url(): string {
    const u = new URL(AMQP_URL);
    u.hostname = '127.0.0.1';
    u.port = String(this.port);
    return u.toString();
  }

  /** Stalls the `connection`-th connection named `name` from its next `call` on. */
  stallNext(name: string, connection: number, call: readonly [number, number]): void {
    const c = this.named(name)[connection];
    if (c === undefined) throw new Error(`no connection ${connection} named ${name}`);
    this.rules.push({ name, connection, call, nth: c.calls.get(`${call[0]}.${call[1]}`) ?? 0 });
  }

  named(name: string): ProxiedConnection[] {
    return this.conns.filter((c) => c.name === name);
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((r) => this.server.close(() => r()));
  }
}

describe('a broker that keeps the connection and answers nothing on it (real daemon, real RabbitMQ)', () => {
  const prefixes: string[] = [];
  after(async () => {
    for (const p of prefixes) await deletePrefix(p, SCHEDULE);
  });

  it('the master and tier 0 give up the connection, reconnect, and the notification is delivered', async (t) => {
    const proxy = new StallingProxy([
      // The master: on its first connection in the middle of the topology's declaration, on its second at its own
      // channel (its second open, after the declaration's); tier 0: at its channel on its first connection, at its
      // consumer on its second.
      { name: 'notifyd master', connection: 0, call: QUEUE_DECLARE, nth: 0 },
      { name: 'notifyd master', connection: 1, call: CHANNEL_OPEN, nth: 1 },
      { name: 'notifyd tier 0', connection: 0, call: CHANNEL_OPEN, nth: 0 },
      { name: 'notifyd tier 0', connection: 1, call: BASIC_CONSUME, nth: 0 },
    ]);
    await proxy.listen();
    const merchant = new MerchantStub();
    await merchant.start();
    const prefix = uniquePrefix('chopen');
    prefixes.push(prefix);
    // No warm-up: tier 1's would only add to the wait for readiness.
    const d = new DaemonProcess({ prefix, schedule: SCHEDULE, env: { NOTIFY_AMQP_URL: proxy.url, NOTIFY_DELIVERY_WARM_UP: '0' } });
    try {
      // Each stalled call waits out the confirm timeout (10 s), its connection's close at most 2 s more; the master
      // and tier 0 meet two stalls each.
      // The tiers start once the master has connected: about 50 s in all on a quiet machine.
      await d.ready(90_000);
      const path = '/ok/after-stalled-open';
      assert.equal((await d.post({ id: 'after-stalled-open', url: `${merchant.base}${path}`, body: {} })).status, 202);
      await waitFor(() => merchant.count(path) === 1, 30_000, 'delivered by tier 0 on its second connection');
      const master = proxy.named('notifyd master');
      const tier0 = proxy.named('notifyd tier 0');
      assert.deepEqual(master.slice(0, 3).map((c) => c.stalledAt > 0), [true, true, false], 'the master met both stalls and connected a third time');
      assert.deepEqual(tier0.slice(0, 3).map((c) => c.stalledAt > 0), [true, true, false], 'tier 0 met both stalls and connected a third time');
      // Each connection given up was closed: asked to close first, its socket destroyed when no close-ok came, after
      // the call's timeout (10 s) and the close's grace (2 s) from its stall, with some slack for a busy machine.
      for (const c of [master[0]!, master[1]!, tier0[0]!, tier0[1]!]) {
        assert.equal(c.closesDropped, 1, `${c.name}: asked the broker to close`);
        assert.ok(c.closedAt > 0, `${c.name}: closed`);
        const ms = c.closedAt - c.stalledAt;
        t.diagnostic(`${c.name}: closed ${ms} ms after its stall`);
        assert.ok(ms >= 11_500 && ms < 17_000, `${c.name}: closed ${ms} ms after its stall`);
      }
      // Not as an unreachable broker: the master says it was there and did not answer; the worker gives the error.
      assert.ok(d.lines.some((l) => String(l.msg).includes('took the connection but did not answer on it in time')), 'the master said why');
      assert.ok(!d.lines.some((l) => String(l.msg).includes('RabbitMQ is not reachable')), 'nor that it was unreachable');
      const tierSaid = (text: string): boolean => d.lines.some((l) => l.msg === 'tier worker cannot reach the broker' && JSON.stringify(l.err).includes(text));
      assert.ok(tierSaid('broker did not open a channel in time') && tierSaid('broker did not answer in time while the worker connected'), 'tier 0 said why');
    } finally {
      await d.stop();
      await merchant.close();
      await proxy.close();
    }
  });

  it('a call on an established connection left unanswered: the watchdog gives it up (30 s), and the master and tier 0 carry on', async (t) => {
    const proxy = new StallingProxy([]);
    await proxy.listen();
    const merchant = new MerchantStub();
    await merchant.start();
    const prefix = uniquePrefix('chwatch');
    prefixes.push(prefix);
    const d = new DaemonProcess({ prefix, schedule: SCHEDULE, env: { NOTIFY_AMQP_URL: proxy.url, NOTIFY_DELIVERY_WARM_UP: '0' } });
    try {
      await d.ready(60_000);
      // Each role's count is exposed at 0 from the start (Prometheus' increase() needs it to see the first one).
      const before = String((await d.admin('GET', '/metrics')).body);
      // (No recorder here: it runs only with a database.)
      for (const role of ['master', 'tier', 'ingress']) {
        assert.match(before, new RegExp(`notify_broker_connections_given_up_total\\{role="${role}"\\} 0\\b`), role);
      }
      assert.equal((await d.post({ id: 'before-stall', url: `${merchant.base}/ok/before`, body: {} })).status, 202);
      await waitFor(() => merchant.count('/ok/before') === 1, 10_000, 'delivered before the stall');
      // From now on the broker answers nothing on tier 0's connection from its next consumer cancel (a pause), nor on
      // the master's from its next queue check (its queue sampling, whose check is bounded but not the channel's
      // close after it, or the dead listing below, not bounded where it is made).
      proxy.stallNext('notifyd tier 0', 0, BASIC_CANCEL);
      proxy.stallNext('notifyd master', 0, QUEUE_DECLARE);
      assert.equal((await d.admin('POST', '/admin/tiers/0/pause')).status, 200);
      const t0 = Date.now();
      const listing = await d.admin<{ error?: { code: string; message: string } }>('GET', '/admin/dead');
      const listedMs = Date.now() - t0;
      t.diagnostic(`dead listing answered ${listing.status} after ${listedMs} ms: ${JSON.stringify(listing.body)}`);
      assert.equal(listing.status, 503, 'the listing fails as the broker being unavailable, not as an internal error');
      assert.equal(listing.body.error?.code, 'BROKER_UNAVAILABLE');
      assert.ok(listedMs < 35_000, `answered within the watchdog's bound (${listedMs} ms)`);
      const tier0 = proxy.named('notifyd tier 0');
      const master = proxy.named('notifyd master');
      await waitFor(() => proxy.named('notifyd tier 0').length >= 2 && proxy.named('notifyd master').length >= 2, 30_000, 'both connected again');
      for (const c of [tier0[0]!, master[0]!]) {
        assert.ok(c.stalledAt > 0, `${c.name}: met the stall`);
        await waitFor(() => c.closedAt > 0, 10_000, `${c.name}: closed`);
        const ms = c.closedAt - c.stalledAt;
        t.diagnostic(`${c.name}: closed ${ms} ms after its stall`);
        // 30 s unanswered, noticed within two 1-s samples, with some slack for a busy machine.
        assert.ok(ms >= 29_500 && ms < 35_000, `${c.name}: closed ${ms} ms after its stall`);
      }
      // Log lines are written out within 200 ms.
      const said = (text: string): boolean => d.lines.some((l) => String(l.msg).includes(text));
      await waitFor(() => said("left a call on tier 0's connection unanswered"), 2000, 'tier 0 said why');
      await waitFor(() => said("left a call on the master's connection unanswered"), 2000, 'the master said why');
      // And counted, for the alert (the master's exposition sums every process's counter by role).
      const metrics = String((await d.admin('GET', '/metrics')).body);
      assert.match(metrics, /notify_broker_connections_given_up_total\{role="tier"\} 1\b/);
      assert.match(metrics, /notify_broker_connections_given_up_total\{role="master"\} 1\b/);
      // The master's new connection answers; tier 0 came back still paused, with no consumer on its queue (its state
      // alone would not show it: a worker is paused before it has a channel).
      await waitFor(async () => (await d.admin('GET', '/admin/dead')).status === 200, 30_000, 'the dead listing works again');
      const work0 = namesFor(prefix).workQueue(0);
      const connected = (): { paused?: boolean }[] => d.lines.filter((l) => l.msg === 'tier worker connected' && l.queue === work0) as { paused?: boolean }[];
      await waitFor(() => connected().length >= 2, 30_000, 'tier 0 connected again');
      assert.equal(connected().at(-1)!.paused, true, 'tier 0 connected again paused');
      // The broker drops the old consumer once the proxy closes its side of the given-up connection.
      await waitFor(async () => (await queueInfo(AMQP_URL, work0)).consumerCount === 0, 5000, 'no consumer while paused');
      assert.equal((await d.admin('POST', '/admin/tiers/0/resume')).status, 200);
      assert.equal((await d.post({ id: 'after-stall', url: `${merchant.base}/ok/after`, body: {} })).status, 202);
      await waitFor(() => merchant.count('/ok/after') === 1, 30_000, 'delivered on the new connection');
    } finally {
      await d.stop();
      await merchant.close();
      await proxy.close();
    }
  });
});
