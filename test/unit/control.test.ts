import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { loadConfig } from '../../src/core/config.js';
import {
  CONTROL_TAG,
  WORKER_ENV,
  assertNever,
  parseMasterMessage,
  parseWorkerMessage,
  wrap,
  type MasterMessage,
  type WorkerMessage,
} from '../../src/supervisor/control.js';
import { ErrorCodes, NotifyError, hasCode, toErrorData } from '../../src/core/errors.js';
import { tokenMatches } from '../../src/core/http-util.js';

/** Sends a value through what the cluster IPC pipe does to it (JSON serialisation). */
const overIpc = <T>(v: T): unknown => JSON.parse(JSON.stringify(v));

const config = loadConfig({ env: {}, configFile: null });

const MASTER_MESSAGES: MasterMessage[] = [
  { type: 'init', config },
  { type: 'pause' },
  { type: 'resume' },
  { type: 'drain', deadlineMs: 25_000 },
  { type: 'reload', config },
  { type: 'stats', requestId: 7 },
  { type: 'ports', ports: [9464, 8080] },
];

const WORKER_MESSAGES: WorkerMessage[] = [
  { type: 'hello' },
  { type: 'ready', role: 'tier', tier: 2, state: 'running' },
  { type: 'ready', role: 'ingress', tier: null, state: 'starting', port: 8080 },
  {
    type: 'stats',
    requestId: 7,
    stats: { role: 'tier', tier: 0, state: 'running', inflight: 3, brokerNode: '127.0.0.1:5672', metrics: [{ name: 'notify_inflight', type: 'gauge', values: [] }] },
  },
  { type: 'state', state: 'paused' },
  { type: 'drained' },
  { type: 'reloaded', restartRequired: true, notes: ['schedule changed'] },
  { type: 'fatal', error: { code: ErrorCodes.CONFIG_INVALID, message: 'config: prefix: bad', field: 'prefix' } },
];

/** Payloads that other code (Node's cluster module, libraries) may put on the same pipe. */
const FOREIGN: unknown[] = [
  { cmd: 'NODE_CLUSTER', act: 'online' },
  { cmd: 'NODE_CLUSTER', act: 'listening', address: '0.0.0.0', port: 8080 },
  { cmd: 'NODE_HANDLE_ACK' },
  'pause',
  'hello',
  '',
  null,
  undefined,
  42,
  true,
  [],
  ['pause'],
  { type: 'pause' },
  { msg: { type: 'pause' } },
  { [CONTROL_TAG]: 2, msg: { type: 'pause' } },
  { [CONTROL_TAG]: '1', msg: { type: 'pause' } },
  { [CONTROL_TAG]: true, msg: { type: 'pause' } },
  { [CONTROL_TAG]: 1 },
  { [CONTROL_TAG]: 1, msg: null },
  { [CONTROL_TAG]: 1, msg: 'pause' },
  { [CONTROL_TAG]: 1, msg: {} },
  { [CONTROL_TAG]: 1, msg: { type: 7 } },
  { [CONTROL_TAG]: 1, msg: { type: 'explode' } },
  { [CONTROL_TAG]: 1, msg: { type: 'toString' } },
  { [CONTROL_TAG]: 1, msg: { type: '__proto__' } },
];

