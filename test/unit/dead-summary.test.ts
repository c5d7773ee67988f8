// What GET /admin/dead shows of a parked message: read from its headers and
// body, never throwing, whatever sits in P.dead.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { countByMerchant, countByReason, parkedReason, summariseParked } from '../../src/broker/dead-summary.js';

const body = (o: unknown): Buffer => Buffer.from(JSON.stringify(o));

describe('summariseParked', () => {
  it('a notification parked by a tier: reason, tier, attempts, last error, time, url, merchant', () => {
    const s = summariseParked(
      {
        messageId: 'order-1',
        headers: {
          'notify-dead-reason': 'status-410',
          'notify-last-error': 'status 410: gone',
          'notify-attempt': 2,
          'notify-dead-tier': 2,
          'notify-dead-at': 1_780_000_000_000,
          'notify-first-attempt-at': 1_779_999_990_000,
        },
      },
      body({ id: 'order-1', merchant: 'shop-7', url: 'https://merchant.example/notify?x=1', body: { paid: true }, createdAt: 1 }),
    );
    assert.deepEqual(s, {
      id: 'order-1',
      reason: 'status-410',
      tier: 2,
      attempts: 3,
      lastError: 'status 410: gone',
      deadAt: 1_780_000_000_000,
      url: 'https://merchant.example/notify?x=1',
      merchant: 'shop-7',
      redriven: 0,
    });
  });

  it("attempts are the parking tier's own count (notify-dead-attempts) when it says so: none at a tier that parked before its attempt", () => {
    const capped = summariseParked({ messageId: 'c', headers: { 'notify-dead-reason': 'exhausted', 'notify-dead-tier': 2, 'notify-dead-attempts': 2 } }, body({ id: 'c' }));
    assert.deepEqual([capped.tier, capped.attempts], [2, 2], "a merchant's cap of 2 attempts parks it at tier 2 without a third");
    const old = summariseParked({ messageId: 'o', headers: { 'notify-dead-reason': 'exhausted', 'notify-dead-tier': 2 } }, body({ id: 'o' }));
    assert.equal(old.attempts, 3, 'without the header, exhausted at tier 2 is taken as its third attempt');
    const disabled = summariseParked({ messageId: 'd', headers: { 'notify-dead-reason': 'disabled', 'notify-dead-tier': 1 } }, body({ id: 'd' }));
    assert.equal(disabled.attempts, 1, 'disabled is decided before the attempt');
    const stale = summariseParked({ messageId: 's', headers: { 'notify-dead-reason': 'exhausted', 'notify-dead-tier': 1, 'notify-dead-attempts': 5 } }, body({ id: 's' }));
    assert.equal(stale.attempts, 2, 'a count its tier cannot have said (left by an older notifyd\'s redrive) is not believed');
  });

  it('hides a password in the url and counts earlier redrives', () => {
    const s = summariseParked(
      { messageId: 'a', headers: { 'notify-dead-reason': 'exhausted', 'notify-dead-tier': 0, 'notify-redriven': 2 } },
      body({ id: 'a', url: 'https://user:hunter2@merchant.example/n' }),
    );
    assert.equal(s.url, 'https://user:***@merchant.example/n');
    assert.ok(!JSON.stringify(s).includes('hunter2'));
    assert.equal(s.redriven, 2);
  });

  it('a body that is not JSON (parked invalid) still lists, by its AMQP id, without url', () => {
    const s = summariseParked({ messageId: 'raw-1', headers: { 'notify-dead-reason': 'invalid', 'notify-last-error': 'body is not JSON', 'notify-attempt': 0 } }, Buffer.from('\x00garbage'));
    assert.equal(s.id, 'raw-1');
    assert.equal(s.reason, 'invalid');
    assert.equal(s.tier, 0);
    assert.equal(s.attempts, 0, 'parked invalid before its tier made an attempt (no notify-dead-attempts: parked by an older notifyd)');
    assert.equal(s.url, null);
    assert.equal(s.merchant, null);
    assert.equal(s.deadAt, null);
  });

  it('without messageId the id comes from the body; without headers nothing is made up', () => {
    const s = summariseParked({}, body({ id: 'from-body', url: 42 }));
    assert.equal(s.id, 'from-body');
    assert.equal(s.reason, 'unknown');
    assert.equal(s.tier, null);
    assert.equal(s.attempts, null);
    assert.equal(s.lastError, null);
    assert.equal(s.url, null, 'a url that is not a string is not shown');
    assert.deepEqual(summariseParked({}, Buffer.from('[1,2]')).id, '');
  });

  it('what the broker dead-lettered itself (x-death, e.g. a delivery limit) shows as broker-<reason> at its time', () => {
    const headers = {
      'notify-attempt': 1,
      'x-death': [
        { count: 1, reason: 'delivery_limit', queue: 'notify.work.1', time: 1_780_000_000, exchange: '', 'routing-keys': ['notify.work.1'] },
        { count: 1, reason: 'expired', queue: 'notify.wait.1', time: 1_779_999_999, exchange: '', 'routing-keys': ['notify.wait.1'] },
      ],
    };
    const s = summariseParked({ messageId: 'x', headers }, body({ id: 'x', url: 'http://m.example/' }));
    assert.equal(s.reason, 'broker-delivery_limit');
    assert.equal(s.deadAt, 1_780_000_000_000, 'x-death time is in seconds');
    assert.equal(s.tier, 1);
    assert.equal(parkedReason({ 'x-death': [{ reason: 'maxlen', time: { value: 5 } }] }), 'broker-maxlen');
    assert.equal(parkedReason({ 'x-death': [] }), 'unknown');
    // Any publisher can set x-death: an entry that is not a table is ignored, not a listing that throws.
    for (const bad of [null, 'text', 7]) assert.equal(parkedReason({ 'x-death': [bad] }), 'unknown', String(bad));
    assert.doesNotThrow(() => summariseParked({ headers: { 'x-death': [null] } }, Buffer.from('{}')));
    assert.equal(parkedReason({ 'notify-dead-reason': 'blocked', 'x-death': [{ reason: 'expired' }] }), 'blocked', 'our own reason wins');
  });

  it('header values as amqplib may give them: Buffers, numeric strings, bigints', () => {
    const s = summariseParked(
      { messageId: Buffer.from('buf-id'), headers: { 'notify-dead-reason': Buffer.from('exhausted'), 'notify-dead-tier': '4', 'notify-dead-at': 1_780_000_000_000n } },
      body({}),
    );
    assert.equal(s.id, 'buf-id');
    assert.equal(s.reason, 'exhausted');
    assert.equal(s.tier, 4);
    assert.equal(s.deadAt, 1_780_000_000_000);
  });

  it('long texts are clipped', () => {
    const s = summariseParked({ headers: { 'notify-last-error': 'e'.repeat(5000) } }, body({ url: `https://m.example/${'p'.repeat(5000)}` }));
    assert.ok(s.lastError!.length <= 500);
    assert.ok(s.url!.length <= 2048);
    assert.ok(s.lastError!.endsWith('…'));
  });
});

describe('countByReason', () => {
  it('counts each reason', () => {
    assert.deepEqual(countByReason([{ reason: 'exhausted' }, { reason: 'status-410' }, { reason: 'exhausted' }]), { exhausted: 2, 'status-410': 1 });
    assert.deepEqual(countByReason([]), {});
  });
});

describe('countByMerchant', () => {
  it('counts each merchant, and those without one under "-"', () => {
    assert.deepEqual(countByMerchant([{ merchant: 'shop-a' }, { merchant: null }, { merchant: 'shop-a' }, { merchant: 'shop-b' }]), { 'shop-a': 2, 'shop-b': 1, '-': 1 });
    assert.deepEqual(countByMerchant([]), {});
  });

  it('counts merchants named like Object.prototype\'s properties as any other', () => {
    const counts = countByMerchant([{ merchant: 'constructor' }, { merchant: 'toString' }, { merchant: '__proto__' }, { merchant: 'constructor' }]);
    assert.equal(JSON.stringify(counts), '{"constructor":2,"toString":1,"__proto__":1}');
  });
});
