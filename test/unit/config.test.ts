import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  EX_CONFIG,
  deepFreeze,
  defaultConfigPath,
  diffConfig,
  keepRestartOnly,
  envOverrides,
  loadConfig,
  mergeRaw,
  parseConfig,
  redactUrl,
  type Config,
} from '../../src/core/config.js';
import { missingPortToken } from '../../src/core/config-model.js';
import { reloadWarnings, startupWarnings } from '../../src/supervisor/startup-checks.js';
import { ErrorCodes, hasCode } from '../../src/core/errors.js';

type Raw = Record<string, unknown>;

const SECRET_A = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';
const SECRET_B = 'whsec_c2Vjb25kLXNlY3JldC1mb3ItdGVzdHM=';

let dir: string;
let keyFile: string;

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'notifyd-config-'));
  keyFile = join(dir, 'key.pem');
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  writeFileSync(keyFile, privateKey.export({ type: 'pkcs8', format: 'pem' }));
});
after(() => rmSync(dir, { recursive: true, force: true }));

let fileSeq = 0;
function writeConfig(content: unknown): string {
  const p = join(dir, `config-${++fileSeq}.json`);
  writeFileSync(p, typeof content === 'string' ? content : JSON.stringify(content));
  return p;
}

/** Loads with an explicit env (never the test process's own NOTIFY_*). */
function load(env: Record<string, string> = {}, configFile?: string): Config {
  return loadConfig({ env, configFile: configFile ?? null });
}

function defaultsRaw(): Raw {
  return JSON.parse(readFileSync(defaultConfigPath(), 'utf8')) as Raw;
}

/** Asserts CONFIG_INVALID whose field is `field` and whose message names it. */
function invalid(fn: () => unknown, field: string, messageAlso?: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(hasCode(err, ErrorCodes.CONFIG_INVALID), `expected CONFIG_INVALID, got ${String((err as Error)?.message ?? err)}`);
    assert.equal((err as { field?: string }).field, field);
    const msg = (err as Error).message;
    assert.ok(msg.includes(field), `message "${msg}" should name ${field}`);
    assert.ok(!msg.includes('\n'), 'one line');
    if (messageAlso) assert.match(msg, messageAlso);
    return true;
  });
}

describe('config defaults', () => {
  it('EX_CONFIG is 78', () => {
    assert.equal(EX_CONFIG, 78);
  });

  it('loads config/default.json with the documented defaults', () => {
    const c = load();
    assert.equal(c.amqpUrl, 'amqp://guest:guest@127.0.0.1:5672');
    assert.equal(c.prefix, 'notify');
    assert.equal(c.queueType, 'quorum');
    assert.deepEqual(c.scheduleMs, [0, 1000, 3000, 5000, 15_000, 30_000]);
    assert.equal(c.logLevel, 'info');
    assert.equal(c.ingress.port, 8080);
    assert.equal(c.admin.port, 9464);
    assert.equal(c.admin.host, '127.0.0.1');
    assert.equal(c.admin.token, null);
    assert.equal(c.delivery.timeoutMs, 5000);
    assert.equal(c.delivery.maxResponseBytes, 64 * 1024);
    assert.deepEqual(c.delivery.deadOnStatus, [410]);
    assert.deepEqual(c.delivery.success, { status: '2xx' });
    assert.equal(c.delivery.allowPrivateNetworks, false);
    assert.deepEqual(c.delivery.allowCidrs, []);
    assert.equal(c.signing.scheme, 'none');
    assert.deepEqual(c.signing.secrets, []);
    assert.equal(c.signing.keyFile, null);
    assert.deepEqual(c.supervisor, {
      drainTimeoutMs: 25_000,
      restartBaseMs: 100,
      restartMaxMs: 30_000,
      restartResetMs: 30_000,
      crashloopRestarts: 5,
      crashloopWindowMs: 60_000,
    });
    assert.equal(c.deadRedrive.cron, null);
  });

  it('is deeply frozen', () => {
    const c = load();
    const check = (v: unknown, path: string): void => {
      if (typeof v !== 'object' || v === null) return;
      assert.ok(Object.isFrozen(v), `${path} is frozen`);
      for (const [k, child] of Object.entries(v)) check(child, `${path}.${k}`);
    };
    check(c, 'config');
    assert.throws(() => {
      (c as { prefix: string }).prefix = 'x';
    }, TypeError);
    assert.throws(() => {
      (c.delivery as { timeoutMs: number }).timeoutMs = 1;
    }, TypeError);
    assert.throws(() => (c.scheduleMs as number[]).push(1), TypeError);
    assert.throws(() => (c.delivery.deadOnStatus as number[]).push(500), TypeError);
  });

  it('parseConfig of the defaults equals loadConfig with no overrides', () => {
    assert.deepEqual(parseConfig(defaultsRaw()), load());
  });

  it('exposes durations as ...Ms numbers', () => {
    const c = load();
    for (const k of ['timeoutMs', 'connectTimeoutMs', 'headersTimeoutMs'] as const) assert.equal(typeof c.delivery[k], 'number');
    assert.ok(!('timeout' in c.delivery));
    assert.ok(!('drainTimeout' in c.supervisor));
  });
});

