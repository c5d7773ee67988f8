// The history API's pure parts (issue 16): cursors, query and body parsing,
// route matching, the resend/recover rules with a fake reader, and the
// timeline `ctl show` prints.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { formatPage, formatTimeline, shortDuration } from '../../src/cli/ctl-history.js';
import { loadConfig } from '../../src/core/config.js';
import type { Notification } from '../../src/core/message.js';
import { decodeCursor, encodeCursor, forceParam, parseInstant, parseListQuery, parseRecoverBody, LIST_LIMIT_DEFAULT } from '../../src/history/query-params.js';
import type { DeadEntry, HistoryReader, NotificationTimeline, NotificationView } from '../../src/history/reader.js';
import { answerHistory, matchHistoryRoute } from '../../src/history/routes.js';
import type { IncomingMessage } from 'node:http';
import { HistoryService } from '../../src/history/service.js';
import type { HistoryClaims } from '../../src/history/claims.js';
import { NotifyError } from '../../src/core/errors.js';
import { allowHeaderOf, methodNotAllowed } from '../../src/core/http-util.js';

const NOW = Date.UTC(2026, 11, 1, 12, 0, 0);
const H = 3_600_000;

function fieldOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    assert.equal((err as { code?: string }).code, 'VALIDATION');
    return (err as { field?: string }).field;
  }
  assert.fail('expected a VALIDATION error');
}

describe('history API: cursors', () => {
  it('round-trips and is opaque text (base64url)', () => {
    const c = { at: '2026-12-01T11:59:59.123456Z', id: 'order/1 é' };
    const text = encodeCursor(c);
    assert.match(text, /^[A-Za-z0-9_-]+$/);
    assert.deepEqual(decodeCursor(text), c);
  });

  it('refuses what it did not make, naming the cursor field', () => {
    const nulId = Buffer.from(JSON.stringify(['2026-12-01T11:59:59.000000Z', 'a\u0000'])).toString('base64url');
    for (const bad of ['', 'not a cursor', Buffer.from('[1,2]').toString('base64url'), Buffer.from('["2026-12-01T11:59:59Z","x"]').toString('base64url'), Buffer.from('{"at":"x"}').toString('base64url'), nulId]) {
      assert.equal(fieldOf(() => decodeCursor(bad)), 'cursor', bad);
    }
  });
});

