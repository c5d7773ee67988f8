import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { holdDelayMs, parseSchedule, waitBudgetMs } from '../../src/core/schedule.js';
import { LEADER_LOCATOR, buildTopology, isLeaderLocatorConflict, namesFor, routeForAttempt, withoutLeaderLocator, type QueueDecl, type Topology } from '../../src/broker/topology.js';

const DEFAULT = parseSchedule('default'); // 0,1000,3000,5000,15000,30000

function queue(t: Topology, name: string): QueueDecl {
  const q = t.queues.find((x) => x.name === name);
  assert.ok(q, `queue ${name} declared`);
  return q;
}

describe('namesFor', () => {
  it('derives every name from the prefix', () => {
    const n = namesFor('P');
    assert.equal(n.work, 'P.work');
    assert.equal(n.dead, 'P.dead');
    assert.equal(n.outcomes, 'P.outcomes');
    assert.equal(n.workQueue(0), 'P.work.0');
    assert.equal(n.workQueue(12), 'P.work.12');
    assert.equal(n.waitQueue(3), 'P.wait.3');
    assert.equal(n.routingKey(4), 'tier.4');
    assert.ok(Object.isFrozen(n));
  });

  it('keeps the default prefix notify', () => {
    assert.equal(namesFor('notify').workQueue(1), 'notify.work.1');
  });
});

