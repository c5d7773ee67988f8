// What the ingress worker process runs once its entry (workers/ingress.ts) holds SIGHUP: loaded after it, dynamically.
import { IngressWorker } from './worker.js';
import { createLogger } from '../core/logger.js';
import { createWorkerMetrics, startKnownSeries } from '../core/metrics.js';
import { receiveWorkerConfig, runManagedWorker, sendToMaster } from '../supervisor/worker-process.js';

const { config, early } = await receiveWorkerConfig();
const log = createLogger(config.logLevel, { role: 'ingress' });
const metrics = createWorkerMetrics({ role: 'ingress', tier: '' });
startKnownSeries(metrics, 'ingress');
const worker = new IngressWorker(config, log, metrics, (state) => sendToMaster({ type: 'state', state }));
await runManagedWorker({ worker, role: 'ingress', tier: null, config, log, metrics, early });
