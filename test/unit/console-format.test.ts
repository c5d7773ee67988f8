// The console's times: local, with the offset from UTC said (logs and merchants' reports are read beside them).
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { dateTime } from '../../console/src/format.js';

describe('console dateTime', () => {
  const tz = process.env.TZ;
  after(() => {
    if (tz === undefined) delete process.env.TZ;
    else process.env.TZ = tz;
  });

  it('says the offset of the zone it shows the time in', () => {
    const at = Date.UTC(2025, 5, 1, 6, 3, 7);
    const cases: [string, string][] = [
      ['UTC', '2025-06-01 06:03:07 +00:00'],
      ['Asia/Shanghai', '2025-06-01 14:03:07 +08:00'],
      ['America/St_Johns', '2025-06-01 03:33:07 -02:30'],
    ];
    for (const [zone, shown] of cases) {
      process.env.TZ = zone;
      assert.equal(dateTime(at), shown, zone);
    }
    assert.equal(dateTime(null), '—');
    assert.equal(dateTime('not a time'), 'not a time');
  });
});
