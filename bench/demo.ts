// `npm run demo`: the retry ladder at work in about 15 seconds.
//
// Starts a scriptable merchant (in this process), the real daemon (child
// process) on a fresh prefix with a short schedule, publishes a handful of
// notifications through the ingress HTTP API and prints each one's attempts as
// they happen: the time the merchant saw the request, what the daemon made of
// the answer (its `attempt` log line) and the outcome event from
// `<prefix>.outcomes`. Then it stops the daemon (SIGTERM, graceful drain) and
// deletes the prefix's queues. Needs RabbitMQ on NOTIFY_AMQP_URL (default
// amqp://guest:guest@127.0.0.1:5672) and a build (`npm run build`). With
// NOTIFY_DATABASE_URL set (PostgreSQL), the daemon records the delivery
// history there and the demo ends with a lookup through the history API
// (`GET /v1/notifications/<id>`), printed as `notifyd ctl show` prints it.
import amqp, { type ChannelModel, type ConsumeMessage } from 'amqplib';
import { redactUrl } from '../src/core/config.js';
import { SCHEDULE_PRESETS, formatDuration, parseSchedule } from '../src/core/schedule.js';
import type { OutcomeEvent } from '../src/tier/outcome-events.js';
import { formatPage, formatTimeline } from '../src/cli/ctl-history.js';
import type { NotificationPage, NotificationTimeline } from '../src/history/reader.js';
import { AMQP_URL, DaemonProcess, deletePrefix, uniquePrefix, waitFor, type LogLine } from './daemon-process.js';
import { MerchantStub, type SeenRequest } from './merchant-stub.js';

const SCHEDULE = '0s,1s,2s,4s';
const DELAYS = parseSchedule(SCHEDULE);
const OUTCOME_TIMEOUT_MS = 30_000;
/** PostgreSQL for the delivery history, when given. */
const DATABASE_URL = process.env.NOTIFY_DATABASE_URL ?? null;

interface Case {
  readonly name: string;
  readonly what: string;
  readonly path: string;
  readonly extra?: Record<string, unknown>;
  readonly expect: { readonly outcome: 'delivered' | 'dead'; readonly attempts: number; readonly reason?: string };
  id?: string;
}

interface Attempt {
  readonly tier: number;
  readonly status: unknown;
  readonly outcome: unknown;
  readonly ms: unknown;
}

const fmtT = (ms: number): string => `t+${(ms / 1000).toFixed(2).padStart(5)}s`;
const out = (s = ''): void => void process.stdout.write(`${s.trimEnd()}\n`);

const prefix = uniquePrefix('demo');
const merchant = new MerchantStub();
let daemon: DaemonProcess | null = null;
let conn: ChannelModel | null = null;
let cleaned = false;

/** Stops the daemon, closes everything and deletes the prefix's queues; safe to call twice. */
async function cleanup(): Promise<void> {
  if (cleaned) return;
  cleaned = true;
  if (daemon && !daemon.hasExited) await daemon.stop().catch(() => undefined);
  await conn?.close().catch(() => undefined);
  await merchant.close().catch(() => undefined);
  await deletePrefix(prefix, SCHEDULE).catch(() => undefined);
}

process.once('SIGINT', () => {
  out('\ninterrupted: stopping the daemon and deleting the demo queues');
  void cleanup().finally(() => process.exit(130));
});

