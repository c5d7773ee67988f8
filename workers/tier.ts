// Entry point of a tier worker process (forked by the master with Node cluster).
// First: a SIGHUP while the other modules load must not end the worker (early-hangup.ts).
import '../src/supervisor/early-hangup.js';
import { createLoggers } from '../src/core/logger.js';
import { createWorkerMetrics, startKnownSeries } from '../src/core/metrics.js';
import { TierWorker } from '../src/tier/consumer.js';
import { receiveWorkerConfig, runManagedWorker, sendToMaster } from '../src/supervisor/worker-process.js';

const { config, tier: tierOrNull, startPaused, early } = await receiveWorkerConfig();
const tier = tierOrNull ?? 0;
const loggers = createLoggers(config.logLevel, { role: 'tier', tier });
const log = Object.assign(loggers.log, { flush: loggers.flush });
const metrics = createWorkerMetrics({ role: 'tier', tier: String(tier) });
startKnownSeries(metrics, 'tier');
const worker = new TierWorker({ config, tier, logger: log, attemptLogger: loggers.attempt, metrics, startPaused, onState: (state) => sendToMaster({ type: 'state', state }) });
await runManagedWorker({ worker, role: 'tier', tier, config, log, metrics, early });
