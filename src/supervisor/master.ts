import { existsSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { AdminServer } from '../admin/server.js';
import { EX_CONFIG, loadConfig, type Config, type ParseOptions } from '../core/config.js';
import { ErrorCodes, hasCode, toErrorData } from '../core/errors.js';
import { createLogger } from '../core/logger.js';
import { takeEarlyHangup } from './early-hangup.js';
import { startupWarnings, stopTimeoutMs } from './startup-checks.js';
import { Supervisor } from './supervisor.js';

/** Finds a worker entry next to this module, compiled (`.js`) or under tsx (`.ts`). */
function workerEntry(name: string): string {
  const here = dirname(fileURLToPath(import.meta.url));
  const js = resolve(here, '..', '..', 'workers', `${name}.js`);
  return existsSync(js) ? js : resolve(here, '..', '..', 'workers', `${name}.ts`);
}

/** Loads config or ends the process with one clear line and exit 78. */
export function loadConfigOrExit(configFile: string | null, opts: ParseOptions = {}): Config {
  try {
    return loadConfig({ configFile, ...opts });
  } catch (err) {
    if (hasCode(err, ErrorCodes.CONFIG_INVALID)) {
      process.stderr.write(`notifyd: ${(err as Error).message}\n`);
      process.exit(EX_CONFIG);
    }
    throw err;
  }
}

/**
 * `notifyd start`: the master process. Binds the admin port, then supervises
 * the workers; SIGTERM/SIGINT drain, SIGHUP reloads the config file.
 */
export async function runMaster(configFile: string | null): Promise<void> {
  const config = loadConfigOrExit(configFile);
  const log = createLogger(config.logLevel, { role: 'master' });
  const startup = { stopTimeoutMs: await stopTimeoutMs(process.env) };
  for (const line of startupWarnings(config, startup)) log.warn(line);
  let admin: AdminServer | null = null;
  const supervisor = new Supervisor({
    config,
    logger: log,
    tierEntry: workerEntry('tier'),
    ingressEntry: workerEntry('ingress'),
    recorderEntry: workerEntry('recorder'),
    reloadConfig: () => loadConfig({ configFile }),
    startup,
    onExit: (code) => {
      void (admin?.close() ?? Promise.resolve()).finally(() => {
        log.flush();
        process.exit(code);
      });
    },
  });
  admin = new AdminServer(config.admin, () => supervisor.currentConfig.admin, supervisor, log);
  try {
    supervisor.setAdminPort(await admin.listen());
  } catch (err) {
    log.fatal({ err: toErrorData(err), port: config.admin.port, host: config.admin.host }, 'cannot bind the admin port');
    log.flush();
    process.exit(1);
  }
  process.on('SIGTERM', () => supervisor.shutdown('SIGTERM'));
  process.on('SIGINT', () => supervisor.shutdown('SIGINT'));
  const reload = (): void => {
    try {
      supervisor.reload();
    } catch (err) {
      log.error({ err: toErrorData(err) }, 'reload failed; keeping the running config');
    }
  };
  process.on('SIGHUP', reload);
  // One that came while the process started: the file may have changed after it was read.
  if (takeEarlyHangup()) {
    log.info('SIGHUP while starting: reloading');
    reload();
  }
  await supervisor.start();
}
