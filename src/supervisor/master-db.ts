/**
 * What the master does in PostgreSQL (when `NOTIFY_DATABASE_URL` is set):
 * migrate at start (under an advisory lock: daemons may start together),
 * hold the merchant store for the admin API and a copy of the registry for
 * redrives, and run the periodic jobs: auto-disable of merchants failing for
 * too long, and removal of secrets past their grace period.
 */
import cron, { type ScheduledTask } from 'node-cron';
import type pg from 'pg';
import { settleWithin } from '../broker/open-within.js';
import { historyOn, redactUrl, secretsKeyBytes, type Config } from '../core/config-model.js';
import { HistoryWriter } from '../history/writer.js';
import { HISTORY_STATEMENT_TIMEOUT_MS, HistoryReader } from '../history/reader.js';
import { HistoryClaims } from '../history/claims.js';
import { RedriveClaims } from '../history/superseded.js';
import type { Logger } from '../core/logger.js';
import { migrate } from '../db/migrate.js';
import { createDbPool } from '../db/pool.js';
import { MerchantDirectory } from '../merchants/directory.js';
import { MerchantStore } from '../merchants/store.js';

/** How often secrets past their grace period are removed. */
const PRUNE_CRON = '30 * * * * *';

/** How long the master's exit waits for its database connections to close. */
const CLOSE_WITHIN_MS = 5000;

export class MasterDatabase {
  readonly pool: pg.Pool;
  readonly store: MerchantStore;
  readonly directory: MerchantDirectory;
  /** The history's partitions (retention); null when history is off. */
  private readonly history: HistoryWriter | null;
  /** Reads the history for the admin API; null when history is off. */
  readonly historyReader: HistoryReader | null;
  /** Claims of resends and recovers on the admin port; null without history. */
  readonly historyClaims: HistoryClaims | null;
  /**
   * The admin port's history API has its own small pool with a statement
   * timeout: a slow listing must not hold the connections the merchant
   * registry, the migrations and the retention job need.
   */
  private readonly historyPool: pg.Pool | null;
  /** Which parked copies a redrive drops (resent since they were parked), and its claims of those it moves; null without history. */
  readonly redriveClaims: RedriveClaims | null;
  private readonly tasks: ScheduledTask[] = [];
  private migrated: Promise<void> | null = null;
  private closed = false;
  private closing: Promise<void> | null = null;

  constructor(
    private readonly config: Config,
    private readonly log: Logger,
    /** Says a merchant was disabled because it failed for too long (an event on P.outcomes). */
    private readonly onAutoDisabled: (event: { id: string; failingSince: string }) => void,
  ) {
    const url = config.database.url!;
    const key = config.merchants.secretsKey === null ? null : secretsKeyBytes(config.merchants.secretsKey);
    this.pool = createDbPool(url, { max: config.database.poolSize, name: `notifyd master pid ${process.pid}`, log });
    this.store = new MerchantStore(this.pool, { key, tiers: config.scheduleMs.length });
    // The master's copy decides redrives only: it keeps no secret.
    this.history = historyOn(config) ? new HistoryWriter(this.pool) : null;
    this.historyPool = historyOn(config) ? createDbPool(url, { max: 2, name: `notifyd master history pid ${process.pid}`, log, statementTimeoutMs: HISTORY_STATEMENT_TIMEOUT_MS }) : null;
    this.historyReader = this.historyPool ? new HistoryReader(this.historyPool) : null;
    this.historyClaims = this.historyPool ? new HistoryClaims(this.historyPool) : null;
    this.redriveClaims = this.historyPool
      ? new RedriveClaims(this.historyPool, (ids, err) =>
          log.warn({ ids, err: (err as Error).message }, 'redrive could not give back its claims of copies it did not move: their parked copies are held for a day (resend --force sends one now)'),
        )
      : null;
    this.directory = new MerchantDirectory({ url, key: 'skip', refreshMs: config.merchants.refreshMs, name: `notifyd master registry pid ${process.pid}`, log });
    if (key === null) log.warn('NOTIFY_SECRETS_KEY is not set: merchant secrets are stored unencrypted in PostgreSQL (set 32 random bytes, e.g. openssl rand -base64 32)');
  }