describe('config env overrides (DESIGN §9)', () => {
  it('NOTIFY_AMQP_URL', () => {
    assert.equal(load({ NOTIFY_AMQP_URL: 'amqps://u:p@broker:5671/vh' }).amqpUrl, 'amqps://u:p@broker:5671/vh');
  });

  it('NOTIFY_PREFIX', () => {
    assert.equal(load({ NOTIFY_PREFIX: 'shop-a.notify' }).prefix, 'shop-a.notify');
  });

  it('NOTIFY_SCHEDULE as preset', () => {
    assert.deepEqual(load({ NOTIFY_SCHEDULE: 'alipay' }).scheduleMs, [0, 240_000, 600_000, 600_000, 3_600_000, 7_200_000, 21_600_000, 54_000_000]);
    assert.equal(load({ NOTIFY_SCHEDULE: 'wechatpay' }).scheduleMs.length, 16);
  });

  it('NOTIFY_SCHEDULE as comma list', () => {
    assert.deepEqual(load({ NOTIFY_SCHEDULE: '0s,200ms,1s' }).scheduleMs, [0, 200, 1000]);
  });

  it('NOTIFY_INGRESS_PORT (including 0 for a free port)', () => {
    assert.equal(load({ NOTIFY_INGRESS_PORT: '18080' }).ingress.port, 18080);
    assert.equal(load({ NOTIFY_INGRESS_PORT: '0' }).ingress.port, 0);
  });

  it('NOTIFY_ADMIN_PORT, NOTIFY_ADMIN_HOST and NOTIFY_ADMIN_TOKEN', () => {
    const c = load({ NOTIFY_ADMIN_PORT: '0', NOTIFY_ADMIN_HOST: '0.0.0.0', NOTIFY_ADMIN_TOKEN: 's3cret-s3cret-s3cret' });
    assert.equal(c.admin.port, 0);
    assert.equal(c.admin.host, '0.0.0.0');
    assert.equal(c.admin.token, 's3cret-s3cret-s3cret');
  });

  it('admin on another loopback host needs no token', () => {
    for (const host of ['localhost', '::1', '127.0.0.2']) assert.equal(load({ NOTIFY_ADMIN_HOST: host }).admin.host, host);
  });

  it('NOTIFY_SIGNING_SECRET alone implies scheme standard', () => {
    const c = load({ NOTIFY_SIGNING_SECRET: SECRET_A });
    assert.equal(c.signing.scheme, 'standard');
    assert.deepEqual(c.signing.secrets, [SECRET_A]);
  });

  it('NOTIFY_SIGNING_SECRET comma list becomes the rotation list, first first', () => {
    const c = load({ NOTIFY_SIGNING_SECRET: ` ${SECRET_A}, ${SECRET_B} ` });
    assert.deepEqual(c.signing.secrets, [SECRET_A, SECRET_B]);
    assert.equal(c.signing.scheme, 'standard');
  });

  it('NOTIFY_SIGNING_SCHEME explicit', () => {
    assert.equal(load({ NOTIFY_SIGNING_SCHEME: 'standard', NOTIFY_SIGNING_SECRET: SECRET_A }).signing.scheme, 'standard');
    assert.equal(load({ NOTIFY_SIGNING_SCHEME: 'none', NOTIFY_SIGNING_SECRET: SECRET_A }).signing.scheme, 'none');
    assert.equal(load({ NOTIFY_SIGNING_SCHEME: 'none' }).signing.scheme, 'none');
  });

  it('NOTIFY_SIGNING_SCHEME rsa2 with NOTIFY_SIGNING_KEY_FILE', () => {
    const c = load({ NOTIFY_SIGNING_SCHEME: 'rsa2', NOTIFY_SIGNING_KEY_FILE: keyFile });
    assert.equal(c.signing.scheme, 'rsa2');
    assert.equal(c.signing.keyFile, keyFile);
  });

  it('a key file or secret the signer cannot use stops start-up with CONFIG_INVALID naming the key', () => {
    const junk = join(dir, 'junk.pem');
    writeFileSync(junk, '-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n');
    assert.throws(() => load({ NOTIFY_SIGNING_SCHEME: 'rsa2', NOTIFY_SIGNING_KEY_FILE: junk }), (err: unknown) => {
      assert.ok(hasCode(err, ErrorCodes.CONFIG_INVALID));
      assert.equal((err as { field?: string }).field, 'signing.keyFile');
      return true;
    });
    // Also when only rsa2 merchants would use it: the daemon's own scheme is another.
    for (const scheme of ['none', 'standard']) {
      const env = { NOTIFY_SIGNING_SCHEME: scheme, NOTIFY_SIGNING_KEY_FILE: junk, NOTIFY_SIGNING_SECRET: 'whsec_' + Buffer.alloc(32, 1).toString('base64') };
      assert.throws(() => load(env), (err: unknown) => hasCode(err, ErrorCodes.CONFIG_INVALID) && (err as { field?: string }).field === 'signing.keyFile', scheme);
    }
  });

  it('NOTIFY_ALLOW_PRIVATE_NETWORKS', () => {
    for (const v of ['true', '1', 'yes', 'ON']) assert.equal(load({ NOTIFY_ALLOW_PRIVATE_NETWORKS: v }).delivery.allowPrivateNetworks, true);
    for (const v of ['false', '0', 'no', 'off']) assert.equal(load({ NOTIFY_ALLOW_PRIVATE_NETWORKS: v }).delivery.allowPrivateNetworks, false);
  });

  it('NOTIFY_LOG_LEVEL', () => {
    assert.equal(load({ NOTIFY_LOG_LEVEL: 'debug' }).logLevel, 'debug');
    assert.equal(load({ NOTIFY_LOG_LEVEL: 'silent' }).logLevel, 'silent');
  });

  it('NOTIFY_ALLOW_CIDRS, NOTIFY_QUEUE_TYPE, NOTIFY_DRAIN_TIMEOUT', () => {
    const c = load({ NOTIFY_ALLOW_CIDRS: '127.0.0.0/8, ::1/128', NOTIFY_QUEUE_TYPE: 'classic', NOTIFY_DRAIN_TIMEOUT: '3s' });
    assert.deepEqual(c.delivery.allowCidrs, ['127.0.0.0/8', '::1/128']);
    assert.equal(c.queueType, 'classic');
    assert.equal(c.supervisor.drainTimeoutMs, 3000);
  });

  it('empty variables are ignored', () => {
    assert.deepEqual(load({ NOTIFY_PREFIX: '', NOTIFY_INGRESS_PORT: '', NOTIFY_SIGNING_SECRET: '' }), load());
  });

  it('NOTIFY_CONFIG names the file when no --config is given', () => {
    const file = writeConfig({ prefix: 'fromfile' });
    assert.equal(loadConfig({ env: { NOTIFY_CONFIG: file } }).prefix, 'fromfile');
  });

  it('envOverrides maps variables into the raw shape', () => {
    assert.deepEqual(
      envOverrides({
        NOTIFY_AMQP_URL: 'amqp://x',
        NOTIFY_INGRESS_PORT: '1',
        NOTIFY_ADMIN_HOST: 'h',
        NOTIFY_SIGNING_SECRET: 'a,b',
        NOTIFY_LOG_LEVEL: 'warn',
        UNRELATED: 'x',
      }),
      { amqpUrl: 'amqp://x', ingress: { port: '1' }, admin: { host: 'h' }, signing: { secrets: ['a', 'b'] }, logLevel: 'warn' },
    );
    assert.deepEqual(envOverrides({}), {});
  });
});