async function main(): Promise<number> {

  out(`notifyd demo: schedule ${SCHEDULE} (${DELAYS.length} attempts; the real default is ${SCHEDULE_PRESETS.default})`);
  out(`RabbitMQ ${redactUrl(AMQP_URL)}, prefix ${prefix}`);

  // Fail fast, with the fix, when there is no broker.
  try {
    const probe = await amqp.connect(AMQP_URL);
    await probe.close();
  } catch (err) {
    out(`\nRabbitMQ does not answer at ${redactUrl(AMQP_URL)} (${(err as Error).message}).`);
    out('Start it (e.g. `rabbitmq-server -detached`, or `docker compose up -d rabbitmq`) and run `npm run demo` again.');
    return 1;
  }

  const base = await merchant.start();
  out(`merchant stub on ${base}`);

  const t0 = Date.now();
  const d = new DaemonProcess({ prefix, schedule: SCHEDULE, ...(DATABASE_URL ? { env: { NOTIFY_DATABASE_URL: DATABASE_URL } } : {}) });
  daemon = d;
  try {
    await d.ready(30_000);
  } catch (err) {
    out(`daemon did not become ready: ${(err as Error).message}`);
    await cleanup();
    return 1;
  }
  out(`daemon ready in ${((Date.now() - t0) / 1000).toFixed(1)}s (pid ${d.proc.pid}, ingress ${d.ingressUrl}, admin ${d.adminUrl})`);

  // Outcome events: a temporary exclusive queue bound to <prefix>.outcomes with `#`.
  const outcomes = new Map<string, OutcomeEvent>();
  const newOutcomes: OutcomeEvent[] = [];
  conn = await amqp.connect(AMQP_URL);
  const ch = await conn.createChannel();
  const q = await ch.assertQueue('', { exclusive: true, autoDelete: true });
  await ch.bindQueue(q.queue, `${prefix}.outcomes`, '#');
  await ch.consume(q.queue, (m: ConsumeMessage | null) => {
    if (!m) return;
    const ev = JSON.parse(m.content.toString()) as OutcomeEvent;
    outcomes.set(ev.id, ev);
    newOutcomes.push(ev);
  }, { noAck: true });

  const key = (name: string): string => `${prefix}-${name}`;
  const cases: Case[] = [
    { name: 'instant', what: 'merchant answers 200 "success" at once', path: `/fail/0/${key('instant')}`, expect: { outcome: 'delivered', attempts: 1 } },
    { name: 'twice', what: 'merchant answers 500 twice, then 200', path: `/fail/2/${key('twice')}`, expect: { outcome: 'delivered', attempts: 3 } },
    {
      name: 'alipay',
      what: 'Alipay-style: form body, success needs body "success"; merchant answers 200 "ok" twice first',
      path: `/bodythen/ok/2/${key('alipay')}`,
      extra: {
        contentType: 'application/x-www-form-urlencoded',
        body: { notify_id: 'demo-1', out_trade_no: 'T20240001', trade_status: 'TRADE_SUCCESS', total_amount: '88.00' },
        success: { bodyEquals: 'success' },
      },
      expect: { outcome: 'delivered', attempts: 3 },
    },
    { name: 'never', what: 'merchant always answers 500', path: `/fail/1000/${key('never')}`, expect: { outcome: 'dead', attempts: DELAYS.length, reason: 'exhausted' } },
    { name: 'gone', what: 'merchant answers 410 Gone (in delivery.deadOnStatus)', path: `/status/410/${key('gone')}`, expect: { outcome: 'dead', attempts: 1, reason: 'status-410' } },
  ];
  const byId = new Map<string, Case>();
  const notification = (c: Case): Record<string, unknown> => ({
    url: `${base}${c.path}`,
    body: { event: 'payment.succeeded', order: c.name, amount: '88.00' },
    metadata: { demo: c.name },
    ...c.extra,
  });

  out('\n== publishing through the ingress API');
  const single = cases.slice(0, 3);
  for (const c of single) {
    const r = await d.post(notification(c));
    out(`POST /v1/notifications        [${c.name.padEnd(7)}] → ${r.status} ${JSON.stringify(r.body)}`);
    if (r.status !== 202) throw new Error(`ingress refused ${c.name}`);
    c.id = String(r.body.id);
  }
  const batchCases = cases.slice(3);
  const b = await d.post({ notifications: batchCases.map(notification) }, '/v1/notifications:batch');
  out(`POST /v1/notifications:batch  [${batchCases.map((c) => c.name).join(', ')}] → ${b.status} ${JSON.stringify(b.body)}`);
  if (b.status !== 202) throw new Error('ingress refused the batch');
  batchCases.forEach((c, i) => (c.id = String(b.body.results[i].id)));
  const bad = await d.post({ url: 'ftp://merchant.example/notify', body: {} });
  out(`POST /v1/notifications        [invalid] → ${bad.status} ${JSON.stringify(bad.body)}`);
  for (const c of cases) byId.set(c.id!, c);

  out(`\n== attempts as they happen (t = time since the notification's first attempt reached the merchant)`);
  const attempts = new Map<string, Attempt[]>();
  const firstAt = (c: Case): number => merchant.seen(c.path)[0]?.at ?? Date.now();
  let lineIndex = 0;
  const pump = (): void => {
    const lines: readonly LogLine[] = d.lines;
    for (; lineIndex < lines.length; lineIndex++) {
      const l = lines[lineIndex]!;
      if (l.msg !== 'attempt' || typeof l.id !== 'string') continue;
      const c = byId.get(l.id);
      if (!c) continue;
      const a: Attempt = { tier: Number(l.tier), status: l.status, outcome: l.outcome, ms: l.ms };
      const list = attempts.get(l.id) ?? [];
      list.push(a);
      attempts.set(l.id, list);
      const seen = merchant.seen(c.path);
      const req = seen[a.tier];
      const prev = seen[a.tier - 1];
      const gap = req && prev ? `  (+${((req.at - prev.at) / 1000).toFixed(2)}s, schedule ${formatDuration(DELAYS[a.tier] ?? 0)})` : '';
      out(`${req ? fmtT(req.at - firstAt(c)) : '   ?    '}  [${c.name.padEnd(7)}] attempt ${a.tier} → ${String(a.status).padEnd(3)} ${String(a.outcome).padEnd(7)}${gap}`);
    }
    while (newOutcomes.length > 0) {
      const ev = newOutcomes.shift()!;
      const c = byId.get(ev.id);
      if (!c) continue;
      out(`${fmtT(ev.at - firstAt(c))}  [${c.name.padEnd(7)}] outcome ${ev.outcome}${ev.reason ? ` (${ev.reason})` : ''} after ${ev.attempts} attempt${ev.attempts === 1 ? '' : 's'}`);
    }
  };

  let timedOut = false;
  try {
    await waitFor(() => {
      pump();
      return cases.every((c) => outcomes.has(c.id!));
    }, OUTCOME_TIMEOUT_MS, 'every outcome event', 20);
  } catch {
    timedOut = true;
  }
  // Let any straggling log line arrive (and show that no extra attempt follows).
  await new Promise((r) => setTimeout(r, 300));
  pump();

  out('\n== timelines (merchant side: request arrival; daemon side: attempt result and outcome event)');
  let ok = !timedOut;
  for (const c of cases) {
    const seen: SeenRequest[] = merchant.seen(c.path);
    const log = attempts.get(c.id!) ?? [];
    const ev = outcomes.get(c.id!);
    out(`\n${c.name}: ${c.what}`);
    out(`  id ${c.id}  url ${c.path}`);
    seen.forEach((req, i) => {
      const a = log.find((x) => x.tier === i);
      const gap = i > 0 ? `  waited ${((req.at - seen[i - 1]!.at) / 1000).toFixed(2)}s (schedule ${formatDuration(DELAYS[i] ?? 0)})` : '';
      out(`  ${fmtT(req.at - seen[0]!.at)}  attempt ${i} → ${a ? `${String(a.status).padEnd(3)} ${String(a.outcome).padEnd(7)} ${a.ms}ms` : '?'}${gap}`);
    });
    if (ev) {
      out(`  ${fmtT(ev.at - (seen[0]?.at ?? ev.at))}  ${ev.outcome}${ev.reason ? ` (${ev.reason})` : ''} at tier ${ev.tier}, ${ev.attempts} attempt(s), last status ${ev.status ?? '-'}${ev.error ? `, last error "${ev.error}"` : ''}`);
    } else {
      out('  no outcome event yet');
    }
    const good = ev !== undefined && ev.outcome === c.expect.outcome && ev.attempts === c.expect.attempts && seen.length === c.expect.attempts && (c.expect.reason === undefined || ev.reason === c.expect.reason);
    out(`  ${good ? 'as expected' : `UNEXPECTED: wanted ${c.expect.outcome}${c.expect.reason ? ` (${c.expect.reason})` : ''} after ${c.expect.attempts} attempt(s), merchant saw ${seen.length}`}`);
    ok &&= good;
  }

  if (DATABASE_URL) ok = (await historyLookup(d, cases)) && ok;
  else out('\n(set NOTIFY_DATABASE_URL to a PostgreSQL database to see the delivery history lookup here too)');

  out('\n== stopping the daemon (SIGTERM: workers drain, the master exits 0)');
  const stopAt = Date.now();
  const exit = await d.stop().catch((err: unknown) => ({ code: null, signal: null, err }));
  out(`daemon exited ${JSON.stringify({ code: exit.code, signal: exit.signal })} after ${((Date.now() - stopAt) / 1000).toFixed(1)}s`);
  ok &&= exit.code === 0;
  await cleanup();
  out(`deleted the queues and exchanges of ${prefix}`);
  out(`\ndemo ${ok ? 'finished' : 'FAILED'} in ${((Date.now() - t0) / 1000).toFixed(1)}s`);
  return ok ? 0 : 1;
}

