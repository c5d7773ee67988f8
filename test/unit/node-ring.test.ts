// Which node a process connects to, and where it goes after a loss, with a
// fake opener in place of sockets.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ChannelModel } from 'amqplib';
import { NodeRing, amqpSocketOf, connectBroker, pushPendingWrites, type OpenNode } from '../../src/broker/connection.js';
import { parseBrokerNodes, type BrokerNode } from '../../src/core/broker-nodes.js';
import { ErrorCodes, hasCode } from '../../src/core/errors.js';

const NODES = parseBrokerNodes('amqp://a:pw-one@n1:5672,amqp://b:pw-two@n2:5672,amqp://c:pw-three@n3:5672');

/** An opener that answers for the nodes in `up` and records every try. */
function fakeOpen(up: Set<string>, tries: string[]): OpenNode {
  return async (node: BrokerNode, name: string) => {
    tries.push(node.label);
    if (!up.has(node.label)) throw new Error(`connect ECONNREFUSED ${node.label}`);
    return { name, node: node.label } as unknown as ChannelModel;
  };
}

describe('pushPendingWrites', () => {
  it('turns TCP_NODELAY on and off again on amqplib’s socket, which sends what Nagle holds', () => {
    const calls: boolean[] = [];
    const conn = { connection: { stream: { setNoDelay: (on: boolean) => calls.push(on) } } };
    assert.equal(amqpSocketOf(conn), conn.connection.stream);
    assert.equal(pushPendingWrites(conn), true);
    assert.deepEqual(calls, [true, false]);
  });

  it('does nothing where there is no such socket', () => {
    for (const conn of [null, undefined, {}, { connection: {} }, { connection: { stream: {} } }]) {
      assert.equal(amqpSocketOf(conn), null);
      assert.equal(pushPendingWrites(conn), false);
    }
  });
});

describe('connectBroker', () => {
  it('tries the nodes in turn from the start index and says which one answered', async () => {
    const tries: string[] = [];
    const link = await connectBroker(NODES, 'x', 1, fakeOpen(new Set(['n1:5672']), tries));
    assert.deepEqual(tries, ['n2:5672', 'n3:5672', 'n1:5672']);
    assert.equal(link.index, 0);
    assert.equal(link.node.label, 'n1:5672');
  });

  it('none answers: BROKER_UNAVAILABLE naming every node by host:port, no URL, no password', async () => {
    const err = await connectBroker(NODES, 'x', 0, fakeOpen(new Set(), [])).catch((e: unknown) => e);
    assert.ok(hasCode(err, ErrorCodes.BROKER_UNAVAILABLE));
    const msg = (err as Error).message;
    for (const label of ['n1:5672', 'n2:5672', 'n3:5672']) assert.ok(msg.includes(label), msg);
    assert.ok(!/pw-|amqp:/.test(msg), msg);
  });
});

describe('NodeRing', () => {
  it('starts at its own node; each new connection starts at the node after the last one (a lost node is tried last)', async () => {
    const up = new Set(['n1:5672', 'n2:5672', 'n3:5672']);
    const tries: string[] = [];
    const ring = new NodeRing(NODES, 2, fakeOpen(up, tries));
    const on = (): string | undefined => ring.node?.label;
    assert.ok(ring.node === null);
    await ring.connect('t');
    assert.equal(on(), 'n3:5672');
    // n3 is lost: the next connection goes to n1 at once, not back to n3.
    up.delete('n3:5672');
    await ring.connect('t');
    assert.equal(on(), 'n1:5672');
    // n1 is lost too: n2 answers; n3, still down, is not tried before it.
    up.delete('n1:5672');
    await ring.connect('t');
    assert.equal(on(), 'n2:5672');
    assert.deepEqual(tries, ['n3:5672', 'n1:5672', 'n2:5672']);
  });

  it('a round where no node answers changes nothing: the next round starts at the same place', async () => {
    const up = new Set<string>();
    const tries: string[] = [];
    const ring = new NodeRing(NODES, 1, fakeOpen(up, tries));
    await assert.rejects(ring.connect('t'));
    assert.ok(ring.node === null);
    up.add('n3:5672');
    await ring.connect('t');
    assert.deepEqual(tries, ['n2:5672', 'n3:5672', 'n1:5672', 'n2:5672', 'n3:5672']);
  });

  it('one node: always that one', async () => {
    const tries: string[] = [];
    const ring = new NodeRing(parseBrokerNodes('amqp://127.0.0.1'), 0, fakeOpen(new Set(['127.0.0.1:5672']), tries));
    await ring.connect('t');
    await ring.connect('t');
    assert.deepEqual(tries, ['127.0.0.1:5672', '127.0.0.1:5672']);
  });
});
