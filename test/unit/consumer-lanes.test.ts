import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DEFAULT_LANE_POLICY, lanePolicy, shouldMoveLane, type LanePolicy, type LaneState } from '../../src/broker/consumer-lanes.js';

const policy: LanePolicy = { stallMs: 250, stallFactor: 4, minSingles: 8, minGapMs: 250, maxRetired: 3 };
const calm: LaneState = { sinceLastMoveMs: Infinity, retired: 0, busy: false };

describe('shouldMoveLane', () => {
  it('moves when a head held past stallMs made enough acks go one by one', () => {
    assert.equal(shouldMoveLane({ singles: 8, headAgeMs: 250, singlesAgeMs: 10 }, calm, policy), true);
    assert.equal(shouldMoveLane({ singles: 200, headAgeMs: 5000, singlesAgeMs: 10 }, calm, policy), true);
  });

  it('a merchant’s ordinary latency, or a few stragglers, never move a lane', () => {
    assert.equal(shouldMoveLane({ singles: 200, headAgeMs: 249, singlesAgeMs: 10 }, calm, policy), false);
    assert.equal(shouldMoveLane({ singles: 7, headAgeMs: 5000, singlesAgeMs: 10 }, calm, policy), false);
  });

  it('a head only as slow as the rest (a slow merchant, every lane alike) never moves a lane; one far slower does', () => {
    // A merchant answering in 300–900 ms: the head is old, but so is everything acked behind it.
    assert.equal(shouldMoveLane({ singles: 40, headAgeMs: 900, singlesAgeMs: 400 }, calm, policy), false);
    assert.equal(shouldMoveLane({ singles: 40, headAgeMs: 1600, singlesAgeMs: 400 }, calm, policy), true);
  });

  it('keeps a gap between moves', () => {
    assert.equal(shouldMoveLane({ singles: 50, headAgeMs: 1000, singlesAgeMs: 10 }, { ...calm, sinceLastMoveMs: 249 }, policy), false);
    assert.equal(shouldMoveLane({ singles: 50, headAgeMs: 1000, singlesAgeMs: 10 }, { ...calm, sinceLastMoveMs: 250 }, policy), true);
  });

  it('never holds more than maxRetired old lanes: past it, acks go one by one', () => {
    assert.equal(shouldMoveLane({ singles: 50, headAgeMs: 1000, singlesAgeMs: 10 }, { ...calm, retired: 2 }, policy), true);
    assert.equal(shouldMoveLane({ singles: 50, headAgeMs: 1000, singlesAgeMs: 10 }, { ...calm, retired: 3 }, policy), false);
  });

  it('never moves while a move, a pause, a reconnect or a drain is under way', () => {
    assert.equal(shouldMoveLane({ singles: 50, headAgeMs: 1000, singlesAgeMs: 10 }, { ...calm, busy: true }, policy), false);
  });

  it('the defaults are frozen; with them a hanging merchant behind healthy deliveries moves a lane within 250 ms, a healthy one waiting its turn for tens of milliseconds does not', () => {
    assert.ok(Object.isFrozen(DEFAULT_LANE_POLICY));
    assert.equal(shouldMoveLane({ singles: 30, headAgeMs: 250, singlesAgeMs: 8 }, calm), true);
    assert.equal(shouldMoveLane({ singles: 30, headAgeMs: 249, singlesAgeMs: 8 }, calm), false);
    assert.equal(shouldMoveLane({ singles: 300, headAgeMs: 120, singlesAgeMs: 20 }, calm), false);
  });
});

describe('lanePolicy', () => {
  it('takes the number of old lanes from delivery.consumerLanes, 0 never moving', () => {
    assert.equal(lanePolicy(3).maxRetired, 3);
    assert.equal(shouldMoveLane({ singles: 50, headAgeMs: 1000, singlesAgeMs: 10 }, calm, lanePolicy(0)), false);
    assert.equal(shouldMoveLane({ singles: 50, headAgeMs: 1000, singlesAgeMs: 10 }, calm, lanePolicy(1)), true);
  });
});
