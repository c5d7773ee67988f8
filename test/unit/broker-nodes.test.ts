import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { connectionSlot, parseBrokerNodes, rotation, startNodeIndex } from '../../src/core/broker-nodes.js';
import { ErrorCodes, hasCode } from '../../src/core/errors.js';

/** Asserts CONFIG_INVALID on amqpUrl, one line, naming `what` and none of `secrets`. */
function refused(text: string, what: RegExp, secrets: readonly string[] = []): void {
  assert.throws(
    () => parseBrokerNodes(text),
    (err: unknown) => {
      assert.ok(hasCode(err, ErrorCodes.CONFIG_INVALID));
      assert.equal((err as { field?: string }).field, 'amqpUrl');
      const msg = (err as Error).message;
      assert.match(msg, /^amqpUrl: /);
      assert.match(msg, what);
      assert.ok(!msg.includes('\n'));
      for (const s of secrets) assert.ok(!msg.includes(s), `"${msg}" shows ${s}`);
      return true;
    },
  );
}

describe('parseBrokerNodes', () => {
  it('one URL is one node, labelled host:port', () => {
    assert.deepEqual(parseBrokerNodes('amqp://guest:guest@127.0.0.1:5672'), [{ url: 'amqp://guest:guest@127.0.0.1:5672', label: '127.0.0.1:5672' }]);
  });

  it('a comma list gives the nodes in order, entries trimmed; labels carry no credentials', () => {
    const nodes = parseBrokerNodes(' amqp://a:pw1@n1:5672 ,amqp://b:pw2@n2:5673,  amqps://c:pw3@n3 ');
    assert.deepEqual(nodes.map((n) => n.url), ['amqp://a:pw1@n1:5672', 'amqp://b:pw2@n2:5673', 'amqps://c:pw3@n3']);
    assert.deepEqual(nodes.map((n) => n.label), ['n1:5672', 'n2:5673', 'n3:5671']);
    assert.ok(Object.isFrozen(nodes) && Object.isFrozen(nodes[0]));
  });

  it('default ports: 5672 for amqp, 5671 for amqps; IPv6 hosts keep their brackets', () => {
    assert.equal(parseBrokerNodes('amqp://h')[0]!.label, 'h:5672');
    assert.equal(parseBrokerNodes('amqps://h/vh')[0]!.label, 'h:5671');
    assert.equal(parseBrokerNodes('amqp://u:p@[::1]:5700')[0]!.label, '[::1]:5700');
  });

  it('the same virtual host on every entry ("" and "/" are both the default one)', () => {
    assert.equal(parseBrokerNodes('amqp://n1,amqp://n2/').length, 2);
    assert.equal(parseBrokerNodes('amqp://n1/v,amqp://n2/v?heartbeat=10').length, 2);
    refused('amqp://n1/a,amqp://n2/b', /entry 2 of 2 names another virtual host/);
  });

  it('refuses a malformed entry by position, never echoing it (it may hold a password)', () => {
    const secret = 'S3cr3t-pw';
    refused(`amqp://u:${secret}@n1:5672,http://u:${secret}@n2`, /entry 2 of 2 must start with amqp:\/\/ or amqps:\/\//, [secret]);
    refused(`amqp://u:${secret}@n1:5672,amqp://u:${secret}@[bad`, /entry 2 of 2 is not a URL/, [secret]);
    refused(`amqp://u:${secret}@n1:5672,,amqp://n3`, /entry 2 of 3 is empty/, [secret]);
    refused(`amqp://u:${secret}@n1:5672,`, /entry 2 of 2 is empty/, [secret]);
    refused(`u:${secret}@n1:5672`, /the URL must start with amqp/, [secret]);
    refused(`amqp://u:${secret}@n1:99999`, /the URL is not a URL/, [secret]);
    refused('amqp://', /the URL has no host/);
  });

  it('refuses two entries for the same node (the list would not add a node)', () => {
    refused('amqp://a:x@n1:5672,amqp://b:y@n1', /entries 1 and 2 both name n1:5672/, ['x@', 'y@']);
  });
});

describe('rotation', () => {
  it('starts at start and wraps', () => {
    assert.deepEqual(rotation(3, 0), [0, 1, 2]);
    assert.deepEqual(rotation(3, 2), [2, 0, 1]);
    assert.deepEqual(rotation(3, 4), [1, 2, 0]);
    assert.deepEqual(rotation(1, 7), [0]);
  });
});

describe('connectionSlot and startNodeIndex', () => {
  it('slots: ingress 0, tier i → i+1, master after the tiers; a client is 0', () => {
    assert.equal(connectionSlot('ingress', null, 6), 0);
    assert.equal(connectionSlot('tier', 0, 6), 1);
    assert.equal(connectionSlot('tier', 5, 6), 6);
    assert.equal(connectionSlot('master', null, 6), 7);
    assert.equal(connectionSlot('recorder', null, 6), 8);
    assert.equal(connectionSlot('client', null, 6), 0);
  });

  it('one daemon spreads its connections evenly, the ingress and tier 0 on different nodes', () => {
    for (const seed of ['host-a/100', 'host-b/4242', 'x/1']) {
      const tiers = 6;
      const slots = [connectionSlot('ingress', null, tiers), ...Array.from({ length: tiers }, (_, i) => connectionSlot('tier', i, tiers)), connectionSlot('master', null, tiers)];
      const perNode = [0, 0, 0];
      for (const s of slots) perNode[startNodeIndex(seed, s, 3)]! += 1;
      assert.ok(Math.max(...perNode) - Math.min(...perNode) <= 1, `${seed}: ${perNode}`);
      assert.notEqual(startNodeIndex(seed, connectionSlot('ingress', null, tiers), 3), startNodeIndex(seed, connectionSlot('tier', 0, tiers), 3));
    }
  });

  it('the offset depends on the seed (the daemon), is stable, and stays in range', () => {
    const firsts = new Set<number>();
    for (let pid = 1000; pid < 1030; pid++) {
      const i = startNodeIndex(`host/${pid}`, 0, 3);
      assert.ok(i >= 0 && i < 3);
      assert.equal(startNodeIndex(`host/${pid}`, 0, 3), i);
      firsts.add(i);
    }
    assert.equal(firsts.size, 3, 'different daemons start their ingress on different nodes');
    assert.equal(startNodeIndex('anything', 5, 1), 0);
  });
});
