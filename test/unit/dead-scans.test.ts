// The two scans of P.dead against a fake queue. The listing: every listed
// message is copied to the tail and acked only after the broker confirmed the
// copy; never a nack; a failed copy closes the channel (which gives the
// originals back). Redrive: reads each parked message at most once.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ConfirmChannel, GetMessage, Options } from 'amqplib';
import { redrive, SCAN_HEADER } from '../../src/broker/dead-letters.js';
import type { CopyVerdict, RedriveBatch } from '../../src/history/superseded.js';
import { listDead } from '../../src/broker/dead-listing.js';
import { loadConfig } from '../../src/core/config.js';

const config = loadConfig({ env: { NOTIFY_SCHEDULE: '0s,1s', NOTIFY_PREFIX: 'p' } });

interface Stored {
  content: Buffer;
  properties: { messageId: string; headers: Record<string, unknown> };
}

/** A queue `p.dead` behind the few channel calls a listing makes. */
class FakeDeadQueue {
  queue: Stored[];
  readonly unacked = new Map<number, Stored>();
  readonly calls: string[] = [];
  closed = false;
  private tag = 0;
  /** Publishes whose confirm is a nack, by 0-based publish number. */
  failPublish = new Set<number>();
  /** Publishes whose channel closes before their confirm (amqplib fails them "channel closed"), by 0-based publish number. */
  closeOnPublish = new Set<number>();
  /** Publishes whose confirm never comes (a quorum leader change lost it), by 0-based publish number. */
  loseConfirm = new Set<number>();
  private publishes = 0;
  /** Called after each get (e.g. to take messages away as another daemon would). */
  afterGet: (() => void) | null = null;
  /** Ids published anywhere but back to `p.dead` (a redrive's moves), in order. */
  readonly moved: string[] = [];
  /** Called for each move (e.g. to park it again at once, as a 410 would be). */
  onMove: ((m: Stored) => void) | null = null;

  constructor(ids: string[], headers: (id: string) => Record<string, unknown> = () => ({ 'notify-dead-reason': 'exhausted', 'notify-dead-tier': 1 })) {
    this.queue = ids.map((id) => ({ content: Buffer.from(JSON.stringify({ id, url: `https://m.example/${id}` })), properties: { messageId: id, headers: headers(id) } }));
  }

  get ids(): string[] {
    return this.queue.map((m) => m.properties.messageId);
  }

  channel(): ConfirmChannel {
    const ch = {
      checkQueue: async (name: string) => {
        assert.equal(name, 'p.dead');
        return { queue: name, messageCount: this.queue.length, consumerCount: 0 };
      },
      get: async (name: string, opts: { noAck: boolean }): Promise<GetMessage | false> => {
        assert.equal(name, 'p.dead');
        assert.equal(opts.noAck, false);
        const m = this.queue.shift();
        if (!m) return false;
        const deliveryTag = ++this.tag;
        this.unacked.set(deliveryTag, m);
        this.calls.push(`get ${m.properties.messageId}`);
        this.afterGet?.();
        return { content: m.content, fields: { deliveryTag, redelivered: false, exchange: '', routingKey: 'p.dead', messageCount: this.queue.length }, properties: m.properties } as unknown as GetMessage;
      },
      publish: (exchange: string, key: string, content: Buffer, options: Options.Publish, cb: (err: unknown) => void) => {
        const n = this.publishes++;
        this.calls.push(`publish ${String(options.messageId)}`);
        if (this.failPublish.has(n)) {
          setImmediate(() => cb(new Error('nack')));
          return true;
        }
        if (this.closeOnPublish.has(n)) {
          setImmediate(() => cb(new Error('channel closed')));
          return true;
        }
        if (this.loseConfirm.has(n)) return true;
        const stored = { content, properties: { messageId: String(options.messageId), headers: (options.headers ?? {}) as Record<string, unknown> } };
        if (exchange === '' && key === 'p.dead') this.queue.push(stored);
        else {
          assert.deepEqual([exchange, key], ['p.work', 'tier.0'], 'a move goes to tier 0');
          this.moved.push(stored.properties.messageId);
          this.onMove?.(stored);
        }
        setImmediate(() => cb(null));
        return true;
      },
      ack: (m: GetMessage) => {
        assert.ok(this.unacked.delete(m.fields.deliveryTag), 'ack of an unacked message');
        this.calls.push(`ack ${String(m.properties.messageId)}`);
      },
      nack: () => assert.fail('a listing never nacks'),
      reject: () => assert.fail('a listing never rejects'),
      close: async () => {
        // The broker gives back what is unacked.
        this.closed = true;
        this.queue.unshift(...[...this.unacked.values()]);
        this.unacked.clear();
      },
    };
    return ch as unknown as ConfirmChannel;
  }
}

