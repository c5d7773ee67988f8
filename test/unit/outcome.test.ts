import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { SuccessCriteria } from '../../src/core/config.js';
import { classifyAttempt, describeFailure, isSuccess, type AttemptResult } from '../../src/delivery/outcome.js';

const ANY_2XX: SuccessCriteria = { status: '2xx' };
const ALIPAY: SuccessCriteria = { status: '2xx', bodyEquals: 'success' };
const DEAD_ON = [410] as const;

const resp = (status: number, body = ''): AttemptResult => ({ kind: 'response', status, body });
const error = (code: string, message = 'boom'): AttemptResult => ({ kind: 'error', code, message });

describe('isSuccess', () => {
  it('2xx by default', () => {
    for (const s of [200, 201, 202, 204, 299]) assert.equal(isSuccess(s, '', ANY_2XX), true, String(s));
    for (const s of [100, 199, 300, 301, 304, 400, 404, 410, 500, 503]) assert.equal(isSuccess(s, '', ANY_2XX), false, String(s));
  });

  it('an explicit status list', () => {
    const c: SuccessCriteria = { status: [200, 302] };
    assert.equal(isSuccess(200, '', c), true);
    assert.equal(isSuccess(302, '', c), true);
    assert.equal(isSuccess(201, '', c), false);
    assert.equal(isSuccess(204, '', c), false);
  });

  it('bodyEquals compares the trimmed body exactly', () => {
    assert.equal(isSuccess(200, 'success', ALIPAY), true);
    assert.equal(isSuccess(200, ' success\n', ALIPAY), true);
    assert.equal(isSuccess(200, '\r\n\tsuccess \r\n', ALIPAY), true);
    assert.equal(isSuccess(200, 'ok', ALIPAY), false);
    assert.equal(isSuccess(200, 'SUCCESS', ALIPAY), false);
    assert.equal(isSuccess(200, 'success!', ALIPAY), false);
    assert.equal(isSuccess(200, '', ALIPAY), false);
    assert.equal(isSuccess(500, 'success', ALIPAY), false, 'the status must match too');
  });

  it('bodyEquals with a status list', () => {
    const c: SuccessCriteria = { status: [200], bodyEquals: 'OK' };
    assert.equal(isSuccess(200, 'OK', c), true);
    assert.equal(isSuccess(201, 'OK', c), false);
  });
});

