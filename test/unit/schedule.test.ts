import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ErrorCodes, hasCode } from '../../src/core/errors.js';
import { MAX_TIERS, SCHEDULE_PRESETS, formatDuration, parseDuration, parseSchedule, retryTiming } from '../../src/core/schedule.js';

const S = 1000;
const M = 60 * S;
const H = 60 * M;

function throwsCode(fn: () => unknown, code: string, field?: string): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(hasCode(err, code as never), `expected ${code}, got ${String((err as Error)?.message ?? err)}`);
    if (field !== undefined) assert.equal((err as { field?: string }).field, field);
    return true;
  });
}

describe('parseDuration', () => {
  it('parses every unit', () => {
    assert.equal(parseDuration('500ms'), 500);
    assert.equal(parseDuration('15s'), 15_000);
    assert.equal(parseDuration('3m'), 180_000);
    assert.equal(parseDuration('1h'), 3_600_000);
    assert.equal(parseDuration('1d'), 86_400_000);
    assert.equal(parseDuration('0s'), 0);
  });

  it('accepts fractions and rounds to whole ms', () => {
    assert.equal(parseDuration('1.5s'), 1500);
    assert.equal(parseDuration('0.5m'), 30_000);
    assert.equal(parseDuration('1.4ms'), 1);
  });

  it('reads a bare number as milliseconds', () => {
    assert.equal(parseDuration('250'), 250);
    assert.equal(parseDuration(250), 250);
    assert.equal(parseDuration(0), 0);
    assert.equal(parseDuration(2.6), 3);
  });

  it('tolerates surrounding and inner whitespace', () => {
    assert.equal(parseDuration('  15s  '), 15_000);
    assert.equal(parseDuration('15 s'), 15_000);
    assert.equal(parseDuration('\t3m\n'), 180_000);
  });

  it('refuses invalid input with DURATION_INVALID naming the field', () => {
    for (const bad of ['', '   ', 'abc', '-1s', '1x', '5 sec', '1.s', '.5s', '1e3', 's', '1s2', '1,5s', 'NaN', 'Infinity']) {
      throwsCode(() => parseDuration(bad, 'delivery.timeout'), ErrorCodes.DURATION_INVALID, 'delivery.timeout');
    }
    for (const bad of [-1, Number.NaN, Number.POSITIVE_INFINITY]) {
      throwsCode(() => parseDuration(bad), ErrorCodes.DURATION_INVALID, 'duration');
    }
  });

  it('puts the field and the input in the message', () => {
    assert.throws(() => parseDuration('soon', 'x.y'), /x\.y: "soon" is not a duration/);
  });
});

describe('formatDuration', () => {
  it('uses the largest exact unit', () => {
    assert.equal(formatDuration(0), '0ms');
    assert.equal(formatDuration(500), '500ms');
    assert.equal(formatDuration(1500), '1500ms');
    assert.equal(formatDuration(15_000), '15s');
    assert.equal(formatDuration(90_000), '90s');
    assert.equal(formatDuration(900_000), '15m');
    assert.equal(formatDuration(7_200_000), '2h');
    assert.equal(formatDuration(86_400_000), '1d');
  });

  it('round-trips through parseDuration', () => {
    for (const ms of [0, 1, 999, 1000, 1500, 59_999, 60_000, 61_000, 3_600_000, 5_400_000, 86_400_000, 90_061_001]) {
      assert.equal(parseDuration(formatDuration(ms)), ms, `round trip of ${ms}`);
    }
    for (const text of ['500ms', '15s', '3m', '1h', '1d']) assert.equal(formatDuration(parseDuration(text)), text);
  });
});

describe('parseSchedule presets', () => {
  it('default is 0,1s,3s,5s,15s,30s', () => {
    assert.deepEqual(parseSchedule('default'), [0, 1000, 3000, 5000, 15_000, 30_000]);
  });

  it('alipay is 0,4m,10m,10m,1h,2h,6h,15h', () => {
    assert.deepEqual(parseSchedule('alipay'), [0, 4 * M, 10 * M, 10 * M, 1 * H, 2 * H, 6 * H, 15 * H]);
  });

  it('wechatpay has the 16 documented entries', () => {
    const w = parseSchedule('wechatpay');
    assert.equal(w.length, 16);
    assert.deepEqual(w, [
      0, 15 * S, 15 * S, 30 * S, 3 * M, 10 * M, 20 * M, 30 * M, 30 * M, 30 * M, 1 * H, 3 * H, 3 * H, 3 * H, 6 * H, 6 * H,
    ]);
  });

  it('svix is 0,5s,5m,30m,2h,5h,10h,10h', () => {
    assert.deepEqual(parseSchedule('svix'), [0, 5 * S, 5 * M, 30 * M, 2 * H, 5 * H, 10 * H, 10 * H]);
  });

  it('lists exactly the four DESIGN presets, frozen', () => {
    assert.deepEqual(Object.keys(SCHEDULE_PRESETS).sort(), ['alipay', 'default', 'svix', 'wechatpay']);
    assert.ok(Object.isFrozen(SCHEDULE_PRESETS));
  });

  it('accepts a preset name with surrounding whitespace', () => {
    assert.deepEqual(parseSchedule('  svix '), parseSchedule('svix'));
  });

  it('returns a frozen array', () => {
    const s = parseSchedule('default');
    assert.ok(Object.isFrozen(s));
    assert.throws(() => (s as number[]).push(1), TypeError);
  });
});

