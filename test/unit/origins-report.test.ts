// GET /admin/origins from the tiers' stats: each tier lists only its worst origins, but counts all of them.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { OriginSnapshot } from '../../src/delivery/origin-limiter.js';
import { originsReport } from '../../src/supervisor/origins-report.js';

function origin(name: string, state: OriginSnapshot['state'], waiting = 0): OriginSnapshot {
  return { origin: name, state, limit: 1, inflight: 0, waiting, deferred: 0, skipped: 0, consecutiveFailures: 0, lastError: null, lastErrorAt: null, nextProbeInMs: null, rttMs: 0 };
}

describe('originsReport', () => {
  it("counts every tier's failing and limited origins, not only those it listed; lists the worst first, at most the limit", () => {
    const tier0 = Array.from({ length: 50 }, (_, i) => origin(`https://f${i}.example`, 'failing', i));
    const r = originsReport(
      [
        // 300 failing, of which it lists its 50 worst.
        { tier: 0, stats: { origins: tier0, originCounts: { failing: 300, limited: 2 } } },
        { tier: 1, stats: { origins: [origin('https://l.example', 'limited'), origin('https://ok.example', 'ok')], originCounts: { failing: 0, limited: 1 } } },
      ],
      20,
    );
    assert.deepEqual(r.counts, { failing: 300, limited: 3 });
    assert.equal(r.origins.length, 20);
    assert.deepEqual([r.origins[0]!.origin, r.origins[0]!.tier], ['https://f49.example', 0], 'the failing one with the most waiting first');
  });

  it('a tier that sent no counts yet is counted from its list; one with no stats adds nothing', () => {
    const r = originsReport(
      [
        { tier: 2, stats: { origins: [origin('https://a.example', 'failing'), origin('https://b.example', 'limited'), origin('https://c.example', 'ok')] } },
        { tier: 3, stats: null },
      ],
      10,
    );
    assert.deepEqual(r.counts, { failing: 1, limited: 1 });
    assert.deepEqual(r.origins.map((o) => o.state), ['failing', 'limited', 'ok']);
  });
});
