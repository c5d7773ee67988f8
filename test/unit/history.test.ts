import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { countNewAttempts, foldRecords, ladderStart, newerStatus } from '../../src/history/fold.js';
import { answerText, checkRecord, decodeBatch, encodeBatch, newRunId, runStartOf, serializeRecord, storableText, type AttemptRecord, type DeadRecord, type HistoryRecord, type RunRecord } from '../../src/history/records.js';
import { HistorySink } from '../../src/history/sink.js';
import { retryableDbError, missingPartition } from '../../src/history/writer.js';

const T0 = Date.UTC(2026, 11, 1, 10, 0, 0);

function run(over: Partial<RunRecord> = {}): RunRecord {
  return { t: 'run', id: 'n1', createdAt: T0, run: 'r1', at: T0, via: 'ingress', merchant: 'shop', producer: 'checkout', url: 'https://m.example/n', content: '{"id":"n1"}', ...over };
}

function attempt(over: Partial<AttemptRecord> = {}): AttemptRecord {
  return {
    t: 'attempt',
    id: 'n1',
    createdAt: T0,
    run: 'r1',
    attempt: 0,
    tier: 0,
    startedAt: T0 + 10,
    durationMs: 5,
    status: 500,
    outcome: 'retry',
    skipReason: null,
    error: 'status 500',
    answer: 'no',
    final: null,
    ...over,
  };
}

function dead(over: Partial<DeadRecord> = {}): DeadRecord {
  return { t: 'dead', id: 'n1', createdAt: T0, run: 'r1', at: T0 + 50, reason: 'disabled', error: 'merchant shop is disabled', merchant: 'shop', url: 'https://m.example/n', ...over };
}

describe('history records', () => {
  it('a batch round-trips, and what is not a record is counted and left out', () => {
    const finals = [attempt({ final: { status: 'delivered' } }), attempt({ final: { status: 'dead', reason: 'status-410' } })];
    const body = encodeBatch([...[run(), attempt(), dead(), ...finals].map(serializeRecord), JSON.stringify({ t: 'attempt', id: 'x' }), '42', '["a","x"]', '["z","n1",1,"r"]']);
    const { records, refused } = decodeBatch(body);
    assert.deepEqual(records, [run(), attempt(), dead(), ...finals]);
    assert.equal(refused, 4);
    // The notification goes unescaped: the batch is smaller than with it as a string.
    assert.ok(serializeRecord(run()).endsWith(',{"id":"n1"}]'));
    assert.throws(() => decodeBatch(Buffer.from('{"not":"an array"}')));
    assert.throws(() => decodeBatch(Buffer.from('nope')));
  });

  it('checks every field a writer relies on', () => {
    const wire = (r: Parameters<typeof serializeRecord>[0]): unknown => JSON.parse(serializeRecord(r));
    assert.ok(checkRecord(wire(run())));
    assert.ok(checkRecord(wire(attempt({ final: { status: 'dead', reason: 'exhausted' } }))));
    assert.ok(checkRecord(wire(dead())));
    assert.equal(checkRecord(wire(run({ via: 'fax' as never }))), null);
    assert.equal(checkRecord(wire(run({ createdAt: -1 }))), null);
    assert.equal(checkRecord(wire(run({ id: '' }))), null);
    assert.equal(checkRecord(wire(attempt({ attempt: 1.5 }))), null);
    assert.equal(checkRecord(wire(attempt({ outcome: 'maybe' as never }))), null);
    assert.equal(checkRecord(wire(attempt({ final: { status: 'dead' } as never }))), null);
    assert.equal(checkRecord(wire(dead({ reason: 3 as never }))), null);
    assert.equal(checkRecord(['r', 'n1', T0, 'r1', T0, 'ingress', null, null, 'https://m.example/n', 42]), null, 'a ladder without its notification');
    assert.equal(checkRecord(null), null);
    assert.equal(checkRecord(run()), null, 'objects are not the wire format');
  });

  it('text is made storable: no NUL, bounded; answers keep their first KiB', () => {
    assert.equal(storableText('a\u0000b'), 'a\uFFFDb');
    assert.equal(storableText(''), null);
    assert.equal(storableText('x'.repeat(600))!.length, 500);
    assert.equal(answerText('ok'), 'ok');
    assert.equal(Buffer.byteLength(answerText('é'.repeat(2000))!), 1024);
    assert.ok(Buffer.byteLength(answerText('中'.repeat(2000))!) <= 1026); // a cut character becomes one U+FFFD
  });

  it('run ids sort by time and differ', () => {
    const a = newRunId(T0);
    const b = newRunId(T0 + 1000);
    assert.ok(a < b);
    assert.notEqual(newRunId(T0), newRunId(T0));
  });
});

