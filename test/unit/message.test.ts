import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { LimitsConfig } from '../../src/core/config.js';
import { ErrorCodes, hasCode } from '../../src/core/errors.js';
import {
  FORM_TYPE,
  H,
  JSON_TYPE,
  decodeNotification,
  encodeNotification,
  numberHeader,
  renderBody,
  uuidv7,
  validateNotification,
  validateUrl,
  type Notification,
} from '../../src/core/message.js';

/** The limits of config/default.json. */
const LIMITS: LimitsConfig = Object.freeze({
  urlMaxLength: 2048,
  idMaxLength: 128,
  maxHeaders: 32,
  headerMaxBytes: 4096,
  bodyMaxBytes: 262_144,
});

const UUID_V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

const minimal = (over: Record<string, unknown> = {}): Record<string, unknown> => ({
  url: 'https://merchant.example.com/notify',
  body: { order: 'A1', amount: 100 },
  ...over,
});

function refused(input: unknown, field: string, limits: LimitsConfig = LIMITS): void {
  assert.throws(
    () => validateNotification(input, limits),
    (err: unknown) => {
      assert.ok(hasCode(err, ErrorCodes.VALIDATION), `expected VALIDATION, got ${String((err as Error)?.message ?? err)}`);
      assert.equal((err as { field?: string }).field, field, (err as Error).message);
      assert.ok((err as Error).message.startsWith(`${field}: `), (err as Error).message);
      return true;
    },
  );
}

describe('uuidv7', () => {
  it('has version 7 and the RFC 9562 variant', () => {
    for (let i = 0; i < 50; i++) assert.match(uuidv7(), UUID_V7);
  });

  it('carries the ms timestamp in its first 48 bits', () => {
    const now = 1_700_000_000_123;
    const id = uuidv7(now);
    assert.equal(parseInt(id.replace(/-/g, '').slice(0, 12), 16), now);
  });

  it('sorts by creation time', () => {
    const ids = [1_000, 2_000, 1_700_000_000_000, 1_700_000_000_001, 2_000_000_000_000].map((t) => uuidv7(t));
    assert.deepEqual([...ids].sort(), ids);
  });

  it('is unique', () => {
    const ids = new Set(Array.from({ length: 1000 }, () => uuidv7(42)));
    assert.equal(ids.size, 1000);
  });
});

