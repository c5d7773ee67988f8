import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { badHandlingCost } from '../../bench/handling-cost.js';

describe('bench: what a bad notification costs', () => {
  it('charges the healthy deliveries the control cost per notification and gives the bad ones the rest', () => {
    // Control: 18,000 healthy + 2,000 B, 200 ms per 1,000 healthy in all: 3,600 ms, 180 µs a notification.
    // Bad run: 250 ms per 1,000 healthy: 4,500 ms; the healthy 18,000 cost 3,240, the 2,000 bad 1,260: 630 µs, 3.5×.
    assert.equal(badHandlingCost({ consumer: 150, broker: 50 }, { consumer: 180, broker: 70 }, 18_000, 2_000), 3.5);
    // A bad run that cost what the control did per healthy delivery: its bad notifications cost what B's did.
    assert.equal(badHandlingCost({ consumer: 150, broker: 50 }, { consumer: 150, broker: 50 }, 18_000, 2_000), 1);
  });

  it('is NaN without a figure to divide by', () => {
    assert.ok(Number.isNaN(badHandlingCost({ consumer: 150, broker: NaN }, { consumer: 150, broker: 50 }, 18_000, 2_000)));
    assert.ok(Number.isNaN(badHandlingCost({ consumer: 150, broker: 50 }, { consumer: 150, broker: 50 }, 18_000, 0)));
  });
});