describe('config file (--config)', () => {
  it('merges over the defaults, deeply', () => {
    const file = writeConfig({
      prefix: 'filepfx',
      schedule: ['0s', '2s', '1m'],
      delivery: { timeout: '10s', deadOnStatus: [410, 404] },
      supervisor: { drainTimeout: '1.5s' },
    });
    const c = load({}, file);
    assert.equal(c.prefix, 'filepfx');
    assert.deepEqual(c.scheduleMs, [0, 2000, 60_000]);
    assert.equal(c.delivery.timeoutMs, 10_000);
    assert.equal(c.delivery.connectTimeoutMs, 3000, 'untouched sibling keeps its default');
    assert.deepEqual(c.delivery.deadOnStatus, [410, 404]);
    assert.equal(c.supervisor.drainTimeoutMs, 1500);
    assert.equal(c.supervisor.restartBaseMs, 100);
  });

  it('environment wins over the file', () => {
    const file = writeConfig({ prefix: 'filepfx', ingress: { port: 1111 } });
    const c = load({ NOTIFY_PREFIX: 'envpfx' }, file);
    assert.equal(c.prefix, 'envpfx');
    assert.equal(c.ingress.port, 1111);
  });

  it('accepts success criteria and $-prefixed comment keys', () => {
    const file = writeConfig({ $comment: 'hello', delivery: { success: { status: [200, 204], bodyEquals: 'success' } } });
    assert.deepEqual(load({}, file).delivery.success, { status: [200, 204], bodyEquals: 'success' });
  });

  it('non-JSON file', () => {
    invalid(() => load({}, writeConfig('{ "prefix": ')), 'config', /not valid JSON/);
  });

  it('file holding a JSON array', () => {
    invalid(() => load({}, writeConfig([1, 2])), 'config', /JSON object/);
  });

  it('missing file', () => {
    invalid(() => load({}, join(dir, 'nope.json')), 'config', /ENOENT/);
  });
});