describe('control envelope', () => {
  it('wrap tags the message', () => {
    assert.deepEqual(wrap({ type: 'pause' }), { notifyd: 1, msg: { type: 'pause' } });
    assert.equal(CONTROL_TAG, 'notifyd');
  });

  it('every master message round-trips through wrap/parseMasterMessage over IPC', () => {
    for (const m of MASTER_MESSAGES) {
      assert.deepEqual(parseMasterMessage(overIpc(wrap(m))), m, m.type);
      assert.deepEqual(parseMasterMessage(wrap(m)), m, `${m.type} (in process)`);
    }
  });

  it('the reload message carries the whole config', () => {
    const m = parseMasterMessage(overIpc(wrap({ type: 'reload', config } satisfies MasterMessage)));
    assert.ok(m && m.type === 'reload');
    assert.deepEqual(m.config.scheduleMs, config.scheduleMs);
    assert.equal(m.config.delivery.timeoutMs, config.delivery.timeoutMs);
  });

  it('every worker message round-trips through wrap/parseWorkerMessage over IPC', () => {
    for (const m of WORKER_MESSAGES) {
      assert.deepEqual(parseWorkerMessage(overIpc(wrap(m))), m, m.type);
    }
  });

  it('covers every message type of DESIGN §7, plus init and ports (README: differences from DESIGN)', () => {
    assert.deepEqual(new Set(MASTER_MESSAGES.map((m) => m.type)), new Set(['pause', 'resume', 'drain', 'reload', 'stats', 'init', 'ports']));
    for (const t of ['ready', 'stats', 'drained', 'fatal']) assert.ok(WORKER_MESSAGES.some((m) => m.type === t), t);
  });

  it('foreign IPC payloads are not master messages', () => {
    for (const raw of FOREIGN) assert.equal(parseMasterMessage(raw), null, JSON.stringify(raw) ?? String(raw));
  });

  it('foreign IPC payloads are not worker messages', () => {
    for (const raw of FOREIGN) assert.equal(parseWorkerMessage(raw), null, JSON.stringify(raw) ?? String(raw));
  });

  it('a message for the other direction is refused', () => {
    for (const t of ['init', 'pause', 'resume', 'drain', 'reload', 'ports'] as const) assert.equal(parseWorkerMessage(wrap({ type: t })), null, t);
    for (const t of ['hello', 'ready', 'state', 'drained', 'reloaded', 'fatal'] as const) assert.equal(parseMasterMessage(wrap({ type: t })), null, t);
  });

  it('worker env keys are fixed, and the config is not among them (it comes over the pipe: it holds secrets)', () => {
    assert.deepEqual({ ...WORKER_ENV }, { role: 'NOTIFYD_ROLE', tier: 'NOTIFYD_TIER', paused: 'NOTIFYD_START_PAUSED' });
  });

  it('assertNever throws', () => {
    assert.throws(() => assertNever({ type: 'x' } as never), /unhandled control message/);
  });
});

describe('tokenMatches', () => {
  const TOKEN = 'tok-3f9a_secret';

  it('accepts the right bearer token', () => {
    assert.equal(tokenMatches(`Bearer ${TOKEN}`, TOKEN), true);
    assert.equal(tokenMatches(`bearer ${TOKEN}`, TOKEN), true, 'scheme is case-insensitive');
    assert.equal(tokenMatches(`  Bearer   ${TOKEN}  `, TOKEN), true, 'surrounding whitespace');
  });

  it('refuses a wrong token', () => {
    assert.equal(tokenMatches('Bearer nope', TOKEN), false);
    assert.equal(tokenMatches(`Bearer ${TOKEN}x`, TOKEN), false);
    assert.equal(tokenMatches(`Bearer ${TOKEN.slice(0, -1)}`, TOKEN), false);
    assert.equal(tokenMatches(`Bearer ${TOKEN.toUpperCase()}`, TOKEN), false, 'token is case-sensitive');
  });

  it('refuses a missing header', () => {
    assert.equal(tokenMatches(undefined, TOKEN), false);
    assert.equal(tokenMatches('', TOKEN), false);
    assert.equal(tokenMatches('Bearer', TOKEN), false);
    assert.equal(tokenMatches('Bearer ', TOKEN), false);
  });

  it('refuses other schemes', () => {
    assert.equal(tokenMatches(TOKEN, TOKEN), false);
    assert.equal(tokenMatches(`Basic ${TOKEN}`, TOKEN), false);
    assert.equal(tokenMatches(`Token ${TOKEN}`, TOKEN), false);
    assert.equal(tokenMatches(`Basic ${Buffer.from(`u:${TOKEN}`).toString('base64')}`, TOKEN), false);
    assert.equal(tokenMatches(`Bearer${TOKEN}`, TOKEN), false);
  });
});

