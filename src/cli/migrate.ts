/** `notifyd migrate`: brings the database up to the migrations in sql/migrations (the master also does it at start). */
import { redactUrl } from '../core/config-model.js';
import { createLogger } from '../core/logger.js';
import { migrate } from '../db/migrate.js';
import { createDbPool } from '../db/pool.js';
import { loadConfigOrExit } from '../supervisor/master.js';
import { EX_CONFIG } from '../core/config.js';
import { str, type Values } from './args.js';

export async function migrateCommand(values: Values): Promise<number> {
  // Migrating never signs: it needs neither the signing secrets nor the key file.
  const config = loadConfigOrExit(str(values, 'config') ?? null, { checkSigning: false });
  if (config.database.url === null) {
    // The configuration lacks it (EX_CONFIG), not the command line.
    process.stderr.write('notifyd migrate: no database configured (NOTIFY_DATABASE_URL or database.url)\n');
    return EX_CONFIG;
  }
  const log = createLogger(config.logLevel, { role: 'migrate' });
  const pool = createDbPool(config.database.url, { max: 1, name: 'notifyd migrate', log });
  try {
    const applied = await migrate(pool, log);
    process.stdout.write(`${JSON.stringify({ database: redactUrl(config.database.url), applied })}\n`);
    return 0;
  } finally {
    await pool.end().catch(() => undefined);
    log.flush();
  }
}
