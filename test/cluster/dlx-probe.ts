/**
 * RabbitMQ alone, without notifyd: does at-least-once dead-lettering of a
 * quorum queue lose or strand messages when the queue's leader is killed?
 * For telling a broker loss from a notifyd one when the cluster test's
 * "hands on to" case comes up short.
 *
 * A quorum `wait` queue (TTL 1 s, at-least-once dead-lettering through a
 * direct exchange, reject-publish: as notifyd declares P.wait.N) feeds a
 * quorum `work` queue (at-least-once into a `dead` queue, reject-publish: as
 * P.work.N). The wait queue's leader is on node 1. A publisher sends a
 * steady confirmed load to the wait queue, a consumer on node 3 takes the
 * work queue; node 1 is SIGKILLed for `--down-ms`, started again, and the
 * probe then waits (`--watch-s`) until every confirmed message came out of
 * the work queue, printing `list_queues name messages messages_ready
 * messages_unacknowledged` (`messages` above the other two: dead letters the
 * broker holds for its dead-letter worker) and the wait queue's
 * `rabbit_fifo:overview` and dead-letter workers every 10 s.
 *
 *   node --import tsx test/cluster/dlx-probe.ts [--rate 250] [--down-ms 10000]
 *     [--watch-s 240] [--work-on 0|1|2] [--pub-on-victim 1] [--keep-logs DIR]
 *     [--dlx-confirm-timeout-ms 10000]
 *
 * `--work-on 0` puts the work queue's leader on the killed node too;
 * `--pub-on-victim 1` has the publisher on the killed node (as tier 0 was),
 * moving to node 2 and sending again what was not confirmed.
 * `--dlx-confirm-timeout-ms N` sets the nodes' re-send of dead letters their
 * target rejected (`dead_letter_worker_publisher_confirm_timeout`); the
 * default is the harness's 10 s, `--dlx-confirm-timeout-ms 0` keeps the
 * broker's own (180 s on 3.10.8), what a stock node does.
 * `RABBIT_CLUSTER_LOG_LEVEL=debug` logs the dead-letter workers' starts.
 * Exits 1 when a confirmed message never came out.
 */
import amqp, { type ChannelModel, type ConfirmChannel } from 'amqplib';
import { setTimeout as sleep } from 'node:timers/promises';
import { DLX_CONFIRM_TIMEOUT_MS, RabbitCluster } from './rabbit-cluster.js';

function option(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  const v = i > 0 ? Number(process.argv[i + 1]) : fallback;
  if (!Number.isFinite(v)) throw new Error(`--${name} takes a number`);
  return v;
}
const RATE = option('rate', 250);
const DOWN_MS = option('down-ms', 10_000);
const WATCH_S = option('watch-s', 240);
const keepAt = process.argv.indexOf('--keep-logs');
const KEEP_LOGS = keepAt > 0 ? process.argv[keepAt + 1] : undefined;

const say = (s: string): void => console.log(`${new Date().toISOString()} ${s}`);

const P = `probe${Date.now() % 100_000}`;
const WAIT = `${P}.wait.1`;
const WORK = `${P}.work.1`;
const DEAD = `${P}.dead`;
const X = `${P}.work`;
const VICTIM = 0;
const PUB = 1;
const CON = 2;