describe('parseSchedule lists', () => {
  it('parses a comma list with spaces', () => {
    assert.deepEqual(parseSchedule('0s, 500ms ,2s,1m'), [0, 500, 2000, 60_000]);
  });

  it('parses a single entry', () => {
    assert.deepEqual(parseSchedule('10s'), [10_000]);
  });

  it('accepts bare ms numbers in a list', () => {
    assert.deepEqual(parseSchedule('0,100,2500'), [0, 100, 2500]);
  });

  it('accepts an array of strings and numbers', () => {
    assert.deepEqual(parseSchedule(['0s', 250, ' 2s ']), [0, 250, 2000]);
  });

  it('accepts exactly MAX_TIERS entries', () => {
    assert.equal(parseSchedule(Array.from({ length: MAX_TIERS }, () => '1s').join(',')).length, MAX_TIERS);
  });
});

describe('parseSchedule errors', () => {
  it('refuses empty input with SCHEDULE_INVALID', () => {
    throwsCode(() => parseSchedule(''), ErrorCodes.SCHEDULE_INVALID, 'schedule');
    throwsCode(() => parseSchedule('   '), ErrorCodes.SCHEDULE_INVALID, 'schedule');
    throwsCode(() => parseSchedule([]), ErrorCodes.SCHEDULE_INVALID, 'schedule');
  });

  it('refuses garbage and unknown preset names, listing the presets', () => {
    for (const bad of ['fast', 'Default', 'alipay2', '0s,soon', '0s,,1s', '0s,1s,', '0s;1s', '-1s']) {
      throwsCode(() => parseSchedule(bad), ErrorCodes.SCHEDULE_INVALID, 'schedule');
    }
    assert.throws(() => parseSchedule('fast'), /default, alipay, wechatpay, svix/);
  });

  it('refuses non-string, non-array input', () => {
    for (const bad of [null, undefined, 5, { a: 1 }]) {
      throwsCode(() => parseSchedule(bad as never), ErrorCodes.SCHEDULE_INVALID, 'schedule');
    }
  });

  it('refuses more than MAX_TIERS tiers', () => {
    const tooMany = Array.from({ length: MAX_TIERS + 1 }, () => '1s');
    throwsCode(() => parseSchedule(tooMany.join(',')), ErrorCodes.SCHEDULE_INVALID, 'schedule');
    throwsCode(() => parseSchedule(tooMany), ErrorCodes.SCHEDULE_INVALID, 'schedule');
  });

  it('uses the given field name and keeps the duration error as cause', () => {
    assert.throws(
      () => parseSchedule('0s,x', 'my.schedule'),
      (err: unknown) => {
        assert.equal((err as { field?: string }).field, 'my.schedule');
        assert.ok(hasCode((err as Error).cause, ErrorCodes.DURATION_INVALID));
        return true;
      },
    );
  });
});

describe('retryTiming', () => {
  const t0 = 1_700_000_000_000;

  it('counts the delay from the attempt\'s start when the answer came within the allowance', () => {
    // Began at t0, handed on 40 ms later (a busy worker read the answer late): due 1 s after t0.
    assert.deepEqual(retryTiming(1000, t0, t0 + 40, 250), { dueAt: t0 + 1000, expirationMs: 960 });
  });

  it('takes off at most the allowance when the attempt took longer (a slow merchant keeps its ladder)', () => {
    assert.deepEqual(retryTiming(1000, t0, t0 + 3000, 250), { dueAt: t0 + 3000 - 250 + 1000, expirationMs: 750 });
    assert.deepEqual(retryTiming(15_000, t0, t0 + 5000, 250), { dueAt: t0 + 4750 + 15_000, expirationMs: 14_750 });
  });

  it('needs no expiration when nothing comes off (handed on in the millisecond it began, or allowance 0)', () => {
    assert.deepEqual(retryTiming(1000, t0, t0, 250), { dueAt: t0 + 1000, expirationMs: null });
    assert.deepEqual(retryTiming(1000, t0, t0 + 40, 0), { dueAt: t0 + 40 + 1000, expirationMs: null });
  });

  it('takes at most half the delay, so attempts that time out still get a pause between them', () => {
    // An allowance of 2 s on a 1-s rung: counted from 500 ms before the hand-on at most.
    assert.deepEqual(retryTiming(1000, t0, t0 + 1500, 2000), { dueAt: t0 + 2000, expirationMs: 500 });
    assert.deepEqual(retryTiming(1000, t0, t0 + 300, 2000), { dueAt: t0 + 1000, expirationMs: 700 });
    assert.deepEqual(retryTiming(1, t0, t0 + 5, 250), { dueAt: t0 + 6, expirationMs: null });
  });

  it('has no wait queue, so no expiration, for a delay of 0', () => {
    assert.deepEqual(retryTiming(0, t0, t0 + 40, 250), { dueAt: t0 + 40, expirationMs: null });
  });

  it('never counts from after the hand-on (a clock that stepped back)', () => {
    assert.deepEqual(retryTiming(1000, t0 + 100, t0, 250), { dueAt: t0 + 1000, expirationMs: null });
  });

  it('refuses a delay longer than a wait queue can hold (RabbitMQ: x-message-ttl at most 2^32 - 1 ms)', () => {
    assert.throws(() => parseSchedule('0s,50d'), (e: { code?: string; message: string }) => e.code === 'SCHEDULE_INVALID' && /longer than a wait queue can hold/.test(e.message));
    assert.equal(parseSchedule('0s,49d')[1], 49 * 86_400_000);
  });
});