const ids = (n: number, p = 'm'): string[] => Array.from({ length: n }, (_, i) => `${p}${i}`);

describe('listDead', () => {
  it('a full listing copies each to the tail, acks it after the confirm, and leaves the order as it was', async () => {
    const q = new FakeDeadQueue(ids(120));
    const r = await listDead(q.channel(), config, 1000);
    assert.equal(r.total, 120);
    assert.deepEqual(r.messages.map((m) => m.id), ids(120));
    assert.deepEqual(r.byReason, { exhausted: 120 });
    assert.deepEqual(q.ids, ids(120), 'same order');
    assert.equal(q.unacked.size, 0);
    assert.equal(q.closed, false);
    // Every ack comes after the publish of its copy.
    for (const id of ids(120)) assert.ok(q.calls.indexOf(`publish ${id}`) < q.calls.indexOf(`ack ${id}`), id);
    // Copies keep their headers and carry the scan's mark.
    assert.equal(q.queue[0]!.properties.headers['notify-dead-reason'], 'exhausted');
    assert.equal(typeof q.queue[0]!.properties.headers[SCAN_HEADER], 'string');
  });

  it('a copy whose confirm never comes fails the listing after its confirm timeout and gives the originals back', async () => {
    const q = new FakeDeadQueue(ids(3));
    q.loseConfirm.add(2);
    await assert.rejects(listDead(q.channel(), config, 1000, undefined, undefined, 50), (err: { code?: string }) => err.code === 'BROKER_CONFIRM_TIMEOUT');
    assert.equal(q.closed, true, 'the channel closed, which gives back the originals');
    assert.equal(q.unacked.size, 0);
  });

  it('a shorter listing turns the queue by its limit', async () => {
    const q = new FakeDeadQueue(ids(5));
    const r = await listDead(q.channel(), config, 2);
    assert.deepEqual(r.messages.map((m) => m.id), ['m0', 'm1']);
    assert.equal(r.total, 5);
    assert.deepEqual(q.ids, ['m2', 'm3', 'm4', 'm0', 'm1']);
  });

  it('an empty queue lists nothing', async () => {
    const q = new FakeDeadQueue([]);
    assert.deepEqual(await listDead(q.channel(), config, 50), { total: 0, byReason: {}, byMerchant: {}, messages: [] });
  });

  it('a copy the broker refuses: nothing of that batch is acked, the channel is closed, the originals come back, no nack', async () => {
    const q = new FakeDeadQueue(ids(70));
    q.failPublish.add(55); // in the second batch of 50
    await assert.rejects(listDead(q.channel(), config, 1000), /nack|refused/);
    assert.equal(q.closed, true);
    assert.equal(q.unacked.size, 0);
    // Nothing lost: the first batch was copied and acked, the second's originals came back (its confirmed copies may be doubles).
    const distinct = new Set(q.ids);
    for (const id of ids(70)) assert.ok(distinct.has(id), id);
    assert.equal(q.calls.filter((c) => c.startsWith('ack ')).length, 50);
  });

  it('meeting its own copy (someone took messages meanwhile) puts that one back too and stops', async () => {
    const q = new FakeDeadQueue(ids(60));
    let taken = 0;
    // Another consumer takes 30 messages while the first batch is read.
    q.afterGet = () => {
      if (taken === 0 && q.calls.length === 1) {
        q.queue.splice(0, 30);
        taken = 30;
      }
    };
    const r = await listDead(q.channel(), config, 1000);
    const listedIds = r.messages.map((m) => m.id);
    assert.equal(new Set(listedIds).size, listedIds.length, 'no message listed twice');
    assert.equal(q.unacked.size, 0);
    assert.equal(q.calls.filter((c) => c === 'get m0').length, 2, 'it went round once and met its copy of m0');
    assert.equal(listedIds.length, 30);
    assert.equal(q.ids.length, 30, 'the 30 left, each once');
    assert.equal(new Set(q.ids).size, 30);
  });

  it('a message the broker dead-lettered keeps its x-death reason and time on the copy', async () => {
    const q = new FakeDeadQueue(['b0'], () => ({ 'notify-attempt': 2, 'x-death': [{ reason: 'delivery_limit', time: 1_780_000_000, queue: 'p.work.2', count: 1 }] }));
    const r = await listDead(q.channel(), config, 50);
    assert.equal(r.messages[0]!.reason, 'broker-delivery_limit');
    const h = q.queue[0]!.properties.headers;
    assert.equal(h['notify-dead-reason'], 'broker-delivery_limit');
    assert.equal(h['notify-dead-at'], 1_780_000_000_000);
    assert.equal(h['x-death'], undefined, 'x- headers belong to the broker');
  });
});

