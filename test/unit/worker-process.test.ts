// The worker's side of the IPC pipe, in a real child process: a drain the
// master sent before the worker had its config (the master began to drain
// while the worker was still loading) is not lost; the worker exits without
// starting, instead of starting and consuming until the master repeats it.
import assert from 'node:assert/strict';
import { fork, type ChildProcess } from 'node:child_process';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { loadConfig } from '../../src/core/config.js';
import { parseWorkerMessage, wrap, type MasterMessage, type WorkerMessage } from '../../src/supervisor/control.js';

const FIXTURE = fileURLToPath(new URL('./fixtures/managed-worker.ts', import.meta.url));
const config = loadConfig({ env: {} });

/** Runs the fixture; `onMessage` answers what it says, as the master would. */
async function run(onMessage: (msg: WorkerMessage, send: (m: MasterMessage) => void) => void): Promise<{ said: WorkerMessage[]; stdout: string[]; code: number | null }> {
  const child: ChildProcess = fork(FIXTURE, [], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'pipe', 'inherit', 'ipc'] });
  const said: WorkerMessage[] = [];
  let out = '';
  child.stdout!.on('data', (b: Buffer) => (out += b.toString()));
  const send = (m: MasterMessage): void => void child.send(wrap(m));
  child.on('message', (raw) => {
    const msg = parseWorkerMessage(raw);
    if (!msg) return;
    said.push(msg);
    onMessage(msg, send);
  });
  // A worker that never exits is the failure this looks for: killed after 10 s, its exit code is null.
  const killer = setTimeout(() => child.kill('SIGKILL'), 10_000);
  // 'close', not 'exit': its stdout and IPC read to the end.
  const code = await new Promise<number | null>((resolve) => child.on('close', (c) => resolve(c)));
  clearTimeout(killer);
  return { said, stdout: out.split('\n').filter(Boolean), code };
}

describe('worker process: control messages before the worker listens', () => {
  it('a drain sent before init: the worker says drained and exits without starting', async () => {
    const r = await run((msg, send) => {
      if (msg.type === 'hello') {
        send({ type: 'drain', deadlineMs: Date.now() + 5000 });
        send({ type: 'init', config });
      }
    });
    assert.equal(r.code, 0);
    assert.deepEqual(r.stdout, [], 'neither started nor drained: it took nothing');
    assert.deepEqual(r.said.map((m) => m.type), ['hello', 'drained']);
  });

  it('a pause sent before init is kept (the latest of pause and resume): the worker starts paused', async () => {
    const r = await run((msg, send) => {
      if (msg.type === 'hello') {
        send({ type: 'resume' });
        send({ type: 'pause' });
        send({ type: 'stats', requestId: 1 });
        send({ type: 'init', config });
      }
      if (msg.type === 'ready') send({ type: 'drain', deadlineMs: Date.now() + 5000 });
    });
    assert.equal(r.code, 0);
    assert.deepEqual(r.stdout, ['pause', 'start', 'drain'], 'paused before it started, once');
    assert.deepEqual(r.said.map((m) => m.type), ['hello', 'ready', 'drained'], 'the stats request before init is not answered');
  });

  it("notifyd's own ports sent with init reach the worker before it starts (its first delivery must refuse them)", async () => {
    // In init itself: a ports message sent right after it was, under load, read once the worker had started.
    const r = await run((msg, send) => {
      if (msg.type === 'hello') send({ type: 'init', config, ports: [9464, 8080] });
      if (msg.type === 'ready') send({ type: 'drain', deadlineMs: Date.now() + 5000 });
    });
    assert.equal(r.code, 0);
    assert.deepEqual(r.stdout, ['ports 9464,8080', 'start', 'drain']);
  });

  it('without an early drain it starts, says ready, and drains when asked', async () => {
    const r = await run((msg, send) => {
      if (msg.type === 'hello') send({ type: 'init', config });
      if (msg.type === 'ready') send({ type: 'drain', deadlineMs: Date.now() + 5000 });
    });
    assert.equal(r.code, 0);
    assert.deepEqual(r.stdout, ['start', 'drain']);
    assert.deepEqual(r.said.map((m) => m.type), ['hello', 'ready', 'drained']);
  });
});