describe('folding a batch', () => {
  it('three attempts, the last delivering: one notification row, status delivered, three attempt rows', () => {
    const f = foldRecords([
      run(),
      attempt({ attempt: 0, tier: 0, startedAt: T0 + 10 }),
      attempt({ attempt: 1, tier: 1, startedAt: T0 + 1010 }),
      attempt({ attempt: 2, tier: 2, startedAt: T0 + 4010, status: 200, outcome: 'success', error: null, answer: 'success', final: { status: 'delivered' } }),
    ], T0 + 60_000);
    assert.equal(f.notifications.length, 1);
    assert.equal(f.attempts.length, 3);
    assert.equal(f.runs.length, 1);
    const n = f.notifications[0]!;
    assert.equal(n.status, 'delivered');
    assert.equal(n.statusAt, T0 + 4015);
    assert.equal(n.lastStatus, 200);
    assert.equal(n.deliveredAt, T0 + 4015);
    assert.equal(n.content, '{"id":"n1"}');
    assert.equal(n.producer, 'checkout');
    assert.deepEqual(f.days, ['2026-12-01']);
    assert.equal(f.oldestAt, T0);
  });

  it('order does not matter: the latest event sets the status, a start never undoes an end', () => {
    const records = [attempt({ final: { status: 'delivered' }, status: 200, outcome: 'success' }), run()];
    for (const order of [records, [...records].reverse()]) {
      const n = foldRecords(order).notifications[0]!;
      assert.equal(n.status, 'delivered');
    }
    // A resend after a death: the new ladder's start is later, so pending again.
    const n = foldRecords([run(), attempt({ final: { status: 'dead', reason: 'exhausted' }, outcome: 'dead' }), run({ run: 'r2', at: T0 + 60_000, via: 'resend' })]).notifications[0]!;
    assert.equal(n.status, 'pending');
    assert.equal(n.deadAt, T0 + 15);
  });

  it('at the same instant an end beats a start', () => {
    const ev = (status: 'pending' | 'dead' | 'delivered', at: number, runAt: number | null = null) => ({ status, at, runAt });
    assert.equal(newerStatus(ev('dead', 5), ev('pending', 5)), true);
    assert.equal(newerStatus(ev('pending', 5), ev('dead', 5)), false);
    assert.equal(newerStatus(ev('delivered', 4), ev('pending', 5)), false);
    assert.equal(newerStatus(ev('pending', 1), null), true);
    const n = foldRecords([run({ at: T0 + 50 }), dead({ at: T0 + 50 })]).notifications[0]!;
    assert.equal(n.status, 'dead');
    assert.equal(n.deadReason, 'disabled');
  });

  it('a ladder\'s duplicate copy that parks after its delivery (a redelivery after a lost ack) leaves it delivered, in any order; an older ladder\'s late end does not replace a newer ladder\'s', () => {
    const ra = newRunId(T0);
    const rb = newRunId(T0 + 60_000);
    const start = run({ run: ra });
    const delivered = attempt({ run: ra, final: { status: 'delivered' }, status: 200, outcome: 'success' });
    const parkedCopy = attempt({ run: ra, attempt: 5, tier: 5, startedAt: T0 + 120_000, final: { status: 'dead', reason: 'exhausted' }, outcome: 'dead', status: 500 });
    const parkedBefore = dead({ run: ra, at: T0 + 120_000, reason: 'disabled' });
    const orders = (xs: HistoryRecord[]): HistoryRecord[][] => (xs.length <= 1 ? [xs] : xs.flatMap((x, i) => orders([...xs.slice(0, i), ...xs.slice(i + 1)]).map((rest) => [x, ...rest])));
    for (const order of [...orders([start, delivered, parkedCopy]), ...orders([start, delivered, parkedBefore])]) {
      const n = foldRecords(order).notifications[0]!;
      assert.equal(n.status, 'delivered', order.map((r) => r.t).join(','));
      assert.equal(n.statusRunAt, T0);
      assert.equal(n.deadReason, null);
    }
    // A resend after the delivery (forced) is a newer ladder: its end is the status, and while it runs it is pending,
    // even when the first ladder's duplicate parks after the resend started.
    const resentDead = attempt({ run: rb, startedAt: T0 + 90_000, final: { status: 'dead', reason: 'exhausted' }, outcome: 'dead', status: 500 });
    for (const order of orders([start, delivered, run({ run: rb, at: T0 + 60_000, via: 'resend' }), parkedCopy])) assert.equal(foldRecords(order).notifications[0]!.status, 'pending');
    for (const order of orders([start, delivered, parkedCopy, resentDead])) assert.equal(foldRecords(order).notifications[0]!.status, 'dead');
    // A run id that is not a notifyd one (or '' for an unrecorded ladder) orders by time, as before.
    const n = foldRecords([attempt({ run: '', final: { status: 'delivered' }, status: 200, outcome: 'success' }), attempt({ run: '', attempt: 5, startedAt: T0 + 120_000, final: { status: 'dead', reason: 'exhausted' }, outcome: 'dead' })]).notifications[0]!;
    assert.equal(n.status, 'dead');
    assert.equal(n.statusRunAt, null);
  });

  it('a run id gives its ladder\'s start; other strings none; a start an hour after its event, or before its notification was created, is not believed', () => {
    assert.equal(runStartOf(newRunId(T0)), T0);
    for (const r of ['', 'r1', 'order-12345', 'ABCDEFGH1234', '00001234', 'zzzzzzzzzzzzzzzzzz']) assert.equal(runStartOf(r), null, r);
    const future = newRunId(T0 + 3_600_000);
    const n = foldRecords([attempt({ run: future, final: { status: 'delivered' }, status: 200, outcome: 'success' })]).notifications[0]!;
    assert.equal(n.statusRunAt, null, 'the event\'s time stands in');
    // A program's own hex run id that decodes to a date years back (a quarter of random ones do).
    const hex = 'e4f5a6b7c8d9';
    assert.ok((runStartOf(hex) ?? Infinity) < T0);
    assert.equal(ladderStart(hex, T0 + 15, T0), null);
    assert.equal(ladderStart(newRunId(T0 + 10), T0 + 15, T0), T0 + 10);
    assert.equal(ladderStart(newRunId(T0 + 50), T0 + 15, T0), T0 + 50, 'an ingress a little ahead of the tier is believed');
    assert.equal(ladderStart(newRunId(T0), T0 + 15, T0 + 3_600_000), T0, 'a producer\'s clock an hour ahead (its createdAt later than the ladder): believed');
  });

  it('an ingress whose clock is ahead of the tier that delivered: the start still loses to its own end, in any order', () => {
    const r = newRunId(T0 + 50);
    const records = [run({ run: r, at: T0 + 50 }), attempt({ run: r, final: { status: 'delivered' }, status: 200, outcome: 'success' })];
    for (const order of [records, [...records].reverse()]) assert.equal(foldRecords(order).notifications[0]!.status, 'delivered');
    // Across two batches, as the upsert orders them.
    const start = foldRecords([records[0]!]).notifications[0]!;
    const end = foldRecords([records[1]!]).notifications[0]!;
    assert.equal(newerStatus({ status: 'pending', at: start.statusAt!, runAt: start.statusRunAt }, { status: 'delivered', at: end.statusAt!, runAt: end.statusRunAt }), false);
  });

  it('repeats collapse to one row each, sorted by key, and days are those of createdAt (UTC)', () => {
    const late = Date.UTC(2026, 10, 30, 23, 59, 59);
    const f = foldRecords([attempt({ id: 'b' }), attempt({ id: 'b' }), attempt({ id: 'a', createdAt: late }), run({ id: 'b' }), run({ id: 'b' })]);
    assert.deepEqual(
      f.attempts.map((a) => a.id),
      ['a', 'b'],
    );
    assert.equal(f.runs.length, 1);
    assert.deepEqual(
      f.notifications.map((n) => n.id),
      ['a', 'b'],
    );
    assert.deepEqual(f.days, ['2026-11-30', '2026-12-01']);
  });

  it('a skipped attempt keeps its reason; a createdAt with a fraction is kept whole', () => {
    const f = foldRecords([attempt({ createdAt: T0 + 0.7, outcome: 'skipped', skipReason: 'origin-failing', status: null, durationMs: 0 })]);
    assert.equal(f.attempts[0]!.skipReason, 'origin-failing');
    assert.equal(f.attempts[0]!.createdAt, T0);
    assert.equal(f.notifications[0]!.createdAt, T0);
  });

  it('the attempt count grows by the rows the database took as new only', () => {
    const f = foldRecords([attempt({ attempt: 0 }), attempt({ attempt: 1 }), attempt({ id: 'n2', attempt: 0 })]);
    const notes = f.notifications.map((n) => ({ ...n }));
    countNewAttempts(notes, [{ id: 'n1', createdAt: T0 }]);
    assert.deepEqual(
      notes.map((n) => [n.id, n.attempts]),
      [
        ['n1', 1],
        ['n2', 0],
      ],
    );
  });
});