/** A redrive's channel on `q` whose nacks give the message back (told to `nacked`), or throw as a closed channel's do. */
function nackingChannel(q: FakeDeadQueue, nacked: string[] = [], closed = false): ConfirmChannel {
  const ch = q.channel() as unknown as { nack: (m: GetMessage) => void };
  ch.nack = (m: GetMessage) => {
    if (closed) throw new Error('Channel closed');
    nacked.push(String(m.properties.messageId));
    q.unacked.delete(m.fields.deliveryTag);
  };
  return ch as unknown as ConfirmChannel;
}

/** A history part of a redrive that answers each batch with `verdict` and remembers what it was asked. */
function fakeHistory(verdict: (id: string) => CopyVerdict = () => 'move', opts: { open?: () => Promise<void>; decide?: () => Promise<void> } = {}) {
  const log = { opened: 0, asked: [] as number[], claimed: [] as string[][], givenBack: [] as number[] };
  const history = async (): Promise<RedriveBatch> => {
    await opts.open?.();
    log.opened++;
    let claimed: string[] = [];
    return {
      decide: async (copies, at) => {
        assert.ok(Number.isFinite(at));
        await opts.decide?.();
        log.asked.push(copies.length);
        const out = copies.map((c) => verdict(JSON.parse(c.content.toString()).id as string));
        claimed = copies.flatMap((c, i) => (out[i] === 'move' && c.moves ? [JSON.parse(c.content.toString()).id as string] : []));
        log.claimed.push(claimed);
        return out;
      },
      giveBack: async (from) => {
        log.givenBack.push(from);
      },
    };
  };
  return { history, log };
}

