import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { createLoggers } from '../../src/core/logger.js';
import { waitFor } from '../../bench/daemon-process.js';

/**
 * Counts the asynchronous writes sonic-boom sends to `fd` (it calls `fs.write`
 * on the shared module); with `slowMs`, each one reports completion that much
 * later, as a pipe the reader is slow to empty would.
 */
function countWrites(fd: number, slowMs = 0): { count: () => number; restore: () => void } {
  const original = fs.write;
  let n = 0;
  (fs as { write: unknown }).write = function (this: unknown, ...args: unknown[]) {
    if (args[0] !== fd) return (original as (...a: unknown[]) => unknown).apply(this, args);
    n++;
    const done = args[args.length - 1] as (...r: unknown[]) => void;
    args[args.length - 1] = (...r: unknown[]) => void setTimeout(() => done(...r), slowMs);
    return (original as (...a: unknown[]) => unknown).apply(this, args);
  };
  return { count: () => n, restore: () => void ((fs as { write: unknown }).write = original) };
}

/** A temporary file to log into. */
function logFile(): { file: string; fd: number; lines: () => Record<string, unknown>[]; remove: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'notifyd-log-'));
  const file = join(dir, 'out.log');
  const fd = openSync(file, 'a');
  return {
    file,
    fd,
    lines: () => readFileSync(file, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>),
    // The fd stays open until the process exits: the logger's timer lives as long as the process, and
    // a write it sends to a closed fd (a late flush after the last completion) is an error pino rethrows.
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}

/** The project's poll (bench/daemon-process.ts), at the 10-ms grain these timings need. */
const until = (what: string, fn: () => boolean, ms = 3000): Promise<void> => waitFor(fn, ms, what, 10);

describe('process loggers', () => {
  it('write a buffered line out within the flush interval, and send no write while nothing is logged', async () => {
    const out = logFile();
    const writes = countWrites(out.fd);
    const { log, attempt, flush } = createLoggers('info', { role: 'test' }, { fd: out.fd, flushEveryMs: 20 });
    try {
      await sleep(200);
      assert.equal(writes.count(), 0, 'an idle logger sent writes');

      log.info({ secret: 'hunter2', merchant: 'm1' }, 'hello');
      attempt.info({ id: 'n1', status: 200 }, 'attempt');
      await until('both lines in the file', () => out.lines().length === 2);
      const lines = out.lines();
      assert.equal(lines[0]!.msg, 'hello');
      assert.equal(lines[0]!.secret, '[redacted]');
      assert.equal(lines[0]!.role, 'test');
      assert.equal(lines[1]!.msg, 'attempt');
      assert.ok(writes.count() >= 1);

      // After the lines, at most one empty write (the flush the last completion re-arms); then none.
      let settled = writes.count();
      let lastChange = Date.now();
      await until('writes to settle', () => {
        const now = writes.count();
        const quiet = now === settled && Date.now() - lastChange >= 300;
        if (now !== settled) (settled = now), (lastChange = Date.now());
        return quiet;
      }, 5000);
      assert.ok(writes.count() <= 3, `${writes.count()} writes for two lines`);
      await sleep(300);
      assert.equal(writes.count(), settled, 'writes went on after the buffer was written out');
    } finally {
      writes.restore();
      // Whatever is still buffered goes out now (the file is removed; its fd stays open).
      flush();
      out.remove();
    }
  });

  it('write out a line logged while an earlier write was still in flight, with nothing logged after it', async () => {
    const out = logFile();
    // Each write completes 150 ms late: the flush timer (20 ms) comes round while it is in flight.
    const writes = countWrites(out.fd, 150);
    const { log, flush } = createLoggers('info', { role: 'test' }, { fd: out.fd, flushEveryMs: 20 });
    try {
      log.info('first');
      await until('the first write under way', () => writes.count() === 1);
      log.info('second');
      // A flush now finds the first write in flight and does nothing; the second line must still go out.
      await until('both lines in the file', () => out.lines().length === 2);
      assert.deepEqual(out.lines().map((l) => l.msg), ['first', 'second']);
    } finally {
      writes.restore();
      // Whatever is still buffered goes out now (the file is removed; its fd stays open).
      flush();
      out.remove();
    }
  });
});