describe('buildTopology (quorum, default schedule)', () => {
  const t = buildTopology('P', DEFAULT, 'quorum');

  it('declares the work (direct) and outcomes (topic) exchanges', () => {
    assert.deepEqual(
      [...t.exchanges].sort((a, b) => a.name.localeCompare(b.name)),
      [
        { name: 'P.outcomes', type: 'topic' },
        { name: 'P.work', type: 'direct' },
      ],
    );
  });

  it('declares work queues 0..5, wait queues 1..5 (none for the 0 delay), hold queues 0..5 and P.dead', () => {
    const names = t.queues.map((q) => q.name).sort();
    const expected = [
      ...[0, 1, 2, 3, 4, 5].map((i) => `P.work.${i}`),
      ...[1, 2, 3, 4, 5].map((i) => `P.wait.${i}`),
      ...[0, 1, 2, 3, 4, 5].map((i) => `P.hold.${i}`),
      'P.dead',
    ].sort();
    assert.deepEqual(names, expected);
    assert.equal(new Set(names).size, names.length, 'no duplicates');
    assert.ok(!names.includes('P.wait.0'));
  });

  it('hold queue i sends its messages back to tier i after half its wait budget (250 ms to 10 s), at-least-once', () => {
    // Budgets of the default ladder 0s,1s,3s,5s,15s,30s: the next delay, and the last tier's own.
    const holds = [500, 1500, 2500, 7500, 10_000, 10_000];
    holds.forEach((ttl, i) => {
      assert.deepEqual(queue(t, `P.hold.${i}`).arguments, {
        'x-queue-type': 'quorum',
        'x-message-ttl': ttl,
        'x-dead-letter-exchange': 'P.work',
        'x-dead-letter-routing-key': `tier.${i}`,
        'x-dead-letter-strategy': 'at-least-once',
        'x-overflow': 'reject-publish',
        [LEADER_LOCATOR]: 'balanced',
      });
    });
    assert.deepEqual([waitBudgetMs([0, 300, 600], 0), holdDelayMs([0, 300, 600], 0)], [300, 250]);
    assert.deepEqual([waitBudgetMs([0, 100], 0), holdDelayMs([0, 100], 0)], [100, 100], 'never longer than the budget');
    assert.equal(holdDelayMs([0, 0, 0], 1), 10_000, 'no budget: a hold queue for its last rung (a merchant\'s maxAttempts may end the ladder there)');
    assert.equal(holdDelayMs([0], 0), 10_000, 'one attempt only: its saturated origin waits there, not parked unattempted');
    assert.deepEqual(
      buildTopology('P', [0, 0], 'quorum').queues.flatMap((q) => (q.name.startsWith('P.hold.') ? [[q.name, q.arguments['x-message-ttl']]] : [])),
      [['P.hold.0', 10_000], ['P.hold.1', 10_000]],
      'a hold queue on each tier with no budget, for when it is the last rung',
    );
  });

  it('wait queue i has TTL = delay i and dead-letters to P.work with tier.<i>, at-least-once', () => {
    DEFAULT.forEach((delay, i) => {
      if (delay === 0) return;
      assert.deepEqual(queue(t, `P.wait.${i}`).arguments, {
        'x-queue-type': 'quorum',
        'x-queue-leader-locator': 'balanced',
        'x-message-ttl': delay,
        'x-dead-letter-exchange': 'P.work',
        'x-dead-letter-routing-key': `tier.${i}`,
        'x-dead-letter-strategy': 'at-least-once',
        'x-overflow': 'reject-publish',
      });
    });
    assert.equal(queue(t, 'P.wait.1').arguments['x-message-ttl'], 1000);
    assert.equal(queue(t, 'P.wait.5').arguments['x-message-ttl'], 30_000);
  });

  it('work queues have no TTL and dead-letter into P.dead at least once (what a broker gives up on is parked)', () => {
    for (const name of [0, 1, 2, 3, 4, 5].map((i) => `P.work.${i}`)) {
      assert.deepEqual(queue(t, name).arguments, {
        'x-queue-type': 'quorum',
        'x-queue-leader-locator': 'balanced',
        'x-dead-letter-exchange': '',
        'x-dead-letter-routing-key': 'P.dead',
        'x-dead-letter-strategy': 'at-least-once',
        'x-overflow': 'reject-publish',
      });
    }
  });

  it('P.dead is a plain quorum queue: nothing expires or leaves it by itself', () => {
    assert.deepEqual(queue(t, 'P.dead').arguments, { 'x-queue-type': 'quorum', 'x-queue-leader-locator': 'balanced' });
  });

  it('every quorum queue places its leader balanced (not all on the declaring node), and asks for no replica count (the broker default, 3)', () => {
    for (const q of t.queues) {
      assert.equal(q.arguments[LEADER_LOCATOR], 'balanced', q.name);
      assert.ok(!('x-quorum-initial-group-size' in q.arguments), q.name);
    }
  });

  it('binds tier.<i> → P.work.<i> on P.work, one binding per tier', () => {
    assert.deepEqual(
      t.bindings,
      [0, 1, 2, 3, 4, 5].map((i) => ({ queue: `P.work.${i}`, exchange: 'P.work', routingKey: `tier.${i}` })),
    );
  });

  it('every dead-letter target routes somewhere: a binding, or a declared queue via the default exchange', () => {
    for (const q of t.queues) {
      const key = q.arguments['x-dead-letter-routing-key'];
      if (key === undefined) continue;
      const exchange = q.arguments['x-dead-letter-exchange'];
      if (exchange === '') assert.ok(t.queues.some((x) => x.name === key), `${q.name} → ${key}`);
      else assert.ok(t.bindings.some((b) => b.exchange === exchange && b.routingKey === key), `${q.name} → ${exchange}/${key}`);
    }
  });

  it('is frozen', () => {
    assert.ok(Object.isFrozen(t));
    assert.ok(Object.isFrozen(t.queues));
    assert.ok(Object.isFrozen(t.bindings));
    assert.ok(Object.isFrozen(t.exchanges));
  });
});

describe('buildTopology (classic)', () => {
  const t = buildTopology('P', DEFAULT, 'classic');

  it('wait queues carry neither x-dead-letter-strategy nor x-overflow, nor a leader locator', () => {
    for (const q of t.queues) {
      assert.equal(q.arguments['x-queue-type'], 'classic');
      assert.ok(!(LEADER_LOCATOR in q.arguments), q.name);
      assert.ok(!('x-dead-letter-strategy' in q.arguments), q.name);
      assert.ok(!('x-overflow' in q.arguments), q.name);
    }
    assert.deepEqual(queue(t, 'P.wait.3').arguments, {
      'x-queue-type': 'classic',
      'x-message-ttl': 5000,
      'x-dead-letter-exchange': 'P.work',
      'x-dead-letter-routing-key': 'tier.3',
    });
  });
});