describe('history API: times and filters', () => {
  it('reads ISO times (UTC unless they say) and durations back from now', () => {
    assert.equal(parseInstant('1h', NOW, 'since'), NOW - H);
    assert.equal(parseInstant('30m', NOW, 'since'), NOW - H / 2);
    assert.equal(parseInstant('2d', NOW, 'since'), NOW - 48 * H);
    assert.equal(parseInstant('2026-12-01T10:00:00Z', NOW, 'since'), Date.UTC(2026, 11, 1, 10));
    assert.equal(parseInstant('2026-12-01T10:00:00', NOW, 'since'), Date.UTC(2026, 11, 1, 10), 'no offset: UTC');
    assert.equal(parseInstant('2026-12-01T10:00:00+02:00', NOW, 'since'), Date.UTC(2026, 11, 1, 8));
    assert.equal(parseInstant('2026-12-01', NOW, 'since'), Date.UTC(2026, 11, 1));
    // The offset's '+' unescaped in a query string (as curl sends it) reads as a space.
    assert.equal(parseListQuery(new URLSearchParams('since=2026-12-01T10:00:00+02:00'), NOW).since, Date.UTC(2026, 11, 1, 8));
    assert.equal(parseListQuery(new URLSearchParams('until=2026-12-01 10:00+0530'), NOW).until, Date.UTC(2026, 11, 1, 4, 30));
    assert.equal(fieldOf(() => parseInstant('yesterday', NOW, 'until')), 'until');
    assert.equal(fieldOf(() => parseInstant('2026-13-45', NOW, 'since')), 'since');
  });

  it('parses a listing query with defaults', () => {
    assert.deepEqual(parseListQuery(new URLSearchParams(''), NOW), { merchant: null, status: null, since: null, until: null, limit: LIST_LIMIT_DEFAULT, cursor: null });
    const cursor = encodeCursor({ at: '2026-12-01T11:00:00.000001Z', id: 'n9' });
    assert.deepEqual(parseListQuery(new URLSearchParams({ merchant: 'shop-a', status: 'dead', since: '1h', until: '2026-12-01T12:00:00Z', limit: '500', cursor }), NOW), {
      merchant: 'shop-a',
      status: 'dead',
      since: NOW - H,
      until: NOW,
      limit: 500,
      cursor: { at: '2026-12-01T11:00:00.000001Z', id: 'n9' },
    });
  });

  it('answers a bad listing parameter with its field', () => {
    const cases: [string, string][] = [
      ['limit=0', 'limit'],
      ['limit=501', 'limit'],
      ['limit=ten', 'limit'],
      ['status=lost', 'status'],
      ['since=soon', 'since'],
      ['since=1h&until=2h', 'until'],
      ['merchant=', 'merchant'],
      ['merchant=%00', 'merchant'],
      ['merchant=shop%20a', 'merchant'],
      ['cursor=%%%', 'cursor'],
      ['colour=red', 'colour'],
      ['limit=1&limit=2', 'limit'],
    ];
    for (const [q, field] of cases) assert.equal(fieldOf(() => parseListQuery(new URLSearchParams(q), NOW)), field, q);
  });

  it('parses a recover body: merchant and since required, until defaults to now', () => {
    assert.deepEqual(parseRecoverBody({ merchant: 'shop-a', since: '2h' }, NOW), { merchant: 'shop-a', since: NOW - 2 * H, until: NOW });
    assert.deepEqual(parseRecoverBody({ merchant: 'shop-a', since: NOW - H, until: '2026-12-01T11:30:00Z' }, NOW), { merchant: 'shop-a', since: NOW - H, until: NOW - H / 2 });
    assert.equal(fieldOf(() => parseRecoverBody({ since: '1h' }, NOW)), 'merchant');
    assert.equal(fieldOf(() => parseRecoverBody({ merchant: 'm' }, NOW)), 'since');
    assert.equal(fieldOf(() => parseRecoverBody({ merchant: 'm', since: '1h', until: '2h' }, NOW)), 'until');
    assert.equal(fieldOf(() => parseRecoverBody({ merchant: 'm', since: '1h', extra: 1 }, NOW)), 'extra');
    assert.equal(fieldOf(() => parseRecoverBody([], NOW)), 'body');
  });

  it('bad times are 400 VALIDATION on their field, never a 500: out of 1970..9999, dates that do not exist, digits without a unit (issue 16 review)', () => {
    const codeOf = (fn: () => unknown): [string, string] => {
      try {
        fn();
      } catch (err) {
        return [(err as { code: string }).code, (err as { field: string }).field];
      }
      return ['none', ''];
    };
    for (const q of ['since=999999999d', 'since=0000-01-01', 'since=2026-02-30', 'since=2026-02-29', 'since=2026-04-31T10:00:00Z', 'since=2026-12-01T24:00:00Z', 'since=1969-12-31', 'since=5000']) {
      assert.deepEqual(codeOf(() => parseListQuery(new URLSearchParams(q), NOW)), ['VALIDATION', 'since'], q);
    }
    assert.equal(parseInstant('2028-02-29', NOW, 'since'), Date.UTC(2028, 1, 29), 'a leap day that exists');
    assert.equal(parseInstant('9999-12-31T23:59:59Z', NOW, 'until'), Date.UTC(9999, 11, 31, 23, 59, 59));
    for (const since of [1e20, -1, Number.MAX_SAFE_INTEGER, '0000-01-01', '2026-02-30', '1735689600000']) {
      assert.deepEqual(codeOf(() => parseRecoverBody({ merchant: 'm', since }, NOW)), ['VALIDATION', 'since'], String(since));
    }
    assert.equal(parseRecoverBody({ merchant: 'm', since: 0 }, NOW).since, 0, 'a JSON number is ms since the epoch');
    // A tampered cursor with a time PostgreSQL rejects or Date rolls over.
    for (const at of ['0000-01-01T00:00:00.000000Z', '2026-02-30T00:00:00.000000Z', '2026-12-01T25:00:00.000000Z']) {
      assert.deepEqual(codeOf(() => decodeCursor(encodeCursor({ at, id: 'x' }))), ['VALIDATION', 'cursor'], at);
    }
  });
});