describe('validateNotification: accepts', () => {
  it('the full DESIGN §5 shape', () => {
    const input = {
      id: 'pay_2024-01-01:ord.42@shop',
      url: 'https://merchant.example.com/notify?x=1',
      method: 'PUT',
      headers: { 'X-Merchant': 'm-1', Authorization: 'Bearer abc' },
      body: { trade_no: '2024', total_amount: '9.99' },
      contentType: FORM_TYPE,
      success: { status: [200, 204], bodyEquals: 'success' },
      metadata: { tenant: 't1', tags: ['a'] },
      createdAt: 1_700_000_000_000,
    };
    const n = validateNotification(input, LIMITS);
    assert.deepEqual(n, {
      id: 'pay_2024-01-01:ord.42@shop',
      url: 'https://merchant.example.com/notify?x=1',
      method: 'PUT',
      headers: { 'x-merchant': 'm-1', authorization: 'Bearer abc' },
      body: { trade_no: '2024', total_amount: '9.99' },
      contentType: FORM_TYPE,
      success: { status: [200, 204], bodyEquals: 'success' },
      metadata: { tenant: 't1', tags: ['a'] },
      createdAt: 1_700_000_000_000,
    });
  });

  it('a minimal notification with defaults', () => {
    const n = validateNotification(minimal(), LIMITS, { now: 1_700_000_000_000 });
    assert.equal(n.method, 'POST');
    assert.deepEqual(n.headers, {});
    assert.equal(n.contentType, JSON_TYPE);
    assert.equal(n.createdAt, 1_700_000_000_000);
    assert.equal(n.success, undefined);
    assert.equal(n.metadata, undefined);
  });

  it('generates a UUID v7 id when missing (or null)', () => {
    const now = 1_700_000_000_000;
    const a = validateNotification(minimal(), LIMITS, { now });
    assert.match(a.id, UUID_V7);
    assert.equal(a.id[14], '7', 'version nibble');
    assert.equal(parseInt(a.id.replace(/-/g, '').slice(0, 12), 16), now);
    const b = validateNotification(minimal({ id: null }), LIMITS, { now: now + 1 });
    assert.match(b.id, UUID_V7);
    assert.ok(a.id < b.id, 'later ids sort after earlier ones');
  });

  it('a string body, lower-case method, +json and charset content types', () => {
    assert.equal(validateNotification(minimal({ body: 'raw text', contentType: 'text/plain' }), LIMITS).body, 'raw text');
    assert.equal(validateNotification(minimal({ method: 'put' }), LIMITS).method, 'PUT');
    assert.equal(validateNotification(minimal({ contentType: 'application/cloudevents+json' }), LIMITS).contentType, 'application/cloudevents+json');
    assert.equal(validateNotification(minimal({ contentType: 'application/json; charset=utf-8' }), LIMITS).contentType, 'application/json; charset=utf-8');
    assert.equal(validateNotification(minimal({ body: '' }), LIMITS).body, '');
  });

  it('a quoted content-type parameter holds only what a header value may (undici refuses the rest at delivery)', () => {
    for (const ok of ['text/plain;\tx=y', 'text/plain ; x=y', 'text/plain; x="a b"', 'text/plain; x="a\\"b"', 'text/plain; x="\u00e9"']) {
      assert.equal(validateNotification(minimal({ body: 'x', contentType: ok }), LIMITS).contentType, ok, ok);
    }
    for (const bad of ['text/plain; x="a\u0001"', 'text/plain; x="\u20ac"', 'text/plain; x="\u007f"', 'text/plain;\nx=y', 'text/plain\r\n; x=y', 'text/plain\u3000;x=y']) {
      assert.throws(() => validateNotification(minimal({ body: 'x', contentType: bad }), LIMITS), (e: unknown) => (e as { code?: string }).code === 'VALIDATION', JSON.stringify(bad));
    }
  });

  it('a form body with scalar fields', () => {
    const n = validateNotification(minimal({ contentType: FORM_TYPE, body: { a: 'x', n: 1, b: true } }), LIMITS);
    assert.deepEqual(n.body, { a: 'x', n: 1, b: true });
  });

  it('success "2xx" and bodyEquals alone', () => {
    assert.deepEqual(validateNotification(minimal({ success: { status: '2xx' } }), LIMITS).success, { status: '2xx' });
    assert.deepEqual(validateNotification(minimal({ success: { bodyEquals: 'success' } }), LIMITS).success, { status: '2xx', bodyEquals: 'success' });
  });

  it('normalises the URL', () => {
    assert.equal(validateNotification(minimal({ url: 'HTTP://Merchant.EXAMPLE.com' }), LIMITS).url, 'http://merchant.example.com/');
  });

  it('exactly at the limits', () => {
    const id = 'a'.repeat(LIMITS.idMaxLength);
    assert.equal(validateNotification(minimal({ id }), LIMITS).id, id);
    const headers = Object.fromEntries(Array.from({ length: LIMITS.maxHeaders }, (_, i) => [`x-h${i}`, 'v']));
    assert.equal(Object.keys(validateNotification(minimal({ headers }), LIMITS).headers).length, LIMITS.maxHeaders);
    const body = 'b'.repeat(LIMITS.bodyMaxBytes);
    assert.equal(validateNotification(minimal({ body }), LIMITS).body, body);
  });
});

