/**
 * The sending end of the history (DESIGN §11): records go to `P.history` a
 * batch per AMQP message, like acks are batched, so a notification costs the
 * broker a fraction of one publish however many records it makes.
 */
import type { Options } from 'amqplib';
import { encodeBatch, serializeRecord, type HistoryRecord } from './records.js';

let batchSeq = 0;

/**
 * AMQP properties of one batch: persistent, and `mandatory` with an id of
 * its own, so a batch no queue takes (P.history not declared) fails instead
 * of vanishing.
 */
export function historyPublishOptions(): Options.Publish {
  return { persistent: true, mandatory: true, contentType: 'application/json', type: 'notify.history', messageId: `h${process.pid}-${++batchSeq}` };
}

/** Publishes one batch and resolves on the broker's confirm. */
export type BatchPublish = (body: Buffer, count: number) => Promise<void>;

/**
 * When a batch goes out. There is no timer: a batch goes out on the next
 * event-loop turn while fewer than `maxInflight` are waiting for their
 * confirm, so an idle worker's record leaves at once, and a busy one's
 * records pile up behind the batches in flight and leave together when a
 * confirm comes back (group commit). A timer (5 ms before) held every
 * delivery's ack that long, and at a fixed concurrency that is throughput.
 */
export interface SinkPolicy {
  /** Batches published and not yet confirmed before the next one waits for a confirm. */
  readonly maxInflight: number;
  /** A batch this full goes out on the next event-loop turn, in flight or not. */
  readonly maxRecords: number;
  /** ... or this big (bytes of JSON, roughly). */
  readonly maxBytes: number;
}

export const DEFAULT_SINK_POLICY: SinkPolicy = Object.freeze({ maxInflight: 2, maxRecords: 500, maxBytes: 512 * 1024 });

interface Pending {
  readonly parts: string[];
  bytes: number;
  /** Settles when this batch is confirmed or refused: one promise for all its callers, not one each. */
  readonly done: Promise<void>;
  resolve(): void;
  reject(err: unknown): void;
}

function newPending(): Pending {
  let resolve!: () => void;
  let reject!: (err: unknown) => void;
  const done = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  // A batch nobody waits for any more (its callers gave up) must not be an unhandled rejection.
  done.catch(() => undefined);
  return { parts: [], bytes: 2, done, resolve, reject };
}

/**
 * Collects records and publishes them in batches. `record` resolves once the
 * batch holding its records is confirmed by the broker (so a caller that acks
 * its own message only afterwards loses no record in a crash), and rejects
 * when that publish failed.
 */
export class HistorySink {
  private pending: Pending | null = null;
  private immediate: NodeJS.Immediate | null = null;
  private readonly inflight = new Set<Promise<void>>();
  private closed = false;

  constructor(
    private readonly publish: BatchPublish,
    private readonly policy: SinkPolicy = DEFAULT_SINK_POLICY,
  ) {}

  /** Queues records for the next batch; resolves when it is confirmed. */
  record(...records: HistoryRecord[]): Promise<void> {
    if (this.closed) return Promise.reject(new Error('history sink closed'));
    const p = (this.pending ??= newPending());
    for (const r of records) {
      const json = serializeRecord(r);
      p.parts.push(json);
      p.bytes += json.length + 1;
    }
    if (p.parts.length >= this.policy.maxRecords || p.bytes >= this.policy.maxBytes || this.inflight.size < this.policy.maxInflight) this.schedule();
    return p.done;
  }

  /** Flushes on the next turn: whatever the callbacks of this turn record joins the batch. */
  private schedule(): void {
    this.immediate ??= setImmediate(() => {
      this.immediate = null;
      this.flush();
    });
  }

  /** Sends what is queued now. */
  flush(): void {
    if (this.immediate) clearImmediate(this.immediate);
    this.immediate = null;
    const p = this.pending;
    this.pending = null;
    if (!p || p.parts.length === 0) return;
    let sent: Promise<void>;
    try {
      sent = this.publish(encodeBatch(p.parts), p.parts.length);
    } catch (err) {
      sent = Promise.reject(err);
    }
    const settled = sent.then(
      () => p.resolve(),
      (err: unknown) => p.reject(err),
    );
    this.inflight.add(settled);
    void settled.finally(() => {
      this.inflight.delete(settled);
      // Records that waited for a confirm go now.
      if (this.pending !== null && !this.closed) this.schedule();
    });
  }

  /** Sends what is queued and waits for every batch's confirm (or failure); later records are refused. Idempotent. */
  async close(): Promise<void> {
    this.flush();
    this.closed = true;
    await Promise.allSettled([...this.inflight]);
  }
}