const DLX_CONFIRM_MS = option('dlx-confirm-timeout-ms', DLX_CONFIRM_TIMEOUT_MS);
const cluster = await RabbitCluster.start({ verbose: true, dlxConfirmTimeoutMs: DLX_CONFIRM_MS === 0 ? null : DLX_CONFIRM_MS });
let missing = -1;
try {
  say(`cluster ${cluster.dir}: ${cluster.nodes.map((n) => `${n.name} ${n.amqpPort}`).join(', ')}`);
  /** Declares on a connection to `node`: with `client-local` the new queue's leader is that node. */
  const declare = async (node: number, queue: string, args: Record<string, unknown>): Promise<void> => {
    const c = await amqp.connect(cluster.nodes[node]!.url);
    const ch = await c.createChannel();
    await ch.assertExchange(X, 'direct', { durable: true });
    await ch.assertQueue(queue, { durable: true, arguments: { 'x-queue-type': 'quorum', 'x-queue-leader-locator': 'client-local', ...args } });
    await c.close();
  };
  const workOn = option('work-on', CON);
  const atLeastOnce = { 'x-dead-letter-strategy': 'at-least-once', 'x-overflow': 'reject-publish' };
  await declare(workOn, DEAD, {});
  await declare(workOn, WORK, { 'x-dead-letter-exchange': '', 'x-dead-letter-routing-key': DEAD, ...atLeastOnce });
  await declare(VICTIM, WAIT, { 'x-message-ttl': 1000, 'x-dead-letter-exchange': X, 'x-dead-letter-routing-key': 'tier.1', ...atLeastOnce });
  {
    const c = await amqp.connect(cluster.nodes[CON]!.url);
    await (await c.createChannel()).bindQueue(WORK, X, 'tier.1');
    await c.close();
  }
  say(`leaders: ${(await cluster.ctl(PUB, ['-q', 'list_queues', 'name', 'leader'])).replace(/\s+/g, ' ')}`);

  const got = new Map<number, number>();
  const consumer = await amqp.connect(cluster.nodes[CON]!.url);
  const cch = await consumer.createChannel();
  await cch.prefetch(200);
  await cch.consume(WORK, (m) => {
    if (!m) return;
    const id = Number(m.properties.messageId);
    got.set(id, (got.get(id) ?? 0) + 1);
    cch.ack(m);
  });

  // The publisher: an id counts once confirmed; a nack sends it again on a fresh channel (RabbitMQ 3.10's stuck nacks).
  const onVictim = option('pub-on-victim', 0) === 1;
  const confirmed = new Set<number>();
  const sent = new Set<number>();
  let nacks = 0;
  let conn: ChannelModel = await amqp.connect(cluster.nodes[onVictim ? VICTIM : PUB]!.url);
  let ch: ConfirmChannel = await conn.createConfirmChannel();
  const publish = (id: number, tries = 0): void => {
    sent.add(id);
    const on = ch;
    try {
      on.publish('', WAIT, Buffer.from(String(id)), { messageId: String(id), persistent: true }, (err) => {
        if (!err) return void confirmed.add(id);
        if (/closed/i.test(String(err))) return; // sent again by moveOn
        nacks++;
        if (on === ch) void conn.createConfirmChannel().then((next) => void (on === ch && (ch = next)), () => undefined);
        if (tries < 50) setTimeout(() => publish(id, tries + 1), 200);
      });
    } catch {
      /* the connection is gone: moveOn sends it again */
    }
  };
  const moveOn = async (): Promise<void> => {
    for (;;) {
      try {
        conn = await amqp.connect(cluster.nodes[PUB]!.url);
        ch = await conn.createConfirmChannel();
        const again = [...sent].filter((id) => !confirmed.has(id));
        say(`publisher moved to ${cluster.nodes[PUB]!.name}; sending ${again.length} again`);
        for (const id of again) publish(id);
        return;
      } catch {
        await sleep(200);
      }
    }
  };
  conn.on('error', () => undefined);
  if (onVictim) conn.on('close', () => void moveOn());
  let seq = 0;
  const t0 = Date.now();
  const timer = setInterval(() => {
    const owed = Math.floor(((Date.now() - t0) * RATE) / 1000);
    while (seq < owed) publish(seq++);
  }, 10);

  await sleep(3000);
  say(`killing ${cluster.nodes[VICTIM]!.name} at #${seq}: ${confirmed.size} confirmed, ${got.size} out`);
  const killAt = Date.now();
  await cluster.killNode(VICTIM);
  await sleep(DOWN_MS);
  await cluster.startNode(VICTIM);
  say(`${cluster.nodes[VICTIM]!.name} back ${Date.now() - killAt} ms after the kill`);
  await sleep(2000);
  clearInterval(timer);
  say(`stopped at #${seq}: ${confirmed.size} confirmed, ${nacks} nacks`);

  const overview = `Q = rabbit_misc:r(<<"/">>, queue, <<"${WAIT}">>), {ok, AQ} = rabbit_amqqueue:lookup(Q), {N, L} = amqqueue:get_pid(AQ), {L, catch ra:local_query({N, L}, fun(S) -> rabbit_fifo:overview(S) end), [{Nd, C} || Nd <- [node() | nodes()], {_, C, _, _} <- rpc:call(Nd, supervisor, which_children, [rabbit_fifo_dlx_sup])]}.`;
  const watchFrom = Date.now();
  for (;;) {
    const left = [...confirmed].filter((id) => !got.has(id)).sort((a, b) => a - b);
    missing = left.length;
    const twice = [...got.values()].filter((n) => n > 1).length;
    say(`+${Math.round((Date.now() - watchFrom) / 1000)} s: ${left.length} confirmed not out${left.length ? ` (#${left[0]} .. #${left.at(-1)})` : ''}, ${twice} out twice`);
    try {
      say(`queues: ${(await cluster.ctl(PUB, ['-q', 'list_queues', 'name', 'messages', 'messages_ready', 'messages_unacknowledged', 'leader'], 30_000)).replace(/\s+/g, ' ')}`);
      say(`wait queue: ${(await cluster.ctl(PUB, ['eval', overview], 30_000)).replace(/\s+/g, ' ')}`);
    } catch (err) {
      say(`rabbitmqctl failed: ${String(err).slice(0, 300)}`);
    }
    if (left.length === 0 || Date.now() - watchFrom > WATCH_S * 1000) break;
    await sleep(10_000);
  }
  await Promise.allSettled([conn.close(), consumer.close()]);
} finally {
  if (KEEP_LOGS) await cluster.copyLogs(KEEP_LOGS).catch(() => undefined);
  await cluster.teardown();
}
process.exitCode = missing === 0 ? 0 : 1;
