import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DEFAULT_LANE_POLICY, lanePolicy, shouldMoveLane, type LanePolicy, type LaneState } from '../../src/broker/consumer-lanes.js';

const policy: LanePolicy = { stallMs: 250, minSingles: 8, minGapMs: 250, maxRetired: 3 };
const calm: LaneState = { sinceLastMoveMs: Infinity, retired: 0, busy: false };

describe('shouldMoveLane', () => {
  it('moves when a head held past stallMs made enough acks go one by one', () => {
    assert.equal(shouldMoveLane({ singles: 8, headAgeMs: 250 }, calm, policy), true);
    assert.equal(shouldMoveLane({ singles: 200, headAgeMs: 5000 }, calm, policy), true);
  });

  it('a merchant’s ordinary latency, or a few stragglers, never move a lane', () => {
    assert.equal(shouldMoveLane({ singles: 200, headAgeMs: 249 }, calm, policy), false);
    assert.equal(shouldMoveLane({ singles: 7, headAgeMs: 5000 }, calm, policy), false);
  });

  it('keeps a gap between moves', () => {
    assert.equal(shouldMoveLane({ singles: 50, headAgeMs: 1000 }, { ...calm, sinceLastMoveMs: 249 }, policy), false);
    assert.equal(shouldMoveLane({ singles: 50, headAgeMs: 1000 }, { ...calm, sinceLastMoveMs: 250 }, policy), true);
  });

  it('never holds more than maxRetired old lanes: past it, acks go one by one', () => {
    assert.equal(shouldMoveLane({ singles: 50, headAgeMs: 1000 }, { ...calm, retired: 2 }, policy), true);
    assert.equal(shouldMoveLane({ singles: 50, headAgeMs: 1000 }, { ...calm, retired: 3 }, policy), false);
  });

  it('never moves while a move, a pause, a reconnect or a drain is under way', () => {
    assert.equal(shouldMoveLane({ singles: 50, headAgeMs: 1000 }, { ...calm, busy: true }, policy), false);
  });

  it('the defaults are frozen and bound the unacked deliveries to four windows', () => {
    assert.ok(Object.isFrozen(DEFAULT_LANE_POLICY));
    assert.equal(DEFAULT_LANE_POLICY.maxRetired + 1, 4);
  });
});

describe('lanePolicy', () => {
  it('takes the number of old lanes from delivery.consumerLanes, 0 never moving', () => {
    assert.equal(lanePolicy(3).maxRetired, 3);
    assert.equal(shouldMoveLane({ singles: 50, headAgeMs: 1000 }, calm, lanePolicy(0)), false);
    assert.equal(shouldMoveLane({ singles: 50, headAgeMs: 1000 }, calm, lanePolicy(1)), true);
  });
});
