/**
 * Self-check of rabbit-cluster.ts: node --import tsx test/cluster/smoke.ts
 *
 * Starts a 3-node cluster, declares a quorum queue through node 1, publishes
 * 100 persistent messages with confirms, stops node 1, consumes all 100
 * through node 2, starts node 1 again and tears down. Exits non-zero on any
 * failure.
 */
import amqp from 'amqplib';
import { RabbitCluster } from './rabbit-cluster.js';

const QUEUE = 'smoke-qq';
const COUNT = 100;

function ms(since: number): string {
  return `${Date.now() - since} ms`;
}

async function main(): Promise<void> {
  let t = Date.now();
  const cluster = await RabbitCluster.start({ verbose: process.env.VERBOSE === '1' });
  console.log(`start: ${ms(t)} (${cluster.nodes.map((n) => `${n.name} :${n.amqpPort}`).join(', ')})`);
  try {
    const [n1, n2] = cluster.nodes;

    const pub = await amqp.connect(n1!.url);
    const ch = await pub.createConfirmChannel();
    await ch.assertQueue(QUEUE, { durable: true, arguments: { 'x-queue-type': 'quorum' } });
    t = Date.now();
    for (let k = 0; k < COUNT; k++) ch.sendToQueue(QUEUE, Buffer.from(String(k)), { persistent: true });
    await ch.waitForConfirms();
    console.log(`published ${COUNT} with confirms through ${n1!.name}: ${ms(t)}`);
    console.log((await cluster.ctl(0, ['-q', 'list_queues', 'name', 'type', 'leader', 'members'])).trim());
    await pub.close();

    t = Date.now();
    await cluster.stopNode(0);
    console.log(`stopNode(0): ${ms(t)}`);

    t = Date.now();
    const sub = await amqp.connect(n2!.url);
    const cch = await sub.createChannel();
    await cch.prefetch(COUNT);
    const seen = new Set<string>();
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`only ${seen.size}/${COUNT} consumed within 30 s`)), 30_000);
      cch
        .consume(QUEUE, (msg) => {
          if (msg === null) {
            clearTimeout(timer);
            reject(new Error('consumer cancelled by the broker'));
            return;
          }
          seen.add(msg.content.toString());
          if (seen.size === COUNT) {
            // One multiple ack, then close the channel before the connection: on 3.10 acks still
            // in flight when the connection closes are dropped, and so are individual quorum-queue
            // acks beyond quorum_commands_soft_limit (32) that are pending when the channel closes.
            cch.ack(msg, true);
            clearTimeout(timer);
            resolve();
          }
        })
        .catch((e: unknown) => {
          clearTimeout(timer);
          reject(e as Error);
        });
    });
    console.log(`consumed ${seen.size} distinct through ${n2!.name} with node 1 down: ${ms(t)}`);
    await cch.close();
    await sub.close();
    for (let k = 0; k < COUNT; k++) if (!seen.has(String(k))) throw new Error(`message ${k} missing`);

    t = Date.now();
    await cluster.startNode(0);
    console.log(`startNode(0): ${ms(t)}`);
    console.log((await cluster.ctl(1, ['-q', 'list_queues', 'name', 'type', 'leader', 'members'])).trim());
    const check = await amqp.connect(n1!.url);
    const { messageCount } = await (await check.createChannel()).checkQueue(QUEUE);
    await check.close();
    if (messageCount !== 0) throw new Error(`${messageCount} messages back in ${QUEUE} after the acks`);
    console.log(`${QUEUE} empty when asked through the restarted ${n1!.name}`);
  } finally {
    t = Date.now();
    await cluster.teardown();
    console.log(`teardown: ${ms(t)}`);
  }
  console.log('smoke OK');
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
