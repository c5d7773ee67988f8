// What the history recorder process runs once its entry (workers/recorder.ts) holds SIGHUP: loaded after it, dynamically.
import { createLogger } from '../core/logger.js';
import { createRecorderMetrics, createWorkerMetrics } from '../core/metrics.js';
import { HistoryRecorder } from './recorder.js';
import { receiveWorkerConfig, runManagedWorker, sendToMaster } from '../supervisor/worker-process.js';

const { config, early } = await receiveWorkerConfig();
const log = createLogger(config.logLevel, { role: 'recorder' });
const metrics = createWorkerMetrics({ role: 'recorder', tier: '' });
const worker = new HistoryRecorder({ config, logger: log, metrics: createRecorderMetrics(metrics.registry), onBrokerGiveUp: () => metrics.brokerGiveUps.inc({ role: 'recorder' }), onState: (state) => sendToMaster({ type: 'state', state }) });
await runManagedWorker({ worker, role: 'recorder', tier: null, config, log, metrics, early });