describe('errors', () => {
  it('toErrorData on a NotifyError keeps code, message and field', () => {
    const e = new NotifyError(ErrorCodes.VALIDATION, 'url: bad', 'url');
    assert.deepEqual(toErrorData(e), { code: 'VALIDATION', message: 'url: bad', field: 'url' });
    assert.deepEqual(toErrorData(new NotifyError(ErrorCodes.BROKER_UNAVAILABLE, 'down')), { code: 'BROKER_UNAVAILABLE', message: 'down' });
  });

  it('toErrorData on a plain Error → INTERNAL with its message', () => {
    assert.deepEqual(toErrorData(new Error('kaput')), { code: 'INTERNAL', message: 'kaput' });
    assert.deepEqual(toErrorData(new TypeError('x is undefined')), { code: 'INTERNAL', message: 'x is undefined' });
  });

  it('toErrorData on a Node system error (unknown code) → INTERNAL', () => {
    const e = Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' });
    assert.deepEqual(toErrorData(e), { code: 'INTERNAL', message: 'connect ECONNREFUSED' });
  });

  it('toErrorData on a string or other primitives → INTERNAL', () => {
    assert.deepEqual(toErrorData('just a string'), { code: 'INTERNAL', message: 'just a string' });
    assert.deepEqual(toErrorData(undefined), { code: 'INTERNAL', message: 'undefined' });
    assert.deepEqual(toErrorData(null), { code: 'INTERNAL', message: 'null' });
    assert.deepEqual(toErrorData(42), { code: 'INTERNAL', message: '42' });
  });

  it('toErrorData on an object with an unknown code → INTERNAL', () => {
    assert.deepEqual(toErrorData({ code: 'NOPE', message: 'm' }), { code: 'INTERNAL', message: 'm' });
    assert.deepEqual(toErrorData({ code: 42, message: 'm' }), { code: 'INTERNAL', message: 'm' });
    assert.equal(toErrorData({}).code, 'INTERNAL');
    assert.equal(typeof toErrorData({}).message, 'string');
  });

  it('toErrorData on plain data with a known code (e.g. from IPC) keeps it', () => {
    const data = overIpc(new NotifyError(ErrorCodes.CONFIG_INVALID, 'config: prefix: bad', 'prefix'));
    assert.deepEqual(toErrorData(data), { code: 'CONFIG_INVALID', message: 'config: prefix: bad', field: 'prefix' });
    assert.deepEqual(toErrorData({ code: 'DRAINING', message: 'm', field: 3 }), { code: 'DRAINING', message: 'm' });
  });

  it('NotifyError serialises to ErrorData and keeps the cause', () => {
    const cause = new Error('inner');
    const e = new NotifyError(ErrorCodes.SCHEDULE_INVALID, 'bad', 'schedule', { cause });
    assert.equal(e.name, 'NotifyError');
    assert.equal(e.cause, cause);
    assert.ok(e instanceof Error);
    assert.deepEqual(JSON.parse(JSON.stringify(e)), { code: 'SCHEDULE_INVALID', message: 'bad', field: 'schedule' });
    assert.equal(new NotifyError(ErrorCodes.INTERNAL, 'x').field, undefined);
    assert.deepEqual(JSON.parse(JSON.stringify(new NotifyError(ErrorCodes.INTERNAL, 'x'))), { code: 'INTERNAL', message: 'x' });
  });

  it('hasCode works on errors and plain objects', () => {
    assert.equal(hasCode(new NotifyError(ErrorCodes.VALIDATION, 'x'), ErrorCodes.VALIDATION), true);
    assert.equal(hasCode(new NotifyError(ErrorCodes.VALIDATION, 'x'), ErrorCodes.INTERNAL), false);
    assert.equal(hasCode({ code: 'DRAINING' }, ErrorCodes.DRAINING), true);
    assert.equal(hasCode(new Error('x'), ErrorCodes.INTERNAL), false);
    assert.equal(hasCode(null, ErrorCodes.INTERNAL), false);
    assert.equal(hasCode('VALIDATION', ErrorCodes.VALIDATION), false);
  });

  it('every code value equals its key', () => {
    for (const [k, v] of Object.entries(ErrorCodes)) assert.equal(v, k);
  });
});
