import { test } from 'node:test';
import assert from 'node:assert/strict';
import { handlingCounts } from '../../bench/scenarios/isolation.js';

test('handlingCounts sums deferrals, skips and hand-ons over every tier, and nothing else', () => {
  const metrics = [
    '# HELP notify_deferrals_total x',
    'notify_deferrals_total{tier="0"} 12',
    'notify_deferrals_total{tier="1"} 3',
    'notify_attempts_total{tier="0",outcome="success"} 900',
    'notify_attempts_total{tier="0",outcome="skipped"} 7',
    'notify_attempts_total{tier="1",outcome="skipped"} 1',
    'notify_attempts_total{tier="0",outcome="retry"} 5',
    'notify_attempts_total{tier="2",outcome="error"} 2',
    'notify_attempts_total{tier="0",outcome="dead"} 4',
  ].join('\n');
  assert.deepEqual(handlingCounts(metrics), { deferred: 15, skipped: 8, handedOn: 7 });
  assert.deepEqual(handlingCounts(''), { deferred: 0, skipped: 0, handedOn: 0 });
});