  /** Migrates (retrying until the database answers), then starts the registry copy and the jobs. Never throws. */
  start(): Promise<void> {
    this.migrated ??= (async () => {
      for (let attempt = 0; !this.closed; attempt++) {
        try {
          await migrate(this.pool, this.log);
          break;
        } catch (err) {
          if (attempt === 0) this.log.error({ db: redactUrl(this.config.database.url!), err: (err as Error).message }, 'cannot migrate the database; retrying');
          await new Promise((r) => setTimeout(r, Math.min(5000, 250 * 2 ** Math.min(attempt, 5))).unref());
        }
      }
      if (this.closed) return;
      await this.warnUnsealed();
      this.directory.start();
      this.tasks.push(cron.schedule(this.config.merchants.autoDisableCron, () => this.autoDisable(), { noOverlap: true }));
      this.tasks.push(cron.schedule(PRUNE_CRON, () => this.prune(), { noOverlap: true }));
      if (this.history) {
        await this.retain();
        this.tasks.push(cron.schedule(this.config.history.retentionCron, () => this.retain(), { noOverlap: true }));
      }
    })();
    return this.migrated;
  }

  /**
   * Says, when there is a key, how many secrets are still stored in plaintext
   * (from before it was set): sealing them is `notifyd secrets seal`, once
   * every daemon has the key (one without it could not open them after).
   */
  private async warnUnsealed(): Promise<void> {
    if (this.config.merchants.secretsKey === null) return;
    try {
      const n = await this.store.countUnsealed();
      if (n > 0) this.log.warn({ secrets: n }, 'merchant secrets stored in plaintext from before NOTIFY_SECRETS_KEY was set: once every daemon has the key, seal them with `notifyd secrets seal`');
    } catch (err) {
      this.log.debug({ err: (err as Error).message }, 'could not count the merchant secrets stored in plaintext');
    }
  }

  private async autoDisable(): Promise<void> {
    try {
      for (const d of await this.store.autoDisable(this.config.merchants.autoDisableAfterMs)) {
        this.log.warn({ merchant: d.id, failingSince: d.failingSince }, 'merchant disabled: no successful attempt for merchants.autoDisableAfter');
        this.onAutoDisabled(d);
      }
    } catch (err) {
      this.log.debug({ err: (err as Error).message }, 'auto-disable check failed');
    }
  }

  /**
   * History retention (DESIGN §11): drops the days past `history.retention`
   * (whole partitions, no DELETE) and adds the partitions of the coming days.
   */
  private async retain(): Promise<void> {
    try {
      const dropped = await this.history!.retain(this.config.history.retentionMs);
      if (dropped.length > 0) this.log.info({ days: dropped }, 'history: dropped days past the retention');
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'history retention job failed; it runs again at its next time');
    }
  }

  private async prune(): Promise<void> {
    await this.store.pruneSecrets().catch((err: unknown) => this.log.debug({ err: (err as Error).message }, 'secret pruning failed'));
  }

  /**
   * Stops the jobs, then the registry copy and the pools; idempotent. Waits
   * at most `CLOSE_WITHIN_MS` for PostgreSQL: a pool ends only once its
   * checked-out clients come back, and a statement waiting on a lock (or on
   * a host gone without a reset) would otherwise hold the master's exit.
   */
  close(): Promise<void> {
    this.closing ??= (async () => {
      this.closed = true;
      for (const t of this.tasks.splice(0)) await t.destroy();
      await settleWithin(Promise.allSettled([this.directory.close(), this.historyPool?.end(), this.pool.end()]), CLOSE_WITHIN_MS);
    })();
    return this.closing;
  }
}
