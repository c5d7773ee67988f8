import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { mkdtempSync, openSync, readFileSync, rmSync, closeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { createLoggers } from '../../src/core/logger.js';

/** Counts the asynchronous writes sonic-boom sends to `fd` (it calls `fs.write` on the shared module). */
function countWrites(fd: number): { count: () => number; restore: () => void } {
  const original = fs.write;
  let n = 0;
  (fs as { write: unknown }).write = function (this: unknown, ...args: unknown[]) {
    if (args[0] === fd) n++;
    return (original as (...a: unknown[]) => unknown).apply(this, args);
  };
  return { count: () => n, restore: () => void ((fs as { write: unknown }).write = original) };
}

async function until(what: string, fn: () => boolean, ms = 3000): Promise<void> {
  const end = Date.now() + ms;
  while (!fn()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

describe('process loggers', () => {
  it('write a buffered line out within the flush interval, and send no write while nothing is logged', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'notifyd-log-'));
    const file = join(dir, 'out.log');
    const fd = openSync(file, 'a');
    const writes = countWrites(fd);
    try {
      const { log, attempt } = createLoggers('info', { role: 'test' }, { fd, flushEveryMs: 20 });
      await sleep(200);
      assert.equal(writes.count(), 0, 'an idle logger sent writes');

      log.info({ secret: 'hunter2', merchant: 'm1' }, 'hello');
      attempt.info({ id: 'n1', status: 200 }, 'attempt');
      await until('both lines in the file', () => readFileSync(file, 'utf8').split('\n').filter(Boolean).length === 2);
      const lines = readFileSync(file, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
      assert.equal(lines[0]!.msg, 'hello');
      assert.equal(lines[0]!.secret, '[redacted]');
      assert.equal(lines[0]!.role, 'test');
      assert.equal(lines[1]!.msg, 'attempt');
      assert.ok(writes.count() >= 1);

      await sleep(100);
      const after = writes.count();
      await sleep(200);
      assert.equal(writes.count(), after, 'writes went on after the buffer was written out');
    } finally {
      writes.restore();
      closeSync(fd);
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