describe('HistorySink', () => {
  it('batches records into one publish and resolves each caller on its confirm', async () => {
    const sent: { body: string; count: number }[] = [];
    const sink = new HistorySink(async (body, count) => {
      sent.push({ body: body.toString(), count });
    }, { maxInflight: 2, maxRecords: 100, maxBytes: 1 << 20 });
    await Promise.all([sink.record(run()), sink.record(attempt(), attempt({ attempt: 1 }))]);
    assert.equal(sent.length, 1);
    assert.equal(sent[0]!.count, 3);
    assert.equal(decodeBatch(Buffer.from(sent[0]!.body)).records.length, 3);
    await sink.close();
  });

  it('while batches wait for their confirm, records wait too and then leave together (group commit); a full batch does not wait', async () => {
    const sent: number[] = [];
    const confirms: (() => void)[] = [];
    const sink = new HistorySink(
      (_b, count) =>
        new Promise<void>((resolve) => {
          sent.push(count);
          confirms.push(resolve);
        }),
      { maxInflight: 1, maxRecords: 3, maxBytes: 1 << 20 },
    );
    const turn = (): Promise<void> => new Promise((r) => setImmediate(r));
    const first = sink.record(run());
    await turn();
    assert.deepEqual(sent, [1], 'an idle sink sends at once (next turn)');
    const later = [sink.record(run({ id: 'n2' }))];
    await turn();
    later.push(sink.record(run({ id: 'n3' })));
    await turn();
    assert.deepEqual(sent, [1], 'the others wait for the confirm in flight');
    confirms[0]!();
    await first;
    // The sink hears of the confirm a microtask after its callers, then sends on the next turn.
    await turn();
    await turn();
    assert.deepEqual(sent, [1, 2], 'then go as one batch');
    // A full batch goes even with a batch in flight.
    const full = [sink.record(run({ id: 'a' })), sink.record(run({ id: 'b' }), run({ id: 'c' }))];
    await turn();
    assert.deepEqual(sent, [1, 2, 3]);
    for (const c of confirms.slice(1)) c();
    await Promise.all([...later, ...full]);
    await sink.close();
  });

  it('a refused batch rejects its callers; close flushes, waits, and refuses later records', async () => {
    let fail = true;
    const sent: number[] = [];
    const sink = new HistorySink(async (_b, count) => {
      if (fail) throw new Error('nack');
      sent.push(count);
    }, { maxInflight: 2, maxRecords: 100, maxBytes: 1 << 20 });
    await assert.rejects(sink.record(run()), /nack/);
    fail = false;
    const pending = sink.record(run());
    await sink.close();
    await pending;
    assert.deepEqual(sent, [1]);
    await assert.rejects(sink.record(run()), /closed/);
    await sink.close();
  });
});

