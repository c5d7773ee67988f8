// The master without a broker or workers: what it applies to itself and what it exports from the start.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import pino from 'pino';
import { loadConfig } from '../../src/core/config.js';
import type { Logger } from '../../src/core/logger.js';
import { Supervisor } from '../../src/supervisor/supervisor.js';

function supervisor(env: Record<string, string>, next: Record<string, string> = {}): { supervisor: Supervisor; logger: Logger } {
  const logger = pino({ level: 'info' }, pino.destination({ dest: '/dev/null', sync: true })) as unknown as Logger;
  const s = new Supervisor({
    config: loadConfig({ env }),
    logger,
    tierEntry: 'unused',
    ingressEntry: 'unused',
    recorderEntry: 'unused',
    reloadConfig: () => loadConfig({ env: { ...env, ...next } }),
    onExit: () => undefined,
  });
  return { supervisor: s, logger };
}

describe('supervisor (no broker, no workers)', () => {
  it('exports each tier\'s restart counter from 0, before any restart (increase() would miss the first)', async () => {
    const { supervisor: s } = supervisor({ NOTIFY_SCHEDULE: '0s,1s,3s', NOTIFY_PREFIX: 'p' });
    const text = await s.metricsText();
    for (const tier of ['0', '1', '2']) assert.match(text, new RegExp(`^notify_worker_restarts_total\\{tier="${tier}"\\} 0$`, 'm'));
  });

  it("applies a new log level to the master's own logger, as each worker does to its own", () => {
    const { supervisor: s, logger } = supervisor({ NOTIFY_SCHEDULE: '0s,1s', NOTIFY_PREFIX: 'p' }, { NOTIFY_LOG_LEVEL: 'debug' });
    const r = s.reload();
    assert.equal(r.applied, true);
    assert.equal(logger.level, 'debug');
    assert.equal(s.currentConfig.logLevel, 'debug');
  });
});
