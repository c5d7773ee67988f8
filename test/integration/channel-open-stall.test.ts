// A broker that never answers a channel open (a node stuck after a partition,
// an overloaded channel process) must not keep the master or a tier worker
// from ever reconnecting: their opens are bounded (src/broker/open-within.ts),
// and the connection they give up is closed within a grace. Real daemon, real
// RabbitMQ, behind a proxy that drops the client's Channel.Open frames of
// chosen connections, so the broker never sees them and never answers.
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import net from 'node:net';
import { AMQP_URL, DaemonProcess, deletePrefix, uniquePrefix, waitFor } from '../../bench/daemon-process.js';
import { MerchantStub } from '../../bench/merchant-stub.js';

const SCHEDULE = '0s,200ms';

/** AMQP 0-9-1 frame and method ids the proxy looks at. */
const FRAME_METHOD = 1;
const CONNECTION_START_OK = [10, 11] as const;
const CHANNEL_OPEN = [20, 10] as const;

interface ProxiedConnection {
  /** The client's connection name, read from its Connection.StartOk properties ('' until then). */
  name: string;
  /** Channel.Open frames the client sent on it, dropped or not. */
  opens: number;
  dropped: number;
}

/**
 * A TCP proxy to the broker that passes everything through except the
 * client's Channel.Open frames for which `drop` says so.
 */
class ChannelOpenDropper {
  readonly conns: ProxiedConnection[] = [];
  private readonly sockets = new Set<net.Socket>();
  private readonly server: net.Server;
  port = 0;

  /** `drop(c, index, sameName)`: whether to drop the open numbered `index` (from 0) on `c`, the `sameName`-th connection of its name (from 0). */
  constructor(private readonly drop: (c: ProxiedConnection, index: number, sameName: number) => boolean) {
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
      const c: ProxiedConnection = { name: '', opens: 0, dropped: 0 };
      this.conns.push(c);
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
            } else if (cls === CHANNEL_OPEN[0] && method === CHANNEL_OPEN[1]) {
              const sameName = this.conns.filter((o) => o.name === c.name).indexOf(c);
              if (this.drop(c, c.opens++, sameName)) {
                c.dropped++;
                continue;
              }
            }
          }
          broker.write(frame);
        }
      });
    });
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

  named(name: string): ProxiedConnection[] {
    return this.conns.filter((c) => c.name === name);
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((r) => this.server.close(() => r()));
  }
}

describe('a channel open the broker never answers (real daemon, real RabbitMQ)', () => {
  const prefixes: string[] = [];
  after(async () => {
    for (const p of prefixes) await deletePrefix(p, SCHEDULE);
  });

  it('the master and tier 0 give up the connection, reconnect, and the notification is delivered', async () => {
    // The master: on its first connection the topology's channel, on its second its own (the second open); tier 0:
    // its channel on its first connection.
    const proxy = new ChannelOpenDropper(
      (c, index, sameName) => (c.name === 'notifyd master' && index === sameName && sameName < 2) || (c.name === 'notifyd tier 0' && index === 0 && sameName === 0),
    );
    await proxy.listen();
    const merchant = new MerchantStub();
    await merchant.start();
    const prefix = uniquePrefix('chopen');
    prefixes.push(prefix);
    const d = new DaemonProcess({ prefix, schedule: SCHEDULE, env: { NOTIFY_AMQP_URL: proxy.url } });
    try {
      // Each stalled open waits out the confirm timeout (10 s), its close at most 2 s more; the master meets two.
      await d.ready(60_000);
      const path = '/ok/after-stalled-open';
      assert.equal((await d.post({ id: 'after-stalled-open', url: `${merchant.base}${path}`, body: {} })).status, 202);
      await waitFor(() => merchant.count(path) === 1, 30_000, 'delivered by tier 0 on its second connection');
      const master = proxy.named('notifyd master');
      const tier0 = proxy.named('notifyd tier 0');
      assert.deepEqual(master.slice(0, 3).map((c) => c.dropped), [1, 1, 0], 'the master met both stalls and connected a third time');
      assert.deepEqual(tier0.slice(0, 2).map((c) => c.dropped), [1, 0], 'tier 0 met its stall and connected again');
      // The master logs the message itself, a worker the error's data.
      const said = (text: string): boolean => d.lines.some((l) => JSON.stringify(l.err ?? '').includes(text));
      assert.ok(said('broker did not declare the topology in time'), 'the master said why');
      assert.ok(said('broker did not open a channel in time'), 'tier 0 said why');
    } finally {
      await d.stop();
      await merchant.close();
      await proxy.close();
    }
  });
});
