import type { Config } from '../core/config-model.js';
import { diffConfig, historyOn } from '../core/config-model.js';
import { namesFor } from '../broker/topology.js';
import { HistorySink, historyPublishOptions } from '../history/sink.js';
import { HistoryClaims } from '../history/claims.js';
import { HISTORY_STATEMENT_TIMEOUT_MS, HistoryReader } from '../history/reader.js';
import { createDbPool } from '../db/pool.js';
import type pg from 'pg';
import type { WorkerState } from '../supervisor/control.js';
import { IngressServer } from './server.js';
import type { Logger } from '../core/logger.js';
import type { WorkerMetrics } from '../core/metrics.js';
import { NotificationPublisher } from '../broker/publisher.js';
import { MerchantDirectory } from '../merchants/directory.js';
import type { ManagedWorker } from '../supervisor/worker-process.js';

/** The ingress process: HTTP server + confirmed publisher, drained ingress-first on shutdown. */
export class IngressWorker implements ManagedWorker {
  private readonly publisher: NotificationPublisher;
  private readonly server: IngressServer;
  private state: WorkerState = 'starting';
  private config: Config;
  private drainPromise: Promise<void> | null = null;
  private readonly directory: MerchantDirectory | null;
  private readonly history: HistorySink | null;
  /** Reads the history for the API; null without history. */
  private readonly historyPool: pg.Pool | null;

  constructor(
    config: Config,
    private readonly log: Logger,
    metrics: WorkerMetrics,
    /** Told of state changes (the entry point forwards them to the master). */
    private readonly onState: (state: WorkerState) => void = () => undefined,
  ) {
    this.config = config;
    this.publisher = new NotificationPublisher({
      amqpUrl: config.amqpUrl,
      role: 'ingress',
      prefix: config.prefix,
      scheduleMs: config.scheduleMs,
      name: `notifyd ingress pid ${process.pid}`,
      keepConnected: true,
      onGiveUp: () => metrics.brokerGiveUps.inc({ role: 'ingress' }),
      maxInflight: () => this.config.ingress.maxInflightPublishes,
      onBlocked: (blocked, reason) => {
        if (blocked) log.warn({ reason }, 'the broker blocks publishing (memory or disk alarm); answering 503 BROKER_BLOCKED until it lifts');
        else log.info('the broker unblocked publishing');
      },
      onChannelRenewed: () => log.info('the broker nacked a publish; publishing on a new channel (nacked notifications are sent again on it)'),
      onStateChange: (connected, err) => {
        if (connected) log.info({ node: this.publisher.node }, 'ingress connected to the broker');
        else log.warn({ err: err?.message }, 'ingress lost the broker; reconnecting to the next node (requests wait for it up to 2 s, then 503)');
        // Not running without a broker: /readyz must not send traffic to an ingress that can only answer 503.
        if (this.state === 'running' || this.state === 'starting') this.setState(connected ? 'running' : 'starting');
      },
    });
    this.directory =
      config.database.url === null
        ? null
        : new MerchantDirectory({
            url: config.database.url,
            key: 'skip', // the ingress checks merchants; it never signs, so it keeps no secret
            refreshMs: config.merchants.refreshMs,
            name: `notifyd ingress pid ${process.pid}`,
            log,
          });
    if (this.directory) {
      const d = this.directory;
      metrics.sampleRegistry(() => d.isUp);
    }
    const names = namesFor(config.prefix);
    const publisher = this.publisher;
    this.history = historyOn(config) ? new HistorySink((body) => publisher.publishToQueue(names.history, body, historyPublishOptions())) : null;
    // A few connections: reads are short and the API is for lookups, not bulk export.
    this.historyPool = historyOn(config) ? createDbPool(config.database.url!, { max: 4, name: `notifyd ingress history pid ${process.pid}`, log, statementTimeoutMs: HISTORY_STATEMENT_TIMEOUT_MS }) : null;
    this.server = new IngressServer(config, this.publisher, log, metrics, this.directory, this.history, this.historyPool ? { reader: new HistoryReader(this.historyPool), claims: new HistoryClaims(this.historyPool) } : null);
  }

  get inflightCount(): number {
    return 0;
  }

  get currentState(): WorkerState {
    return this.state;
  }

  get brokerNode(): string | null {
    return this.publisher.node;
  }

  private setState(s: WorkerState): void {
    if (this.state === s) return;
    this.state = s;
    this.onState(s);
  }

  async start(): Promise<{ port?: number }> {
    // Listen first: while the broker is away the API answers 503 rather than refusing connections.
    this.directory?.start();
    const port = await this.server.listen(this.config.ingress.port, this.config.ingress.host);
    await this.publisher.start();
    this.setState(this.publisher.connected ? 'running' : 'starting');
    return { port };
  }

  async pause(): Promise<void> {
    /* the ingress has no consumer to pause */
  }

  async resume(): Promise<void> {
    /* see pause */
  }

  reload(config: Config): { restartRequired: boolean; notes: string[] } {
    const r = diffConfig(this.config, config);
    this.config = config;
    this.server.reload(config);
    return r;
  }

  drain(deadlineMs: number): Promise<void> {
    this.drainPromise ??= (async () => {
      this.setState('draining');
      await this.server.drain(deadlineMs);
      await this.history?.close();
      await this.publisher.close();
      await this.directory?.close();
      await this.historyPool?.end().catch(() => undefined);
      this.setState('stopped');
      this.log.info('ingress closed');
    })();
    return this.drainPromise;
  }
}
