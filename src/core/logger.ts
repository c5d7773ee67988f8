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
  'tokens', '*.tokens', 'ingress.tokens', 'config.ingress.tokens', 'config.ingress.token', 'config.amqpUrl',
  'secretsKey', '*.secretsKey', 'config.merchants.secretsKey', 'database.url', 'config.database.url', 'databaseUrl', '*.databaseUrl',
];

/** How often buffered log lines are written out at the latest. */
const FLUSH_EVERY_MS = 200;

/** Where a process's log lines go (tests point them at a file). */
export interface LogOutput {
  /** File descriptor the lines are written to; stdout by default. */
  readonly fd?: number;
  /** The longest a buffered line waits before it is written; 200 ms by default. */
  readonly flushEveryMs?: number;
}

export interface ProcessLoggers {
  /** General logger, with redaction. */
  readonly log: Logger;
  /**
   * The per-attempt line: its fields are fixed and known safe (id, tier,
   * attempt, status, ms, outcome), so it skips redaction, which the profile
   * showed as the largest logging cost on the hot path.
   */
  readonly attempt: Logger;
  /** Writes out whatever is buffered; call before exit. */
  flush(): void;
}

/**
 * The pino loggers of one process, JSON lines on stdout. Writes are buffered
 * and asynchronous so the hot path never waits on the pipe; a timer flushes
 * them at least every 200 ms, and only when a line was logged or a write went
 * out since the last flush: sonic-boom's `flush()` on an empty buffer still
 * sends an empty write through libuv's thread pool, which woke every idle
 * process five times a second for nothing.
 */
export function createLoggers(level: LogLevel, bindings: Record<string, unknown>, output: LogOutput = {}): ProcessLoggers {
  // 4 KiB batches: larger ones measured slower per line (5.5 µs at 32 KiB vs
  // 3 µs), the pending string growing faster than the saved writes pay back.
  const dest = pino.destination({ dest: output.fd ?? 1, sync: false, minLength: 4096 });
  // Set by every line, and by every write that moved bytes: a flush that comes
  // while a write is in flight does nothing, and lines logged meanwhile would
  // otherwise sit below `minLength` until the next line. The empty write that
  // a flush of nothing makes moves no bytes, so an idle process stays asleep.
  let logged = false;
  dest.on('write', (n: number) => {
    if (n > 0) logged = true;
  });
  const common = {
    level,
    base: { pid: process.pid, ...bindings },
    formatters: { level: (label: string) => ({ level: label }) },
    hooks: {
      streamWrite: (line: string): string => {
        logged = true;
        return line;
      },
    },
  };
  const log = pino({ ...common, redact: { paths: REDACT_PATHS, censor: '[redacted]' } }, dest);
  const attempt = pino(common, dest);
  const flushSync = (): void => {
    try {
      dest.flushSync();
    } catch {
      /* not ready yet, or stdout already closed */
    }
  };
  setInterval(() => {
    if (!logged) return;
    try {
      logged = false;
      dest.flush();
    } catch {
      logged = true;
      /* not ready yet */
    }
  }, output.flushEveryMs ?? FLUSH_EVERY_MS).unref();
  return { log, attempt, flush: flushSync };
}

/** A single redacting logger with `flush()` (the master, the ingress and tools). */
export function createLogger(level: LogLevel, bindings: Record<string, unknown>): Logger & { flush: () => void } {
  const l = createLoggers(level, bindings);
  return Object.assign(l.log, { flush: l.flush });
}
