/**
 * The merchant registry's cost (`--registry`): tier-0 throughput with a
 * merchant on every notification (a daemon with PostgreSQL, the merchant
 * signing `standard` with its own secret) against the same notifications
 * without one (a daemon without a database, signing `standard` with a
 * daemon-wide secret): the same HMAC work either way, so the ratio is the
 * registry's own cost. `--runs` pairs, alternating which goes first.
 */
import { H, encodeNotification } from '../../src/core/message.js';
import { namesFor } from '../../src/broker/topology.js';
import { makeNotification, median, openConfirm, publishMany, round } from '../bench-util.js';
import { BEAM, log, historyOffConfig, startDaemon, table, timeUntilSeen, waitDepth, type BenchContext, type DaemonHandle, type Row, type ScenarioReport } from '../bench-context.js';
import { AMQP_URL, waitFor } from '../daemon-process.js';
import { queueInfo } from '../bench-util.js';
import { freshDatabase } from '../database.js';

const SECRET = `whsec_${Buffer.alloc(32, 9).toString('base64')}`;

async function run(ctx: BenchContext, daemon: DaemonHandle, merchant: string | null, label: string): Promise<number> {
  const names = namesFor(daemon.prefix);
  const q0 = names.workQueue(0);
  await daemon.d.admin('POST', '/admin/tiers/0/pause');
  await waitFor(async () => (await queueInfo(AMQP_URL, q0)).consumerCount === 0, 10_000, 'tier 0 paused');
  const { ch, close } = await openConfirm(AMQP_URL, `notifyd bench registry ${label}`);
  try {
    const now = Date.now();
    await publishMany(ch, ctx.flags.n, (i) => {
      const base = makeNotification(`${label}-${i}`, `${ctx.merchant.base}/n/${label}-${i}`, now);
      const note = merchant === null ? base : { ...base, merchant };
      return { exchange: names.work, routingKey: names.routingKey(0), content: encodeNotification(note), options: { messageId: note.id, persistent: true, mandatory: true, contentType: 'application/json', headers: { [H.attempt]: 0, [H.dueAt]: now } } };
    });
  } finally {
    await close();
  }
  await waitDepth(q0, ctx.flags.n);
  const m = await timeUntilSeen(ctx.merchant, ctx.flags.n, { consumer: daemon.pids(), broker: BEAM() }, async () => void (await daemon.d.admin('POST', '/admin/tiers/0/resume')));
  return m.perS;
}

export async function registry(ctx: BenchContext): Promise<ScenarioReport> {
  if (!ctx.flags.registry) return { record: { registry: null }, head: '', memory: [], tail: '' };
  const db = await freshDatabase('bench');
  ctx.res.stops.push(() => db.drop());
  // The registry alone: with a database the history is on by default, and its cost is --history's to measure.
  const noHistory = historyOffConfig(ctx.res);
  const withDb = await startDaemon({ res: ctx.res, flags: { ...ctx.flags, daemonEnv: { NOTIFY_DATABASE_URL: db.url, NOTIFY_CONFIG: noHistory, ...ctx.flags.daemonEnv } } }, 'default', 'registry');
  const withoutDb = await startDaemon({ res: ctx.res, flags: { ...ctx.flags, daemonEnv: { NOTIFY_SIGNING_SECRET: SECRET, ...ctx.flags.daemonEnv } } }, 'default', 'noregistry');
  const r = await fetch(`${withDb.d.adminUrl}/admin/merchants`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ id: 'bench-shop', name: 'Bench shop', allowedOrigins: [new URL(ctx.merchant.base).origin] }),
  });
  if (r.status !== 201) throw new Error(`creating the bench merchant answered ${r.status}: ${await r.text()}`);
  // The tier workers hear of it within about a second.
  await new Promise((res) => setTimeout(res, 2000));
  const pairs: { on: number; off: number }[] = [];
  for (let i = 0; i < ctx.flags.runs; i++) {
    let on = 0;
    let off = 0;
    for (const which of i % 2 === 0 ? ['on', 'off'] : ['off', 'on']) {
      if (which === 'on') on = await run(ctx, withDb, 'bench-shop', `reg${i}`);
      else off = await run(ctx, withoutDb, null, `noreg${i}`);
    }
    log(`registry run ${i + 1}: with a merchant ${round(on)}/s, without ${round(off)}/s`);
    pairs.push({ on, off });
  }
  const ratio = median(pairs.map((p) => p.on / p.off));
  const rows: Row[] = [['', 'with the registry (merchant on every notification)', 'without (daemon-wide secret)', 'ratio']];
  pairs.forEach((p, i) => rows.push([`run ${i + 1} (/s)`, round(p.on), round(p.off), round(p.on / p.off, 3)]));
  return {
    record: { registry: { n: ctx.flags.n, runs: pairs.map((p) => ({ with_per_s: round(p.on), without_per_s: round(p.off) })), ratio: round(ratio, 3) } },
    head: `\n== merchant registry: ${ctx.flags.n} preloaded in tier 0, standard signing either way\n${table(rows)}\nmedian ratio ${round(ratio, 3)}x\n`,
    memory: [],
    tail: '',
  };
}
