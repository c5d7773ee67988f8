// amqpUrl as a list of nodes, against the system broker: a malformed entry
// stops start-up, and a node that does not answer is skipped by every
// process (the real failover test on a 3-node cluster is test/cluster/).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { AMQP_URL, CLI_PATH, DaemonProcess, deletePrefix, uniquePrefix, waitFor } from '../../bench/daemon-process.js';
import { MerchantStub } from '../../bench/merchant-stub.js';
import { NotifyClient } from '../../src/client.js';

const SCHEDULE = '0s,300ms';

interface Status {
  tiers: { index: number; brokerNode: string | null }[];
  ingress: { brokerNode: string | null };
  broker: { connected: boolean; url: string; node: string | null };
}

describe('amqpUrl lists several nodes (system broker)', () => {
  const merchant = new MerchantStub();
  const prefixes: string[] = [];
  const daemons: DaemonProcess[] = [];
  // A node nobody listens on, with a password of its own that must never show.
  const deadSecret = `pw-dead-${randomBytes(4).toString('hex')}`;
  const live = new URL(AMQP_URL);
  const liveLabel = `${live.hostname}:${live.port || '5672'}`;
  const list = `amqp://ghost:${deadSecret}@127.0.0.1:1,${AMQP_URL}`;

  before(async () => {
    await merchant.start();
  });

  after(async () => {
    for (const d of daemons) await d.stop().catch(() => d.proc.kill('SIGKILL'));
    await merchant.close();
    for (const p of prefixes) await deletePrefix(p, SCHEDULE).catch(() => undefined);
  });

  it('a malformed entry: exit 78, one line naming amqpUrl and the entry, no password of any entry', () => {
    const r = spawnSync(process.execPath, [CLI_PATH, 'start'], {
      env: { PATH: process.env.PATH, NOTIFY_PREFIX: uniquePrefix('badlist'), NOTIFY_AMQP_URL: `amqp://a:pw-first@127.0.0.1:5672,amqp://b:pw-second@[::1`, NOTIFY_ADMIN_PORT: '0', NOTIFY_INGRESS_PORT: '0' },
      encoding: 'utf8',
      timeout: 20_000,
    });
    assert.equal(r.status, 78, r.stderr);
    const out = `${r.stdout}${r.stderr}`.trim();
    assert.equal(out.split('\n').length, 1, out);
    assert.match(out, /amqpUrl: entry 2 of 2 is not a URL/);
    assert.ok(!/pw-first|pw-second/.test(out), out);
  });

  it('every process skips the node that does not answer; status shows each one on the live node; no password anywhere', async () => {
    const prefix = uniquePrefix('list');
    prefixes.push(prefix);
    const d = new DaemonProcess({ prefix, schedule: SCHEDULE, env: { NOTIFY_AMQP_URL: list } });
    daemons.push(d);
    await d.ready();
    const res = await fetch(`${d.adminUrl}/admin/status`);
    const text = await res.text();
    const s = JSON.parse(text) as Status;
    assert.equal(s.broker.node, liveLabel);
    assert.deepEqual(s.tiers.map((t) => t.brokerNode), [liveLabel, liveLabel]);
    assert.equal(s.ingress.brokerNode, liveLabel);
    assert.match(s.broker.url, /^amqp:\/\/ghost:\*\*\*@127\.0\.0\.1:1,amqp:/);

    const ctl = spawnSync(process.execPath, [CLI_PATH, 'ctl', 'status', '--admin', d.adminUrl], { encoding: 'utf8', timeout: 20_000 });
    assert.equal(ctl.status, 0, ctl.stderr);
    assert.match(ctl.stdout, new RegExp(`master on ${liveLabel.replace(/\./g, '\\.')}`));
    assert.match(ctl.stdout, /TIER\s+DELAY\s+STATE\s+PID\s+RESTARTS\s+INFLIGHT\s+BROKER NODE/);
    assert.match(ctl.stdout, new RegExp(`^ingress\\s+:\\d+\\s+running\\s+\\d+\\s+0\\s+-\\s+${liveLabel.replace(/\./g, '\\.')}$`, 'm'));

    const path = `/list/${prefix}`;
    assert.equal((await d.post({ url: `${merchant.base}${path}`, body: { a: 1 } })).status, 202);
    await waitFor(() => merchant.count(path) === 1, 10_000, 'delivered');

    for (const where of [text, ctl.stdout, JSON.stringify(d.lines), d.stderr.join('')]) assert.ok(!where.includes(deadSecret));
  });

  it('NotifyClient takes the list too and publishes through the node that answers', async () => {
    const prefix = daemons[0]!.opts.prefix;
    const client = new NotifyClient({ amqpUrl: list, prefix });
    const path = `/client/${prefix}`;
    try {
      const { id } = await client.publish({ url: `${merchant.base}${path}`, body: 'x' });
      assert.ok(id);
    } finally {
      await client.close();
    }
    await waitFor(() => merchant.count(path) === 1, 10_000, 'delivered');
  });
});
