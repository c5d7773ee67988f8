// The operator console in Debian's Chromium (headless, driven by
// playwright-core), against the real daemon and RabbitMQ: the token form (a
// wrong token refused, asked again after the token changes), the tiers with
// pause/resume, a parked notification found and redriven, the pages of
// features this daemon lacks, phone width, keyboard focus, and no CSP
// violation, cookie or request to another host anywhere. Screenshots of each
// page go to docs/console/ (overwritten on every run).
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { DaemonProcess, deletePrefix, uniquePrefix, waitFor } from '../../bench/daemon-process.js';
import { MerchantStub } from '../../bench/merchant-stub.js';
import { freshDatabase } from '../../bench/database.js';

const CHROMIUM = '/usr/bin/chromium';
const SCHEDULE = '0s,300ms';
const TOKEN = 'console-e2e-token-1';
const NEW_TOKEN = 'console-e2e-token-2';
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const SHOTS = join(ROOT, 'docs', 'console');
const DESKTOP = { width: 1280, height: 800 };
const PHONE = { width: 375, height: 740 };
/** Long enough for a Chromium start and a few polls on a busy CI machine. */
const UI_TIMEOUT = 15_000;

interface TierRow {
  index: number;
  state: string;
  pid: number | null;
  paused: boolean;
}