describe('redrive', () => {
  it('moves each parked notification at most once, even when a moved one is parked again during the scan', async () => {
    const q = new FakeDeadQueue(ids(3));
    // Each move fails again at once (the merchant answers 410) and is parked again behind the others.
    q.onMove = (m) => q.queue.push({ content: m.content, properties: { messageId: m.properties.messageId, headers: { 'notify-dead-reason': 'status-410' } } });
    const r = await redrive(q.channel(), config, 100, false);
    assert.deepEqual(q.moved, ['m0', 'm1', 'm2'], 'three moves, one each');
    assert.equal(r.moved, 3);
    assert.equal(r.remaining, 3, 'all three parked again, each once');
    assert.deepEqual(q.ids, ['m0', 'm1', 'm2']);
  });

  it('steps over sticky ones (back to the tail, no nack) and moves up to the limit', async () => {
    const q = new FakeDeadQueue(ids(4), (id) => ({ 'notify-dead-reason': id === 'm1' ? 'blocked' : 'exhausted' }));
    const r = await redrive(q.channel(), config, 2, false);
    assert.deepEqual(q.moved, ['m0', 'm2']);
    assert.deepEqual(r, { moved: 2, skipped: 1, superseded: 0, remaining: 2 });
    assert.deepEqual(q.ids, ['m3', 'm1']);
  });

  it('drops the copies the history says were resent since they were parked (acked, counted, told), even when forced; asks once per batch', async () => {
    const q = new FakeDeadQueue(ids(60), (id) => ({ 'notify-dead-reason': id === 'm3' ? 'blocked' : 'exhausted', 'notify-dead-at': 1000 }));
    const told: string[] = [];
    const h = fakeHistory((id) => (['m1', 'm3', 'm55'].includes(id) ? 'drop' : 'move'));
    const r = await redrive(q.channel(), config, 100, true, { history: h.history, onSuperseded: (id) => told.push(id) });
    assert.deepEqual(h.log.asked, [50, 10], 'one lookup per batch');
    assert.equal(h.log.opened, 2, 'each batch opened once');
    assert.deepEqual(told, ['m1', 'm3', 'm55']);
    assert.deepEqual(r, { moved: 57, skipped: 0, superseded: 3, remaining: 0 });
    assert.equal(q.moved.includes('m1') || q.moved.includes('m55'), false, 'never moved');
    assert.equal(q.unacked.size, 0, 'dropped ones are acked');
  });

  it('holds the copies claimed by a resend whose ladder the history has not recorded yet: kept parked (back to the tail), even when forced, counted skipped', async () => {
    const q = new FakeDeadQueue(ids(4), () => ({ 'notify-dead-reason': 'exhausted', 'notify-dead-at': 1000 }));
    const r = await redrive(q.channel(), config, 100, true, { history: fakeHistory((id) => (id === 'm2' ? 'hold' : 'move')).history });
    assert.deepEqual(q.moved, ['m0', 'm1', 'm3']);
    assert.deepEqual(r, { moved: 3, skipped: 1, superseded: 0, remaining: 1 });
    assert.deepEqual(q.ids, ['m2'], 'still parked');
    assert.equal(q.unacked.size, 0);
  });

  it('asks the history to claim only the copies it moves: sticky ones stay parked unclaimed (a claim with no ladder would hold them, and refuse resends, for a day)', async () => {
    const q = new FakeDeadQueue(ids(4), (id) => ({ 'notify-dead-reason': id === 'm1' ? 'blocked' : 'exhausted', 'notify-dead-at': 1000 }));
    const h = fakeHistory();
    const r = await redrive(q.channel(), config, 100, false, { history: h.history });
    assert.deepEqual(h.log.claimed, [['m0', 'm2', 'm3']]);
    assert.deepEqual(q.moved, ['m0', 'm2', 'm3']);
    assert.deepEqual(r, { moved: 3, skipped: 1, superseded: 0, remaining: 1 });
  });
  it('a move whose confirm never comes fails the redrive after its confirm timeout and gives the batch back (a lost confirm must not hold every later scan)', async () => {
    const q = new FakeDeadQueue(ids(3));
    q.loseConfirm.add(1);
    const nacked: string[] = [];
    const ch = nackingChannel(q, nacked);
    await assert.rejects(redrive(ch, config, 100, false, { confirmTimeoutMs: 50 }), (err: { code?: string }) => err.code === 'BROKER_CONFIRM_TIMEOUT');
    assert.deepEqual(q.moved, ['m0'], 'the first moved; the second published, its confirm lost');
    assert.deepEqual(nacked, ['m1', 'm2'], 'given back: the one whose confirm was lost and the rest');
  });

  it('a history that cannot be reached fails the redrive before it takes anything (a requeue counts towards a quorum queue\'s delivery limit)', async () => {
    const q = new FakeDeadQueue(ids(3));
    const h = fakeHistory(undefined, { open: async () => Promise.reject(new Error('database away')) });
    await assert.rejects(redrive(q.channel(), config, 100, false, { history: h.history }), /database away/);
    assert.deepEqual(q.calls.filter((c) => c.startsWith('get')), [], 'nothing taken');
    assert.deepEqual(q.ids, ['m0', 'm1', 'm2']);
  });

  it('a history that fails once the batch is taken fails the redrive and gives the batch back, moving nothing of it', async () => {
    const q = new FakeDeadQueue(ids(3));
    const nacked: string[] = [];
    const ch = nackingChannel(q, nacked);
    const h = fakeHistory(undefined, { decide: async () => Promise.reject(new Error('database away')) });
    await assert.rejects(redrive(ch, config, 100, false, { history: h.history }), /database away/);
    assert.deepEqual(nacked, ['m0', 'm1', 'm2']);
    assert.deepEqual(q.moved, []);
  });

  it('a move the broker refuses gives back its claim and those after it, so a resend may take them', async () => {
    const q = new FakeDeadQueue(ids(3), () => ({ 'notify-dead-reason': 'exhausted', 'notify-dead-at': 1000 }));
    q.failPublish.add(1);
    const h = fakeHistory();
    const ch = nackingChannel(q);
    await assert.rejects(redrive(ch, config, 100, false, { history: h.history }), (err: { code?: string }) => err.code === 'BROKER_NACK');
    assert.deepEqual(q.moved, ['m0']);
    assert.deepEqual(h.log.givenBack, [1]);
  });

  it('a move whose confirm is lost keeps its claim (the broker may have taken it: a later redrive holds its copy instead of moving it twice); the rest are given back', async () => {
    const q = new FakeDeadQueue(ids(3), () => ({ 'notify-dead-reason': 'exhausted', 'notify-dead-at': 1000 }));
    q.loseConfirm.add(1);
    const h = fakeHistory();
    const ch = nackingChannel(q);
    await assert.rejects(redrive(ch, config, 100, false, { history: h.history, confirmTimeoutMs: 50 }), (err: { code?: string }) => err.code === 'BROKER_CONFIRM_TIMEOUT');
    assert.deepEqual(h.log.givenBack, [2]);
  });

  it('a channel that closed under the redrive (its nacks throw) still gives back the claims of the copies not published; the one in flight keeps its claim', async () => {
    const q = new FakeDeadQueue(ids(3), () => ({ 'notify-dead-reason': 'exhausted', 'notify-dead-at': 1000 }));
    q.closeOnPublish.add(0);
    const h = fakeHistory();
    const ch = nackingChannel(q, [], true);
    await assert.rejects(redrive(ch, config, 100, false, { history: h.history }), (err: { code?: string }) => err.code === 'BROKER_UNAVAILABLE');
    assert.deepEqual(h.log.givenBack, [1]);
  });
});
