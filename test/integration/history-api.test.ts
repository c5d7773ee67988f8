// Delivery history (issue 16), the read side, against the real daemon,
// RabbitMQ and PostgreSQL: lookups, keyset listing, resend, recover, on the
// ingress port (producer tokens) and the admin port, `ctl show|find`, and
// 501 HISTORY_DISABLED without a database.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import pg from 'pg';
import { after, before, describe, it } from 'node:test';
import { AMQP_URL, CLI_PATH, DaemonProcess, deletePrefix, uniquePrefix, waitFor } from '../../bench/daemon-process.js';
import { queueInfo } from '../../bench/bench-util.js';
import { freshDatabase, type TestDatabase } from '../../bench/database.js';
import { MerchantStub } from '../../bench/merchant-stub.js';
import type { NotificationPage, NotificationTimeline } from '../../src/history/reader.js';
import { namesFor } from '../../src/broker/topology.js';

const SCHEDULE = '0s,300ms,600ms';
const TOKEN = 'tok-history-api-0123456789';

interface Answer<T = any> {
  status: number;
  body: T;
}

async function call<T = any>(base: string, method: string, path: string, opts: { token?: string | null; body?: unknown } = {}): Promise<Answer<T>> {
  const headers: Record<string, string> = { connection: 'close' };
  if (opts.token) headers.authorization = `Bearer ${opts.token}`;
  if (opts.body !== undefined) headers['content-type'] = 'application/json';
  const r = await fetch(`${base}${path}`, { method, headers, ...(opts.body !== undefined ? { body: JSON.stringify(opts.body) } : {}) });
  const text = await r.text();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    /* keep text */
  }
  return { status: r.status, body: body as T };
}

