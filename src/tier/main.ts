// What a tier worker process runs once its entry (workers/tier.ts) holds SIGHUP: loaded after it, dynamically.
import { createLoggers } from '../core/logger.js';
import { createWorkerMetrics, startKnownSeries } from '../core/metrics.js';
import { TierWorker } from './consumer.js';
import { receiveWorkerConfig, runManagedWorker, sendToMaster } from '../supervisor/worker-process.js';

const { config, tier: tierOrNull, startPaused, early } = await receiveWorkerConfig();
const tier = tierOrNull ?? 0;
const loggers = createLoggers(config.logLevel, { role: 'tier', tier });
const log = Object.assign(loggers.log, { flush: loggers.flush });
const metrics = createWorkerMetrics({ role: 'tier', tier: String(tier) });
startKnownSeries(metrics, 'tier');
const worker = new TierWorker({ config, tier, logger: log, attemptLogger: loggers.attempt, metrics, startPaused, onState: (state) => sendToMaster({ type: 'state', state }) });
await runManagedWorker({ worker, role: 'tier', tier, config, log, metrics, early });
