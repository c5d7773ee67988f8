// NotificationPublisher across a failover, with fake connections and
// channels: what is sent again (a nack, a channel closed under the publish),
// what is not (a confirm timeout), and how long a publish waits for a
// connection being opened.
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { describe, it } from 'node:test';
import type { ChannelModel } from 'amqplib';
import { NotificationPublisher } from '../../src/broker/publisher.js';
import type { OpenNode } from '../../src/broker/connection.js';
import { ErrorCodes, hasCode } from '../../src/core/errors.js';
import { validateNotification, type Notification } from '../../src/core/message.js';
import { loadConfig } from '../../src/core/config.js';

type Answer = 'ack' | 'nack' | 'hold';

class FakeChannel extends EventEmitter {
  closed = false;
  readonly sent: string[] = [];
  private readonly held: ((err: Error | null) => void)[] = [];

  constructor(readonly answer: Answer) {
    super();
  }

  publish(_ex: string, _key: string, _content: Buffer, opts: { messageId?: string }, cb: (err: Error | null) => void): boolean {
    if (this.closed) throw new Error('Channel closed');
    this.sent.push(String(opts.messageId));
    if (this.answer === 'ack') setImmediate(() => cb(null));
    else if (this.answer === 'nack') setImmediate(() => cb(new Error('message nacked')));
    else this.held.push(cb);
    return true;
  }

  closeNow(): void {
    if (this.closed) return;
    this.closed = true;
    for (const cb of this.held.splice(0)) cb(new Error('channel closed'));
    this.emit('close');
  }

  async close(): Promise<void> {
    this.closeNow();
  }
}

class FakeConnection extends EventEmitter {
  readonly channels: FakeChannel[] = [];

  constructor(
    readonly label: string,
    private readonly answers: () => Answer,
  ) {
    super();
  }

  async createConfirmChannel(): Promise<FakeChannel> {
    const ch = new FakeChannel(this.answers());
    this.channels.push(ch);
    return ch;
  }

  /** The node went away: every channel closes, then the connection. */
  drop(): void {
    for (const ch of this.channels) ch.closeNow();
    this.emit('close', new Error('connection closed'));
  }

  async close(): Promise<void> {
    this.drop();
  }
}

const URLS = 'amqp://u:p@n1:5672,amqp://u:p@n2:5672,amqp://u:p@n3:5672';
const limits = loadConfig({ env: {} }).limits;

function note(id: string): Notification {
  return validateNotification({ id, url: 'https://merchant.example/cb', body: 'x' }, limits);
}

/** A fake cluster: which nodes answer, how their channels answer, every connection made. */
function fakeCluster(up: Set<string>, answers: (label: string, nth: number) => Answer = () => 'ack', delayMs: () => number = () => 0) {
  const conns: FakeConnection[] = [];
  const open: OpenNode = async (node) => {
    if (delayMs() > 0) await new Promise((r) => setTimeout(r, delayMs()));
    if (!up.has(node.label)) throw new Error(`connect ECONNREFUSED ${node.label}`);
    let nth = 0;
    const c = new FakeConnection(node.label, () => answers(node.label, nth++));
    conns.push(c);
    return c as unknown as ChannelModel;
  };
  return { open, conns };
}

function publisher(open: OpenNode, extra: Partial<ConstructorParameters<typeof NotificationPublisher>[0]> = {}): NotificationPublisher {
  return new NotificationPublisher({ amqpUrl: URLS, prefix: 'P', scheduleMs: [0], name: 'test', keepConnected: true, role: 'ingress', openNode: open, ...extra });
}

