import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseProbe, summarizeProbe } from '../../bench/broker-probe.js';

describe('bench: broker probe', () => {
  it('reads the probe lines, consumers and all, and its end', () => {
    const text = ['1000 150 19488 up:512:0', '1050 4380 17884 up:512:0 cancelled:244:0', 'garbage', '1100 90 0', 'end', ''].join('\n');
    const { samples, ended } = parseProbe(text);
    assert.equal(ended, true);
    assert.deepEqual(samples, [
      { at: 1000, replyUs: 150, ready: 19488, consumers: [{ status: 'up', checkedOut: 512, credit: 0 }] },
      {
        at: 1050,
        replyUs: 4380,
        ready: 17884,
        consumers: [
          { status: 'up', checkedOut: 512, credit: 0 },
          { status: 'cancelled', checkedOut: 244, credit: 0 },
        ],
      },
      { at: 1100, replyUs: 90, ready: 0, consumers: [] },
    ]);
    assert.equal(parseProbe('1000 150 3 up:1:2\n').ended, false);
  });

  it('leaves out a last line the probe has not finished writing', () => {
    assert.deepEqual(parseProbe('1000 150 3 up:1:2\n1050 1').samples, [{ at: 1000, replyUs: 150, ready: 3, consumers: [{ status: 'up', checkedOut: 1, credit: 2 }] }]);
    assert.deepEqual(parseProbe('1000 15').samples, []);
  });

  it('summarises the samples of the window that had messages ready', () => {
    const text = [
      '900 100 500 up:512:0', // before the window
      '1000 1000 500 up:512:0 cancelled:100:0',
      '1050 2000 400 up:500:12',
      '1100 3000 300 up:512:0 up:10:502', // one of two lanes still has credit: not full
      '1150 4000 200 up:512:0 cancelled:50:0',
      '1120 9000 250 cancelled:40:0', // no consumer up (a lane moving): neither full nor empty
      '1200 100 0 up:0:512', // nothing ready: the worker cannot be waiting for the broker
      '1300 100 100 up:512:0', // after the window
    ].join('\n');
    const s = summarizeProbe(parseProbe(text).samples, 1000, 1200);
    assert.ok(s);
    assert.equal(s.samples, 4);
    assert.equal(s.windowFullPct, 50);
    assert.equal(s.upCheckedOutMean, (512 + 500 + 522 + 512) / 4);
    assert.equal(s.cancelledCheckedOutMean, (100 + 0 + 0 + 50) / 4);
    assert.equal(s.replyP50Ms, 2.5);
    assert.equal(s.replyP90Ms, 4);
    assert.equal(summarizeProbe(parseProbe(text).samples, 1200, 1250), null);
  });
});