describe('console in Chromium (real daemon, real RabbitMQ)', { skip: existsSync(CHROMIUM) ? false : `${CHROMIUM} not installed (Debian: apt-get install chromium)` }, () => {
  const merchant = new MerchantStub();
  const prefixes: string[] = [];
  const daemons: DaemonProcess[] = [];
  let tmp = '';
  let configFile = '';
  let d: DaemonProcess;
  let browser: BrowserContext;
  let page: Page;
  const cspViolations: string[] = [];
  const pageErrors: string[] = [];
  const foreignRequests: string[] = [];
  /** The admin token in force (the last test changes it). */
  let token = TOKEN;

  async function daemon(label: string, env: Record<string, string> = {}): Promise<DaemonProcess> {
    const prefix = uniquePrefix(label);
    prefixes.push(prefix);
    const dp = new DaemonProcess({ prefix, schedule: SCHEDULE, env: { NOTIFY_LOG_LEVEL: 'warn', ...env } });
    daemons.push(dp);
    return dp.ready();
  }

  /** Chromium as the brief says: headless, no sandbox (root in a container), nothing fetched in the background, a fresh profile. */
  async function launch(): Promise<BrowserContext> {
    return chromium.launchPersistentContext(mkdtempSync(join(tmp, 'profile-')), {
      executablePath: CHROMIUM,
      headless: true,
      args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
      viewport: DESKTOP,
    });
  }

  /** Records what must never happen on any page: CSP violations, script errors, requests to another origin. */
  function watch(p: Page, origin: string): void {
    p.on('console', (m) => {
      if (/Content Security Policy/i.test(m.text())) cspViolations.push(m.text());
    });
    p.on('pageerror', (e) => pageErrors.push(e.message));
    p.on('request', (r) => {
      const u = r.url();
      if (!u.startsWith(`${origin}/`) && !u.startsWith('data:')) foreignRequests.push(u);
    });
  }

  async function shot(name: string, p: Page = page): Promise<void> {
    await p.screenshot({ path: join(SHOTS, `${name}.png`) });
  }

  /** Waits until some element shows `text`. */
  async function sees(text: string | RegExp, p: Page = page): Promise<void> {
    try {
      await p.getByText(text).first().waitFor({ state: 'visible', timeout: UI_TIMEOUT });
    } catch (err) {
      // What the page showed instead, for whoever reads the failure (.tmp/ is not committed).
      mkdirSync(join(ROOT, '.tmp'), { recursive: true });
      await p.screenshot({ path: join(ROOT, '.tmp', `console-failure-${String(text).replace(/[^a-z0-9]+/gi, '-').slice(0, 40)}.png`), fullPage: true }).catch(() => undefined);
      const shown = await p.locator('body').innerText().catch(() => '?');
      throw new Error(`${(err as Error).message}\npage text:\n${shown.slice(0, 2000)}`, { cause: err });
    }
  }

  async function tierState(index: number): Promise<string> {
    return (await page.locator(`tr[data-tier="${index}"] .tier-state`).innerText()).trim();
  }

  async function apiTiers(): Promise<TierRow[]> {
    const r = await fetch(`${d.adminUrl}/admin/status`, { headers: { authorization: `Bearer ${token}` } });
    return ((await r.json()) as { tiers: TierRow[] }).tiers;
  }

  before(async () => {
    mkdirSync(SHOTS, { recursive: true });
    tmp = mkdtempSync(join(tmpdir(), 'notifyd-console-'));
    // The token comes from a file so the test can change it with a reload.
    configFile = join(tmp, 'notifyd.json');
    writeFileSync(configFile, JSON.stringify({ admin: { token: TOKEN } }));
    await merchant.start();
    d = await daemon('console', { NOTIFY_CONFIG: configFile });
    browser = await launch();
    browser.setDefaultTimeout(UI_TIMEOUT);
    page = browser.pages()[0] ?? (await browser.newPage());
    watch(page, d.adminUrl);
  });

  after(async () => {
    await browser?.close().catch(() => undefined);
    for (const dp of daemons) await dp.stop().catch(() => dp.proc.kill('SIGKILL'));
    await merchant.close();
    for (const p of prefixes) await deletePrefix(p, SCHEDULE).catch(() => undefined);
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  it('asks for the token, refuses a wrong one, and opens the overview with the right one', async () => {
    await page.goto(`${d.adminUrl}/`);
    await page.getByLabel('Token', { exact: true }).waitFor({ timeout: UI_TIMEOUT });
    await page.getByLabel('Token', { exact: true }).fill('not-the-token');
    await page.getByRole('button', { name: 'Continue' }).click();
    await sees('The daemon refused this token.');
    assert.equal(await page.evaluate(() => sessionStorage.length), 0, 'a refused token is not kept');
    await shot('login');

    await page.getByLabel('Token', { exact: true }).fill(TOKEN);
    await page.getByRole('button', { name: 'Continue' }).click();
    await page.getByRole('heading', { name: 'Overview' }).waitFor({ timeout: UI_TIMEOUT });
    assert.equal(await page.evaluate(() => Object.values(sessionStorage).join()), TOKEN, 'kept in sessionStorage');
    assert.equal(await page.evaluate(() => document.cookie), '', 'no cookie');
    const cookies = await browser.cookies();
    assert.deepEqual(cookies, [], 'no cookie');

    // A reload of the tab keeps the token (sessionStorage), so no second prompt.
    await page.reload();
    await page.getByRole('heading', { name: 'Overview' }).waitFor({ timeout: UI_TIMEOUT });
  });

  it('shows the tiers, ingress, broker and queues, with rates from /metrics', async () => {
    // Some traffic, so rates, lateness and depths have something to show: deliveries, and retries into tier 1.
    for (let i = 0; i < 30; i++) assert.equal((await d.post({ url: `${merchant.base}/fail/${i % 3 === 0 ? 1 : 0}/ok-${i}-${d.opts.prefix}`, body: { i } })).status, 202);
    for (const i of [0, 1]) assert.match(await tierState(i), /running/);
    await sees('connected');
    await sees(`${d.opts.prefix}`);
    // Attempts/s of tier 0 becomes a number once two scrapes span the traffic.
    await waitFor(async () => /\d/.test(await page.locator('tr[data-tier="0"] td[data-label="Attempts/s"]').innerText()), UI_TIMEOUT, 'attempts/s of tier 0');
    await waitFor(async () => Number(await page.locator('tr[data-tier="0"] td[data-label="Attempts/s"]').innerText()) > 0, UI_TIMEOUT, 'a positive rate');
    await sees('work.0');
    // The broker node of each process, as /admin/status says.
    const status = (await (await fetch(`${d.adminUrl}/admin/status`, { headers: { authorization: `Bearer ${token}` } })).json()) as { tiers: { brokerNode: string }[]; broker: { node: string } };
    assert.match(status.tiers[0]!.brokerNode, /^127\.0\.0\.1:\d+$/);
    await waitFor(async () => (await page.locator('tr[data-tier="0"] td[data-label="Broker node"]').innerText()).trim() === status.tiers[0]!.brokerNode, UI_TIMEOUT, 'tier 0 broker node shown');
    assert.equal((await page.getByTestId('broker-node').innerText()).trim(), status.broker.node);
    await shot('overview');
  });

  it('pauses and resumes tier 0, and the state change shows', async () => {
    await page.getByRole('button', { name: 'Pause tier 0' }).click();
    await waitFor(async () => (await tierState(0)) === 'paused', UI_TIMEOUT, 'tier 0 shown paused');
    await sees('Tier 0 paused');
    assert.equal((await apiTiers())[0]!.state, 'paused');
    // Still paused after the next refreshes (the page shows the daemon's state, not only its own click).
    await page.waitForTimeout(3500);
    assert.equal(await tierState(0), 'paused');
    // Its worker restarting stays paused: the status says so while the worker is in backoff or starting.
    process.kill((await apiTiers())[0]!.pid!, 'SIGKILL');
    await waitFor(async () => {
      const t = (await apiTiers())[0]!;
      return t.state !== 'paused' && t.paused === true;
    }, 5000, 'restarting and still paused');
    await waitFor(async () => (await apiTiers())[0]!.state === 'paused', 15_000, 'the new worker paused');
    await page.getByRole('button', { name: 'Resume tier 0' }).click();
    await waitFor(async () => (await tierState(0)) === 'running', UI_TIMEOUT, 'tier 0 shown running');
    assert.equal((await apiTiers())[0]!.state, 'running');
  });

  it('fits a phone-width screen', async () => {
    await page.setViewportSize(PHONE);
    await page.getByRole('heading', { name: 'Tiers' }).waitFor();
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
    assert.ok(overflow <= 0, `no sideways scrolling at 375 px (overflow ${overflow}px)`);
    await page.getByRole('button', { name: 'Pause tier 0' }).waitFor();
    await shot('overview-phone');
    await page.setViewportSize(DESKTOP);
  });

  it('finds a parked notification and redrives it', async () => {
    const key = `gone-${d.opts.prefix}`;
    const id = `order-410-${d.opts.prefix.slice(-8)}`;
    assert.equal((await d.post({ id, url: `${merchant.base}/status/410/${key}`, body: { order: 410 } })).status, 202);
    assert.equal((await d.post({ id: `order-500-${d.opts.prefix.slice(-8)}`, url: `${merchant.base}/status/500/tired-${d.opts.prefix}`, body: { order: 500 } })).status, 202);
    await waitFor(() => merchant.count(`/status/410/${key}`) === 1 && merchant.count(`/status/500/tired-${d.opts.prefix}`) === 2, 10_000, 'both failed');
    await waitFor(async () => {
      const r = await fetch(`${d.adminUrl}/admin/dead`, { headers: { authorization: `Bearer ${token}` } });
      return ((await r.json()) as { total: number }).total === 2;
    }, 10_000, 'both parked');

    await page.getByRole('link', { name: 'Parked' }).click();
    await page.getByRole('heading', { name: 'Parked' }).waitFor();
    const row = page.locator('table.parked tbody tr', { hasText: id });
    await row.waitFor({ timeout: UI_TIMEOUT });
    assert.match(await row.innerText(), /status-410/);
    assert.match(await row.innerText(), new RegExp(key));
    await sees('exhausted');
    assert.equal((await page.locator('[data-testid="parked-total"]').innerText()).trim(), '2');

    await page.getByLabel('Limit', { exact: true }).fill('10');
    await page.getByRole('button', { name: 'Redrive' }).click();
    await sees(/Redrive done: moved 2, skipped 0, remaining \d/);
    // Redriven, the 410 is tried again (and parked again: its merchant still answers 410).
    await waitFor(() => merchant.count(`/status/410/${key}`) === 2, 10_000, 'the redriven notification attempted again');
    // Listed again (on demand: the page never lists on a timer) until both are back, each once.
    const redriven = page.locator('table.parked tbody tr', { hasText: 'redriven 1×' });
    await waitFor(async () => {
      await page.getByRole('button', { name: 'Refresh' }).click();
      await page.waitForTimeout(300);
      return (await redriven.count()) === 2;
    }, UI_TIMEOUT, 'the redriven notifications listed again');
    assert.equal(merchant.count(`/status/410/${key}`), 2, 'redriven once, not once per pass of the scan');
    await shot('parked');
  });

  it('the origins page shows what GET /admin/origins says (no origin held back here)', async () => {
    await page.getByRole('link', { name: 'Origins' }).click();
    await sees('Every origin is healthy.');
    await shot('origins');
  });

  it('looks up a notification id and, without history, says how to enable it', async () => {
    await page.getByRole('link', { name: 'Notification' }).click();
    await page.getByLabel('Notification id', { exact: true }).fill('order-20240001');
    await page.getByRole('button', { name: 'Look up' }).click();
    await sees('Delivery history is not enabled');
    await sees(/NOTIFY_DATABASE_URL=/);
    assert.match(page.url(), /#\/notifications\/order-20240001$/, 'the lookup is in the address');
    await shot('notification');
  });

  it('the merchants page, without a database, says how to enable it', async () => {
    await page.getByRole('link', { name: 'Merchants' }).click();
    await sees('Merchants is not enabled');
    await sees(/NOTIFY_DATABASE_URL=/);
    await shot('merchants-no-database');
  });

  it('manages merchants against a real database: create (the secret shown once), rotate, disable and enable', async () => {
    const db = await freshDatabase('console');
    const p = await browser.newPage();
    try {
      const withDb = await daemon('console-db', { NOTIFY_DATABASE_URL: db.url, NOTIFY_ADMIN_TOKEN: TOKEN });
      watch(p, withDb.adminUrl);
      await p.setViewportSize(DESKTOP);
      await p.goto(`${withDb.adminUrl}/#/merchants`);
      await p.getByLabel('Token', { exact: true }).fill(TOKEN);
      await p.getByRole('button', { name: 'Continue' }).click();
      await sees('No merchant yet.', p);
      const api = async <T,>(method: string, path: string): Promise<T> => {
        const r = await fetch(`${withDb.adminUrl}${path}`, { method, headers: { authorization: `Bearer ${TOKEN}` } });
        assert.equal(r.status, 200, path);
        return (await r.json()) as T;
      };
      type M = { merchant: { id: string; enabled: boolean; disabledReason: string | null; secrets: { fingerprint: string; expiresAt: string | null }[] } };

      // Create: the secret is in the page once, and is the one that signs (its fingerprint is listed).
      await p.getByLabel('Id', { exact: true }).fill('shop-c');
      await p.getByLabel('Name', { exact: true }).fill('Shop C');
      await p.getByLabel(/Allowed origins/).fill('https://shop-c.example\nhttps://pay.shop-c.example:8443');
      await p.getByRole('button', { name: 'Create' }).click();
      await sees('it is not shown again', p);
      const secret = await p.getByLabel('Secret', { exact: true }).inputValue();
      assert.match(secret, /^whsec_[A-Za-z0-9+/]{20,}={0,2}$/);
      const created = await api<M>('GET', '/admin/merchants/shop-c');
      assert.equal(created.merchant.secrets.length, 1);
      const row = p.locator('tbody tr', { hasText: 'shop-c' });
      await row.waitFor();
      const rowText = await row.innerText();
      assert.ok(rowText.includes(created.merchant.secrets[0]!.fingerprint) && rowText.includes('https://pay.shop-c.example:8443'), rowText);
      await shot('merchants-created', p);
      // While it is on screen, nothing may replace it: a second secret would lose the first for good.
      assert.equal(await p.getByRole('button', { name: 'Rotate the secret of shop-c' }).isDisabled(), true, 'no rotation while a secret is not stored');
      assert.equal(await p.getByRole('button', { name: 'Create' }).isDisabled(), true, 'no create either');
      await p.getByRole('button', { name: 'I have stored it' }).click();
      assert.equal(await p.getByLabel('Secret', { exact: true }).count(), 0, 'the secret is gone from the page');
      assert.ok(!(await p.content()).includes(secret), 'and from the document');

      // Rotate: asked first; a new secret shown once, the old one kept for the grace period.
      const asked: string[] = [];
      p.once('dialog', (dlg) => void (asked.push(dlg.message()), dlg.accept()));
      await p.getByRole('button', { name: 'Rotate the secret of shop-c' }).click();
      await sees('the old one stays valid', p);
      const rotated = await p.getByLabel('Secret', { exact: true }).inputValue();
      assert.notEqual(rotated, secret);
      await p.getByRole('button', { name: 'I have stored it' }).click();
      const afterRotate = await api<M>('GET', '/admin/merchants/shop-c');
      assert.equal(afterRotate.merchant.secrets.length, 2, 'new and old');
      assert.equal(afterRotate.merchant.secrets.filter((x) => x.expiresAt !== null).length, 1, 'the old one expires');
      await sees(/old, valid until/, p);

      assert.match(asked[0] ?? '', /Rotate the signing secret of shop-c/);

      // Disable: asked first (it parks the merchant's notifications); a no changes nothing.
      p.once('dialog', (dlg) => void (asked.push(dlg.message()), dlg.dismiss()));
      await p.getByRole('button', { name: 'Disable shop-c' }).click();
      await waitFor(() => asked.length === 2, 5000, 'asked before disabling');
      assert.match(asked[1]!, /Disable shop-c\?/);
      assert.equal((await api<M>('GET', '/admin/merchants/shop-c')).merchant.enabled, true, 'answered no: still enabled');
      // Disable and enable, seen in the registry.
      p.once('dialog', (dlg) => void dlg.accept());
      await p.getByRole('button', { name: 'Disable shop-c' }).click();
      await sees('Merchant shop-c disabled.', p);
      const disabled = await api<M>('GET', '/admin/merchants/shop-c');
      assert.equal(disabled.merchant.enabled, false);
      assert.equal(disabled.merchant.disabledReason, 'disabled from the console');
      await sees('disabled from the console', p);
      await shot('merchants', p);
      await p.getByRole('button', { name: 'Enable shop-c' }).click();
      await sees('Merchant shop-c enabled.', p);
      assert.equal((await api<M>('GET', '/admin/merchants/shop-c')).merchant.enabled, true);

      // A bad origin is refused with the API's message, nothing created.
      await p.getByLabel('Id', { exact: true }).fill('shop-d');
      await p.getByLabel('Name', { exact: true }).fill('Shop D');
      await p.getByLabel(/Allowed origins/).fill('ftp://shop-d.example');
      await p.getByRole('button', { name: 'Create' }).click();
      await sees(/allowedOrigins\[0\]: must be http or https/, p);
      const r = await fetch(`${withDb.adminUrl}/admin/merchants/shop-d`, { headers: { authorization: `Bearer ${TOKEN}` } });
      assert.equal(r.status, 404);

      // More merchants than the API's default page: every one is listed (and can be acted on).
      for (let i = 0; i < 60; i++) {
        const c = await fetch(`${withDb.adminUrl}/admin/merchants`, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' }, body: JSON.stringify({ id: `shop-z${String(i).padStart(2, '0')}`, name: `Shop Z${i}`, allowedOrigins: ['https://z.example'] }) });
        assert.equal(c.status, 201);
      }
      await p.reload();
      await p.locator('tbody tr', { hasText: 'shop-z59' }).waitFor();
      assert.equal(await p.locator('tbody tr').count(), 61, 'shop-c and the sixty');
      p.once('dialog', (dlg) => void dlg.accept());
      await p.getByRole('button', { name: 'Disable shop-z59' }).click();
      await sees('Merchant shop-z59 disabled.', p);
    } finally {
      await p.close();
      await db.drop();
    }
  });

  it('looks up a notification in the delivery history (a real database): its attempts, then resends it and sees the second ladder', async () => {
    const db = await freshDatabase('consolehist');
    const p = await browser.newPage();
    try {
      const withDb = await daemon('console-hist', { NOTIFY_DATABASE_URL: db.url, NOTIFY_ADMIN_TOKEN: TOKEN });
      watch(p, withDb.adminUrl);
      await p.setViewportSize(DESKTOP);
      // Fails once (tier 0), delivered by tier 1.
      const id = `order-${withDb.opts.prefix}`;
      assert.equal((await withDb.post({ id, url: `${merchant.base}/fail/1/${id}`, body: { orderId: id, amount: '100.00' } })).status, 202);
      type Timeline = { notification: { status: string }; attempts: { attempt: number; tier: number; status: number | null }[]; runs: unknown[] };
      const timeline = async (): Promise<Timeline | null> => {
        const r = await fetch(`${withDb.adminUrl}/admin/notifications/${id}`, { headers: { authorization: `Bearer ${TOKEN}` } });
        return r.status === 200 ? ((await r.json()) as Timeline) : null;
      };
      await waitFor(async () => (await timeline())?.notification.status === 'delivered', 20_000, 'delivered and recorded');
      await p.goto(`${withDb.adminUrl}/#/notifications`);
      await p.getByLabel('Token', { exact: true }).fill(TOKEN);
      await p.getByRole('button', { name: 'Continue' }).click();
      await p.getByLabel('Notification id', { exact: true }).fill(id);
      await p.getByRole('button', { name: 'Look up' }).click();
      await sees('Attempt 2', p);
      const text = await p.locator('main').innerText();
      assert.match(text, /delivered/);
      assert.match(text, /Attempt 1[\s\S]*500[\s\S]*Attempt 2[\s\S]*200/, 'the failed attempt (500) then the delivered one (200), in order');
      await shot('notification-timeline', p);

      await p.getByRole('button', { name: 'Resend', exact: true }).click();
      await sees('was sent again', p);
      await waitFor(async () => ((await timeline())?.attempts.length ?? 0) === 3, 20_000, 'the resend recorded as a third attempt');
      const after = (await timeline())!;
      assert.equal(after.runs.length, 2, 'a second ladder');
      assert.equal(after.notification.status, 'delivered');
    } finally {
      await p.close();
      await db.drop();
    }
  });

  it('renders the answers of the APIs still to come (origins, history), stubbed in the browser', async () => {
    // Held-back origins and a history timeline need load and a database; their rendering is exercised against the real shapes here.
    const json = (status: number, body: unknown) => ({ status, contentType: 'application/json', body: JSON.stringify(body) });
    const now = Date.now();
    const originsRoute = /\/admin\/origins(\?|$)/;
    const asked: string[] = [];
    await page.route(originsRoute, (r) => {
      asked.push(new URL(r.request().url()).search);
      return r.fulfill(
        json(200, {
          origins: [
            { tier: 0, origin: 'https://pay-callback.shop-a.example', state: 'failing', limit: 1, inflight: 1, waiting: 214, deferred: 37, skipped: 1290, consecutiveFailures: 12, lastError: 'CONNECT_TIMEOUT', lastErrorAt: now - 4000, nextProbeInMs: 4200 },
            { tier: 2, origin: 'https://notify.shop-b.example:8443', state: 'limited', limit: 6, inflight: 6, waiting: 18, deferred: 3, skipped: 0, consecutiveFailures: 0, lastError: 'HEADERS_TIMEOUT', lastErrorAt: now - 65_000, nextProbeInMs: null },
          ],
          // More held back than the page was given: it says it shows the worst ones.
          counts: { failing: 120, limited: 1 },
        }),
      );
    });
    await page.getByRole('link', { name: 'Origins' }).click();
    const failing = page.locator('tbody tr', { hasText: 'pay-callback.shop-a.example' });
    await failing.waitFor();
    assert.match(await failing.innerText(), /failing[\s\S]*214[\s\S]*12[\s\S]*CONNECT_TIMEOUT[\s\S]*in 4\.2s/);
    await page.getByText('The worst 2 of 121 held back').waitFor();
    assert.equal(asked[0], '?limit=100');
    await shot('preview-origins');
    await page.unroute(originsRoute);

    let resent = 0;
    await page.route('**/admin/notifications/**', (r) => {
      const url = r.request().url();
      if (url.endsWith('/order-disabled')) return r.fulfill(json(501, { error: { code: 'HISTORY_DISABLED', message: 'no database configured' } }));
      if (url.endsWith('/resend') && r.request().method() === 'POST') {
        resent++;
        return r.fulfill(json(202, { id: 'order-20240042' }));
      }
      return r.fulfill(
        json(200, {
          notification: { id: 'order-20240042', merchant: 'shop-a', url: 'https://pay-callback.shop-a.example/notify', status: 'delivered', attempts: 3, createdAt: now - 60_000 },
          attempts: [
            { attempt: 0, tier: 0, startedAt: now - 59_990, durationMs: 5003, status: null, outcome: 'retry', skipped: false, reason: null, error: 'TIMEOUT: no answer in 5 s' },
            { attempt: 1, tier: 1, startedAt: now - 53_900, durationMs: 0, status: null, outcome: 'retry', skipped: true, reason: 'origin failing', error: null },
            { attempt: 2, tier: 2, startedAt: now - 50_800, durationMs: 84, status: 200, outcome: 'success', skipped: false, reason: null, error: null },
          ],
        }),
      );
    });
    await page.getByRole('link', { name: 'Notification' }).click();
    await page.getByLabel('Notification id', { exact: true }).fill('order-disabled');
    await page.getByRole('button', { name: 'Look up' }).click();
    await sees('HISTORY_DISABLED');
    await page.getByLabel('Notification id', { exact: true }).fill('order-20240042');
    await page.getByRole('button', { name: 'Look up' }).click();
    await sees('Attempt 3');
    await sees('not sent: origin failing');
    await page.getByRole('button', { name: 'Resend' }).click();
    await sees('was sent again');
    assert.equal(resent, 1);
    await shot('preview-notification');
    await page.unroute('**/admin/notifications/**');

  });

  it('is usable from the keyboard: skip link, navigation and buttons take a visible focus', async () => {
    await page.goto(`${d.adminUrl}/#/overview`);
    // A fresh load, so focus starts at the top of the document.
    await page.reload();
    await page.getByRole('heading', { name: 'Overview' }).waitFor({ timeout: UI_TIMEOUT });
    await page.keyboard.press('Tab');
    assert.equal(await page.evaluate(() => document.activeElement?.textContent), 'Skip to content');
    const outline = async (): Promise<string> => page.evaluate(() => getComputedStyle(document.activeElement!).outlineStyle);
    assert.notEqual(await outline(), 'none', 'focus is visible');
    await page.keyboard.press('Tab');
    assert.equal(await page.evaluate(() => document.activeElement?.textContent), 'Overview');
    assert.notEqual(await outline(), 'none');
    // Enter on a link changes the page.
    await page.keyboard.press('Tab');
    await page.keyboard.press('Enter');
    await sees('Held-back origins');
    // Tab onwards reaches a tier's button on the overview.
    await page.goto(`${d.adminUrl}/#/overview`);
    await page.reload();
    await page.getByRole('button', { name: 'Pause tier 0' }).waitFor({ timeout: UI_TIMEOUT });
    let reached = false;
    for (let i = 0; i < 20 && !reached; i++) {
      await page.keyboard.press('Tab');
      reached = (await page.evaluate(() => document.activeElement?.getAttribute('aria-label'))) === 'Pause tier 0';
    }
    assert.ok(reached, 'Tab reaches "Pause tier 0"');
  });

  it('asks again when the daemon stops taking the stored token', async () => {
    await page.goto(`${d.adminUrl}/#/overview`);
    await page.getByRole('heading', { name: 'Overview' }).waitFor({ timeout: UI_TIMEOUT });
    writeFileSync(configFile, JSON.stringify({ admin: { token: NEW_TOKEN } }));
    const r = await fetch(`${d.adminUrl}/admin/reload`, { method: 'POST', headers: { authorization: `Bearer ${token}` } });
    assert.equal(r.status, 200);
    token = NEW_TOKEN;
    await sees('The daemon no longer accepts the stored token');
    await page.getByLabel('Token', { exact: true }).fill(NEW_TOKEN);
    await page.getByRole('button', { name: 'Continue' }).click();
    await page.getByRole('heading', { name: 'Overview' }).waitFor({ timeout: UI_TIMEOUT });
  });

  it('a daemon without an admin token (loopback) opens without asking, and refuses another site', async () => {
    const open = await daemon('console-open');
    const p = await browser.newPage();
    watch(p, open.adminUrl);
    try {
      await p.goto(`${open.adminUrl}/`);
      await p.getByRole('heading', { name: 'Overview' }).waitFor({ timeout: UI_TIMEOUT });
      assert.equal(await p.getByLabel('Token', { exact: true }).count(), 0, 'no token form');
      assert.equal(await p.evaluate(() => sessionStorage.length), 0);
    } finally {
      await p.close();
    }
    // Without a token, another web page must not be able to drive the admin port through this browser.
    const evil = await browser.newPage();
    try {
      await evil.goto(`${merchant.base}/evil-page`);
      const sent = await evil.evaluate(async (url) => {
        await fetch(url, { method: 'POST', mode: 'no-cors' });
        return true;
      }, `${open.adminUrl}/admin/tiers/0/pause`);
      assert.equal(sent, true);
      const tiers = (await open.admin<{ tiers: TierRow[] }>('GET', '/admin/status')).body.tiers;
      assert.equal(tiers[0]!.state, 'running', 'a cross-site POST did not pause tier 0');
    } finally {
      await evil.close();
    }
  });

  it('every page ran under the CSP without a violation, a script error or a request to another host', () => {
    assert.deepEqual(cspViolations, []);
    assert.deepEqual(pageErrors, []);
    assert.deepEqual(foreignRequests, []);
  });
});
