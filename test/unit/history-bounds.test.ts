// Bounds of the history API's side effects (issue 16 review): a resend on
// the admin port never waits for ever on the broker, ctl never waits for
// ever on the admin API, and a database that cannot answer is a 503.
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, it } from 'node:test';
import type { ConfirmChannel } from 'amqplib';
import { adminClient } from '../../src/cli/admin-client.js';
import { loadConfig } from '../../src/core/config.js';
import { createLogger } from '../../src/core/logger.js';
import { withTimeout } from '../../src/core/with-timeout.js';
import { databaseAway } from '../../src/history/database-away.js';
import { MasterBroker } from '../../src/supervisor/master-broker.js';

const config = loadConfig({ configFile: null, env: { NOTIFY_SCHEDULE: '0s,1s', NOTIFY_PREFIX: 'p' } });
const notification = { id: 'n1', url: 'https://m.example/n', body: {}, contentType: 'application/json', createdAt: Date.now() } as const;

/** A master broker on a channel that takes publishes and never confirms them (a broker that reads nothing). */
function silentBroker(): { broker: MasterBroker; published: () => number } {
  const broker = new MasterBroker(() => config, createLogger('silent', {}));
  let published = 0;
  const ch = { publish: () => (published++, true), on: () => undefined } as unknown as ConfirmChannel;
  Object.assign(broker as unknown as { ch: ConfirmChannel }, { ch });
  return { broker, published: () => published };
}

describe('history: bounded resends and calls', () => {
  it('startLadder gives up when the broker does not confirm in time (BROKER_CONFIRM_TIMEOUT: it may have taken it, so the claim stays)', async () => {
    const { broker, published } = silentBroker();
    broker.ladderConfirmTimeoutMs = 50;
    const t = Date.now();
    await assert.rejects(broker.startLadder(notification as never, 'resend', Date.now()), { code: 'BROKER_CONFIRM_TIMEOUT' });
    assert.ok(Date.now() - t < 2000);
    assert.equal(published(), 1);
  });

  it('startLadder refuses at once while the broker blocks publishing (BROKER_BLOCKED), publishing nothing', async () => {
    const { broker, published } = silentBroker();
    Object.assign(broker as unknown as { blockedReason: string }, { blockedReason: 'low on memory' });
    assert.equal(broker.blocked, 'low on memory');
    await assert.rejects(broker.startLadder(notification as never, 'resend'), { code: 'BROKER_BLOCKED' });
    assert.equal(published(), 0);
  });

  it('withTimeout rejects with the given error and swallows the late rejection', async () => {
    let fail!: (e: Error) => void;
    const slow = new Promise<number>((_, reject) => (fail = reject));
    await assert.rejects(withTimeout(slow, 10, () => new Error('too slow')), /too slow/);
    fail(new Error('late'));
    assert.equal(await withTimeout(Promise.resolve(7), 10, () => new Error('x')), 7);
  });

  it('the ctl admin client gives up on an admin API that never answers (REQUEST_TIMEOUT)', async () => {
    const server = createServer(() => undefined); // takes the request, never answers
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const call = adminClient({ admin: `http://127.0.0.1:${(server.address() as AddressInfo).port}` }, 100);
      await assert.rejects(call('POST', '/admin/notifications/x/resend'), { code: 'REQUEST_TIMEOUT' });
    } finally {
      server.closeAllConnections();
      server.close();
    }
  });

  it('the ctl admin client keeps the path of an --admin URL behind a proxy, and gives up on a read sooner than on an action', async () => {
    const seen: string[] = [];
    const server = createServer((req, res) => {
      seen.push(`${req.method} ${req.url}`);
      if (req.url?.includes('/silent')) return; // takes the request, never answers
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}');
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const port = (server.address() as AddressInfo).port;
      for (const admin of [`http://127.0.0.1:${port}/notifyd`, `http://127.0.0.1:${port}/notifyd/`]) {
        const r = await adminClient({ admin })('GET', '/admin/status');
        assert.deepEqual(r, { status: 200, body: { ok: true } });
      }
      assert.deepEqual(seen, ['GET /notifyd/admin/status', 'GET /notifyd/admin/status']);
      const call = adminClient({ admin: `http://127.0.0.1:${port}` }, 5000, 100);
      const t0 = Date.now();
      await assert.rejects(call('GET', '/silent'), { code: 'REQUEST_TIMEOUT' });
      assert.ok(Date.now() - t0 < 4000, 'the read bound, not the action one');
    } finally {
      server.closeAllConnections();
      server.close();
    }
  });

  it('database failures that are the database\'s absence or slowness are 503 material, not 500', () => {
    for (const code of ['57014', '53300', '42P01', '08006', '57P01', 'ENOTFOUND', 'EAI_AGAIN', 'ECONNREFUSED']) assert.equal(databaseAway({ code, message: 'x' }), true, code);
    assert.equal(databaseAway(new Error('Query read timeout')), true, "a query the pool gave up on (pg's own error, no code)");
    for (const code of ['23505', '42601', '22007']) assert.equal(databaseAway({ code, message: 'x' }), false, code);
  });
});