describe('config errors are CONFIG_INVALID naming the key', () => {
  it('unknown top-level key (typo)', () => {
    invalid(() => load({}, writeConfig({ prefx: 'x' })), 'prefx', /unknown key/);
  });

  it('unknown nested key (typo)', () => {
    invalid(() => load({}, writeConfig({ delivery: { timout: '5s' } })), 'delivery.timout', /unknown key/);
    invalid(() => load({}, writeConfig({ delivery: { success: { bodyEqual: 'x' } } })), 'delivery.success.bodyEqual');
  });

  it('bad ports', () => {
    invalid(() => load({ NOTIFY_INGRESS_PORT: '70000' }), 'ingress.port');
    invalid(() => load({ NOTIFY_INGRESS_PORT: 'http' }), 'ingress.port');
    invalid(() => load({ NOTIFY_ADMIN_PORT: '-1' }), 'admin.port');
    invalid(() => load({ NOTIFY_ADMIN_PORT: '80.5' }), 'admin.port');
    invalid(() => load({}, writeConfig({ ingress: { port: 1.5 } })), 'ingress.port');
  });

  it('bad duration', () => {
    invalid(() => load({}, writeConfig({ delivery: { timeout: 'soon' } })), 'delivery.timeout');
    invalid(() => load({}, writeConfig({ delivery: { timeout: '0s' } })), 'delivery.timeout');
    invalid(() => load({}, writeConfig({ delivery: { timeout: true } })), 'delivery.timeout');
    invalid(() => load({ NOTIFY_DRAIN_TIMEOUT: '5 minutes' }), 'supervisor.drainTimeout');
  });

  it('bad schedule', () => {
    invalid(() => load({ NOTIFY_SCHEDULE: 'fast' }), 'schedule', /fast/);
    invalid(() => load({ NOTIFY_SCHEDULE: '0s,1s,' }), 'schedule');
    invalid(() => load({}, writeConfig({ schedule: [] })), 'schedule');
    invalid(() => load({}, writeConfig({ schedule: 5 })), 'schedule');
  });

  it('bad prefix', () => {
    for (const p of ['has space', '.leadingdot', 'a/b', 'x'.repeat(101), 'ünï']) invalid(() => load({ NOTIFY_PREFIX: p }), 'prefix');
  });

  it('bad amqp url, queue type, log level', () => {
    invalid(() => load({ NOTIFY_AMQP_URL: 'http://broker' }), 'amqpUrl');
    invalid(() => load({ NOTIFY_AMQP_URL: 'http://u:hunter2@broker' }), 'amqpUrl', /^(?!.*hunter2)/);
    invalid(() => load({ NOTIFY_QUEUE_TYPE: 'stream' }), 'queueType');
    invalid(() => load({ NOTIFY_LOG_LEVEL: 'verbose' }), 'logLevel');
  });

  it('bad allowPrivateNetworks', () => {
    invalid(() => load({ NOTIFY_ALLOW_PRIVATE_NETWORKS: 'maybe' }), 'delivery.allowPrivateNetworks');
  });

  it('bad cidr', () => {
    invalid(() => load({ NOTIFY_ALLOW_CIDRS: '10.0.0.0/8,10.0.0.0/33' }), 'delivery.allowCidrs', /entry #2 /);
    invalid(() => load({ NOTIFY_ALLOW_CIDRS: 'localhost/8' }), 'delivery.allowCidrs', /entry #1 /);
    invalid(() => load({ NOTIFY_ALLOW_CIDRS: '10.0.0.1' }), 'delivery.allowCidrs', /entry #1 /);
    invalid(() => load({ NOTIFY_ALLOW_CIDRS: '::1/129' }), 'delivery.allowCidrs', /entry #1 /);
    invalid(() => load({}, writeConfig({ delivery: { allowCidrs: '127.0.0.0/8' } })), 'delivery.allowCidrs');
  });

  it('bad deadOnStatus and success', () => {
    invalid(() => load({}, writeConfig({ delivery: { deadOnStatus: [410, 999] } })), 'delivery.deadOnStatus');
    invalid(() => load({}, writeConfig({ delivery: { success: { status: [] } } })), 'delivery.success.status');
    invalid(() => load({}, writeConfig({ delivery: { success: { bodyEquals: 1 } } })), 'delivery.success.bodyEquals');
  });

  it('admin host 0.0.0.0 without token → admin.token', () => {
    invalid(() => load({ NOTIFY_ADMIN_HOST: '0.0.0.0' }), 'admin.token', /NOTIFY_ADMIN_TOKEN/);
    invalid(() => load({ NOTIFY_ADMIN_HOST: '10.1.2.3' }), 'admin.token');
  });

  it('an admin token on a port beyond loopback is held to the producers\' rule: at least 16 characters, no spaces (on loopback only warned of)', () => {
    invalid(() => load({ NOTIFY_ADMIN_HOST: '0.0.0.0', NOTIFY_ADMIN_TOKEN: 'x' }), 'admin.token', /at least 16/);
    invalid(() => load({ NOTIFY_ADMIN_HOST: '10.1.2.3', NOTIFY_ADMIN_TOKEN: 'a token with spaces in it' }), 'admin.token');
    assert.equal(load({ NOTIFY_ADMIN_HOST: '0.0.0.0', NOTIFY_ADMIN_TOKEN: 'x'.repeat(16) }).admin.token, 'x'.repeat(16));
    const weak = load({ NOTIFY_ADMIN_TOKEN: 's3cret' });
    assert.equal(weak.admin.token, 's3cret', 'accepted on loopback, as before');
    assert.ok(startupWarnings(weak, { stopTimeoutMs: null }).some((w) => /admin\.token is shorter than 16/.test(w)));
    assert.ok(!startupWarnings(load({ NOTIFY_ADMIN_TOKEN: 'x'.repeat(16) }), { stopTimeoutMs: null }).some((w) => /admin\.token/.test(w)));
    assert.deepEqual(reloadWarnings(weak, { stopTimeoutMs: null }), startupWarnings(weak, { stopTimeoutMs: null }).filter((w) => /admin\.token/.test(w)), 'a reload warns of it too');
    assert.deepEqual(reloadWarnings(load({ NOTIFY_ADMIN_TOKEN: 'x'.repeat(16) }), { stopTimeoutMs: null }), []);
    // A drain timeout a reload raises past the service manager's stop timeout (known from start) is said then too.
    const long = load({ NOTIFY_ADMIN_TOKEN: 'x'.repeat(16), NOTIFY_DRAIN_TIMEOUT: '60s' });
    assert.ok(reloadWarnings(long, { stopTimeoutMs: 40_000 }).some((w) => /drainTimeout \(60000 ms\).*TimeoutStopSec/.test(w)));
    assert.deepEqual(reloadWarnings(long, { stopTimeoutMs: null }), []);
  });

  it('missingPortToken (the loader\'s and a reload\'s check): a port beyond loopback needs its token', () => {
    const loop = { host: '127.0.0.1', tokens: {}, token: null };
    assert.equal(missingPortToken(loop, loop), null);
    assert.equal(missingPortToken({ host: '0.0.0.0', tokens: {} }, loop)?.key, 'ingress.tokens');
    assert.equal(missingPortToken({ host: '0.0.0.0', tokens: { p: 'x'.repeat(32) } }, loop), null);
    assert.equal(missingPortToken(loop, { host: '10.1.2.3', token: null })?.key, 'admin.token');
    assert.equal(missingPortToken(loop, { host: '10.1.2.3', token: 's3cret' })?.key, 'admin.token', 'a guessable token beyond loopback');
    assert.equal(missingPortToken(loop, { host: '10.1.2.3', token: 's3cret-s3cret-s3cret' }), null);
    assert.equal(missingPortToken({ host: '127.0.0.1.attacker.example', tokens: {} }, loop)?.key, 'ingress.tokens', 'a name, not a loopback address');
  });

  it('scheme rsa2 without key file → signing.keyFile', () => {
    invalid(() => load({ NOTIFY_SIGNING_SCHEME: 'rsa2' }), 'signing.keyFile', /NOTIFY_SIGNING_KEY_FILE/);
  });

  it('scheme rsa2 with an unreadable key file → signing.keyFile', () => {
    invalid(() => load({ NOTIFY_SIGNING_SCHEME: 'rsa2', NOTIFY_SIGNING_KEY_FILE: join(dir, 'missing.pem') }), 'signing.keyFile', /ENOENT/);
  });

  it('scheme standard without secret → signing.secrets', () => {
    invalid(() => load({ NOTIFY_SIGNING_SCHEME: 'standard' }), 'signing.secrets', /NOTIFY_SIGNING_SECRET/);
  });

  it('unknown scheme, malformed secret', () => {
    invalid(() => load({ NOTIFY_SIGNING_SCHEME: 'hmac' }), 'signing.scheme');
    invalid(() => load({ NOTIFY_SIGNING_SECRET: 'not-a-whsec' }), 'signing.secrets');
  });

  it('bad cron', () => {
    invalid(() => load({}, writeConfig({ metrics: { queueSampleCron: 'every five seconds' } })), 'metrics.queueSampleCron');
    invalid(() => load({}, writeConfig({ deadRedrive: { cron: '61 * * * *' } })), 'deadRedrive.cron');
  });

  it('valid cron for deadRedrive is kept', () => {
    assert.equal(load({}, writeConfig({ deadRedrive: { cron: '*/10 * * * *' } })).deadRedrive.cron, '*/10 * * * *');
  });

  it('section that is not an object', () => {
    invalid(() => load({}, writeConfig({ delivery: 'fast' })), 'delivery');
  });

  it('a value the schema refuses is worded by its kind, the same from a file or the environment', () => {
    const message = (fn: () => unknown): string => {
      try {
        fn();
      } catch (err) {
        assert.ok(hasCode(err, ErrorCodes.CONFIG_INVALID));
        return (err as Error).message;
      }
      assert.fail('expected CONFIG_INVALID');
    };
    assert.equal(message(() => load({ NOTIFY_INGRESS_PORT: '70000' })), 'config: ingress.port: must be an integer from 0 to 65535 (got "70000")');
    assert.equal(message(() => load({}, writeConfig({ ingress: { port: 70000 } }))), 'config: ingress.port: must be an integer from 0 to 65535 (got 70000)');
    assert.equal(message(() => load({}, writeConfig({ delivery: { perOrigin: { maxPools: 'x' } } }))), 'config: delivery.perOrigin.maxPools: must be an integer from 1 to 1000000 (got "x")');
    assert.equal(message(() => load({ NOTIFY_QUEUE_TYPE: 'stream' })), 'config: queueType: must be one of quorum, classic (got "stream")');
    assert.equal(message(() => load({ NOTIFY_ALLOW_PRIVATE_NETWORKS: 'maybe' })), 'config: delivery.allowPrivateNetworks: must be true or false (got "maybe")');
    assert.equal(message(() => load({ NOTIFY_DRAIN_TIMEOUT: '5 minutes' })), 'config: supervisor.drainTimeout: must be a duration such as 500ms, 15s, 3m, 1h, 1d (got "5 minutes")');
    assert.equal(message(() => load({}, writeConfig({ delivery: { timeout: '11m' } }))), 'config: delivery.timeout: must be between 1ms and 600000ms (got 660000ms)');
    assert.equal(message(() => load({}, writeConfig({ delivery: { deadOnStatus: [410, 999] } }))), 'config: delivery.deadOnStatus: entry #2 must be an integer from 100 to 599 (got 999)');
    assert.equal(message(() => load({}, writeConfig({ delivery: { perOrigin: { typo: 1 } } }))), 'config: delivery.perOrigin.typo: unknown key');
    assert.equal(message(() => load({ NOTIFY_SIGNING_SCHEME: 'hmac' })), 'config: signing.scheme: must be one of none, standard, rsa2 (got "hmac")');
    assert.equal(message(() => load({ NOTIFY_DATABASE_URL: 'mysql://u:hunter2@db' })), 'config: database.url: must be a postgres:// or postgresql:// URL');
    // A list or an object is named by its kind, never shown: a cluster's URLs as a list carry passwords.
    assert.equal(message(() => load({}, writeConfig({ amqpUrl: ['amqp://u:hunter2@h'] }))), 'config: amqpUrl: must be a non-empty string (got a list)');
    assert.equal(message(() => load({}, writeConfig({ delivery: { success: { status: [] } } }))), 'config: delivery.success.status: must hold at least one HTTP status');
    assert.equal(message(() => load({}, writeConfig({ delivery: { success: { status: '3xx' } } }))), 'config: delivery.success.status: must be "2xx" or a list of HTTP statuses');
    assert.equal(message(() => load({ NOTIFY_SIGNING_SECRET: 'not-a-whsec' })), 'config: signing.secrets: entry #1 must be a whsec_<base64> secret');
    assert.equal(message(() => load({}, writeConfig({ signing: { secrets: SECRET_A } }))), 'config: signing.secrets: must be a list or null (got a string)');
    assert.equal(message(() => load({}, writeConfig({ limits: { idMaxLength: 300 } }))), 'config: limits.idMaxLength: must be an integer from 8 to 255 (got 300)');
    const partial = defaultsRaw();
    delete (partial.limits as Raw).maxHeaders;
    assert.equal(message(() => parseConfig(partial)), 'config: limits.maxHeaders: must be an integer from 0 to 1000 (got undefined)');
  });

  it('reads boolean words in any case, null for an optional list, and $ keys of any value as comments', () => {
    assert.equal(load({ NOTIFY_ALLOW_PRIVATE_NETWORKS: 'tRuE' }).delivery.allowPrivateNetworks, true);
    const c = load({}, writeConfig({ $schema: 5, delivery: { warmUpTiers: null, $note: { any: 1 } }, signing: { secrets: null } }));
    assert.deepEqual(c.delivery.warmUpTiers, []);
    assert.deepEqual(c.signing.secrets, []);
  });
});

describe('mergeRaw', () => {
  it('merges objects deeply; arrays and scalars replace; inputs untouched', () => {
    const base = { a: 1, o: { x: 1, y: [1, 2], deep: { k: 'v' } }, l: [1] };
    const over = { o: { y: [3], deep: { k2: 'w' } }, l: [9, 9], n: null };
    const baseCopy = structuredClone(base);
    const overCopy = structuredClone(over);
    assert.deepEqual(mergeRaw(base, over), { a: 1, o: { x: 1, y: [3], deep: { k: 'v', k2: 'w' } }, l: [9, 9], n: null });
    assert.deepEqual(base, baseCopy);
    assert.deepEqual(over, overCopy);
  });

  it('an object replaces a scalar and vice versa', () => {
    assert.deepEqual(mergeRaw({ a: 1, b: { c: 1 } }, { a: { z: 1 }, b: 2 }), { a: { z: 1 }, b: 2 });
  });
});

describe('deepFreeze', () => {
  it('freezes nested objects and arrays and returns the same value', () => {
    const v = { a: { b: [{ c: 1 }] }, s: 'x' };
    assert.equal(deepFreeze(v), v);
    assert.ok(Object.isFrozen(v));
    assert.ok(Object.isFrozen(v.a));
    assert.ok(Object.isFrozen(v.a.b));
    assert.ok(Object.isFrozen(v.a.b[0]));
  });

  it('passes primitives and null through and survives cycles', () => {
    assert.equal(deepFreeze(5), 5);
    assert.equal(deepFreeze(null), null);
    assert.equal(deepFreeze('s'), 's');
    const cyc: Record<string, unknown> = { x: {} };
    cyc.self = cyc;
    deepFreeze(cyc);
    assert.ok(Object.isFrozen(cyc.x));
  });
});

describe('diffConfig', () => {
  const base = (): Config => load();

  it('no change → no restart', () => {
    const d = diffConfig(base(), base());
    assert.equal(d.restartRequired, false);
    assert.ok(d.notes.length >= 1);
  });

  it('schedule change → restartRequired', () => {
    const d = diffConfig(base(), load({ NOTIFY_SCHEDULE: 'alipay' }));
    assert.equal(d.restartRequired, true);
    assert.ok(d.notes.some((n) => /schedule/.test(n)));
  });

  it('delivery timeout change → applied live', () => {
    const d = diffConfig(base(), load({}, writeConfig({ delivery: { timeout: '9s' } })));
    assert.equal(d.restartRequired, false);
  });

  it('a warm-up change → no restart, and the note says it reaches tier workers started from then on', () => {
    const warm = /warmUpTiers changed: applies to tier workers started from now on/;
    assert.equal(diffConfig(base(), base()).notes.some((n) => warm.test(n)), false);
    for (const next of [load({}, writeConfig({ delivery: { warmUpTiers: [0, 1] } })), load({ NOTIFY_DELIVERY_WARM_UP: '0' })]) {
      const d = diffConfig(base(), next);
      assert.equal(d.restartRequired, false);
      assert.ok(d.notes.some((n) => warm.test(n)), d.notes.join('; '));
    }
  });

  it('log level and signing change → applied live', () => {
    assert.equal(diffConfig(base(), load({ NOTIFY_LOG_LEVEL: 'debug', NOTIFY_SIGNING_SECRET: SECRET_A })).restartRequired, false);
  });

  it('broker settings and listen addresses → restartRequired', () => {
    assert.equal(diffConfig(base(), load({ NOTIFY_PREFIX: 'other' })).restartRequired, true);
    assert.equal(diffConfig(base(), load({ NOTIFY_AMQP_URL: 'amqp://other' })).restartRequired, true);
    assert.equal(diffConfig(base(), load({ NOTIFY_QUEUE_TYPE: 'classic' })).restartRequired, true);
    assert.equal(diffConfig(base(), load({ NOTIFY_INGRESS_PORT: '1234' })).restartRequired, true);
    assert.equal(diffConfig(base(), load({ NOTIFY_ADMIN_PORT: '1234' })).restartRequired, true);
  });

  // Read once when a process starts: a reload that applied them would leave later-forked workers out of step.
  const DB = 'postgres://db/notifyd';
  const withDb = (env: Record<string, string> = {}, file?: string): Config => load({ NOTIFY_DATABASE_URL: DB, ...env }, file);
  const restartOnly: Record<string, [() => Config, () => Config]> = {
    'history turned off': [withDb, () => withDb({}, writeConfig({ history: { enabled: false } }))],
    'a database': [base, () => withDb()],
    'another database': [withDb, () => load({ NOTIFY_DATABASE_URL: 'postgres://other/notifyd' })],
    'the pool size': [withDb, () => withDb({}, writeConfig({ database: { poolSize: 3 } }))],
    'the secrets key': [withDb, () => withDb({ NOTIFY_SECRETS_KEY: 'a'.repeat(64) })],
    'the registry refresh': [withDb, () => withDb({}, writeConfig({ merchants: { refresh: '5s' } }))],
    'the redrive job': [base, () => load({}, writeConfig({ deadRedrive: { cron: '*/5 * * * *' } }))],
    'the queue sampling job': [base, () => load({}, writeConfig({ metrics: { queueSampleCron: '*/30 * * * * *' } }))],
    'auto-disable': [withDb, () => withDb({}, writeConfig({ merchants: { autoDisableAfter: '2d' } }))],
    'retention': [withDb, () => withDb({}, writeConfig({ history: { retention: '7d' } }))],
  };
  for (const [what, [before, next]] of Object.entries(restartOnly)) {
    it(`${what} → restartRequired, and a reload keeps the running value (keepRestartOnly)`, () => {
      const old = before();
      const n = next();
      assert.equal(diffConfig(old, n).restartRequired, true, what);
      const kept = keepRestartOnly(old, n);
      assert.equal(diffConfig(old, kept).restartRequired, false, 'nothing left that needs a restart');
      assert.deepEqual(
        [kept.database, kept.history, kept.merchants.secretsKey, kept.merchants.refreshMs, kept.merchants.autoDisableAfterMs, kept.deadRedrive.cron, kept.metrics.queueSampleCron],
        [old.database, old.history, old.merchants.secretsKey, old.merchants.refreshMs, old.merchants.autoDisableAfterMs, old.deadRedrive.cron, old.metrics.queueSampleCron],
      );
    });
  }

  it('settings nothing reads without a database need no restart when it has none', () => {
    const d = diffConfig(base(), load({}, writeConfig({ history: { enabled: false, retention: '7d' }, merchants: { refresh: '5s', autoDisableAfter: '2d' } })));
    assert.equal(d.restartRequired, false, d.notes.join('; '));
  });

  it('a database added by a reload waits for the restart, and so does requiring merchants (the registry is in it)', () => {
    const kept = keepRestartOnly(base(), withDb({}, writeConfig({ merchants: { required: true } })));
    assert.deepEqual([kept.database.url, kept.merchants.required], [null, false]);
    assert.equal(keepRestartOnly(withDb(), withDb({}, writeConfig({ merchants: { required: true } }))).merchants.required, true, 'with the database running: applied');
  });

  it('keepRestartOnly takes everything else from the new file', () => {
    const old = base();
    const n = load({ NOTIFY_PREFIX: 'other', NOTIFY_INGRESS_PORT: '1234', NOTIFY_LOG_LEVEL: 'debug' }, writeConfig({ delivery: { timeout: '9s' }, merchants: { rotationGrace: '2h' }, deadRedrive: { limit: 7 } }));
    const kept = keepRestartOnly(old, n);
    assert.deepEqual([kept.prefix, kept.ingress.port], [old.prefix, old.ingress.port]);
    assert.deepEqual([kept.logLevel, kept.delivery.timeoutMs, kept.merchants.rotationGraceMs, kept.deadRedrive.limit], ['debug', 9000, 7_200_000, 7]);
  });
});

describe('redactUrl', () => {
  it('hides the password', () => {
    const out = redactUrl('amqp://guest:hunter2@127.0.0.1:5672/vhost');
    assert.equal(out, 'amqp://guest:***@127.0.0.1:5672/vhost');
    assert.ok(!out.includes('hunter2'));
    assert.ok(!redactUrl('amqps://u:p%40ss@broker').includes('p%40ss'));
  });

  it('hides a password given as a query parameter (pg reads ?password= and ?sslpassword=)', () => {
    const out = redactUrl('postgres://u@db:5432/notify?password=s3cret&sslmode=require&sslpassword=k3y');
    assert.ok(!out.includes('s3cret') && !out.includes('k3y'), out);
    assert.match(out, /sslmode=require/);
    const unparsable = redactUrl('postgres://u@[bad/x?password=s3cret');
    assert.ok(!unparsable.includes('s3cret'), unparsable);
  });

  it('leaves a URL without password alone', () => {
    assert.equal(redactUrl('amqp://127.0.0.1:5672'), 'amqp://127.0.0.1:5672');
  });

  it('hides the password even when the URL does not parse', () => {
    const out = redactUrl('amqp://user:hunter2@[bad');
    assert.ok(!out.includes('hunter2'));
    assert.match(out, /user:\*\*\*@/);
  });
});

describe('ingress lock and producer tokens', () => {
  const T1 = 'tok-aaaaaaaaaaaaaaaaaaaa';
  const T2 = 'tok-bbbbbbbbbbbbbbbbbbbb';

  it('listens on loopback by default, with no token needed there', () => {
    const c = load();
    assert.equal(c.ingress.host, '127.0.0.1');
    assert.deepEqual(c.ingress.tokens, {});
  });

  it('bound anywhere else it needs producer tokens (exit 78 otherwise)', () => {
    invalid(() => load({ NOTIFY_INGRESS_HOST: '0.0.0.0' }), 'ingress.tokens', /NOTIFY_INGRESS_TOKENS/);
    invalid(() => load({ NOTIFY_INGRESS_HOST: '10.0.0.5' }), 'ingress.tokens');
    assert.deepEqual(load({ NOTIFY_INGRESS_HOST: '0.0.0.0', NOTIFY_INGRESS_TOKENS: `billing:${T1},shop:${T2}` }).ingress.tokens, { billing: T1, shop: T2 });
  });

  it('the legacy single token is the producer "default"', () => {
    assert.deepEqual(load({ NOTIFY_INGRESS_HOST: '0.0.0.0', NOTIFY_INGRESS_TOKEN: T1 }).ingress.tokens, { default: T1 });
  });

  it('refuses a nameless entry, a short token, a shared token, a bad name', () => {
    invalid(() => load({ NOTIFY_INGRESS_TOKENS: T1 }), 'ingress.tokens.');
    invalid(() => load({ NOTIFY_INGRESS_TOKENS: 'billing:short' }), 'ingress.tokens.billing', /16 characters/);
    invalid(() => load({ NOTIFY_INGRESS_TOKENS: `a:${T1},b:${T1}` }), 'ingress.tokens', /own/);
    invalid(() => load({ NOTIFY_INGRESS_TOKENS: `bad!:${T1}` }), 'ingress.tokens.bad!');
  });
});

describe('delivery.dnsServers, log.attempts', () => {
  it('takes IPv4, IPv4:port, IPv6 and [IPv6]:port', () => {
    assert.deepEqual(load({ NOTIFY_DNS_SERVERS: '10.0.0.2, 127.0.0.1:5353,::1,[::1]:53' }).delivery.dnsServers, ['10.0.0.2', '127.0.0.1:5353', '::1', '[::1]:53']);
    invalid(() => load({ NOTIFY_DNS_SERVERS: 'dns.example' }), 'delivery.dnsServers', /entry #1 /);
    invalid(() => load({ NOTIFY_DNS_SERVERS: '10.0.0.2:99999' }), 'delivery.dnsServers', /entry #1 /);
  });

  it('log.attempts is all, failures or off', () => {
    assert.equal(load().log.attempts, 'all');
    assert.equal(load({ NOTIFY_LOG_ATTEMPTS: 'failures' }).log.attempts, 'failures');
    invalid(() => load({ NOTIFY_LOG_ATTEMPTS: 'some' }), 'log.attempts');
  });
});

describe('amqpUrl as a list of cluster nodes', () => {
  it('takes a comma-separated list as written', () => {
    const list = 'amqp://a:pw1@n1:5672,amqp://b:pw2@n2:5672,amqp://c:pw3@n3:5672';
    assert.equal(load({ NOTIFY_AMQP_URL: list }).amqpUrl, list);
  });

  it('a malformed entry: CONFIG_INVALID on amqpUrl saying which, with no password of any entry', () => {
    for (const bad of ['amqp://a:pw1@n1:5672,amqp://b:pw2@[n2', 'amqp://a:pw1@n1:5672,,amqp://c:pw3@n3', 'amqp://a:pw1@n1,htp://b:pw2@n2']) {
      invalid(() => load({ NOTIFY_AMQP_URL: bad }), 'amqpUrl', /entry 2 of /);
      try {
        load({ NOTIFY_AMQP_URL: bad });
      } catch (err) {
        for (const pw of ['pw1', 'pw2', 'pw3']) assert.ok(!(err as Error).message.includes(pw), (err as Error).message);
      }
    }
  });
});

describe('redactUrl on lists', () => {
  it('hides the password of every URL of a comma list, parsable or not', () => {
    const out = redactUrl('amqp://a:pw1@n1:5672,amqp://b:pw2@n2:5672 , amqp://c:pw3@[bad');
    for (const pw of ['pw1', 'pw2', 'pw3']) assert.ok(!out.includes(pw), out);
    assert.equal(out.split(',').length, 3);
  });
});
