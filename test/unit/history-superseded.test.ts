// Which parked copies a redrive drops (issue 16 review): those of
// notifications the history shows were resent after they were parked.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { HOLD_MAX_MS, copyKey, copyVerdict } from '../../src/history/superseded.js';

describe('history: superseded parked copies', () => {
  const parked = 10_000;
  const now = parked + 60_000;

  it('another ladder started after the copy was parked supersedes it; the copy\'s own ladder never does', () => {
    assert.equal(copyVerdict(parked, { status: 'dead', statusAt: parked + 5, otherRunAt: parked + 1 }, now), 'drop', 'resent, died again');
    assert.equal(copyVerdict(parked, { status: 'pending', statusAt: parked + 5, otherRunAt: parked + 5 }, now), 'drop', 'resent, under way, recorded');
    assert.equal(copyVerdict(parked, { status: 'dead', statusAt: parked + 1, otherRunAt: null }, now), 'move', 'its own ladder (its start recorded a ms after its dead time), its own dead event');
    assert.equal(copyVerdict(parked, { status: 'dead', statusAt: parked + 1, otherRunAt: parked - 3000 }, now), 'move', 'an older ladder');
  });

  it('a delivery after the parking supersedes it; a resend\'s claim with no ladder recorded holds it (neither moved twice nor lost)', () => {
    assert.equal(copyVerdict(parked, { status: 'delivered', statusAt: parked + 10, otherRunAt: null }, now), 'drop');
    assert.equal(copyVerdict(parked, { status: 'pending', statusAt: parked + 10, otherRunAt: null }, now), 'hold', 'claimed, its ladder not recorded (on its way, or never published)');
    assert.equal(copyVerdict(parked, { status: 'dead', statusAt: parked + 10, otherRunAt: null }, now), 'move', 'the claim given back (its publish failed)');
    const claimedAt = parked + 10;
    assert.equal(copyVerdict(parked, { status: 'pending', statusAt: claimedAt, otherRunAt: null }, claimedAt + HOLD_MAX_MS - 1), 'hold');
    assert.equal(copyVerdict(parked, { status: 'pending', statusAt: claimedAt, otherRunAt: null }, claimedAt + HOLD_MAX_MS), 'move', 'a claim that long without a ladder was never published and never given back: the copy is the only one');
  });

  it('a copy of a ladder that was delivered (a duplicate after a lost ack, parked later) is dropped; one of a ladder that started after the delivery is moved', () => {
    const ownRun = parked - 60_000;
    const deliveredOwn = { status: 'delivered', statusAt: ownRun + 20, statusRunAt: ownRun, otherRunAt: null };
    assert.equal(copyVerdict(parked, deliveredOwn, now, ownRun), 'drop', 'delivered on its own ladder');
    assert.equal(copyVerdict(parked, { ...deliveredOwn, statusRunAt: null }, now, ownRun), 'drop', 'a row from before migration 004: the delivery after the ladder started');
    assert.equal(copyVerdict(parked, { ...deliveredOwn, statusAt: ownRun - 5_000, statusRunAt: ownRun - 6_000 }, now, ownRun), 'move', 'delivered before its ladder started (a producer\'s second ladder of the same id)');
    assert.equal(copyVerdict(parked, deliveredOwn, now, null), 'move', 'its ladder not known: as before');
  });

  it('a history that lags or does not know it never drops it', () => {
    assert.equal(copyVerdict(parked, { status: 'pending', statusAt: parked - 3000, otherRunAt: parked - 3000 }, now), 'move');
    assert.equal(copyVerdict(parked, { status: 'delivered', statusAt: parked - 3000, otherRunAt: null }, now), 'move', 'delivered before it was parked: a later copy of the same id');
    assert.equal(copyVerdict(parked, undefined, now), 'move');
  });

  it('reads the notification and the dead time off the copy; a copy that does not say is never dropped', () => {
    const content = Buffer.from(JSON.stringify({ id: 'n1', createdAt: 1234.7, url: 'https://m.example/' }));
    assert.deepEqual(copyKey({ content, headers: { 'notify-dead-at': 5000 } }), { id: 'n1', createdAt: 1234, run: '', deadAt: 5000 });
    assert.equal(copyKey({ content, headers: { 'notify-dead-at': 5000, 'notify-run': 'r1' } })?.run, 'r1');
    assert.equal(copyKey({ content, headers: {} }), null);
    assert.equal(copyKey({ content: Buffer.from('not json'), headers: { 'notify-dead-at': 5000 } }), null);
  });
});
