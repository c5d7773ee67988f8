// The console's Overview turns two /metrics scrapes into attempts/s and a
// windowed lateness p99 (console/src/prometheus.ts, pure).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseExposition, quantileOfBuckets, ratePerSecond, select, total, windowQuantile } from '../../console/src/prometheus.js';

const text = (attempts0: number, attempts1: number, buckets0: readonly number[]): string => `# HELP notify_attempts_total Attempts
# TYPE notify_attempts_total counter
notify_attempts_total{tier="0",outcome="success"} ${attempts0}
notify_attempts_total{tier="0",outcome="retry"} 4
notify_attempts_total{tier="1",outcome="success"} ${attempts1}
# TYPE notify_schedule_lateness_seconds histogram
notify_schedule_lateness_seconds_bucket{le="0.005",tier="0"} ${buckets0[0]}
notify_schedule_lateness_seconds_bucket{le="0.05",tier="0"} ${buckets0[1]}
notify_schedule_lateness_seconds_bucket{le="0.5",tier="0"} ${buckets0[2]}
notify_schedule_lateness_seconds_bucket{le="+Inf",tier="0"} ${buckets0[3]}
notify_schedule_lateness_seconds_sum{tier="0"} 1.5
notify_schedule_lateness_seconds_count{tier="0"} ${buckets0[3]}
notify_queue_messages{queue="t.work.0"} 12
notify_queue_messages{queue="t.dead"} 3
label_escapes{path="a\\"b\\\\c\\nd"} 1 1700000000000
not a sample line
`;

describe('console metrics', () => {
  it('parses samples, labels (escapes too) and leaves comments and junk out', () => {
    const s = parseExposition(text(10, 2, [0, 0, 0, 0]), 1000);
    assert.equal(total(s, 'notify_attempts_total', { tier: '0' }), 14);
    assert.equal(total(s, 'notify_attempts_total'), 16);
    assert.deepEqual(
      select(s, 'notify_queue_messages').map((x) => [x.labels.queue, x.value]),
      [
        ['t.work.0', 12],
        ['t.dead', 3],
      ],
    );
    assert.equal(select(s, 'label_escapes')[0]!.labels.path, 'a"b\\c\nd');
    assert.equal(select(s, 'notify_schedule_lateness_seconds_bucket', { le: '+Inf' })[0]!.value, 0);
    assert.equal(s.samples.some((x) => x.name === 'not'), false);
  });

  it('attempts/s between two scrapes, per tier; a counter that went back counts from 0', () => {
    const a = parseExposition(text(10, 2, [0, 0, 0, 0]), 10_000);
    const b = parseExposition(text(40, 2, [0, 0, 0, 0]), 13_000);
    assert.equal(ratePerSecond(a, b, 'notify_attempts_total', { tier: '0' }), 10);
    assert.equal(ratePerSecond(a, b, 'notify_attempts_total', { tier: '1' }), 0);
    assert.equal(ratePerSecond(a, a, 'notify_attempts_total'), null, 'no time between them');
    const restarted = parseExposition(text(3, 0, [0, 0, 0, 0]), 14_000);
    assert.equal(ratePerSecond(b, restarted, 'notify_attempts_total', { tier: '1' }), 0);
    assert.equal(ratePerSecond(b, restarted, 'notify_attempts_total', { tier: '0' }), 7, '3 + 4 since the restart over 1 s');
  });

  it('lateness p99 over the window only, as histogram_quantile computes it', () => {
    // Before: 100 fast observations. In the window: 100 more, 90 under 5 ms, 10 between 50 and 500 ms.
    const a = parseExposition(text(0, 0, [100, 100, 100, 100]), 0);
    const b = parseExposition(text(0, 0, [190, 190, 200, 200]), 5000);
    const p99 = windowQuantile(a, b, 'notify_schedule_lateness_seconds', 0.99, { tier: '0' })!;
    // rank 99 of 100: in (0.05, 0.5], 9 of its 10 → 0.05 + 0.45 * 0.9
    assert.ok(Math.abs(p99 - 0.455) < 1e-9, String(p99));
    assert.equal(windowQuantile(b, b, 'notify_schedule_lateness_seconds', 0.99, { tier: '0' }), null, 'nothing observed in between');
    assert.equal(windowQuantile(a, b, 'notify_schedule_lateness_seconds', 0.99, { tier: '7' }), null, 'no such tier');
  });

  it('quantileOfBuckets edge cases', () => {
    assert.equal(quantileOfBuckets([], 0.99), null);
    assert.equal(quantileOfBuckets([[Infinity, 0]], 0.99), null);
    assert.equal(quantileOfBuckets([[1, 10], [Infinity, 10]], 0.5), 0.5, 'first bucket starts at 0');
    assert.equal(quantileOfBuckets([[1, 0], [2, 0], [Infinity, 5]], 0.99), 2, 'in +Inf: the largest finite bound');
  });
});
