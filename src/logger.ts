import pino from 'pino';
import type { Logger } from 'pino';
import type { LogLevel } from './config.js';

export type { Logger };

/**
 * Paths pino blanks out: secrets must never reach a log line, whatever object
 * a caller hands over.
 */
export const REDACT_PATHS = [
  'password', '*.password', 'secret', '*.secret', 'secrets', '*.secrets', 'token', '*.token',
  'authorization', '*.authorization', 'headers.authorization', 'headers["webhook-signature"]',
  '*.headers.authorization', '*.headers["webhook-signature"]', 'amqpUrl', '*.amqpUrl',
  'signing.secrets', 'admin.token', 'ingress.token', 'config.signing.secrets', 'config.admin.token',
];

/**
 * One pino logger per process, JSON lines on stdout. Writes are asynchronous
 * (buffered) so the attempt hot path never waits on the pipe; `flush()` must be
 * called before exit.
 */
export function createLogger(level: LogLevel, bindings: Record<string, unknown>): Logger & { flush: () => void } {
  const dest = pino.destination({ dest: 1, sync: false });
  const logger = pino(
    {
      level,
      base: { pid: process.pid, ...bindings },
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    dest,
  );
  const flush = (): void => {
    try {
      dest.flushSync();
    } catch {
      /* stdout already closed */
    }
  };
  return Object.assign(logger, { flush });
}