describe('validateNotification: refuses with VALIDATION and field', () => {
  it('non-object input', () => {
    for (const input of [null, undefined, [], [minimal()], 'x', 42, true]) refused(input, 'notification');
  });

  it('unknown field', () => {
    refused(minimal({ callback: 'x' }), 'callback');
    refused(JSON.parse('{"url":"https://a.example/","body":"x","__proto__":{"polluted":1}}'), '__proto__');
  });

  it('bad id charset', () => {
    for (const id of ['has space', '-leading', '.leading', 'a/b', 'a\nb', 'ünïcode', 'a#b', '']) refused(minimal({ id }), 'id');
    for (const id of [42, {}, []]) refused(minimal({ id }), 'id');
  });

  it('too-long id', () => {
    refused(minimal({ id: 'a'.repeat(LIMITS.idMaxLength + 1) }), 'id');
  });

  it('missing or non-string url', () => {
    refused({ body: 'x' }, 'url');
    refused(minimal({ url: '' }), 'url');
    refused(minimal({ url: 42 }), 'url');
    refused(minimal({ url: '/relative/path' }), 'url');
  });

  it('url with a scheme other than http(s)', () => {
    for (const url of ['ftp://example.com/x', 'javascript:alert(1)', 'file:///etc/passwd', 'data:text/plain,hi', 'ws://example.com/']) {
      refused(minimal({ url }), 'url');
    }
  });

  it('url with CR, LF, space or control characters', () => {
    for (const url of ['https://example.com/a\r\nX-Evil: 1', 'https://example.com/a\nb', 'https://example.com/a b', ' https://example.com/', 'https://example.com/\t', 'https://example.com/\u0000']) {
      refused(minimal({ url }), 'url');
    }
  });

  it('url with credentials', () => {
    refused(minimal({ url: 'https://user:pass@example.com/' }), 'url');
    refused(minimal({ url: 'https://user@example.com/' }), 'url');
  });

  it('too-long url', () => {
    refused(minimal({ url: `https://example.com/${'a'.repeat(LIMITS.urlMaxLength)}` }), 'url');
  });

  it('method GET, DELETE or not a string', () => {
    for (const method of ['GET', 'DELETE', 'PATCH', 'HEAD', '', 1]) refused(minimal({ method }), 'method');
  });

  it('headers that are not an object', () => {
    refused(minimal({ headers: ['a'] }), 'headers');
    refused(minimal({ headers: 'x-a: 1' }), 'headers');
  });

  it('header value with CR/LF or control characters', () => {
    refused(minimal({ headers: { 'X-Test': 'a\r\nX-Injected: 1' } }), 'headers.X-Test');
    refused(minimal({ headers: { 'X-Test': 'a\nb' } }), 'headers.X-Test');
    refused(minimal({ headers: { 'X-Test': 'a\u0000b' } }), 'headers.X-Test');
  });

  it('header value that is not a string', () => {
    refused(minimal({ headers: { 'X-Num': 1 } }), 'headers.X-Num');
  });

  it('invalid header name', () => {
    for (const name of ['bad name', 'x:y', 'x\r\ny', '', 'ä', '(x)']) refused(minimal({ headers: { [name]: 'v' } }), `headers.${name}`);
  });

  it('reserved headers, in any case', () => {
    for (const name of ['host', 'Host', 'content-length', 'Content-Type', 'transfer-encoding', 'connection', 'user-agent', 'webhook-signature', 'Proxy-Authorization', 'proxy-anything']) {
      refused(minimal({ headers: { [name]: 'v' } }), `headers.${name}`);
    }
  });

  it('too many headers', () => {
    const headers = Object.fromEntries(Array.from({ length: LIMITS.maxHeaders + 1 }, (_, i) => [`x-h${i}`, 'v']));
    refused(minimal({ headers }), 'headers');
  });

  it('header over headerMaxBytes', () => {
    refused(minimal({ headers: { 'x-big': 'v'.repeat(LIMITS.headerMaxBytes) } }), 'headers.x-big');
  });

  it('body missing, number, array, null or boolean', () => {
    refused({ url: 'https://example.com/' }, 'body');
    for (const body of [42, [1, 2], null, true]) refused(minimal({ body }), 'body');
  });

  it('object body with text/plain contentType', () => {
    refused(minimal({ contentType: 'text/plain' }), 'body');
  });

  it('bad contentType', () => {
    for (const contentType of ['json', 'application/json\r\nX: 1', 42, '', `application/${'x'.repeat(300)}`]) refused(minimal({ contentType }), 'contentType');
  });

  it('form body with a nested object or array', () => {
    refused(minimal({ contentType: FORM_TYPE, body: { a: 'x', nested: { b: 1 } } }), 'body.nested');
    refused(minimal({ contentType: FORM_TYPE, body: { list: [1, 2] } }), 'body.list');
    refused(minimal({ contentType: FORM_TYPE, body: { n: null } }), 'body.n');
  });

  it('body over bodyMaxBytes (counted in bytes)', () => {
    refused(minimal({ body: 'b'.repeat(LIMITS.bodyMaxBytes + 1) }), 'body');
    refused(minimal({ body: 'é'.repeat(LIMITS.bodyMaxBytes / 2 + 1) }), 'body');
    refused(minimal({ body: { big: 'x'.repeat(LIMITS.bodyMaxBytes) } }), 'body');
  });

  it('bad success', () => {
    refused(minimal({ success: 'yes' }), 'success');
    refused(minimal({ success: [200] }), 'success');
    refused(minimal({ success: { status: 'ok' } }), 'success.status');
    refused(minimal({ success: { status: [] } }), 'success.status');
    refused(minimal({ success: { status: [99] } }), 'success.status');
    refused(minimal({ success: { status: [200.5] } }), 'success.status');
    refused(minimal({ success: { bodyEquals: 1 } }), 'success.bodyEquals');
    refused(minimal({ success: { bodyEquals: 'x'.repeat(1025) } }), 'success.bodyEquals');
    refused(minimal({ success: { statuses: [200] } }), 'success.statuses');
  });

  it('metadata array, string or too big', () => {
    refused(minimal({ metadata: [1, 2] }), 'metadata');
    refused(minimal({ metadata: 'x' }), 'metadata');
    refused(minimal({ metadata: { blob: 'x'.repeat(17 * 1024) } }), 'metadata');
  });

  it('bad createdAt', () => {
    for (const createdAt of ['2024-01-01', -1, Number.NaN]) refused(minimal({ createdAt }), 'createdAt');
    // More than a day ahead: the history would keep it for ever. A day's skew is allowed.
    refused(minimal({ createdAt: Date.now() + 25 * 3600_000 }), 'createdAt');
    assert.ok(validateNotification(minimal({ createdAt: Date.now() + 23 * 3600_000 }), LIMITS));
  });

  it('requireId refuses a missing id', () => {
    assert.throws(() => validateNotification(minimal(), LIMITS, { requireId: true }), (e: unknown) => hasCode(e, ErrorCodes.VALIDATION) && (e as { field?: string }).field === 'id');
  });
});

