// The wait before a tier consumes again after the broker cancelled its consumer.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CANCEL_QUIET_MS, CANCEL_RETRY_FIRST_MS, CANCEL_RETRY_MAX_MS, cancelRetryMs } from '../../src/broker/cancel-backoff.js';

describe('cancel back-off', () => {
  it('starts at the first wait, doubles while cancels keep coming, up to the cap', () => {
    let wait = 0;
    const seen: number[] = [];
    for (let i = 0; i < 8; i++) seen.push((wait = cancelRetryMs(wait, i === 0 ? Infinity : wait + 10)));
    assert.deepEqual(seen, [1000, 2000, 4000, 8000, 16_000, 30_000, 30_000, 30_000]);
    assert.equal(seen[0], CANCEL_RETRY_FIRST_MS);
    assert.equal(Math.max(...seen), CANCEL_RETRY_MAX_MS);
  });

  it('a cancel long after the previous one starts from the first wait again', () => {
    assert.equal(cancelRetryMs(16_000, CANCEL_QUIET_MS), CANCEL_RETRY_FIRST_MS);
    assert.equal(cancelRetryMs(16_000, CANCEL_QUIET_MS - 1), 30_000);
  });
});
