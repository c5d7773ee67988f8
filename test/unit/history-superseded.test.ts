// Which parked copies a redrive drops (issue 16 review): those of
// notifications the history shows were resent after they were parked.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { copyKey, isSuperseded } from '../../src/history/superseded.js';

describe('history: superseded parked copies', () => {
  const parked = 10_000;

  it('a ladder started after the copy was parked supersedes it; the copy\'s own ladder does not', () => {
    assert.equal(isSuperseded(parked, { status: 'dead', statusAt: parked + 5, lastRunAt: parked + 1 }), true, 'resent, died again');
    assert.equal(isSuperseded(parked, { status: 'dead', statusAt: parked + 1, lastRunAt: parked - 3000 }), false, 'its own ladder, its own dead event a ms later');
  });

  it('a status other than dead set after the parking (a resend\'s claim, a delivery) supersedes it', () => {
    assert.equal(isSuperseded(parked, { status: 'pending', statusAt: parked + 10, lastRunAt: parked - 3000 }), true, 'claimed by a resend, run not recorded yet');
    assert.equal(isSuperseded(parked, { status: 'delivered', statusAt: parked + 10, lastRunAt: null }), true);
  });

  it('a history that lags (still pending from the copy\'s own start) or does not know it never drops it', () => {
    assert.equal(isSuperseded(parked, { status: 'pending', statusAt: parked - 3000, lastRunAt: parked - 3000 }), false);
    assert.equal(isSuperseded(parked, undefined), false);
  });

  it('reads the notification and the dead time off the copy; a copy that does not say is never dropped', () => {
    const content = Buffer.from(JSON.stringify({ id: 'n1', createdAt: 1234.7, url: 'https://m.example/' }));
    assert.deepEqual(copyKey({ content, headers: { 'notify-dead-at': 5000 } }), { id: 'n1', createdAt: 1234, deadAt: 5000 });
    assert.equal(copyKey({ content, headers: {} }), null);
    assert.equal(copyKey({ content: Buffer.from('not json'), headers: { 'notify-dead-at': 5000 } }), null);
  });
});