describe('validateUrl', () => {
  it('returns the WHATWG-normalised URL', () => {
    assert.equal(validateUrl('https://EXAMPLE.com:443/a/../b?q=1#f', LIMITS), 'https://example.com/b?q=1#f');
    assert.equal(validateUrl('http://127.0.0.1:8080/cb', LIMITS), 'http://127.0.0.1:8080/cb');
  });

  it('names the given field', () => {
    assert.throws(() => validateUrl('ftp://x', LIMITS, 'items[3].url'), (e: unknown) => (e as { field?: string }).field === 'items[3].url');
  });
});

describe('renderBody', () => {
  const base = (over: Partial<Notification>): Notification =>
    validateNotification({ url: 'https://example.com/', body: 'x', ...over }, LIMITS, { now: 1 });

  it('sends a string body as is', () => {
    const n = base({ body: '{"pre":"formatted"}  ', contentType: 'text/plain; charset=utf-8' });
    assert.deepEqual(renderBody(n), { body: '{"pre":"formatted"}  ', contentType: 'text/plain; charset=utf-8' });
  });

  it('sends an object body as JSON', () => {
    const body = { a: 1, nested: { b: [1, 'two'] }, s: 'ünï' };
    const r = renderBody(base({ body }));
    assert.equal(r.contentType, JSON_TYPE);
    assert.deepEqual(JSON.parse(r.body), body);
  });

  it('form-encodes an object body; &, = and non-ASCII round-trip', () => {
    const body = { subject: 'a&b=c', name: '张三 Müller', plus: '1+1', empty: '', amount: 9.99, ok: true };
    const r = renderBody(base({ body, contentType: FORM_TYPE }));
    assert.equal(r.contentType, FORM_TYPE);
    assert.ok(!r.body.includes('a&b=c'), 'special characters are escaped');
    const parsed = new URLSearchParams(r.body);
    assert.deepEqual(Object.fromEntries(parsed), { subject: 'a&b=c', name: '张三 Müller', plus: '1+1', empty: '', amount: '9.99', ok: 'true' });
    assert.deepEqual([...parsed.keys()], Object.keys(body), 'field order kept');
  });

  it('form-encodes with a charset parameter too', () => {
    const r = renderBody(base({ body: { k: 'v w' }, contentType: `${FORM_TYPE}; charset=utf-8` }));
    assert.equal(r.body, 'k=v+w');
  });
});

