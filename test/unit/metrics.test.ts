// Counters an alert reads with increase() exist at 0 from the start, for the values they are known to take.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createWorkerMetrics, startKnownSeries } from '../../src/core/metrics.js';

describe('startKnownSeries', () => {
  it("a tier's parked reasons and the ingress's statuses are series at 0 before anything happens", async () => {
    const values = async (role: 'tier' | 'ingress', name: string): Promise<string[]> => {
      const m = createWorkerMetrics({ role, tier: '' }, false);
      startKnownSeries(m, role);
      const metric = (await m.registry.getMetricsAsJSON()).find((x) => x.name === name)!;
      return metric.values.filter((v) => v.value === 0).map((v) => String(Object.values(v.labels)[0]));
    };
    assert.deepEqual(await values('tier', 'notify_dead_total'), ['exhausted', 'invalid', 'blocked', 'disabled']);
    assert.deepEqual(await values('ingress', 'notify_ingress_requests_total'), ['202', '400', '503']);
    assert.deepEqual(await values('ingress', 'notify_dead_total'), [], 'the ingress parks nothing');
  });
});
