/**
 * The history recorder process (DESIGN §11): consumes the record batches of
 * `P.history` and writes them to PostgreSQL, a few dozen AMQP messages per
 * transaction, acking them only after the commit. While the database is away
 * it keeps retrying the same batch and leaves the rest in the broker: nothing
 * is lost, the lag grows and says so.
 */
import { setPriority } from 'node:os';
import type { Channel, ChannelModel, ConsumeMessage } from 'amqplib';
import type pg from 'pg';
import { CLOSE_WITHIN_MS, closeWithin, nodeRingFor, openUntil, reconnectDelay, sleep, type NodeRing } from '../broker/connection.js';
import { CONFIRM_TIMEOUT_MS } from '../broker/confirm-deadlines.js';
import { watchCalls } from '../broker/call-watchdog.js';
import { closeChannelWithin, openPlainWithin, settleWithin } from '../broker/open-within.js';
import { namesFor, verifyQueues, type Names } from '../broker/topology.js';
import { diffConfig, redactUrl, type Config } from '../core/config-model.js';
import { toErrorData } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { RecorderMetrics } from '../core/metrics.js';
import { createDbPool } from '../db/pool.js';
import type { WorkerState } from '../supervisor/control.js';
import type { ManagedWorker } from '../supervisor/worker-process.js';
import { foldRecords } from './fold.js';
import { decodeBatch, type HistoryRecord } from './records.js';
import { HistoryWriter, missingPartition, retryableDbError } from './writer.js';

/**
 * The recorder's nice value: the lowest priority. Under a burst that takes
 * every core, the tier workers (nice 0) get the CPU and the recorder, and so
 * the database work it sends, waits: the records wait in the broker and are
 * written when the burst is over (`notify_history_lag_seconds` shows the
 * wait). At nice 10 it still took about a tenth of a busy core, and
 * PostgreSQL as much again for what it sent.
 */
const RECORDER_NICE = 19;
/** Unacked batches the broker lets the recorder hold. */
const PREFETCH = 64;
/** Most records written in one transaction. */
const MAX_RECORDS = 20_000;
/**
 * A write with no answer for this long fails and is retried on a new
 * connection. Without it a database host gone without a reset (a failover, a
 * partition) left the recorder waiting on a dead connection for good, its
 * lag growing. Far above a busy write of MAX_RECORDS, since a niced recorder
 * on a busy machine may read its answer late.
 */
const RECORDER_QUERY_TIMEOUT_MS = 120_000;

interface Delivery {
  readonly ch: Channel;
  readonly msg: ConsumeMessage;
}

interface Decoded {
  readonly d: Delivery;
  readonly records: HistoryRecord[];
}

export interface RecorderDeps {
  readonly config: Config;
  readonly logger: Logger;
  readonly metrics: RecorderMetrics;
  readonly onState?: (s: WorkerState) => void;
  /** Told when the call watchdog gives its broker connection up (the process's metric). */
  readonly onBrokerGiveUp?: () => void;
}

export class HistoryRecorder implements ManagedWorker {
  private config: Config;
  private readonly log: Logger;
  private readonly names: Names;
  private readonly pool: pg.Pool;
  private readonly writer: HistoryWriter;
  private conn: ChannelModel | null = null;
  private ch: Channel | null = null;
  private buffer: Delivery[] = [];
  private writing: Promise<void> | null = null;
  private stopping = false;
  private readonly stopSignal = new AbortController();
  private state: WorkerState = 'starting';
  private drainPromise: Promise<void> | null = null;
  private connecting: Promise<void> | null = null;
  /** The oldest event of the batch being written (for the lag), or null when idle. */
  private pendingOldest: number | null = null;
  private dbDownSince = 0;
  /** The cluster's nodes as this process walks them (it starts at its own). */
  private readonly ring: NodeRing;

  constructor(private readonly deps: RecorderDeps) {
    this.config = deps.config;
    this.log = deps.logger;
    this.names = namesFor(deps.config.prefix);
    this.pool = createDbPool(deps.config.database.url!, { max: 2, name: `notifyd recorder pid ${process.pid}`, log: deps.logger, idleMs: 0, queryTimeoutMs: RECORDER_QUERY_TIMEOUT_MS });
    this.writer = new HistoryWriter(this.pool);
    this.ring = nodeRingFor(deps.config.amqpUrl, 'recorder', null, deps.config.scheduleMs.length);
    deps.metrics.up.set(1);
    deps.metrics.sampleLag(() => (this.pendingOldest === null ? 0 : Math.max(0, Date.now() - this.pendingOldest) / 1000));
  }

  get inflightCount(): number {
    return this.buffer.length;
  }