describe('encodeNotification / decodeNotification', () => {
  function decodeFails(content: Buffer, field?: string): void {
    assert.throws(
      () => decodeNotification(content, LIMITS),
      (err: unknown) => {
        assert.ok(hasCode(err, ErrorCodes.MESSAGE_INVALID), String((err as Error)?.message ?? err));
        if (field !== undefined) assert.equal((err as { field?: string }).field, field);
        return true;
      },
    );
  }

  it('round-trips a notification', () => {
    const n = validateNotification(
      minimal({ headers: { 'X-A': '1' }, success: { status: [200], bodyEquals: 'success' }, metadata: { m: 1 } }),
      LIMITS,
      { now: 1_700_000_000_000 },
    );
    assert.deepEqual(decodeNotification(encodeNotification(n), LIMITS), n);
  });

  it('non-JSON → MESSAGE_INVALID', () => {
    decodeFails(Buffer.from('not json'), 'body');
    decodeFails(Buffer.from(''), 'body');
    decodeFails(Buffer.from([0xff, 0xfe, 0x00]), 'body');
  });

  it('invalid objects → MESSAGE_INVALID naming the field, with the cause', () => {
    decodeFails(Buffer.from('[]'), 'notification');
    decodeFails(Buffer.from('null'), 'notification');
    decodeFails(Buffer.from(JSON.stringify({ url: 'https://a.example/', body: 'x' })), 'id');
    decodeFails(Buffer.from(JSON.stringify({ id: 'n1', url: 'ftp://a.example/', body: 'x' })), 'url');
    assert.throws(
      () => decodeNotification(Buffer.from(JSON.stringify({ id: 'n1', url: 'https://a.example/' })), LIMITS),
      (err: unknown) => hasCode((err as Error).cause, ErrorCodes.VALIDATION),
    );
  });
});

describe('numberHeader', () => {
  it('reads numbers, numeric strings and bigints', () => {
    assert.equal(numberHeader({ [H.attempt]: 3 }, H.attempt), 3);
    assert.equal(numberHeader({ [H.dueAt]: '1700000000000' }, H.dueAt), 1_700_000_000_000);
    assert.equal(numberHeader({ [H.dueAt]: 1_700_000_000_000n }, H.dueAt), 1_700_000_000_000);
    assert.equal(numberHeader({ a: 0 }, 'a'), 0);
    assert.equal(numberHeader({ a: '0' }, 'a'), 0);
  });

  it('missing or unusable → undefined', () => {
    assert.equal(numberHeader(undefined, H.attempt), undefined);
    assert.equal(numberHeader({}, H.attempt), undefined);
    for (const v of [null, 'abc', '', '  ', Number.NaN, Number.POSITIVE_INFINITY, true, {}, [1]]) {
      assert.equal(numberHeader({ a: v }, 'a'), undefined, JSON.stringify(String(v)));
    }
  });

  it('uses the documented header names without x- prefix', () => {
    assert.deepEqual(Object.values(H).filter((h) => h.startsWith('x-')), []);
    assert.equal(H.attempt, 'notify-attempt');
    assert.equal(H.firstAttemptAt, 'notify-first-attempt-at');
    assert.equal(H.dueAt, 'notify-due-at');
    assert.equal(H.lastError, 'notify-last-error');
    assert.equal(H.deadReason, 'notify-dead-reason');
  });
});

