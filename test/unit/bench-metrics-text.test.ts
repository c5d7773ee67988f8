import { test } from 'node:test';
import assert from 'node:assert/strict';
import { counterSum, histogramPercentileMs, samples } from '../../bench/metrics-text.js';

const METRICS = [
  '# HELP notify_deferrals_total x',
  '# TYPE notify_deferrals_total counter',
  'notify_deferrals_total{tier="0"} 12',
  'notify_deferrals_total{tier="1"} 3',
  'notify_deferrals_total_extra{tier="0"} 1000',
  'notify_attempts_total{tier="0",outcome="success"} 900',
  'notify_attempts_total{outcome="skipped",tier="0"} 7',
  'notify_attempts_total{tier="1",outcome="skipped"} 1',
  'notify_attempts_total{tier="0",outcome="retry"} 5',
  'notify_attempts_total{tier="2",outcome="error"} 2',
  'notify_history_records_total{result="written"} 40',
  'notify_history_records_total{result="duplicate"} 2',
  'notify_history_records_total{result="refused"} 9',
  'notify_up 1',
  'notify_schedule_lateness_seconds_bucket{le="0.01",tier="1"} 50',
  'notify_schedule_lateness_seconds_bucket{le="0.05",tier="1"} 98',
  'notify_schedule_lateness_seconds_bucket{le="0.1",tier="1"} 100',
  'notify_schedule_lateness_seconds_bucket{le="+Inf",tier="1"} 100',
  'notify_schedule_lateness_seconds_bucket{le="+Inf",tier="2"} 0',
].join('\n');

test('counterSum adds the samples of exactly one metric whose labels match, in any label order', () => {
  assert.equal(counterSum(METRICS, 'notify_deferrals_total'), 15, 'a longer name is another metric');
  assert.equal(counterSum(METRICS, 'notify_deferrals_total', { tier: '1' }), 3);
  assert.equal(counterSum(METRICS, 'notify_attempts_total', { outcome: 'skipped' }), 8);
  assert.equal(counterSum(METRICS, 'notify_attempts_total', { tier: '0', outcome: 'skipped' }), 7);
  assert.equal(counterSum(METRICS, 'notify_history_records_total', { result: /^(?:written|duplicate)$/ }), 42);
  assert.equal(counterSum(METRICS, 'notify_attempts_total', { outcome: 'dead' }), 0);
  assert.equal(counterSum('', 'notify_deferrals_total'), 0);
  assert.deepEqual(samples(METRICS, 'notify_up'), [{ labels: {}, value: 1 }], 'a sample without labels');
});

test('histogramPercentileMs gives the upper bound of the bucket holding the percentile, per tier', () => {
  assert.equal(histogramPercentileMs(METRICS, '1', 50), 10);
  assert.equal(histogramPercentileMs(METRICS, '1', 99), 100);
  assert.equal(histogramPercentileMs(METRICS, '2', 99), null, 'nothing observed');
  assert.equal(histogramPercentileMs(METRICS, '3', 99), null, 'no such tier');
});
