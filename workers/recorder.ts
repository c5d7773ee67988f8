// Entry point of the history recorder process (forked by the master with Node cluster when history is on).
// First: a SIGHUP while the other modules load must not end the worker (early-hangup.ts).
import '../src/supervisor/early-hangup.js';
import { createLogger } from '../src/core/logger.js';
import { createRecorderMetrics, createWorkerMetrics } from '../src/core/metrics.js';
import { HistoryRecorder } from '../src/history/recorder.js';
import { receiveWorkerConfig, runManagedWorker, sendToMaster } from '../src/supervisor/worker-process.js';

const { config, early } = await receiveWorkerConfig();
const log = createLogger(config.logLevel, { role: 'recorder' });
const metrics = createWorkerMetrics({ role: 'recorder', tier: '' });
const worker = new HistoryRecorder({ config, logger: log, metrics: createRecorderMetrics(metrics.registry), onBrokerGiveUp: () => metrics.brokerGiveUps.inc({ role: 'recorder' }), onState: (state) => sendToMaster({ type: 'state', state }) });
await runManagedWorker({ worker, role: 'recorder', tier: null, config, log, metrics, early });
