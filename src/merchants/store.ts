/**
 * The merchant registry in PostgreSQL, as the admin API changes it. Every
 * change commits together with a `pg_notify`, so every process of every
 * daemon re-reads that merchant within about a second.
 */
import type pg from 'pg';
import type { SuccessCriteria } from '../core/config.js';
import { ErrorCodes, NotifyError } from '../core/errors.js';
import { inTransaction } from '../db/pool.js';
import { query } from '../db/sql.js';
import { isMerchantId, validateMerchantSettings, type MerchantSettings, type MerchantView } from './merchant.js';
import { fingerprint, generateSecret, openSecret, sealSecret } from './secrets.js';

/** A row of `merchants-all` / `merchants-page`. */
export interface MerchantRow {
  id: string;
  name: string;
  enabled: boolean;
  signing_scheme: MerchantSettings['signing'];
  allowed_origins: string[];
  max_concurrency: number | null;
  max_attempts: number | null;
  success: SuccessCriteria | null;
  disabled_reason: string | null;
  failing_since: Date | null;
  created_at: Date;
  updated_at: Date;
  secrets: { seq: number; secret?: string; encrypted?: boolean; fingerprint: string; createdAt: string; expiresAt: string | null }[];
}

const iso = (d: Date | string | null): string | null => (d === null ? null : new Date(d).toISOString());

/** The admin view of a row: settings, state and secret fingerprints, never a secret. */
export function viewOf(r: MerchantRow): MerchantView {
  return {
    id: r.id,
    name: r.name,
    enabled: r.enabled,
    signing: r.signing_scheme,
    allowedOrigins: r.allowed_origins,
    maxConcurrency: r.max_concurrency,
    maxAttempts: r.max_attempts,
    success: r.success,
    disabledReason: r.disabled_reason,
    failingSince: iso(r.failing_since),
    secrets: r.secrets.map((s) => ({ fingerprint: s.fingerprint, createdAt: iso(s.createdAt)!, expiresAt: iso(s.expiresAt) })),
    createdAt: iso(r.created_at)!,
    updatedAt: iso(r.updated_at)!,
  };
}

function notFound(id: string): NotifyError {
  return new NotifyError(ErrorCodes.MERCHANT_NOT_FOUND, `no merchant ${id}`);
}

export class MerchantStore {
  constructor(
    private readonly pool: pg.Pool,
    private readonly opts: { readonly key: Buffer | null; readonly tiers: number },
  ) {}

  /** One merchant's row, secret values stripped. */
  private async row(c: pg.ClientBase | pg.Pool, id: string): Promise<MerchantRow> {
    const r = await c.query<MerchantRow>(query('merchants-all'), [id]);
    if (r.rowCount === 0) throw notFound(id);
    return { ...r.rows[0]!, secrets: r.rows[0]!.secrets.map(({ secret: _s, encrypted: _e, ...rest }) => rest) };
  }

  private async addSecret(c: pg.ClientBase, id: string): Promise<string> {
    const secret = generateSecret();
    const sealed = sealSecret(secret, this.opts.key, id);
    await c.query(query('secret-insert'), [id, sealed.bytes, sealed.encrypted, fingerprint(secret)]);
    return secret;
  }

  /** How many secrets are stored in plaintext (made while NOTIFY_SECRETS_KEY was not set). */
  async countUnsealed(): Promise<number> {
    return (await this.pool.query<{ n: number }>(query('secrets-unsealed-count'))).rows[0]?.n ?? 0;
  }

  /**
   * Seals the secrets stored in plaintext (made while NOTIFY_SECRETS_KEY was
   * not set) with the key (`notifyd secrets seal`); returns how many.
   * Without it they stay readable in the database for as long as they sign
   * (a current secret: for ever). Refused (CONFIG_INVALID) when the key does
   * not open a secret sealed already: sealing with a wrong key would lock
   * them away for good. Every daemon must have the key first: one without
   * it cannot open them afterwards.
   */
  async sealStored(): Promise<number> {
    const key = this.opts.key;
    if (key === null) throw new NotifyError(ErrorCodes.CONFIG_INVALID, 'merchants.secretsKey: no NOTIFY_SECRETS_KEY to seal the secrets with', 'merchants.secretsKey');
    return inTransaction(this.pool, async (c) => {
      // A row held by another session (a rotation under way) fails this run instead of stalling it.
      await c.query(query('set-lock-timeout'), ['10s']);
      const sample = (await c.query<{ merchant_id: string; secret: Buffer }>(query('secret-sealed-sample'))).rows[0];
      if (sample !== undefined) {
        try {
          openSecret(sample.secret, true, key, sample.merchant_id);
        } catch {
          throw new NotifyError(ErrorCodes.CONFIG_INVALID, 'merchants.secretsKey: this NOTIFY_SECRETS_KEY does not open the secrets sealed already; nothing was sealed with it', 'merchants.secretsKey');
        }
      }
      const rows = (await c.query<{ merchant_id: string; seq: number; secret: Buffer }>(query('secrets-unsealed'))).rows;
      for (const r of rows) {
        const sealed = sealSecret(r.secret.toString('utf8'), key, r.merchant_id);
        await c.query(query('secret-seal'), [r.merchant_id, r.seq, sealed.bytes]);
      }
      return rows.length;
    });
  }

  /** Locks a merchant's row until the transaction ends (see `merchant-lock.sql`). */
  private async lock(c: pg.ClientBase, id: string): Promise<void> {
    if ((await c.query(query('merchant-lock'), [id])).rowCount === 0) throw notFound(id);
  }