  /** The broker node (`host:port`) this process is connected to, or null. */
  get brokerNode(): string | null {
    return this.conn ? (this.ring.node?.label ?? null) : null;
  }

  get currentState(): WorkerState {
    return this.state;
  }

  private setState(s: WorkerState): void {
    if (this.state === s) return;
    this.state = s;
    this.deps.onState?.(s);
  }

  async start(): Promise<{ port?: number }> {
    try {
      // Delivery first: under a burst the tier workers get the CPU, and the history catches up after
      // (the records wait in P.history; the lag says how far behind it is).
      setPriority(RECORDER_NICE);
    } catch (err) {
      this.log.debug({ err: (err as Error).message }, 'could not lower the recorder\'s CPU priority');
    }
    await this.connectLoop();
    return {};
  }

  private connectLoop(): Promise<void> {
    this.connecting ??= openUntil(() => this.open(), { stopped: () => this.stopping, signal: this.stopSignal.signal, log: this.log, what: 'recorder cannot reach the broker' }).finally(() => {
      this.connecting = null;
    });
    return this.connecting;
  }

  private async open(): Promise<void> {
    const conn = await this.ring.connect(`notifyd recorder pid ${process.pid}`);
    watchCalls(conn, { log: this.log, owner: 'the recorder', onGiveUp: () => this.deps.onBrokerGiveUp?.() });
    try {
      conn.on('error', (err: Error) => this.log.warn({ err: err.message }, 'broker connection error'));
      // Bounded: a broker that never answers the open would keep the recorder from ever reconnecting.
      const ch = await openPlainWithin(conn, CONFIRM_TIMEOUT_MS);
      ch.on('error', (err: Error) => this.log.warn({ err: err.message }, 'broker channel error'));
      await verifyQueues(ch, [this.names.history]);
      await ch.prefetch(PREFETCH);
      const lost = (): void => {
        if (this.conn !== conn) return;
        this.conn = null;
        this.ch = null;
        // Their tags died with the channel: the broker gives them out again.
        this.buffer = this.buffer.filter((d) => d.ch !== ch);
        void conn.close().catch(() => undefined);
        if (!this.stopping) {
          this.log.warn({ node: this.ring.node?.label }, 'recorder lost the broker; reconnecting to the next node');
          this.setState('starting');
          void this.connectLoop();
        }
      };
      conn.on('close', lost);
      ch.on('close', lost);
      this.conn = conn;
      this.ch = ch;
      await ch.consume(this.names.history, (msg) => {
        if (msg === null) return; // cancelled by the broker (queue deleted): the reconnect finds out
        // Draining: left unacked for the broker to give out again. Buffered, a later group's multiple ack would
        // cover the ones the drain dropped, unwritten.
        if (this.stopping) return;
        this.buffer.push({ ch, msg });
        this.kick();
      });
      if (!this.stopping) this.setState('running');
      this.log.info({ queue: this.names.history, node: this.ring.node?.label }, 'recorder connected');
    } catch (err) {
      this.conn = null;
      this.ch = null;
      // A broker that did not answer the open may not answer the close either.
      await closeWithin(conn, CLOSE_WITHIN_MS);
      throw err;
    }
  }

  /** Starts the write loop unless it runs. */
  private kick(): void {
    this.writing ??= this.writeLoop().finally(() => {
      this.writing = null;
      if (this.buffer.length > 0 && !this.stopping) this.kick();
    });
  }

  private async writeLoop(): Promise<void> {
    // Not past a drain's start: the group being written finishes (commit and ack), no later one starts.
    while (this.buffer.length > 0 && !this.stopping) {
      const taken = this.take();
      const decoded: Decoded[] = [];
      for (const d of taken) {
        try {
          const { records, refused } = decodeBatch(d.msg.content);
          if (refused > 0) this.refuse(refused, 'records that are not history records');
          decoded.push({ d, records });
        } catch (err) {
          this.refuse(1, `a batch that is not a JSON array (${(err as Error).message.slice(0, 200)})`);
          decoded.push({ d, records: [] });
        }
      }
      await this.writeDecoded(decoded);
    }
  }

  /** The next deliveries to write together: in arrival order, up to MAX_RECORDS-ish. */
  private take(): Delivery[] {
    const out: Delivery[] = [];
    let size = 0;
    while (this.buffer.length > 0 && (out.length === 0 || size < MAX_RECORDS)) {
      const d = this.buffer.shift()!;
      out.push(d);
      size += Math.max(1, Math.round(d.msg.content.length / 300));
    }
    return out;
  }