describe('which database errors are retried', () => {
  it('everything but the data being refused is: an outage of any kind keeps the batch', () => {
    for (const code of ['EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'EPIPE', '25006', '28P01', '28000', '3D000', '42P01', '42883', '53300', '57014']) {
      assert.equal(retryableDbError(Object.assign(new Error('x'), { code })), true, code);
    }
    for (const code of ['22001', '22P02', '23505', '54000']) assert.equal(retryableDbError(Object.assign(new Error('x'), { code })), false, code);
  });

  it('connection, rollback, resources and shutdown are; data errors are not', () => {
    assert.equal(retryableDbError(Object.assign(new Error('x'), { code: '08006' })), true);
    assert.equal(retryableDbError(Object.assign(new Error('x'), { code: '40P01' })), true);
    assert.equal(retryableDbError(Object.assign(new Error('x'), { code: '57P01' })), true);
    assert.equal(retryableDbError(Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' })), true);
    assert.equal(retryableDbError(new Error('Connection terminated unexpectedly')), true);
    assert.equal(retryableDbError(Object.assign(new Error('x'), { code: '22021' })), false);
    assert.equal(retryableDbError(Object.assign(new Error('x'), { code: '23514' })), false);
    assert.equal(missingPartition(Object.assign(new Error('no partition of relation "notify_attempts" found for row'), { code: '23514' })), true);
    assert.equal(missingPartition(Object.assign(new Error('new row violates check constraint'), { code: '23514' })), false);
    // A server speaking German: told by the routine that raised it.
    assert.equal(missingPartition(Object.assign(new Error('keine Partition von Relation »notify_attempts« für die Zeile gefunden'), { code: '23514', routine: 'ExecFindPartition' })), true);
    assert.equal(missingPartition(Object.assign(new Error('neue Zeile verletzt Check-Constraint'), { code: '23514', routine: 'ExecConstraints' })), false);
  });
});