describe('delivery history: the read side (real daemon, RabbitMQ, PostgreSQL)', () => {
  const merchant = new MerchantStub();
  let db: TestDatabase;
  let d: DaemonProcess;
  const prefixes: string[] = [];
  const api = <T = any>(method: string, path: string, body?: unknown): Promise<Answer<T>> => call<T>(d.ingressUrl, method, path, { token: TOKEN, body });
  const admin = <T = any>(method: string, path: string, body?: unknown): Promise<Answer<T>> => call<T>(d.adminUrl, method, path, { body });
  const timeline = async (id: string): Promise<NotificationTimeline | null> => {
    const r = await api<NotificationTimeline>('GET', `/v1/notifications/${encodeURIComponent(id)}`);
    return r.status === 200 ? r.body : null;
  };

  before(async () => {
    await merchant.start();
    db = await freshDatabase('historyapi');
    const prefix = uniquePrefix('hapi');
    prefixes.push(prefix);
    d = await new DaemonProcess({ prefix, schedule: SCHEDULE, env: { NOTIFY_DATABASE_URL: db.url, NOTIFY_INGRESS_TOKENS: `shop-producer:${TOKEN}` } }).ready(30_000);
    for (const id of ['shop-a', 'shop-b']) {
      const r = await admin('POST', '/admin/merchants', { id, name: id, allowedOrigins: [merchant.base] });
      assert.equal(r.status, 201, JSON.stringify(r.body));
    }
  });

  after(async () => {
    await d?.stop().catch(() => undefined);
    for (const p of prefixes) await deletePrefix(p, SCHEDULE).catch(() => undefined);
    await db?.drop();
    await merchant.close();
  });

  it('GET one: statuses and tiers of each attempt, its ladder; 404 NOT_FOUND for an unknown id, 401 without a token; ctl show prints the timeline', async () => {
    const path = `/fail/2/three-${d.opts.prefix}`;
    assert.equal((await api('POST', '/v1/notifications', { id: 'three', merchant: 'shop-a', url: `${merchant.base}${path}`, body: { order: 1 } })).status, 202);
    await waitFor(async () => (await timeline('three'))?.notification.status === 'delivered' && (await timeline('three'))!.attempts.length === 3, 15_000, 'three delivered');
    const t = (await timeline('three'))!;
    assert.deepEqual(
      t.attempts.map((a) => [a.attempt, a.tier, a.status, a.outcome, a.skipped]),
      [
        [0, 0, 500, 'retry', false],
        [1, 1, 500, 'retry', false],
        [2, 2, 200, 'success', false],
      ],
    );
    assert.equal(t.notification.attempts, 3);
    assert.equal(t.notification.merchant, 'shop-a');
    assert.equal(t.notification.producer, 'shop-producer');
    assert.equal(t.notification.resendable, true);
    assert.equal(t.notification.lastStatus, 200);
    assert.deepEqual(
      t.runs.map((r) => [r.via, r.producer]),
      [['ingress', 'shop-producer']],
    );
    assert.ok(t.attempts.every((a) => a.run === t.runs[0]!.run));
    assert.equal((t as unknown as { notification: Record<string, unknown> }).notification.content, undefined, 'the stored notification is not served');

    const viaAdmin = await admin<NotificationTimeline>('GET', '/admin/notifications/three');
    assert.equal(viaAdmin.status, 200);
    assert.deepEqual(viaAdmin.body.attempts, t.attempts, 'the admin port serves the same timeline');

    const unknown = await api('GET', '/v1/notifications/no-such-id');
    assert.deepEqual([unknown.status, unknown.body.error.code], [404, 'NOT_FOUND']);
    const anon = await call(d.ingressUrl, 'GET', '/v1/notifications/three');
    assert.deepEqual([anon.status, anon.body.error.code], [401, 'UNAUTHORIZED']);
    const wrong = await call(d.ingressUrl, 'POST', '/v1/notifications/three/resend', { token: 'nope' });
    assert.deepEqual([wrong.status, wrong.body.error.code], [401, 'UNAUTHORIZED']);
    assert.equal(merchant.count(path), 3, 'a refused resend sent nothing');
    const badMethod = await api('DELETE', '/v1/notifications/three');
    assert.deepEqual([badMethod.status, badMethod.body.error.code], [405, 'METHOD_NOT_ALLOWED']);

    const show = spawnSync(process.execPath, [CLI_PATH, 'ctl', 'show', 'three', '--admin', d.adminUrl], { encoding: 'utf8', timeout: 20_000 });
    assert.equal(show.status, 0, show.stderr);
    assert.match(show.stdout, /^notification three {2}DELIVERED {2}merchant shop-a {2}producer shop-producer$/m);
    assert.match(show.stdout, /^run \S+ {2}ingress /m);
    assert.match(show.stdout, /^ {2}1 +0 +\d{4}-\d\d-\d\dT\S+Z +\S+ +500 +retry +.*500/m);
    assert.match(show.stdout, /^ {2}2 +1 +\S+ +\S+ +500 +retry/m);
    assert.match(show.stdout, /^ {2}3 +2 +\S+ +\S+ +200 +success/m);
    const missing = spawnSync(process.execPath, [CLI_PATH, 'ctl', 'show', 'no-such-id', '--admin', d.adminUrl], { encoding: 'utf8', timeout: 20_000 });
    assert.equal(missing.status, 1);
    assert.match(missing.stderr, /NOT_FOUND/, 'an error answer goes to stderr');
  });

  it('resend: a new ladder from tier 0 with the same id, delivered again, attempts appended', async () => {
    const path = `/fail/2/three-${d.opts.prefix}`;
    const r = await api('POST', '/v1/notifications/three/resend');
    assert.equal(r.status, 202, JSON.stringify(r.body));
    assert.equal(r.body.id, 'three');
    assert.equal(r.body.previousStatus, 'delivered');
    await waitFor(() => merchant.count(path) === 4, 10_000, 'delivered again');
    await waitFor(async () => (await timeline('three'))?.attempts.length === 4 && (await timeline('three'))!.runs.length === 2, 10_000, 'the new ladder recorded');
    const t = (await timeline('three'))!;
    assert.deepEqual(
      t.runs.map((x) => x.via),
      ['ingress', 'resend'],
    );
    assert.equal(t.runs[1]!.run, r.body.run, 'the answer names the new ladder');
    assert.deepEqual(
      t.attempts.map((a) => [a.run === r.body.run, a.attempt, a.tier, a.outcome]),
      [
        [false, 0, 0, 'retry'],
        [false, 1, 1, 'retry'],
        [false, 2, 2, 'success'],
        [true, 0, 0, 'success'],
      ],
    );
    await waitFor(async () => (await timeline('three'))?.notification.attempts === 4 && (await timeline('three'))!.notification.status === 'delivered', 5000, 'the row counts the resend');
    const rows = await db.query<{ n: string }>('SELECT count(*) AS n FROM notify_notifications WHERE id = $1', ['three']);
    assert.equal(Number(rows.rows[0]!.n), 1, 'still one notification');
  });

  it('resend while pending: 409 NOTIFICATION_PENDING, sent anyway with force=true (ctl resend --force)', async () => {
    assert.equal((await admin('POST', '/admin/tiers/0/pause')).status, 200);
    // The pause answers once the master has told the worker; the worker cancels its consumer after that. Until the
    // broker shows no consumer, a notification published now could still be delivered, and would not stay pending.
    const work0 = namesFor(d.opts.prefix).workQueue(0);
    await waitFor(async () => (await queueInfo(AMQP_URL, work0)).consumerCount === 0, 10_000, 'tier 0 consumes nothing');
    const path = `/fail/0/held-${d.opts.prefix}`;
    try {
      assert.equal((await api('POST', '/v1/notifications', { id: 'held', merchant: 'shop-b', url: `${merchant.base}${path}`, body: {} })).status, 202);
      await waitFor(async () => (await timeline('held'))?.notification.status === 'pending', 10_000, 'held recorded as pending');
      const refused = await api('POST', '/v1/notifications/held/resend');
      assert.deepEqual([refused.status, refused.body.error.code], [409, 'NOTIFICATION_PENDING']);
      const viaAdmin = await admin('POST', '/admin/notifications/held/resend');
      assert.deepEqual([viaAdmin.status, viaAdmin.body.error.code], [409, 'NOTIFICATION_PENDING']);
      const forced = spawnSync(process.execPath, [CLI_PATH, 'ctl', 'resend', 'held', '--force', '--admin', d.adminUrl], { encoding: 'utf8', timeout: 20_000 });
      assert.equal(forced.status, 0, forced.stdout + forced.stderr);
      assert.equal(JSON.parse(forced.stdout).previousStatus, 'pending');
    } finally {
      await admin('POST', '/admin/tiers/0/resume');
    }
    await waitFor(() => merchant.count(path) === 2, 10_000, 'both copies delivered');
    await waitFor(async () => (await timeline('held'))?.runs.length === 2, 10_000, 'two ladders');
    assert.deepEqual(
      (await timeline('held'))!.runs.map((r) => [r.via, r.producer]),
      [
        ['ingress', 'shop-producer'],
        ['resend', null],
      ],
    );
  });

  it('recover re-sends only the window\'s dead notifications of that merchant; others untouched', async () => {
    const p = (k: string): string => `/status/410/${k}-${d.opts.prefix}`;
    const now = Date.now();
    const posts = [
      { id: 'a-dead-1', merchant: 'shop-a', url: `${merchant.base}${p('a1')}`, body: {} },
      { id: 'a-dead-2', merchant: 'shop-a', url: `${merchant.base}${p('a2')}`, body: {} },
      { id: 'a-old', merchant: 'shop-a', url: `${merchant.base}${p('aold')}`, body: {}, createdAt: now - 3 * 3_600_000 },
      { id: 'b-dead', merchant: 'shop-b', url: `${merchant.base}${p('b')}`, body: {} },
      { id: 'a-ok', merchant: 'shop-a', url: `${merchant.base}/fail/0/aok-${d.opts.prefix}`, body: {} },
    ];
    for (const n of posts) assert.equal((await api('POST', '/v1/notifications', n)).status, 202);
    await waitFor(
      async () => {
        const s = await Promise.all(posts.map(async (n) => (await timeline(n.id))?.notification.status));
        return s.join() === 'dead,dead,dead,dead,delivered';
      },
      15_000,
      'all ended',
    );
    assert.equal((await timeline('a-dead-1'))!.notification.deadReason, 'status-410');

    const dead = await api<NotificationPage>('GET', '/v1/notifications?merchant=shop-a&status=dead&since=1h');
    assert.equal(dead.status, 200);
    assert.deepEqual(dead.body.notifications.map((n) => n.id).sort(), ['a-dead-1', 'a-dead-2'], 'find: only the window');
    const find = spawnSync(process.execPath, [CLI_PATH, 'ctl', 'find', '--merchant', 'shop-a', '--status', 'dead', '--since', '1h', '--admin', d.adminUrl], { encoding: 'utf8', timeout: 20_000 });
    assert.equal(find.status, 0, find.stderr);
    assert.match(find.stdout, /^ID +CREATED +MERCHANT +STATUS +ATTEMPTS +LAST$/m);
    assert.match(find.stdout, /^a-dead-1 +\S+Z +shop-a +dead +1 +status-410$/m);
    assert.match(find.stdout, /^a-dead-2 /m);
    assert.doesNotMatch(find.stdout, /a-old|b-dead|a-ok/);
    // Paged: the next page keeps the window the first one had ("1h" made a time once), not one that moved on.
    const ctlFind = (...args: string[]) => spawnSync(process.execPath, [CLI_PATH, 'ctl', 'find', '--merchant', 'shop-a', '--status', 'dead', '--limit', '1', ...args, '--admin', d.adminUrl], { encoding: 'utf8', timeout: 20_000 });
    const first = ctlFind('--since', '1h');
    const more = /^more: (--since \S+Z) (--cursor \S+)$/m.exec(first.stdout);
    assert.ok(more, first.stdout);
    const second = ctlFind(...more[1]!.split(' '), ...more[2]!.split(' '));
    assert.equal(second.status, 0, second.stderr);
    const idsOf = (out: string): string[] => [...out.matchAll(/^(a-dead-\d) /gm)].map((m) => m[1]!);
    assert.deepEqual([...idsOf(first.stdout), ...idsOf(second.stdout)].sort(), ['a-dead-1', 'a-dead-2'], 'two pages, one each');

    const r = await api('POST', '/v1/notifications:recover', { merchant: 'shop-a', since: '1h', until: new Date(Date.now() + 60_000).toISOString() });
    assert.equal(r.status, 202, JSON.stringify(r.body));
    assert.deepEqual([r.body.matched, r.body.resent, r.body.failed], [2, 2, []]);
    await waitFor(() => merchant.count(p('a1')) === 2 && merchant.count(p('a2')) === 2, 10_000, 'the window\'s dead ones sent again');
    await waitFor(async () => (await timeline('a-dead-1'))?.runs.length === 2, 10_000, 'recover recorded');
    assert.deepEqual(
      (await timeline('a-dead-1'))!.runs.map((x) => x.via),
      ['ingress', 'recover'],
    );
    // Give a wrong recover time to show itself before checking what must not have moved.
    await new Promise((res) => setTimeout(res, 1000));
    assert.equal(merchant.count(p('aold')), 1, 'outside the window: untouched');
    assert.equal(merchant.count(p('b')), 1, 'another merchant: untouched');
    assert.equal(merchant.count(`/fail/0/aok-${d.opts.prefix}`), 1, 'delivered: untouched');
    assert.equal((await timeline('b-dead'))!.runs.length, 1);

    const bad = await admin('POST', '/admin/notifications:recover', { merchant: 'shop-a' });
    assert.deepEqual([bad.status, bad.body.error.code, bad.body.error.field], [400, 'VALIDATION', 'since']);
    const viaCtl = spawnSync(process.execPath, [CLI_PATH, 'ctl', 'recover', '--merchant', 'shop-b', '--since', '2h', '--admin', d.adminUrl], { encoding: 'utf8', timeout: 20_000 });
    assert.equal(viaCtl.status, 0, viaCtl.stdout + viaCtl.stderr);
    assert.deepEqual([JSON.parse(viaCtl.stdout).matched, JSON.parse(viaCtl.stdout).resent], [1, 1]);
    await waitFor(() => merchant.count(p('b')) === 2, 10_000, 'shop-b recovered through ctl');
  });

  it('list: keyset pages cover every notification once; bad parameters are 400 with code and field', async () => {
    // Twelve more, all with the same createdAt: the keyset must break ties on the id, not skip or repeat them.
    const createdAt = Date.now() - 1000;
    const batch = Array.from({ length: 12 }, (_, i) => ({ id: `page-${String(i).padStart(2, '0')}`, url: `${merchant.base}/fail/0/page-${i}-${d.opts.prefix}`, body: {}, createdAt }));
    const posted = await api('POST', '/v1/notifications:batch', { notifications: batch });
    assert.equal(posted.status, 202, JSON.stringify(posted.body));
    await waitFor(async () => Number((await db.query<{ n: string }>("SELECT count(*) AS n FROM notify_notifications WHERE id LIKE 'page-%'")).rows[0]!.n) === 12, 10_000, 'the batch recorded');
    const all = (await db.query<{ id: string }>('SELECT id FROM notify_notifications')).rows.map((r) => r.id).sort();
    assert.ok(all.length >= 19, `enough rows to page (${all.length})`);
    const seen: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const q: string = `/v1/notifications?limit=3${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`;
      const r: Answer<NotificationPage> = await api<NotificationPage>('GET', q);
      assert.equal(r.status, 200, JSON.stringify(r.body));
      assert.ok(r.body.notifications.length <= 3);
      seen.push(...r.body.notifications.map((n) => n.id));
      cursor = r.body.nextCursor;
      pages++;
    } while (cursor !== null && pages < 50);
    assert.equal(new Set(seen).size, seen.length, 'no duplicates');
    assert.deepEqual([...seen].sort(), all, 'every notification');
    assert.equal(pages, Math.ceil(all.length / 3));
    const newest = (await api<NotificationPage>('GET', '/v1/notifications?limit=500')).body.notifications;
    for (let i = 1; i < newest.length; i++) assert.ok(newest[i - 1]!.createdAt >= newest[i]!.createdAt, 'newest first');

    for (const [q, field] of [
      ['limit=0', 'limit'],
      ['limit=501', 'limit'],
      ['status=lost', 'status'],
      ['since=yesterday', 'since'],
      ['since=1h&until=2h', 'until'],
      ['cursor=not-a-cursor', 'cursor'],
      ['colour=red', 'colour'],
    ] as const) {
      const r = await api('GET', `/v1/notifications?${q}`);
      assert.deepEqual([r.status, r.body.error.code, r.body.error.field], [400, 'VALIDATION', field], q);
    }
  });

  it('a notification the history holds only attempts of is not resendable: 409 NOT_RESENDABLE, nothing sent', async () => {
    // As the recorder leaves it for a message published straight to a later tier: attempts, no notification body.
    const path = `/fail/0/bare-${d.opts.prefix}`;
    await db.query("INSERT INTO notify_notifications (id, created_at, url, status, status_at, dead_reason, attempts) VALUES ('bare', now(), $1, 'dead', now(), 'exhausted', 1)", [`${merchant.base}${path}`]);
    const t = (await timeline('bare'))!;
    assert.deepEqual([t.notification.status, t.notification.resendable], ['dead', false]);
    const r = await api('POST', '/v1/notifications/bare/resend');
    assert.deepEqual([r.status, r.body.error.code], [409, 'NOT_RESENDABLE']);
    await new Promise((res) => setTimeout(res, 300));
    assert.equal(merchant.count(path), 0);
  });

  it('two resends at once start one ladder (409 NOTIFICATION_PENDING for the other), a re-run recover resends nothing, and a redrive drops the parked copy a resend superseded (issue 16 review)', async () => {
    const path = `/status/410/twice-${d.opts.prefix}`;
    assert.equal((await api('POST', '/v1/notifications', { id: 'twice', merchant: 'shop-a', url: `${merchant.base}${path}`, body: {} })).status, 202);
    await waitFor(async () => (await timeline('twice'))?.notification.status === 'dead', 10_000, 'twice dead');
    // Both see "dead" in the history: the claim in the database decides, not the recorder.
    const both = await Promise.all([api('POST', '/v1/notifications/twice/resend'), admin('POST', '/admin/notifications/twice/resend')]);
    assert.deepEqual(both.map((r) => r.status).sort(), [202, 409], JSON.stringify(both.map((r) => r.body)));
    assert.equal(both.find((r) => r.status === 409)!.body.error.code, 'NOTIFICATION_PENDING');
    await waitFor(() => merchant.count(path) === 2, 10_000, 'resent once');
    await waitFor(async () => (await timeline('twice'))?.notification.status === 'dead' && (await timeline('twice'))!.runs.length === 2, 10_000, 'the resend died again');
    // The window starts just before 'twice' was created: earlier tests' shop-a notifications (some may
    // reach the history only now, behind the recorder, and be dead for the second recover and rightly
    // resent) stay out of it, so the window holds 'twice' alone and each recover's count is exact.
    const since = (await timeline('twice'))!.notification.createdAt - 1;
    const until = new Date(Date.now() + 1000).toISOString();
    // Tier 0 paused: what the first recover resends stays pending (a 410 would park it again within ms,
    // dead once more and rightly resendable); the second recover must find it claimed, not dead.
    assert.equal((await admin('POST', '/admin/tiers/0/pause')).status, 200);
    try {
      const first = await admin('POST', '/admin/notifications:recover', { merchant: 'shop-a', since, until });
      assert.equal(first.status, 202, JSON.stringify(first.body));
      assert.equal(first.body.resent, 1, JSON.stringify(first.body));
      assert.equal(first.body.stopped, null);
      const again = await admin('POST', '/admin/notifications:recover', { merchant: 'shop-a', since, until });
      assert.equal(again.status, 202, JSON.stringify(again.body));
      assert.equal(again.body.resent, 0, 'claimed by the first recover: nothing is still dead');
    } finally {
      // A failure above must not leave tier 0 paused for the tests after this one (nor be hidden by an assert here).
      await admin('POST', '/admin/tiers/0/resume');
    }
    await waitFor(() => merchant.count(path) === 3, 10_000, 'recovered once');
    await waitFor(async () => (await timeline('twice'))?.notification.status === 'dead' && (await timeline('twice'))!.runs.length === 3, 10_000, 'the recover died again');
    // P.dead holds three copies of 'twice': two superseded (a ladder started after each was parked), the last one current.
    const r = await admin('POST', '/admin/dead/redrive?limit=1000');
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.ok(r.body.superseded >= 2, JSON.stringify(r.body));
    await waitFor(() => merchant.count(path) === 4, 10_000, 'the current copy redriven');
    await new Promise((res) => setTimeout(res, 1000));
    assert.equal(merchant.count(path), 4, 'the superseded copies were not delivered again');
  });

  it('a redrive keeps parked, even forced, the copy of a notification a resend claimed whose ladder the history has not recorded yet; it moves once the claim is given back', async () => {
    const path = `/status/410/claimed-${d.opts.prefix}`;
    assert.equal((await api('POST', '/v1/notifications', { id: 'claimed', merchant: 'shop-a', url: `${merchant.base}${path}`, body: {} })).status, 202);
    await waitFor(async () => (await timeline('claimed'))?.notification.status === 'dead', 10_000, 'claimed dead');
    const parked = async (): Promise<boolean> => ((await admin('GET', '/admin/dead?limit=1000')).body.messages as { id: string }[]).some((m) => m.id === 'claimed');
    await waitFor(parked, 10_000, 'its copy in P.dead');
    const before = (await db.query<{ status_at: Date }>("SELECT status_at FROM notify_notifications WHERE id = 'claimed'")).rows[0]!.status_at;
    // What a resend's claim leaves in the history until its ladder's run reaches the recorder (history-claim.sql).
    assert.equal((await db.query("UPDATE notify_notifications SET status = 'pending', status_at = clock_timestamp() WHERE id = 'claimed'")).rowCount, 1);
    const r = await admin('POST', '/admin/dead/redrive?limit=1000&force=1');
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.ok(r.body.skipped >= 1, JSON.stringify(r.body));
    assert.ok(await parked(), 'still parked');
    await new Promise((res) => setTimeout(res, 500));
    assert.equal(merchant.count(path), 1, 'not sent again beside the ladder the claim stands for');
    // The claim given back (history-unclaim.sql: its publish failed): the copy is the only one and moves.
    await db.query("UPDATE notify_notifications SET status = 'dead', status_at = $1 WHERE id = 'claimed'", [before]);
    assert.equal((await admin('POST', '/admin/dead/redrive?limit=1000')).status, 200);
    await waitFor(() => merchant.count(path) === 2, 10_000, 'redriven once the claim was given back');
  });

  it('a redrive claims what it moves: a resend right after it, before the recorder has the new ladder, is refused (409 NOTIFICATION_PENDING) instead of starting a second ladder', async () => {
    const path = `/status/410/redriven-${d.opts.prefix}`;
    assert.equal((await api('POST', '/v1/notifications', { id: 'redriven', merchant: 'shop-a', url: `${merchant.base}${path}`, body: {} })).status, 202);
    await waitFor(async () => (await timeline('redriven'))?.notification.status === 'dead', 10_000, 'redriven dead');
    await waitFor(async () => ((await admin('GET', '/admin/dead?limit=1000')).body.messages as { id: string }[]).some((m) => m.id === 'redriven'), 10_000, 'its copy in P.dead');
    // The recorder held behind a lock on the ladders' table (reads go on): the history says "dead" until it is let go.
    const locker = new pg.Client({ connectionString: db.url });
    await locker.connect();
    assert.equal((await admin('POST', '/admin/tiers/0/pause')).status, 200);
    try {
      await locker.query('BEGIN');
      await locker.query('LOCK TABLE notify_runs IN SHARE MODE');
      const r = await admin('POST', '/admin/dead/redrive?limit=1000');
      assert.equal(r.status, 200, JSON.stringify(r.body));
      assert.ok(r.body.moved >= 1, JSON.stringify(r.body));
      const again = await api('POST', '/v1/notifications/redriven/resend');
      assert.deepEqual([again.status, again.body.error?.code], [409, 'NOTIFICATION_PENDING'], JSON.stringify(again.body));
    } finally {
      await locker.query('ROLLBACK').catch(() => undefined);
      await locker.end();
      await admin('POST', '/admin/tiers/0/resume');
    }
    await waitFor(() => merchant.count(path) === 2, 10_000, 'the redriven copy attempted');
    await waitFor(async () => (await timeline('redriven'))?.notification.status === 'dead' && (await timeline('redriven'))!.runs.length === 2, 10_000, 'the redriven ladder recorded, dead again');
    await new Promise((res) => setTimeout(res, 500));
    assert.equal(merchant.count(path), 2, 'one ladder, not two');
  });

  it('bad times are 400 VALIDATION with the field, not 500; a resend for a disabled merchant is 409 MERCHANT_DISABLED, nothing sent (issue 16 review)', async () => {
    for (const q of ['since=999999999d', 'since=0000-01-01', 'since=2026-02-30', 'since=5000']) {
      const r = await api('GET', `/v1/notifications?${q}`);
      assert.deepEqual([r.status, r.body.error?.code, r.body.error?.field], [400, 'VALIDATION', 'since'], q);
    }
    const huge = await admin('POST', '/admin/notifications:recover', { merchant: 'shop-a', since: 1e20 });
    assert.deepEqual([huge.status, huge.body.error?.code, huge.body.error?.field], [400, 'VALIDATION', 'since']);
    const cursor = Buffer.from(JSON.stringify(['0000-01-01T00:00:00.000000Z', 'x'])).toString('base64url');
    const tampered = await api('GET', `/v1/notifications?cursor=${cursor}`);
    assert.deepEqual([tampered.status, tampered.body.error?.field], [400, 'cursor']);

    assert.equal((await admin('POST', '/admin/merchants', { id: 'shop-c', name: 'shop-c', allowedOrigins: [merchant.base] })).status, 201);
    const path = `/status/410/offc-${d.opts.prefix}`;
    assert.equal((await api('POST', '/v1/notifications', { id: 'offc', merchant: 'shop-c', url: `${merchant.base}${path}`, body: {} })).status, 202);
    await waitFor(async () => (await timeline('offc'))?.notification.status === 'dead', 10_000, 'offc dead');
    assert.equal((await admin('POST', '/admin/merchants/shop-c/disable', {})).status, 200);
    // The ingress's registry copy sees the change when a new notification for shop-c is refused.
    await waitFor(async () => (await api('POST', '/v1/notifications', { id: `probe-${Date.now()}`, merchant: 'shop-c', url: `${merchant.base}/fail/0/probe`, body: {} })).status === 409, 10_000, 'ingress sees shop-c disabled');
    const r = await api('POST', '/v1/notifications/offc/resend');
    assert.deepEqual([r.status, r.body.error?.code], [409, 'MERCHANT_DISABLED']);
    assert.equal((await timeline('offc'))!.notification.status, 'dead', 'not claimed');
    await new Promise((res) => setTimeout(res, 500));
    assert.equal(merchant.count(path), 1);
  });

  it('without a database every history call answers 501 HISTORY_DISABLED (ingress and admin)', async () => {
    const prefix = uniquePrefix('hapi-off');
    prefixes.push(prefix);
    const off = await new DaemonProcess({ prefix, schedule: SCHEDULE, env: { NOTIFY_INGRESS_TOKENS: `p:${TOKEN}` } }).ready(30_000);
    try {
      for (const [method, path, body] of [
        ['GET', '/v1/notifications/x', undefined],
        ['GET', '/v1/notifications?limit=5', undefined],
        ['POST', '/v1/notifications/x/resend', undefined],
        ['POST', '/v1/notifications:recover', { merchant: 'm', since: '1h' }],
      ] as const) {
        const r = await call(off.ingressUrl, method, path, { token: TOKEN, body });
        assert.deepEqual([r.status, r.body.error.code], [501, 'HISTORY_DISABLED'], `${method} ${path}`);
      }
      const anon = await call(off.ingressUrl, 'GET', '/v1/notifications/x');
      assert.equal(anon.status, 401, 'the token is checked first');
      const a = await call(off.adminUrl, 'GET', '/admin/notifications/x');
      assert.deepEqual([a.status, a.body.error.code], [501, 'HISTORY_DISABLED']);
      const show = spawnSync(process.execPath, [CLI_PATH, 'ctl', 'show', 'x', '--admin', off.adminUrl], { encoding: 'utf8', timeout: 20_000 });
      assert.equal(show.status, 1);
      assert.match(show.stderr, /HISTORY_DISABLED/);
    } finally {
      await off.stop();
    }
  });
});
