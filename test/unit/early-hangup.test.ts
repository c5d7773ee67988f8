// A SIGHUP while a daemon process is still loading its modules (systemctl
// kill -s HUP to the group, a reload right after a start) must not end it
// (supervisor review, stop 60).
import assert from 'node:assert/strict';
import { fork } from 'node:child_process';
import cluster from 'node:cluster';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { commandOf } from '../../src/supervisor/early-hangup.js';

const PROBE = fileURLToPath(new URL('./fixtures/hangup-probe.ts', import.meta.url));

/** Forks the probe with `args`, sends SIGHUP once its hold is in place (the rest still loading); how it ended and what it said. */
function probe(args: string[]): Promise<{ code: number | null; signal: NodeJS.Signals | null; pending: boolean | null }> {
  return new Promise((resolve, reject) => {
    const child = fork(PROBE, args, { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
    let pending: boolean | null = null;
    child.on('message', (m: unknown) => {
      if (m === 'held') child.kill('SIGHUP');
      else pending = (m as { pending: boolean }).pending;
    });
    child.on('error', reject);
    child.on('exit', (code, signal) => resolve({ code, signal, pending }));
  });
}

describe('early SIGHUP', () => {
  it('`notifyd start` holds it (the master reloads once it can); other commands keep the default and end', async () => {
    assert.deepEqual(await probe(['start']), { code: 0, signal: null, pending: true });
    assert.deepEqual(await probe(['ctl']), { code: null, signal: 'SIGHUP', pending: null });
  });

  it('a worker (forked by cluster) holds it too', async () => {
    cluster.setupPrimary({ exec: PROBE, execArgv: ['--import', 'tsx'], stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
    const w = cluster.fork();
    const got = await new Promise<{ code: number | null; signal: string | null; pending: boolean | null }>((resolve) => {
      let pending: boolean | null = null;
      w.on('message', (m: unknown) => {
        if (m === 'held') w.process.kill('SIGHUP');
        else pending = (m as { pending: boolean }).pending;
      });
      w.on('exit', (code, signal) => resolve({ code, signal, pending }));
    });
    assert.deepEqual(got, { code: 0, signal: null, pending: true });
  });

  it('every process entry statically imports it alone, and the rest dynamically after it (ESM links a static graph whole before running any of it)', () => {
    for (const entry of ['workers/tier.ts', 'workers/ingress.ts', 'workers/recorder.ts', 'src/cli.ts']) {
      const text = readFileSync(fileURLToPath(new URL(`../../${entry}`, import.meta.url)), 'utf8');
      const statics = text.split('\n').filter((l) => /^import\s/.test(l));
      assert.equal(statics.length, 1, entry);
      assert.match(statics[0]!, /^import '[./]+(src\/)?supervisor\/early-hangup\.js';$/, entry);
      assert.match(text, /^await import\('[^']+'\);$/m, entry);
    }
  });

  it('finds the command past options: `notifyd --config f start` is the daemon too', () => {
    assert.equal(commandOf(['start']), 'start');
    assert.equal(commandOf(['--config', 'f.json', 'start']), 'start');
    assert.equal(commandOf(['--config=f.json', 'start']), 'start');
    assert.equal(commandOf(['ctl', 'status']), 'ctl');
    assert.equal(commandOf(['--help']), undefined);
  });
});
