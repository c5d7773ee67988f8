// `notifyd config check`: every problem of a file against the config's JSON
// Schema, then the loader's own checks; exit 78 when invalid.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { configCheck, schemaProblems } from '../../src/cli/config-check.js';
import { intTextPattern } from '../../src/contract/config-schema.js';
import { repoRoot } from '../../src/contract/write-docs.js';

const tmp = mkdtempSync(join(tmpdir(), 'notifyd-config-check-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

function check(content: unknown, env: NodeJS.ProcessEnv = {}): { code: number; lines: string[] } {
  const file = join(tmp, `c${Math.random().toString(36).slice(2)}.json`);
  writeFileSync(file, typeof content === 'string' ? content : JSON.stringify(content));
  const lines: string[] = [];
  const code = configCheck(file, env, (l) => lines.push(l));
  return { code, lines };
}

describe('notifyd config check', () => {
  it('config/default.json is valid against its schema', () => {
    assert.deepEqual(schemaProblems(JSON.parse(readFileSync(join(repoRoot(), 'config', 'default.json'), 'utf8'))), []);
    const r = check({});
    assert.equal(r.code, 0);
    assert.match(r.lines.at(-1)!, /: valid$/);
  });

  it('lists every problem of a file, not only the first, and exits 78', () => {
    const r = check({ extra: 1, queueType: 'lazy', ingress: { port: 'x', maxBatch: 0 }, delivery: { timeout: '5 parsecs', perOrigin: { typo: 1 } }, $comment: 'fine' });
    assert.equal(r.code, 78);
    assert.deepEqual(r.lines.slice(0, -1).sort(), [
      'delivery.perOrigin.typo: unknown key',
      'delivery.timeout: must be a duration such as 500ms, 15s, 3m, 1h, 1d (got "5 parsecs")',
      'extra: unknown key',
      'ingress.maxBatch: must be an integer from 1 to 10000 (got 0)',
      'ingress.port: must be an integer from 0 to 65535 (got "x")',
      'queueType: must be one of quorum, classic (got "lazy")',
    ]);
    assert.equal(r.lines.at(-1)!.endsWith(': 6 problems'), true);
  });

  it('accepts numbers and booleans written as text, as the loader does', () => {
    assert.equal(check({ ingress: { port: '8081' }, delivery: { allowPrivateNetworks: 'on' } }).code, 0);
  });

  it('holds numbers written as text to their range, and reads boolean words in any case, as the loader does', () => {
    const r = check({ ingress: { port: '70000', maxBatch: ' 0 ' }, delivery: { allowPrivateNetworks: 'tRuE' } });
    assert.equal(r.code, 78);
    assert.deepEqual(r.lines.slice(0, -1).sort(), ['ingress.maxBatch: must be an integer from 1 to 10000 (got " 0 ")', 'ingress.port: must be an integer from 0 to 65535 (got "70000")']);
  });

  it('the pattern of integer text takes exactly the integers of its range', () => {
    for (const [min, max] of [[0, 65535], [16, 10_000_000], [1024, 64 * 1024 * 1024], [99, 101]] as const) {
      const re = new RegExp(intTextPattern(min, max), 'u');
      for (const n of [0, 1, 9, 10, 15, 16, 98, 99, 100, 101, 102, 1023, 1024, 65535, 65536, 9_999_999, 10_000_000, 10_000_001, 67_108_864, 67_108_865]) {
        assert.equal(re.test(String(n)), n >= min && n <= max, `${n} in ${min}..${max}`);
        assert.equal(re.test(` 00${n} `), n >= min && n <= max, `" 00${n} " in ${min}..${max}`);
      }
      for (const text of ['', '-1', '1.5', '1e3', '0x10', 'x']) assert.equal(re.test(text), false, text);
    }
  });

  it('runs the loader for what a schema cannot say (a schedule, rules between keys, the environment)', () => {
    const schedule = check({ schedule: '0s,bogus' });
    assert.equal(schedule.code, 78);
    assert.match(schedule.lines[0]!, /^schedule: /);
    const tokens = check({ ingress: { host: '0.0.0.0' } });
    assert.equal(tokens.code, 78);
    assert.match(tokens.lines[0]!, /^ingress\.tokens: required/);
    assert.equal(check({}, { NOTIFY_LOG_LEVEL: 'loud' }).code, 78);
  });

  it('a file that is not JSON is one problem, exit 78', () => {
    const r = check('{ nope');
    assert.equal(r.code, 78);
    assert.equal(r.lines.length, 2);
  });

  it('the command: notifyd config check --config FILE exits 78 and prints the problems', () => {
    const file = join(tmp, 'cli.json');
    writeFileSync(file, JSON.stringify({ limits: { maxHeaders: -1 }, admin: { bogus: true } }));
    const r = spawnSync(process.execPath, ['--import', 'tsx', join(repoRoot(), 'src', 'cli.ts'), 'config', 'check', '--config', file], { encoding: 'utf8', env: { PATH: process.env.PATH } });
    assert.equal(r.status, 78, r.stderr);
    assert.match(r.stdout, /limits\.maxHeaders: /);
    assert.match(r.stdout, /admin\.bogus: unknown key/);
  });
});