describe('NotificationPublisher failover', () => {
  it('a nacking channel is replaced and the nacked publish goes again on the new one', async () => {
    // The first channel of the connection nacks everything (the RabbitMQ 3.10 case); later ones ack.
    const { open, conns } = fakeCluster(new Set(['n1:5672', 'n2:5672', 'n3:5672']), (_l, nth) => (nth === 0 ? 'nack' : 'ack'));
    let renewed = 0;
    const p = publisher(open, { onChannelRenewed: () => renewed++ });
    await p.start();
    await p.publish(note('a'));
    const [c] = conns;
    assert.equal(c!.channels.length, 2);
    assert.deepEqual(c!.channels.map((ch) => ch.sent), [['a'], ['a']]);
    assert.equal(c!.channels[0]!.closed, true, 'the nacking channel is closed');
    assert.equal(renewed, 1);
    assert.equal(p.connected, true, 'the connection stayed');
    await p.publish(note('b'));
    assert.deepEqual(c!.channels[1]!.sent, ['a', 'b']);
    await p.close();
  });

  it('a connection closed in the same read as its channel\'s open-ok (a node shutting down) is not kept: it connects again', async () => {
    const { conns } = fakeCluster(new Set());
    let opened = 0;
    const open: OpenNode = async (node) => {
      const c = new FakeConnection(node.label, () => 'ack');
      conns.push(c);
      if (opened++ === 0) {
        // As amqplib's frame loop: the open-ok and the connection.close are handled in one go, before the
        // publisher's await resumes.
        c.createConfirmChannel = () =>
          new Promise((resolve) =>
            setImmediate(() => {
              const ch = new FakeChannel('ack');
              c.channels.push(ch);
              resolve(ch);
              c.drop();
            }),
          );
      }
      return c as unknown as ChannelModel;
    };
    const p = publisher(open);
    await p.start();
    for (let i = 0; i < 100 && conns.length < 2; i++) await new Promise((r) => setTimeout(r, 20));
    await p.publish(note('a'));
    assert.equal(conns.length, 2, 'connected again');
    assert.deepEqual(conns[1]!.channels[0]!.sent, ['a']);
    assert.equal(p.connected, true);
    await p.close();
  });

  it('a broker that nacks on every channel: BROKER_NACK after a bounded number of sends, within the failover bound', async () => {
    const { open, conns } = fakeCluster(new Set(['n1:5672', 'n2:5672', 'n3:5672']), () => 'nack');
    const p = publisher(open, { failoverWaitMs: 2000 });
    await p.start();
    const t0 = Date.now();
    const err = await p.publish(note('a')).catch((e: unknown) => e);
    assert.ok(hasCode(err, ErrorCodes.BROKER_NACK), String(err));
    assert.ok(Date.now() - t0 <= 2100, `took ${Date.now() - t0} ms`);
    const sends = conns[0]!.channels.flatMap((ch) => ch.sent).length;
    assert.ok(sends >= 2 && sends <= 5, `sent ${sends} times`);
    await p.close();
  });

  it('the channel closes under a publish (its node went away): sent again, at once, on the next node', async () => {
    const up = new Set(['n1:5672', 'n2:5672', 'n3:5672']);
    let firstNode: string | null = null;
    // The first node never confirms; the others do.
    const { open, conns } = fakeCluster(up, (label) => ((firstNode ??= label) === label ? 'hold' : 'ack'));
    const p = publisher(open);
    await p.start();
    const first = conns[0]!;
    const pending = p.publish(note('a'));
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(first.channels[0]!.sent, ['a']);
    const t0 = Date.now();
    up.delete(first.label);
    first.drop();
    await pending;
    assert.ok(Date.now() - t0 < 200, `took ${Date.now() - t0} ms`);
    assert.equal(conns.length, 2);
    assert.notEqual(conns[1]!.label, first.label);
    assert.deepEqual(conns[1]!.channels[0]!.sent, ['a']);
    assert.equal(p.node, conns[1]!.label);
    await p.close();
  });

  it('a confirm that times out on a channel still up is not sent again', async () => {
    const { open, conns } = fakeCluster(new Set(['n1:5672', 'n2:5672', 'n3:5672']), () => 'hold');
    const p = publisher(open, { confirmTimeoutMs: 50 });
    await p.start();
    const err = await p.publish(note('a')).catch((e: unknown) => e);
    assert.ok(hasCode(err, ErrorCodes.BROKER_CONFIRM_TIMEOUT), 'not BROKER_UNAVAILABLE: the broker may have it');
    assert.match((err as Error).message, /did not confirm in time/);
    assert.deepEqual(conns.flatMap((c) => c.channels.flatMap((ch) => ch.sent)), ['a']);
    await p.close();
  });

  it('after a confirm timeout the channel is renewed: the next publish goes on a new one (RabbitMQ 3.10 can lose the publishes of a channel for good)', async () => {
    const { open, conns } = fakeCluster(new Set(['n1:5672', 'n2:5672', 'n3:5672']), (_l, nth) => (nth === 0 ? 'hold' : 'ack'));
    let renewed = 0;
    const p = publisher(open, { confirmTimeoutMs: 50, onChannelRenewed: () => renewed++ });
    await p.start();
    const [c] = conns;
    const err = await p.publish(note('a')).catch((e: unknown) => e);
    assert.match((err as Error).message, /did not confirm in time/);
    while (renewed === 0) await new Promise((r) => setTimeout(r, 5));
    await p.publish(note('b'));
    assert.deepEqual(c!.channels.map((ch) => ch.sent), [['a'], ['b']]);
    assert.equal(c!.channels[0]!.closed, false, 'the old channel is kept until what waits on it has timed out');
    await new Promise((r) => setTimeout(r, 1100));
    assert.equal(c!.channels[0]!.closed, true, 'then closed');
    await p.close();
  });

  it('while a connection is being opened a publish waits for it; with nothing under way it fails at once', async () => {
    const up = new Set(['n1:5672', 'n2:5672', 'n3:5672']);
    let delay = 100;
    const { open, conns } = fakeCluster(up, () => 'ack', () => delay);
    const p = publisher(open);
    await p.start();
    conns[0]!.drop();
    // The reconnect is under way (100 ms): this publish waits for it instead of failing.
    const t0 = Date.now();
    await p.publish(note('a'));
    assert.ok(Date.now() - t0 >= 50, 'it waited for the new connection');
    assert.deepEqual(conns[1]!.channels[0]!.sent, ['a']);
    // Now no node answers (refused at once): between reconnect rounds a publish fails fast.
    delay = 0;
    up.clear();
    conns[1]!.drop();
    await new Promise((r) => setTimeout(r, 400));
    const t1 = Date.now();
    const err = await p.publish(note('b')).catch((e: unknown) => e);
    assert.ok(hasCode(err, ErrorCodes.BROKER_UNAVAILABLE));
    assert.ok(Date.now() - t1 < 400, `took ${Date.now() - t1} ms`);
    await p.close();
  });

  it('a node that never answers a channel open (nor the close after it) is given up after the confirm timeout and the next node is used; the channel that opens late is closed', { timeout: 15_000 }, async () => {
    let lateOpen: (ch: FakeChannel) => void = () => undefined;
    const late = new FakeChannel('ack');
    const conns: FakeConnection[] = [];
    const open: OpenNode = async (node) => {
      const c = new FakeConnection(node.label, () => 'ack');
      // The first node tried (the ring starts anywhere) answers no channel open and no close.
      if (conns.length === 0) {
        c.createConfirmChannel = () => new Promise<FakeChannel>((r) => (lateOpen = r));
        c.close = () => new Promise<void>(() => undefined);
      }
      conns.push(c);
      return c as unknown as ChannelModel;
    };
    const p = publisher(open, { confirmTimeoutMs: 50 });
    try {
      const t0 = Date.now();
      await p.start();
      for (let i = 0; i < 200 && !p.connected; i++) await new Promise((r) => setTimeout(r, 25));
      assert.equal(p.connected, true, 'connected to another node');
      assert.notEqual(p.node, conns[0]!.label);
      // The open's timeout and the close's grace (2 s), not for ever.
      assert.ok(Date.now() - t0 < 4500, `took ${Date.now() - t0} ms`);
      await p.publish(note('a'));
      assert.deepEqual(conns.map((c) => c.channels.flatMap((ch) => ch.sent)), [[], ['a']]);
      lateOpen(late);
      await new Promise((r) => setTimeout(r, 10));
      assert.equal(late.closed, true, 'the late channel is closed, not used');
    } finally {
      await p.close();
    }
  });

  it('a lost connection is reported with the reason amqplib gave (its error comes before the channel closes, which reports the loss first)', async () => {
    const { open, conns } = fakeCluster(new Set(['n1:5672', 'n2:5672', 'n3:5672']));
    const states: [boolean, string | undefined][] = [];
    const p = publisher(open, { onStateChange: (up, err) => void states.push([up, err?.message]) });
    await p.start();
    conns[0]!.emit('error', new Error('Heartbeat timeout'));
    conns[0]!.drop();
    assert.deepEqual(
      states.filter(([up]) => !up),
      [[false, 'Heartbeat timeout']],
    );
    await p.close();
  });

  it("a connection the broker closes (no error event, its close event carries why) is reported with the close's reason", async () => {
    const { open, conns } = fakeCluster(new Set(['n1:5672', 'n2:5672', 'n3:5672']));
    const states: [boolean, string | undefined][] = [];
    const p = publisher(open, { onStateChange: (up, err) => void states.push([up, err?.message]) });
    await p.start();
    conns[0]!.drop();
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(
      states.filter(([up]) => !up),
      [[false, 'connection closed']],
    );
    await p.close();
  });
});