  private settingsArgs(s: MerchantSettings): unknown[] {
    return [s.name, s.signing, s.allowedOrigins, s.maxConcurrency, s.maxAttempts, s.success === null ? null : JSON.stringify(s.success)];
  }

  /** Creates a merchant; a `standard` one gets its first secret, returned here and never again. */
  async create(input: unknown): Promise<{ merchant: MerchantView; secret: string | null }> {
    const id = (input as { id?: unknown } | null)?.id;
    if (!isMerchantId(id)) {
      throw new NotifyError(ErrorCodes.VALIDATION, 'id: is required: letters, digits and . _ : @ - (up to 128, starting with a letter or digit)', 'id');
    }
    const s = validateMerchantSettings(input, this.opts.tiers, null);
    return inTransaction(this.pool, async (c) => {
      const ins = await c.query(query('merchant-insert'), [id, ...this.settingsArgs(s)]);
      if (ins.rowCount === 0) throw new NotifyError(ErrorCodes.MERCHANT_EXISTS, `merchant ${id} exists already`);
      const secret = s.signing === 'standard' ? await this.addSecret(c, id) : null;
      await c.query(query('merchant-notify'), [id]);
      return { merchant: viewOf(await this.row(c, id)), secret };
    });
  }

  /** A page in id order after `cursor`; `nextCursor` is null on the last page. */
  async list(cursor: string | null, limit: number): Promise<{ merchants: MerchantView[]; nextCursor: string | null }> {
    const r = await this.pool.query<MerchantRow>(query('merchants-page'), [cursor, limit + 1]);
    const rows = r.rows.slice(0, limit);
    return { merchants: rows.map(viewOf), nextCursor: r.rows.length > limit ? rows[rows.length - 1]!.id : null };
  }

  async get(id: string): Promise<MerchantView> {
    return viewOf(await this.row(this.pool, id));
  }

  /**
   * Changes the given settings. A merchant switched to `standard` from
   * another signing gets a new secret (returned once), and any it kept from
   * before expires at once: a secret left behind when it was switched away
   * (perhaps because it leaked) must not sign again.
   */
  async update(id: string, patch: unknown): Promise<{ merchant: MerchantView; secret: string | null }> {
    return inTransaction(this.pool, async (c) => {
      await this.lock(c, id);
      const cur = viewOf(await this.row(c, id));
      const s = validateMerchantSettings(patch, this.opts.tiers, cur);
      await c.query(query('merchant-update'), [id, ...this.settingsArgs(s)]);
      const fresh = s.signing === 'standard' && (cur.signing !== 'standard' || cur.secrets.length === 0);
      if (fresh && cur.secrets.length > 0) await c.query(query('secret-expire-current'), [id, 0]);
      const secret = fresh ? await this.addSecret(c, id) : null;
      await c.query(query('merchant-notify'), [id]);
      return { merchant: viewOf(await this.row(c, id)), secret };
    });
  }

  async remove(id: string): Promise<void> {
    await inTransaction(this.pool, async (c) => {
      if ((await c.query(query('merchant-delete'), [id])).rowCount === 0) throw notFound(id);
      await c.query(query('merchant-notify'), [id]);
    });
  }

  /**
   * Rotates a `standard` merchant's secret: the current one keeps signing for
   * `graceMs` (both signatures are sent meanwhile), the new one is returned once.
   */
  async rotate(id: string, graceMs: number): Promise<{ merchant: MerchantView; secret: string }> {
    return inTransaction(this.pool, async (c) => {
      await this.lock(c, id);
      const cur = viewOf(await this.row(c, id));
      if (cur.signing !== 'standard') throw new NotifyError(ErrorCodes.VALIDATION, `signing: merchant ${id} signs with ${cur.signing}: only standard merchants have secrets`, 'signing');
      await c.query(query('secret-expire-current'), [id, graceMs / 1000]);
      const secret = await this.addSecret(c, id);
      await c.query(query('merchant-notify'), [id]);
      return { merchant: viewOf(await this.row(c, id)), secret };
    });
  }

  async setEnabled(id: string, enabled: boolean, reason: string | null): Promise<MerchantView> {
    return inTransaction(this.pool, async (c) => {
      if ((await c.query(query('merchant-set-enabled'), [id, enabled, reason])).rowCount === 0) throw notFound(id);
      await c.query(query('merchant-notify'), [id]);
      return viewOf(await this.row(c, id));
    });
  }

  /** Deletes secrets past their grace period; tells the processes of the merchants concerned. */
  async pruneSecrets(): Promise<string[]> {
    return inTransaction(this.pool, async (c) => {
      const ids = [...new Set((await c.query<{ merchant_id: string }>(query('secrets-prune'))).rows.map((r) => r.merchant_id))];
      for (const id of ids) await c.query(query('merchant-notify'), [id]);
      return ids;
    });
  }

  /** Disables merchants failing for longer than `afterMs`; each is returned to one caller only. */
  async autoDisable(afterMs: number): Promise<{ id: string; failingSince: string }[]> {
    return inTransaction(this.pool, async (c) => {
      const r = await c.query<{ id: string; failing_since: Date }>(query('merchants-auto-disable'), [afterMs / 1000, `no successful attempt for ${Math.round(afterMs / 1000)} s (auto-disabled)`]);
      for (const row of r.rows) await c.query(query('merchant-notify'), [row.id]);
      return r.rows.map((row) => ({ id: row.id, failingSince: iso(row.failing_since)! }));
    });
  }
}