describe('buildTopology (other schedules)', () => {
  it('a positive first delay gets a wait queue for tier 0', () => {
    const t = buildTopology('x', [2000, 0, 5000], 'quorum');
    const names = t.queues.map((q) => q.name);
    assert.ok(names.includes('x.wait.0'));
    assert.ok(!names.includes('x.wait.1'));
    assert.ok(names.includes('x.wait.2'));
    assert.equal(queue(t, 'x.wait.0').arguments['x-message-ttl'], 2000);
  });

  it('wechatpay: 16 work queues, 15 wait queues', () => {
    const t = buildTopology('w', parseSchedule('wechatpay'), 'quorum');
    assert.equal(t.queues.filter((q) => q.name.startsWith('w.work.')).length, 16);
    assert.equal(t.queues.filter((q) => q.name.startsWith('w.wait.')).length, 15);
    assert.equal(t.bindings.length, 16);
  });

  it('does not share argument objects between queues', () => {
    const t = buildTopology('P', DEFAULT, 'quorum');
    const args = t.queues.map((q) => q.arguments);
    assert.equal(new Set(args).size, args.length);
  });
});

describe('routeForAttempt', () => {
  const n = namesFor('P');

  it('a 0 delay goes straight to the work exchange with the tier key', () => {
    assert.deepEqual(routeForAttempt(n, DEFAULT, 0), { exchange: 'P.work', routingKey: 'tier.0' });
  });

  it('a positive delay goes through the default exchange to the wait queue', () => {
    for (let i = 1; i < DEFAULT.length; i++) {
      assert.deepEqual(routeForAttempt(n, DEFAULT, i), { exchange: '', routingKey: `P.wait.${i}` });
    }
  });

  it('a 0 delay in the middle of a schedule skips waiting', () => {
    assert.deepEqual(routeForAttempt(n, [0, 0, 1000], 1), { exchange: 'P.work', routingKey: 'tier.1' });
  });

  it('routes only to objects the topology declares', () => {
    const t = buildTopology('P', DEFAULT, 'quorum');
    for (let i = 0; i < DEFAULT.length; i++) {
      const r = routeForAttempt(n, DEFAULT, i);
      if (r.exchange === '') assert.ok(t.queues.some((q) => q.name === r.routingKey));
      else assert.ok(t.bindings.some((b) => b.exchange === r.exchange && b.routingKey === r.routingKey));
    }
  });
});

describe('queues declared by an older notifyd (no leader locator)', () => {
  const broker = (got: string, current: string): Error =>
    new Error(`Operation failed: QueueDeclare; 406 (PRECONDITION-FAILED) with message "PRECONDITION_FAILED - inequivalent arg '${got}' for queue 'P.work.0' in vhost '/': ${current}"`);

  it('recognises the broker refusing only the leader locator (RabbitMQ 3.10 wording)', () => {
    assert.equal(isLeaderLocatorConflict(broker('x-queue-leader-locator', "received the value 'balanced' of type 'longstr' but current is none")), true);
    assert.equal(isLeaderLocatorConflict(broker('x-message-ttl', 'received 2000 but current is 1000')), false);
    assert.equal(isLeaderLocatorConflict(new Error('connection closed')), false);
    assert.equal(isLeaderLocatorConflict(undefined), false);
  });

  it('the fallback declaration differs only by the locator', () => {
    const q = queue(buildTopology('P', DEFAULT, 'quorum'), 'P.wait.2');
    const old = withoutLeaderLocator(q);
    assert.equal(old.name, q.name);
    assert.ok(!(LEADER_LOCATOR in old.arguments));
    assert.deepEqual({ ...old.arguments, [LEADER_LOCATOR]: 'balanced' }, q.arguments);
    assert.ok(LEADER_LOCATOR in q.arguments, 'the original is left alone');
  });
});