describe('classifyAttempt', () => {
  it('2xx → delivered', () => {
    assert.deepEqual(classifyAttempt(resp(200, 'whatever'), ANY_2XX, DEAD_ON, false), { kind: 'delivered' });
    assert.deepEqual(classifyAttempt(resp(204), ANY_2XX, DEAD_ON, true), { kind: 'delivered' });
  });

  it('bodyEquals "success": 200 "ok" → retry, 200 " success\\n" → delivered', () => {
    const o = classifyAttempt(resp(200, 'ok'), ALIPAY, DEAD_ON, false);
    assert.equal(o.kind, 'retry');
    assert.ok(o.kind === 'retry' && o.error.includes('200') && o.error.includes('ok'));
    assert.deepEqual(classifyAttempt(resp(200, ' success\n'), ALIPAY, DEAD_ON, false), { kind: 'delivered' });
  });

  it('a status outside the list → retry', () => {
    assert.equal(classifyAttempt(resp(201), { status: [200] }, DEAD_ON, false).kind, 'retry');
  });

  it('410 in deadOnStatus → dead status-410 at once, even on tier 0', () => {
    const o = classifyAttempt(resp(410, 'gone'), ANY_2XX, DEAD_ON, false);
    assert.equal(o.kind, 'dead');
    assert.ok(o.kind === 'dead');
    assert.equal(o.reason, 'status-410');
    assert.match(o.error, /410/);
  });

  it('410 on the last tier is still status-410, not exhausted', () => {
    const o = classifyAttempt(resp(410), ANY_2XX, DEAD_ON, true);
    assert.ok(o.kind === 'dead' && o.reason === 'status-410');
  });

  it('deadOnStatus is configurable; 410 outside it retries', () => {
    assert.equal(classifyAttempt(resp(410), ANY_2XX, [], false).kind, 'retry');
    const o = classifyAttempt(resp(404), ANY_2XX, [404, 410], false);
    assert.ok(o.kind === 'dead' && o.reason === 'status-404');
  });

  it('a success status listed in deadOnStatus still delivers', () => {
    assert.deepEqual(classifyAttempt(resp(200), ANY_2XX, [200], false), { kind: 'delivered' });
  });

  it('failure on the last tier → dead exhausted', () => {
    for (const r of [resp(500, 'oops'), resp(200, 'ok'), error('TIMEOUT'), resp(302)]) {
      const o = classifyAttempt(r, ALIPAY, DEAD_ON, true);
      assert.ok(o.kind === 'dead' && o.reason === 'exhausted', JSON.stringify(r));
    }
  });

  it('5xx and 4xx (not in deadOnStatus) → retry', () => {
    for (const s of [400, 401, 404, 429, 500, 502, 503]) assert.equal(classifyAttempt(resp(s), ANY_2XX, DEAD_ON, false).kind, 'retry', String(s));
  });

  it('3xx → retry (redirects are not followed)', () => {
    for (const s of [301, 302, 307, 308]) assert.equal(classifyAttempt(resp(s), ANY_2XX, DEAD_ON, false).kind, 'retry', String(s));
  });

  it('transport errors (TIMEOUT, ECONNREFUSED, ECONNRESET) → retry', () => {
    for (const code of ['TIMEOUT', 'ECONNREFUSED', 'ECONNRESET', 'ENOTFOUND', 'UND_ERR_SOCKET']) {
      const o = classifyAttempt(error(code, 'connect failed'), ANY_2XX, DEAD_ON, false);
      assert.equal(o.kind, 'retry', code);
      assert.ok(o.kind === 'retry' && o.error.startsWith(`${code}: `));
    }
  });

  it('DESTINATION_BLOCKED → dead blocked, even on tier 0', () => {
    const o = classifyAttempt(error('DESTINATION_BLOCKED', '127.0.0.1 is loopback'), ANY_2XX, DEAD_ON, false);
    assert.ok(o.kind === 'dead' && o.reason === 'blocked');
  });

  it('INVALID_URL → dead invalid', () => {
    const o = classifyAttempt(error('INVALID_URL', 'unparsable URL'), ANY_2XX, DEAD_ON, false);
    assert.ok(o.kind === 'dead' && o.reason === 'invalid');
  });

  it('DNS_BLOCKED (a name that resolved to refused addresses) follows the ladder, then parks as blocked', () => {
    const mid = classifyAttempt(error('DNS_BLOCKED', 'merchant.example is 10.0.0.1 (private)'), ANY_2XX, DEAD_ON, false);
    assert.equal(mid.kind, 'retry');
    const last = classifyAttempt(error('DNS_BLOCKED', 'merchant.example is 10.0.0.1 (private)'), ANY_2XX, DEAD_ON, true);
    assert.ok(last.kind === 'dead' && last.reason === 'blocked');
  });

  it("undici's argument errors are permanent: dead invalid at once, never retried", () => {
    for (const code of ['UND_ERR_INVALID_ARG', 'UND_ERR_NOT_SUPPORTED']) {
      const o = classifyAttempt(error(code, 'invalid x-note header'), ANY_2XX, DEAD_ON, false);
      assert.ok(o.kind === 'dead' && o.reason === 'invalid', code);
    }
  });
});

describe('describeFailure', () => {
  it('status and body', () => {
    assert.equal(describeFailure(resp(503, 'busy')), 'status 503: busy');
    assert.equal(describeFailure(resp(500)), 'status 500');
    assert.equal(describeFailure(resp(500, ' \n ')), 'status 500');
  });

  it('error code and message', () => {
    assert.equal(describeFailure(error('ECONNREFUSED', 'connect ECONNREFUSED 127.0.0.1:1')), 'ECONNREFUSED: connect ECONNREFUSED 127.0.0.1:1');
  });

  it('is single-line for multi-line bodies and error messages', () => {
    const body = '<html>\r\n  <body>\n\tError\n  </body>\r\n</html>\n';
    const d = describeFailure(resp(500, body));
    assert.equal(d, 'status 500: <html> <body> Error </body> </html>');
    const e = describeFailure(error('UND_ERR', 'first line\nsecond line\r\n  third'));
    assert.equal(e, 'UND_ERR: first line second line third');
    for (const s of [d, e]) assert.ok(!/[\r\n\t]/.test(s));
  });

  it('truncates to maxLength with an ellipsis', () => {
    const long = describeFailure(resp(500, 'x'.repeat(5000)));
    assert.equal(long.length, 200);
    assert.ok(long.endsWith('…'));
    assert.ok(long.startsWith('status 500: xxx'));
    const short = describeFailure(resp(500, 'y'.repeat(100)), 20);
    assert.equal(short.length, 20);
    assert.ok(short.endsWith('…'));
    const longErr = describeFailure(error('TIMEOUT', 'z'.repeat(1000)), 50);
    assert.equal(longErr.length, 50);
  });

  it('does not truncate text that fits exactly', () => {
    const text = describeFailure(resp(500, 'a'.repeat(188)));
    assert.equal(text.length, 200);
    assert.ok(!text.endsWith('…'));
  });

  it('classifyAttempt carries the description as error', () => {
    const o = classifyAttempt(resp(500, 'line1\nline2'), ANY_2XX, DEAD_ON, false);
    assert.ok(o.kind === 'retry');
    assert.equal(o.error, 'status 500: line1 line2');
  });
});
