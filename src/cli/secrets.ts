/**
 * `notifyd secrets seal`: seals the merchant secrets stored in plaintext
 * (made before NOTIFY_SECRETS_KEY was set) with the key. A step of its own,
 * not done at start: every daemon sharing the database must have the key
 * first, since one without it cannot open a sealed secret.
 */
import { createLogger } from '../core/logger.js';
import { EX_CONFIG } from '../core/config.js';
import { secretsKeyBytes } from '../core/config-model.js';
import { hasCode, ErrorCodes } from '../core/errors.js';
import { createDbPool } from '../db/pool.js';
import { MerchantStore } from '../merchants/store.js';
import { loadConfigOrExit } from '../supervisor/master.js';
import { str, usage, type Values } from './args.js';

export async function secretsCommand(args: readonly string[], values: Values): Promise<number> {
  if (args[0] !== 'seal' || args.length > 1) return usage('usage: notifyd secrets seal [--config FILE]');
  // Sealing never signs: it needs the secrets key, not the signing secrets.
  const config = loadConfigOrExit(str(values, 'config') ?? null, { checkSigning: false });
  const key = config.merchants.secretsKey === null ? null : secretsKeyBytes(config.merchants.secretsKey);
  if (config.database.url === null || key === null) {
    process.stderr.write('notifyd secrets seal: needs a database (NOTIFY_DATABASE_URL) and NOTIFY_SECRETS_KEY\n');
    return EX_CONFIG;
  }
  const log = createLogger(config.logLevel, { role: 'secrets' });
  const pool = createDbPool(config.database.url, { max: 1, name: 'notifyd secrets seal', log });
  try {
    const sealed = await new MerchantStore(pool, { key, tiers: config.scheduleMs.length }).sealStored();
    process.stdout.write(`${JSON.stringify({ sealed })}\n`);
    return 0;
  } catch (err) {
    if (!hasCode(err, ErrorCodes.CONFIG_INVALID)) throw err;
    process.stderr.write(`notifyd secrets seal: ${(err as Error).message}\n`);
    return EX_CONFIG;
  } finally {
    await pool.end().catch(() => undefined);
    log.flush();
  }
}