describe('history API: routes', () => {
  it('matches the history calls under a base and leaves the submit route alone', () => {
    assert.deepEqual(matchHistoryRoute('/v1', 'GET', '/v1/notifications'), { kind: 'list' });
    assert.equal(matchHistoryRoute('/v1', 'POST', '/v1/notifications'), null, 'POST submits');
    assert.equal(matchHistoryRoute('/v1', 'POST', '/v1/notifications:batch'), null);
    assert.deepEqual(matchHistoryRoute('/v1', 'POST', '/v1/notifications:recover'), { kind: 'recover' });
    assert.deepEqual(matchHistoryRoute('/v1', 'GET', '/v1/notifications/order%2F1'), { kind: 'get', id: 'order/1' });
    assert.deepEqual(matchHistoryRoute('/admin', 'POST', '/admin/notifications/n1/resend'), { kind: 'resend', id: 'n1' });
    assert.equal(matchHistoryRoute('/v1', 'GET', '/v1/notifications/a/b'), null);
    assert.equal(matchHistoryRoute('/v1', 'GET', '/admin/notifications/a'), null);
  });

  it('without a history every call is 501 HISTORY_DISABLED, and a database that is away is 503 HISTORY_UNAVAILABLE', async () => {
    let resumed = 0;
    const req = { resume: () => resumed++ } as unknown as IncomingMessage;
    for (const route of [{ kind: 'list' }, { kind: 'recover' }, { kind: 'get', id: 'x' }, { kind: 'resend', id: 'x' }] as const) {
      await assert.rejects(answerHistory(null, route, req, new URL('http://x/v1/notifications'), null), { code: 'HISTORY_DISABLED' });
    }
    assert.ok(resumed >= 4, 'the request body is drained');
    const away = new HistoryService(
      { stored: async () => Promise.reject(Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' })) } as unknown as HistoryReader,
      fakeClaims({}),
      async () => ({ run: 'r' }),
      () => loadConfig({ configFile: null, env: {} }).limits,
    );
    await assert.rejects(answerHistory(away, { kind: 'resend', id: 'x' }, req, new URL('http://x/v1/notifications/x/resend'), null), { code: 'HISTORY_UNAVAILABLE' });
  });

  it('a wrong method on a history path is a coded 405 that names the methods it takes (the Allow header)', () => {
    for (const [m, p, allow, message] of [
      ['GET', '/v1/notifications/n1/resend', 'POST', 'use POST'],
      ['DELETE', '/v1/notifications/n1', 'GET, HEAD', 'use GET'],
      ['GET', '/v1/notifications:recover', 'POST', 'use POST'],
    ]) {
      let thrown: unknown;
      assert.throws(() => {
        try {
          matchHistoryRoute('/v1', m!, p!);
        } catch (err) {
          thrown = err;
          throw err;
        }
      }, { code: 'METHOD_NOT_ALLOWED', message });
      assert.equal(allowHeaderOf(thrown), allow, `${m} ${p}`);
    }
    assert.equal(methodNotAllowed(['GET', 'PATCH', 'DELETE']).message, 'use GET, PATCH or DELETE');
    assert.equal(allowHeaderOf(new Error('x')), undefined, 'no Allow for any other error');
  });
});

function view(over: Partial<NotificationView> = {}): NotificationView {
  return {
    id: 'n1',
    createdAt: NOW - H,
    merchant: 'shop-a',
    producer: 'checkout',
    url: 'https://shop-a.example/notify',
    status: 'dead',
    deadReason: 'status-410',
    attempts: 1,
    lastAttemptAt: NOW - H,
    lastStatus: 410,
    lastError: 'HTTP 410',
    deliveredAt: null,
    deadAt: NOW - H,
    resendable: true,
    ...over,
  };
}

const content = (id: string): string => JSON.stringify({ id, url: 'https://shop-a.example/notify', body: { order: 1 }, contentType: 'application/json', createdAt: NOW - H });

function fakeReader(rows: Record<string, { view: NotificationView; content: string | null }>, dead: DeadEntry[] = []): HistoryReader {
  return {
    stored: async (id: string) => (rows[id] ? { ...rows[id]!, key: '2026-12-01T11:00:00.000000Z' } : null),
    get: async () => null,
    list: async () => ({ notifications: [], nextCursor: null }),
    deadOfMerchant: async (_m: string, _s: number, _u: number, after: { id: string } | null, limit: number) => {
      const from = after ? dead.findIndex((d) => d.id === after.id) + 1 : 0;
      return dead.slice(from, from + limit);
    },
  } as unknown as HistoryReader;
}

/** Claims as the database makes them (history-claim.sql): one status per id, changed atomically. */
function fakeClaims(rows: Record<string, { view: NotificationView }>, dead: readonly DeadEntry[] = []): HistoryClaims & { status: Map<string, string>; released: string[] } {
  const status = new Map<string, string>([...Object.entries(rows).map(([id, r]) => [id, r.view.status] as const), ...dead.map((d) => [d.id, 'dead'] as const)]);
  const released: string[] = [];
  return {
    status,
    released,
    claim: async (id: string, key: string, at: number, from: readonly string[]) => {
      const was = status.get(id);
      if (was === undefined || !from.includes(was)) return null;
      status.set(id, 'pending');
      return { id, key, at, previousStatus: was, previousStatusAt: null, previousDeadReason: null };
    },
    release: async (c: { id: string; previousStatus: string }) => {
      released.push(c.id);
      status.set(c.id, c.previousStatus);
    },
  } as unknown as HistoryClaims & { status: Map<string, string>; released: string[] };
}

describe('history API: resend and recover rules', () => {
  const limits = loadConfig({ configFile: null, env: {} }).limits;

  it('resends a stored notification with the same id; refuses a pending one unless forced', async () => {
    const started: [string, string, string | null][] = [];
    const rows = { dead: { view: view(), content: content('dead') }, busy: { view: view({ id: 'busy', status: 'pending' as const }), content: content('busy') } };
    const svc = new HistoryService(
      fakeReader(rows),
      fakeClaims(rows),
      async (n: Notification, via, producer) => {
        started.push([n.id, via, producer]);
        return { run: `run-${started.length}` };
      },
      () => limits,
    );
    assert.deepEqual(await svc.resend('dead', false, 'checkout'), { id: 'dead', run: 'run-1', previousStatus: 'dead' });
    await assert.rejects(svc.resend('busy', false, null), { code: 'NOTIFICATION_PENDING' });
    assert.deepEqual(await svc.resend('busy', true, null), { id: 'busy', run: 'run-2', previousStatus: 'pending' });
    await assert.rejects(svc.resend('nobody', true, null), { code: 'NOT_FOUND' });
    assert.deepEqual(started, [
      ['dead', 'resend', 'checkout'],
      ['busy', 'resend', null],
    ]);
  });

  it('an id no notification can have (a NUL: PostgreSQL refuses it in text) is NOT_FOUND without asking the database', async () => {
    const asked: string[] = [];
    const reader = { get: async (id: string) => (asked.push(id), null), stored: async (id: string) => (asked.push(id), null) } as unknown as HistoryReader;
    const svc = new HistoryService(reader, fakeClaims({}), async () => ({ run: 'r' }), () => limits);
    await assert.rejects(svc.get('a\u0000b'), { code: 'NOT_FOUND' });
    await assert.rejects(svc.resend('a\u0000b', true, null), { code: 'NOT_FOUND' });
    assert.deepEqual(asked, []);
    await assert.rejects(svc.get('order-1'), { code: 'NOT_FOUND' });
    assert.deepEqual(asked, ['order-1']);
  });

  it('NOT_RESENDABLE when only attempts were recorded or the stored body is no longer valid', async () => {
    const rows = { bare: { view: view({ id: 'bare', resendable: false }), content: null }, broken: { view: view({ id: 'broken' }), content: '{"id":"broken","url":"ftp://x"}' } };
    const svc = new HistoryService(
      fakeReader(rows),
      fakeClaims(rows),
      async () => assert.fail('nothing may be published'),
      () => limits,
    );
    await assert.rejects(svc.resend('bare', false, null), { code: 'NOT_RESENDABLE' });
    await assert.rejects(svc.resend('broken', false, null), { code: 'NOT_RESENDABLE' });
  });

  it('recover pages through every dead one, counts, and reports those it cannot resend', async () => {
    const dead: DeadEntry[] = Array.from({ length: 450 }, (_, i) => ({ id: `d${i}`, key: { at: '2026-12-01T11:00:00.000000Z', id: `d${i}` }, content: i === 7 ? null : content(`d${i}`) }));
    const sent: string[] = [];
    const svc = new HistoryService(
      fakeReader({}, dead),
      fakeClaims({}, dead),
      async (n, via) => {
        assert.equal(via, 'recover');
        sent.push(n.id);
        return { run: 'r' };
      },
      () => limits,
    );
    const r = await svc.recover({ merchant: 'shop-a', since: NOW - 2 * H, until: NOW }, null);
    assert.deepEqual([r.matched, r.resent, r.failed.map((f) => [f.id, f.error.code])], [450, 449, [['d7', 'NOT_RESENDABLE']]]);
    assert.equal(new Set(sent).size, 449, 'each once');
  });
});

describe('history API: resends claim before they publish (issue 16 review)', () => {
  const limits = loadConfig({ configFile: null, env: {} }).limits;

  it('two resends at once of a dead notification start one ladder; the other is NOTIFICATION_PENDING', async () => {
    const rows = { d: { view: view({ id: 'd' }), content: content('d') } };
    let started = 0;
    const svc = new HistoryService(fakeReader(rows), fakeClaims(rows), async () => {
      started++;
      await new Promise((r) => setTimeout(r, 5));
      return { run: `r${started}` };
    }, () => limits);
    // The reader still says dead for both (the recorder has not caught up): the claim decides.
    const [a, b] = await Promise.allSettled([svc.resend('d', false, null), svc.resend('d', false, null)]);
    assert.equal(started, 1);
    assert.deepEqual([a.status, b.status].sort(), ['fulfilled', 'rejected']);
    const refused = [a, b].find((x) => x.status === 'rejected') as PromiseRejectedResult;
    assert.equal((refused.reason as NotifyError).code, 'NOTIFICATION_PENDING');
  });

  it('the ladder starts at the claim time; a publish that fails gives the claim back so a retry can resend', async () => {
    const rows = { d: { view: view({ id: 'd' }), content: content('d') } };
    const claims = fakeClaims(rows);
    const ats: number[] = [];
    const originalClaim = claims.claim.bind(claims);
    claims.claim = async (...args: Parameters<HistoryClaims['claim']>) => {
      ats.push(args[2]);
      return originalClaim(...args);
    };
    let fail = true;
    const svc = new HistoryService(fakeReader(rows), claims, async (_n, _v, _p, at) => {
      ats.push(at);
      if (fail) throw new NotifyError('BROKER_UNAVAILABLE', 'broker not connected');
      return { run: 'r' };
    }, () => limits);
    await assert.rejects(svc.resend('d', false, null), { code: 'BROKER_UNAVAILABLE' });
    assert.deepEqual(claims.released, ['d']);
    assert.equal(claims.status.get('d'), 'dead');
    fail = false;
    assert.deepEqual(await svc.resend('d', false, null), { id: 'd', run: 'r', previousStatus: 'dead' });
    assert.equal(ats.length, 4);
    assert.equal(ats[0], ats[1], 'the run starts at the claim time');
    assert.equal(ats[2], ats[3]);
  });

  it('a publish whose confirm never came keeps the claim (the ladder may be running): a second resend is refused, not a second ladder', async () => {
    const rows = { d: { view: view({ id: 'd' }), content: content('d') } };
    const claims = fakeClaims(rows);
    let starts = 0;
    const svc = new HistoryService(fakeReader(rows), claims, async () => {
      starts++;
      throw new NotifyError('BROKER_CONFIRM_TIMEOUT', 'no confirm from the broker');
    }, () => limits);
    await assert.rejects(svc.resend('d', false, null), { code: 'BROKER_CONFIRM_TIMEOUT' });
    assert.deepEqual(claims.released, [], 'kept');
    assert.equal(claims.status.get('d'), 'pending');
    await assert.rejects(svc.resend('d', false, null), { code: 'NOTIFICATION_PENDING' });
    assert.equal(starts, 1);
  });

  it('a recover run twice resends each dead one once; one resent meanwhile is left alone', async () => {
    const dead: DeadEntry[] = Array.from({ length: 5 }, (_, i) => ({ id: `d${i}`, key: { at: '2026-12-01T11:00:00.000000Z', id: `d${i}` }, content: content(`d${i}`) }));
    const claims = fakeClaims({}, dead);
    claims.status.set('d3', 'pending'); // resent a moment ago; the listing still says dead
    const sent: string[] = [];
    const svc = new HistoryService(fakeReader({}, dead), claims, async (n) => {
      sent.push(n.id);
      return { run: 'r' };
    }, () => limits);
    const first = await svc.recover({ merchant: 'shop-a', since: NOW - 2 * H, until: NOW }, null);
    const again = await svc.recover({ merchant: 'shop-a', since: NOW - 2 * H, until: NOW }, null);
    assert.deepEqual([first.matched, first.resent, first.stopped], [5, 4, null]);
    assert.deepEqual([again.matched, again.resent], [5, 0]);
    assert.deepEqual(sent.sort(), ['d0', 'd1', 'd2', 'd4']);
  });

  it('a broker failure mid-way stops the recover with partial counts and where it stopped', async () => {
    const dead: DeadEntry[] = Array.from({ length: 40 }, (_, i) => ({ id: `d${String(i).padStart(2, '0')}`, key: { at: '2026-12-01T11:00:00.000000Z', id: `d${i}` }, content: content(`d${i}`) }));
    const claims = fakeClaims({}, dead);
    let n = 0;
    const svc = new HistoryService(fakeReader({}, dead), claims, async (x) => {
      if (++n > 20) throw new NotifyError('BROKER_UNAVAILABLE', 'broker not connected');
      return { run: x.id };
    }, () => limits);
    const r = await svc.recover({ merchant: 'shop-a', since: NOW - 2 * H, until: NOW }, null);
    assert.equal(r.resent, 20);
    assert.equal(r.stopped?.error.code, 'BROKER_UNAVAILABLE');
    assert.equal(r.stopped?.at, 'd20');
    assert.deepEqual(r.failed, []);
    // What was not resent is dead again, for the next recover.
    assert.equal([...claims.status.values()].filter((s) => s === 'dead').length, 20);
  });

  it('the admission refuses as the ingress would: a disabled merchant is a 409 before any claim, a recover reports it per notification', async () => {
    const rows = { d: { view: view({ id: 'd' }), content: content('d') } };
    const claims = fakeClaims(rows);
    const admit = async (): Promise<void> => {
      throw new NotifyError('MERCHANT_DISABLED', 'merchant shop-a is disabled', 'merchant');
    };
    const svc = new HistoryService(fakeReader(rows, [{ id: 'd', key: { at: '2026-12-01T11:00:00.000000Z', id: 'd' }, content: content('d') }]), claims, async () => assert.fail('nothing may be published'), () => limits, admit);
    await assert.rejects(svc.resend('d', false, null), { code: 'MERCHANT_DISABLED' });
    assert.equal(claims.status.get('d'), 'dead', 'not claimed');
    const r = await svc.recover({ merchant: 'shop-a', since: NOW - 2 * H, until: NOW }, null);
    assert.deepEqual([r.matched, r.resent, r.failed.map((f) => f.error.code), r.stopped], [1, 0, ['MERCHANT_DISABLED'], null]);
  });
});

describe('history API: ctl output', () => {
  const t: NotificationTimeline = {
    notification: view({ id: 'order-1', status: 'delivered', deadReason: null, attempts: 3, deliveredAt: NOW - H + 5000, deadAt: null, lastStatus: 200 }),
    runs: [{ run: 'r1', startedAt: NOW - H, via: 'ingress', producer: 'checkout' }],
    attempts: [
      { run: 'r1', attempt: 0, tier: 0, startedAt: NOW - H, durationMs: 87, status: 500, outcome: 'retry', skipped: false, reason: null, error: 'HTTP 500', answer: 'oops' },
      { run: 'r1', attempt: 1, tier: 1, startedAt: NOW - H + 1000, durationMs: 0, status: null, outcome: 'skipped', skipped: true, reason: 'origin-failing', error: null, answer: null },
      { run: 'r1', attempt: 2, tier: 2, startedAt: NOW - H + 4000, durationMs: 1234, status: 200, outcome: 'success', skipped: false, reason: null, error: null, answer: 'success' },
    ],
  };

  it('prints a timeline: one line per attempt with tier, time, duration, status, outcome and why', () => {
    assert.equal(
      formatTimeline(t),
      [
        'notification order-1  DELIVERED  merchant shop-a  producer checkout',
        'url      https://shop-a.example/notify',
        'created  2026-12-01T11:00:00.000Z   attempts 3   delivered 2026-12-01T11:00:05.000Z',
        '',
        'run r1  ingress  2026-12-01T11:00:00.000Z  by checkout',
        '  #  TIER  TIME                      DURATION  STATUS  OUTCOME  NOTE',
        '  1  0     2026-12-01T11:00:00.000Z  87ms      500     retry    HTTP 500',
        '  2  1     2026-12-01T11:00:01.000Z  0ms       -       skipped  skipped: origin-failing',
        '  3  2     2026-12-01T11:00:04.000Z  1.2s      200     success',
      ].join('\n'),
    );
  });

  it('shows attempts of a ladder whose start was not recorded, and a dead reason', () => {
    const out = formatTimeline({ notification: view({ resendable: false }), runs: [], attempts: [{ ...t.attempts[0]!, run: '' }] });
    assert.match(out, /^notification n1 {2}DEAD \(status-410\)/);
    assert.match(out, /not resendable/);
    assert.match(out, /^run \(start not recorded\)$/m);
  });

  it('prints a page and where the next starts', () => {
    const out = formatPage({ notifications: [view(), view({ id: 'n2', status: 'delivered', deadReason: null, lastStatus: 200 })], nextCursor: 'abc' });
    assert.equal(
      out,
      [
        'ID  CREATED                   MERCHANT  STATUS     ATTEMPTS  LAST',
        'n1  2026-12-01T11:00:00.000Z  shop-a    dead       1         status-410',
        'n2  2026-12-01T11:00:00.000Z  shop-a    delivered  1         200',
        'more: --cursor abc',
      ].join('\n'),
    );
    assert.equal(formatPage({ notifications: [], nextCursor: null }), '(no notification matches)');
    assert.match(formatPage({ notifications: [view()], nextCursor: 'abc' }, ['--since 2026-12-01T10:00:00.000Z']), /^more: --since 2026-12-01T10:00:00.000Z --cursor abc$/m, 'the window kept for the next page');
  });

  it('short durations', () => {
    assert.deepEqual([shortDuration(87), shortDuration(1234), shortDuration(184_000)], ['87ms', '1.2s', '3m04s']);
  });
});

describe('forceParam', () => {
  it('yes for 1, true, yes; no for absent, empty, 0, false, no; a 400 for anything else', () => {
    for (const v of ['1', 'true', 'TRUE', 'yes']) assert.equal(forceParam(new URLSearchParams({ force: v })), true, v);
    for (const v of ['', '0', 'false', 'no']) assert.equal(forceParam(new URLSearchParams({ force: v })), false, v);
    assert.equal(forceParam(new URLSearchParams()), false);
    for (const v of ['on', 'tru', '2']) assert.throws(() => forceParam(new URLSearchParams({ force: v })), (e: { code?: string; field?: string }) => e.code === 'VALIDATION' && e.field === 'force', v);
  });
});