/**
 * Asks the history API what happened to two of the notifications (the one
 * delivered on its third attempt, the one parked on a 410), as a producer
 * would, and prints the timeline; lists the dead ones. The recorder writes
 * a few ms behind delivery, so it waits for the records.
 */
async function historyLookup(d: DaemonProcess, cases: readonly Case[]): Promise<boolean> {
  out(`\n== delivery history (PostgreSQL ${redactUrl(DATABASE_URL!)}), read through the ingress API`);
  const get = async <T>(path: string): Promise<{ status: number; body: T }> => {
    const r = await fetch(`${d.ingressUrl}${path}`, { headers: { connection: 'close' } });
    return { status: r.status, body: (await r.json()) as T };
  };
  let ok = true;
  for (const c of cases.filter((x) => x.name === 'twice' || x.name === 'gone')) {
    let t: NotificationTimeline | null = null;
    try {
      await waitFor(async () => {
        const r = await get<NotificationTimeline>(`/v1/notifications/${encodeURIComponent(c.id!)}`);
        t = r.status === 200 ? r.body : null;
        return t !== null && t.notification.status !== 'pending' && t.attempts.length === c.expect.attempts;
      }, 10_000, `history of ${c.name}`);
    } catch {
      out(`GET /v1/notifications/${c.id} did not show its ${c.expect.attempts} attempt(s) in 10 s`);
      ok = false;
      continue;
    }
    out(`\nGET /v1/notifications/${c.id}  [${c.name}]`);
    out(formatTimeline(t!).replace(/^(?=.)/gm, '  '));
  }
  const since = new Date(Date.now() - 600_000).toISOString();
  const dead = await get<NotificationPage>(`/v1/notifications?status=dead&since=${encodeURIComponent(since)}&limit=10`);
  out(`\nGET /v1/notifications?status=dead&since=<10 min ago>  → ${dead.status}`);
  if (dead.status === 200) out(formatPage(dead.body).replace(/^(?=.)/gm, '  '));
  else ok = false;
  out('(the same from a terminal: notifyd ctl show <id>, notifyd ctl find --status dead --since 10m)');
  return ok;
}

main().then(
  (code) => process.exit(code),
  async (err: unknown) => {
    process.stderr.write(`demo failed: ${(err as Error)?.stack ?? String(err)}\n`);
    await cleanup();
    process.exit(1);
  },
);