describe('decodeNotification (the ingress rules, run in every tier)', () => {
  const ok = { id: 'n1', url: 'https://a.example/hook', body: { a: 1 } };
  const fails = (v: unknown, field: string): void => {
    assert.throws(() => decodeNotification(Buffer.from(JSON.stringify(v)), LIMITS), (err: unknown) => {
      assert.ok(hasCode(err, ErrorCodes.MESSAGE_INVALID));
      assert.equal((err as { field?: string }).field, field);
      return true;
    });
  };

  it('fills the defaults of absent fields', () => {
    const n = decodeNotification(Buffer.from(JSON.stringify(ok)), LIMITS);
    assert.equal(n.method, 'POST');
    assert.deepEqual(n.headers, {});
    assert.equal(n.contentType, 'application/json');
  });

  it('still refuses what would make an unsafe or broken request', () => {
    fails({ ...ok, url: 'ftp://a.example/' }, 'url');
    fails({ ...ok, url: 'javascript:alert(1)' }, 'url');
    fails({ ...ok, url: 'http://a.example/\r\nHost: x' }, 'url');
    fails({ ...ok, url: 12 }, 'url');
    fails({ ...ok, method: 'GET' }, 'method');
    fails({ ...ok, headers: { a: 'b\r\nc: d' } }, 'headers.a');
    fails({ ...ok, headers: { 'bad name': 'v' } }, 'headers.bad name');
    fails({ ...ok, headers: { a: 1 } }, 'headers.a');
    fails({ ...ok, body: [1] }, 'body');
    fails({ ...ok, body: null }, 'body');
    fails({ ...ok, contentType: 'a/b\r\nx: y' }, 'contentType');
    fails({ ...ok, createdAt: 'yesterday' }, 'createdAt');
    fails({ ...ok, success: { status: 'all' } }, 'success.status');
    fails({ ...ok, id: '' }, 'id');
  });
});

describe('one validation for every path (a message published straight to a work queue)', () => {
  const ok = { id: 'n1', url: 'https://a.example/hook', body: { a: 1 } };
  const decodeFails = (v: unknown, field: string, limits: LimitsConfig = LIMITS): void => {
    assert.throws(() => decodeNotification(Buffer.from(JSON.stringify(v)), limits), (err: unknown) => {
      assert.ok(hasCode(err, ErrorCodes.MESSAGE_INVALID), String(err));
      assert.equal((err as { field?: string }).field, field);
      return true;
    });
  };

  it('refuses reserved headers in any case, as the ingress does', () => {
    for (const name of ['Host', 'HOST', 'Webhook-Signature', 'webhook-id', 'Transfer-Encoding', 'Content-Length', 'Proxy-Authorization', 'Connection', 'User-Agent']) {
      decodeFails({ ...ok, headers: { [name]: 'x' } }, `headers.${name}`);
      refused(minimal({ headers: { [name]: 'x' } }), `headers.${name}`);
    }
  });

  it('refuses header values undici would refuse (above U+00FF), at the ingress too', () => {
    decodeFails({ ...ok, headers: { 'x-note': '付款' } }, 'headers.x-note');
    refused(minimal({ headers: { 'x-note': 'emoji 😀' } }), 'headers.x-note');
    // Latin-1 is fine: it is what goes on the wire.
    assert.equal(decodeNotification(Buffer.from(JSON.stringify({ ...ok, headers: { 'x-name': 'Müller' } })), LIMITS).headers['x-name'], 'Müller');
  });

  it('refuses the same header twice in different case', () => {
    refused(minimal({ headers: { 'X-A': '1', 'x-a': '2' } }), 'headers.x-a');
  });

  it('applies the URL length and form, the body limit and unknown fields', () => {
    decodeFails({ ...ok, url: `https://a.example/${'x'.repeat(3000)}` }, 'url');
    decodeFails({ ...ok, url: 'https://user:pw@a.example/' }, 'url');
    decodeFails({ ...ok, body: 'x'.repeat(300) }, 'body', { ...LIMITS, bodyMaxBytes: 100 });
    decodeFails({ ...ok, body: { big: 'x'.repeat(300) } }, 'body', { ...LIMITS, bodyMaxBytes: 100 });
    decodeFails({ ...ok, metadata: { big: 'x'.repeat(20_000) } }, 'metadata');
    decodeFails({ ...ok, extra: 1 }, 'extra');
    decodeFails({ ...ok, id: 'has space' }, 'id');
  });

  it('a stored notification without createdAt gets the decode time, not 0', () => {
    const n = decodeNotification(Buffer.from(JSON.stringify(ok)), LIMITS, 1_700_000_000_000);
    assert.equal(n.createdAt, 1_700_000_000_000);
  });

  it('a URL seen before with a larger limit is checked again under a smaller one', () => {
    const url = `https://a.example/${'y'.repeat(100)}`;
    assert.equal(validateUrl(url, LIMITS), url);
    assert.throws(() => validateUrl(url, { ...LIMITS, urlMaxLength: 50 }), (err: unknown) => hasCode(err, ErrorCodes.VALIDATION));
  });
});
