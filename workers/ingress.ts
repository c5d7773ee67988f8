// Entry point of the ingress worker process (forked by the master with Node cluster).
// First: a SIGHUP while the other modules load must not end the worker (early-hangup.ts).
import '../src/supervisor/early-hangup.js';
import { IngressWorker } from '../src/ingress/worker.js';
import { createLogger } from '../src/core/logger.js';
import { createWorkerMetrics, startKnownSeries } from '../src/core/metrics.js';
import { receiveWorkerConfig, runManagedWorker, sendToMaster } from '../src/supervisor/worker-process.js';

const { config, early } = await receiveWorkerConfig();
const log = createLogger(config.logLevel, { role: 'ingress' });
const metrics = createWorkerMetrics({ role: 'ingress', tier: '' });
startKnownSeries(metrics, 'ingress');
const worker = new IngressWorker(config, log, metrics, (state) => sendToMaster({ type: 'state', state }));
await runManagedWorker({ worker, role: 'ingress', tier: null, config, log, metrics, early });
