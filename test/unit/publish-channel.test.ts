// PublishChannel: a tier's hand-ons move to a spare channel after a nack,
// never replacing the consumer channel, with fake channels.
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { describe, it } from 'node:test';
import type { ConfirmChannel, Message } from 'amqplib';
import { PublishChannel } from '../../src/broker/publish-channel.js';
import { ConfirmDeadlines } from '../../src/broker/confirm-deadlines.js';
import { fakeDeadlineClock } from './fake-deadline-clock.js';
import { ErrorCodes, hasCode } from '../../src/core/errors.js';

class FakeChannel extends EventEmitter {
  closed = false;
  readonly sent: string[] = [];

  constructor(public answer: 'ack' | 'nack' | 'never') {
    super();
  }

  publish(_ex: string, _key: string, _content: Buffer, opts: { messageId?: string }, cb: (err: Error | null) => void): boolean {
    if (this.closed) throw new Error('Channel closed');
    this.sent.push(String(opts.messageId));
    // 'never': the broker lost it (a quorum queue's leader change in RabbitMQ 3.10), no confirm ever.
    if (this.answer !== 'never') setImmediate(() => cb(this.answer === 'ack' ? null : new Error('message nacked')));
    return true;
  }

  async close(): Promise<void> {
    this.closed = true;
    this.emit('close');
  }
}

function setup(first: 'ack' | 'nack' | 'never', spares: ('ack' | 'nack' | 'never')[], deadlines?: ConfirmDeadlines) {
  const consumer = new FakeChannel(first);
  const opened: FakeChannel[] = [];
  const conn = {
    createConfirmChannel: async () => {
      const ch = new FakeChannel(spares[opened.length] ?? 'ack');
      opened.push(ch);
      return ch as unknown as ConfirmChannel;
    },
  };
  const returned: Message[] = [];
  const pubs = new PublishChannel(conn, consumer as unknown as ConfirmChannel, (m) => returned.push(m), deadlines);
  const send = (id: string): Promise<unknown> => pubs.publish('', 'q', Buffer.from('x'), { messageId: id, mandatory: true }).then(() => 'ok', (e: unknown) => e);
  return { consumer, opened, pubs, send, returned };
}

/** A channel whose confirms come only when the test calls them. */
function holdingChannel(): { ch: FakeChannel; callbacks: ((err: Error | null) => void)[] } {
  const ch = new FakeChannel('ack');
  const callbacks: ((err: Error | null) => void)[] = [];
  ch.publish = (_ex, _key, _content, opts, cb) => {
    ch.sent.push(String(opts.messageId));
    callbacks.push(cb);
    return true;
  };
  return { ch, callbacks };
}