  /**
   * Writes a group of deliveries until it is written: retried with backoff
   * while the database is away; split in halves when the data itself is
   * refused, down to one delivery, which is then logged and dropped (it
   * would block every later one for ever). Acks after the commit.
   */
  private async writeDecoded(group: Decoded[]): Promise<void> {
    const records = group.flatMap((g) => g.records);
    const folded = foldRecords(records);
    this.pendingOldest = records.length > 0 ? folded.oldestAt : null;
    for (let attempt = 0; ; attempt++) {
      if (this.stopSignal.signal.aborted) return; // unacked: the broker gives them out again
      try {
        const r = records.length > 0 ? await this.writer.write(folded) : { runsNew: 0, attemptsNew: 0, duplicates: 0 };
        this.deps.metrics.records.inc({ result: 'written' }, records.length - r.duplicates);
        if (r.duplicates > 0) this.deps.metrics.records.inc({ result: 'duplicate' }, r.duplicates);
        this.dbUp();
        this.ack(group.map((g) => g.d));
        this.pendingOldest = null;
        return;
      } catch (err) {
        if (missingPartition(err)) {
          this.writer.forgetDays();
          if (attempt < 3) continue;
        }
        if (!retryableDbError(err) && !missingPartition(err)) {
          if (group.length > 1) {
            const half = Math.ceil(group.length / 2);
            await this.writeDecoded(group.slice(0, half));
            await this.writeDecoded(group.slice(half));
            return;
          }
          const count = group[0]!.records.length;
          this.log.error({ err: toErrorData(err), records: count, sample: JSON.stringify(group[0]!.records[0] ?? null).slice(0, 500) }, 'PostgreSQL refuses a history batch; dropped (it would block every later one)');
          this.deps.metrics.records.inc({ result: 'refused' }, count);
          this.ack(group.map((g) => g.d));
          this.pendingOldest = null;
          return;
        }
        this.dbDown(err);
        await sleep(reconnectDelay(attempt, 250, 5000), this.stopSignal.signal);
      }
    }
  }

  private refuse(count: number, what: string): void {
    this.deps.metrics.records.inc({ result: 'refused' }, count);
    this.log.error({ count }, `history: dropped ${what}`);
  }

  private ack(ds: Delivery[]): void {
    // In arrival order on one channel, so one multiple ack per channel covers them all.
    const last = new Map<Channel, ConsumeMessage>();
    for (const d of ds) last.set(d.ch, d.msg);
    for (const [ch, msg] of last) {
      if (ch !== this.ch) continue; // that channel is gone: the broker gives them out again (written twice: a no-op)
      try {
        ch.ack(msg, true);
      } catch {
        /* closing */
      }
    }
  }

  private dbDown(err: unknown): void {
    if (this.dbDownSince === 0) {
      this.dbDownSince = Date.now();
      this.deps.metrics.up.set(0);
      this.log.error({ db: redactUrl(this.config.database.url!), err: toErrorData(err) }, 'cannot write history to PostgreSQL; records wait in the broker, retrying');
    }
  }

  private dbUp(): void {
    if (this.dbDownSince !== 0) {
      this.log.info({ downMs: Date.now() - this.dbDownSince }, 'writing history to PostgreSQL again');
      this.dbDownSince = 0;
      this.deps.metrics.up.set(1);
    }
  }

  async pause(): Promise<void> {
    /* nothing to pause: the recorder always drains P.history */
  }

  async resume(): Promise<void> {
    /* see pause */
  }

  reload(config: Config): { restartRequired: boolean; notes: string[] } {
    const r = diffConfig(this.config, config);
    this.config = config;
    return r;
  }

  /**
   * Stops consuming, lets the batch being written finish (commit and ack)
   * until the deadline, then closes the channel (the broker keeps what is
   * unacked), the connection and the pool. Idempotent.
   */
  drain(deadlineMs: number): Promise<void> {
    this.drainPromise ??= (async () => {
      this.stopping = true;
      this.setState('draining');
      const ch = this.ch;
      // Unacked, and no later ack covers them (no group starts after this): the broker gives them out again.
      this.buffer = [];
      const writing = this.writing;
      if (writing) {
        if (!(await settleWithin(writing, deadlineMs - Date.now()))) this.log.warn('drain deadline reached with a history batch unwritten; the broker keeps it');
      }
      this.stopSignal.abort();
      const conn = this.conn;
      this.ch = null;
      this.conn = null;
      // Bounded: amqplib's closes wait for a close-ok that a broker which stopped answering never sends.
      if (ch) await closeChannelWithin(ch, CLOSE_WITHIN_MS);
      if (conn) await closeWithin(conn, CLOSE_WITHIN_MS);
      await this.pool.end().catch(() => undefined);
      this.setState('stopped');
    })();
    return this.drainPromise;
  }
}
