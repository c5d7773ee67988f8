// Entry point of a tier worker process (forked by the master with Node cluster).
import { createLoggers } from '../src/core/logger.js';
import { createWorkerMetrics } from '../src/core/metrics.js';
import { WORKER_ENV } from '../src/supervisor/control.js';
import { TierWorker } from '../src/tier/consumer.js';
import { readWorkerConfig, runManagedWorker, sendToMaster } from '../src/supervisor/worker-process.js';

const config = readWorkerConfig();
const tier = Number(process.env[WORKER_ENV.tier]);
const loggers = createLoggers(config.logLevel, { role: 'tier', tier });
const log = Object.assign(loggers.log, { flush: loggers.flush });
const metrics = createWorkerMetrics({ role: 'tier', tier: String(tier) });
const startPaused = process.env[WORKER_ENV.paused] === '1';
const worker = new TierWorker({ config, tier, logger: log, attemptLogger: loggers.attempt, metrics, startPaused, onState: (state) => sendToMaster({ type: 'state', state }) });
await runManagedWorker({ worker, role: 'tier', tier, config, log, metrics });