const tick = (ms = 5): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('PublishChannel', () => {
  it('publishes on the consumer channel while it confirms: no extra channel', async () => {
    const { consumer, opened, pubs, send } = setup('ack', []);
    assert.equal(await send('a'), 'ok');
    assert.equal(await send('b'), 'ok');
    assert.deepEqual(consumer.sent, ['a', 'b']);
    assert.equal(opened.length, 0);
    assert.equal(pubs.renewed, false);
  });

  it('a nack fails that publish (the caller retries) and moves later ones to a spare channel; the consumer channel stays open', async () => {
    const { consumer, opened, pubs, send } = setup('nack', ['ack']);
    const err = await send('a');
    assert.ok(hasCode(err, ErrorCodes.BROKER_NACK));
    await tick();
    assert.equal(pubs.renewed, true);
    assert.equal(await send('a'), 'ok');
    assert.deepEqual(opened[0]!.sent, ['a']);
    assert.equal(consumer.closed, false, 'the consumer channel is never replaced');
  });

  it('a spare that nacks too is replaced, 250 ms after the previous renewal at the earliest, and closed', async () => {
    const { opened, send } = setup('nack', ['nack', 'ack']);
    // Before the first renewal: the gap is measured from it, so a stall of this machine cannot shorten what is seen.
    const t0 = Date.now();
    await send('a');
    await tick();
    assert.ok(hasCode(await send('b'), ErrorCodes.BROKER_NACK));
    while (opened.length < 2) await tick();
    assert.ok(Date.now() - t0 >= 200, `renewed after ${Date.now() - t0} ms`);
    assert.equal(await send('b'), 'ok');
    assert.equal(opened[0]!.closed, true);
  });

  it('a spare that closes under it hands publishing back to the consumer channel', async () => {
    const { consumer, opened, send } = setup('nack', ['ack']);
    await send('a');
    await tick();
    consumer.answer = 'ack';
    await opened[0]!.close();
    assert.equal(await send('b'), 'ok');
    assert.deepEqual(consumer.sent, ['a', 'b']);
  });

  it('messages returned on a spare reach the owner, and fail a tracked publish', async () => {
    const { opened, send, returned } = setup('nack', ['ack']);
    await send('a');
    await tick();
    const spare = opened[0]!;
    spare.publish = function (_ex, key, _c, opts, _cb) {
      this.sent.push(String(opts.messageId));
      setImmediate(() => this.emit('return', { fields: { exchange: '', routingKey: key }, properties: { messageId: opts.messageId } }));
      return true;
    };
    const err = await send('r');
    assert.ok(hasCode(err, ErrorCodes.BROKER_UNAVAILABLE), String(err));
    assert.equal(returned.length, 1);
  });

  it('settled() waits for every publish made so far, each confirmed or refused, not only until the first refusal', async () => {
    // Confirms come when the test says: a nack first, then an ack.
    const { ch: consumer, callbacks } = holdingChannel();
    const pubs = new PublishChannel({ createConfirmChannel: async () => new FakeChannel('ack') as unknown as ConfirmChannel }, consumer as unknown as ConfirmChannel);
    const a = pubs.publish('', 'q', Buffer.from('x'), { messageId: 'a' }).catch((e: unknown) => e);
    const b = pubs.publish('', 'q', Buffer.from('x'), { messageId: 'b' });
    let settled = false;
    const done = pubs.settled().then(() => (settled = true));
    callbacks[0]!(new Error('message nacked'));
    await a;
    await tick();
    assert.equal(settled, false, 'b is still unconfirmed');
    callbacks[1]!(null);
    await b;
    await done;
    assert.equal(settled, true);
    // Nothing in flight: at once.
    await pubs.settled();
  });

  it('a confirm that never comes fails its publish (BROKER_CONFIRM_TIMEOUT) after the timeout and moves later ones to a spare; settled() does not wait for it', async () => {
    const c = fakeDeadlineClock();
    const { consumer, opened, pubs, send } = setup('never', ['ack'], new ConfirmDeadlines(1000, c.clock));
    let outcome: unknown = 'pending';
    const a = send('a').then((r) => (outcome = r));
    c.advance(999);
    await tick();
    assert.equal(outcome, 'pending', 'not before its time');
    c.advance(1);
    await a;
    assert.ok(hasCode(outcome, ErrorCodes.BROKER_CONFIRM_TIMEOUT), String(outcome));
    await pubs.settled();
    // Until the spare is in use, not merely asked for (opening it takes a few turns of the microtask queue).
    for (let i = 0; i < 100 && !pubs.renewed; i++) await tick();
    assert.equal(pubs.renewed, true);
    assert.equal(await send('a'), 'ok');
    assert.deepEqual(opened[0]!.sent, ['a']);
    assert.equal(consumer.closed, false, 'the consumer channel is never replaced');
  });

  it('confirms in time are never failed, and a timeout of 0 waits for ever', async () => {
    const c = fakeDeadlineClock();
    const { send, opened } = setup('ack', [], new ConfirmDeadlines(1000, c.clock));
    for (const id of ['a', 'b', 'c']) assert.equal(await send(id), 'ok');
    c.advance(5000);
    await tick();
    assert.equal(opened.length, 0);
    const never = setup('never', [], new ConfirmDeadlines(0, c.clock));
    let outcome: unknown = 'pending';
    void never.send('x').then((r) => (outcome = r));
    c.advance(1e9);
    await tick();
    assert.equal(outcome, 'pending');
  });

  it('a confirm that comes after its timeout changes nothing: counted settled once, settled() still waits for the next publish', async () => {
    const c = fakeDeadlineClock();
    const { ch: consumer, callbacks } = holdingChannel();
    // The spare a timeout opens holds its confirms the same way.
    const spare = new FakeChannel('ack');
    spare.publish = consumer.publish;
    const pubs = new PublishChannel({ createConfirmChannel: async () => spare as unknown as ConfirmChannel }, consumer as unknown as ConfirmChannel, () => undefined, new ConfirmDeadlines(1000, c.clock));
    const a = pubs.publish('', 'q', Buffer.from('x'), { messageId: 'a' }).catch((e: unknown) => e);
    c.advance(1000);
    assert.ok(hasCode(await a, ErrorCodes.BROKER_CONFIRM_TIMEOUT));
    // The late confirm, then a nack for it too: neither may settle anything again.
    callbacks[0]!(null);
    callbacks[0]!(new Error('message nacked'));
    await tick();
    const b = pubs.publish('', 'q', Buffer.from('x'), { messageId: 'b' });
    let settled = false;
    const done = pubs.settled().then(() => (settled = true));
    await tick();
    assert.equal(settled, false, 'b is still unconfirmed');
    callbacks[callbacks.length - 1]!(null);
    await b;
    await done;
  });

  it('a spare renewed after a timeout is closed only once its other publishes have settled (a nack closes it at once)', async () => {
    const c = fakeDeadlineClock();
    const { opened, pubs, send } = setup('nack', ['ack', 'ack'], new ConfirmDeadlines(1000, c.clock));
    await send('n');
    for (let i = 0; i < 100 && !pubs.renewed; i++) await tick();
    assert.equal(pubs.renewed, true);
    const spare = opened[0]!;
    // The spare now loses its first publish and holds its second until told.
    const held: ((err: Error | null) => void)[] = [];
    spare.publish = function (_ex, _key, _c, opts, cb) {
      this.sent.push(String(opts.messageId));
      if (opts.messageId !== 'lost') held.push(cb);
      return true;
    };
    const lost = send('lost');
    c.advance(600);
    const other = send('other');
    c.advance(400);
    assert.ok(hasCode(await lost, ErrorCodes.BROKER_CONFIRM_TIMEOUT));
    await tick(300);
    assert.equal(opened.length, 2, `renewed after the timeout (sent: ${JSON.stringify(opened.map((o) => o.sent))})`);
    assert.equal(spare.closed, false, 'not closed while "other" may still be confirmed');
    held[0]!(null);
    assert.equal(await other, 'ok');
    await tick();
    assert.equal(spare.closed, true, 'closed once nothing waits on it');
  });

  it('renewals asked for while one runs are served by one more: a sweep failing many publishes while the broker refuses channels opens twice, not once each', async () => {
    const c = fakeDeadlineClock();
    const consumer = new FakeChannel('never');
    let opens = 0;
    const conn = {
      createConfirmChannel: async () => {
        opens++;
        throw new Error('channel.open refused');
      },
    };
    const pubs = new PublishChannel(conn, consumer as unknown as ConfirmChannel, () => undefined, new ConfirmDeadlines(1000, c.clock));
    const failed = Array.from({ length: 20 }, (_, i) => pubs.publish('', 'q', Buffer.from('x'), { messageId: `m${i}` }).then(() => 'ok', (e: unknown) => e));
    c.advance(1000);
    for (const f of failed) assert.ok(hasCode(await f, ErrorCodes.BROKER_CONFIRM_TIMEOUT));
    // The first open fails at once; one more after it waits out the 250-ms gap, and that is all
    // (one open per failed publish would be 20, one every 250 ms).
    await tick(1000);
    assert.equal(opens, 2);
    // Nothing left queued: a later failure opens once more (after the gap), no backlog of opens.
    const later = pubs.publish('', 'q', Buffer.from('x'), { messageId: 'later' }).then(() => 'ok', (e: unknown) => e);
    c.advance(1000);
    assert.ok(hasCode(await later, ErrorCodes.BROKER_CONFIRM_TIMEOUT));
    await tick(400);
    assert.equal(opens, 3);
  });

  it('a channel open the broker never answers fails the renewal after the confirm timeout; the next failure tries again, and a channel that opens late is closed', async () => {
    const consumer = new FakeChannel('nack');
    const late = new FakeChannel('ack');
    let openLate: (ch: ConfirmChannel) => void = () => undefined;
    let opens = 0;
    const conn = {
      createConfirmChannel: () => {
        opens++;
        if (opens === 1) return new Promise<ConfirmChannel>((r) => (openLate = r));
        return Promise.resolve(new FakeChannel('ack') as unknown as ConfirmChannel);
      },
    };
    const pubs = new PublishChannel(conn, consumer as unknown as ConfirmChannel, () => undefined, new ConfirmDeadlines(100));
    const send = (id: string): Promise<unknown> => pubs.publish('', 'q', Buffer.from('x'), { messageId: id }).then(() => 'ok', (e: unknown) => e);
    assert.ok(hasCode(await send('a'), ErrorCodes.BROKER_NACK));
    await tick(150);
    assert.equal(opens, 1);
    openLate(late as unknown as ConfirmChannel);
    await tick();
    assert.equal(late.closed, true, 'the late channel is closed, not used');
    await tick(150);
    assert.ok(hasCode(await send('b'), ErrorCodes.BROKER_NACK));
    // Had the hanging open not given up, this renewal would wait behind it for ever.
    await tick(300);
    assert.equal(opens, 2);
    assert.equal(pubs.renewed, true);
    assert.equal(await send('c'), 'ok');
  });

  it('renewals asked for while a renewal runs that succeeds open nothing more: twenty nacks at once cost one spare', async () => {
    const consumer = new FakeChannel('nack');
    const opened: FakeChannel[] = [];
    // An open that takes a while, so the other nacks come while it runs.
    const conn = {
      createConfirmChannel: async () => {
        await tick(30);
        const ch = new FakeChannel('ack');
        opened.push(ch);
        return ch as unknown as ConfirmChannel;
      },
    };
    const pubs = new PublishChannel(conn, consumer as unknown as ConfirmChannel);
    const send = (id: string): Promise<unknown> => pubs.publish('', 'q', Buffer.from('x'), { messageId: id }).then(() => 'ok', (e: unknown) => e);
    const results = await Promise.all(Array.from({ length: 20 }, (_, i) => send(`n${i}`)));
    for (const r of results) assert.ok(hasCode(r, ErrorCodes.BROKER_NACK));
    await tick(400);
    assert.equal(opened.length, 1, 'the follow-up found the nacking channel already replaced');
    assert.equal(pubs.renewed, true);
    assert.equal(await send('after'), 'ok');
  });
});

