/**
 * `notifyd config check [--config FILE]`: every problem of a configuration,
 * not only the first. The file (over config/default.json) is checked against
 * the configuration's JSON Schema, every problem listed; when the schema
 * passes, the loader itself runs (default, file, then NOTIFY_* variables,
 * as `start` loads them) for what a schema cannot check (schedules, cron
 * expressions, keys, rules between keys). Exit 0 when valid, 78 when not.
 */
import { readFileSync } from 'node:fs';
import { ajvAllErrors, type Validator } from '../contract/ajv.js';
import { ConfigSchema, configProblem } from '../contract/config-schema.js';
import { EX_CONFIG, defaultConfigPath, loadConfig, mergeRaw } from '../core/config.js';
import { toErrorData } from '../core/errors.js';

let validator: Validator | null = null;

/** A configuration's problems against the schema, one `key: message` line each (worded as the loader words them), every one. */
export function schemaProblems(raw: unknown): string[] {
  validator ??= ajvAllErrors().compile(ConfigSchema);
  if (validator(raw)) return [];
  // A value can fail several keywords of one rule (type and range): the same line once.
  return [...new Set((validator.errors ?? []).map((e) => configProblem(e, raw)).map(({ key, why }) => `${key || '(file)'}: ${why}`))];
}

function readJson(path: string): Record<string, unknown> {
  return JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
}

/** Runs the check, writing each problem on a line of `out`; returns the exit status (0, or 78 EX_CONFIG). */
export function configCheck(file: string | null, env: NodeJS.ProcessEnv = process.env, out: (line: string) => void = (l) => process.stdout.write(`${l}\n`)): number {
  const path = file ?? env.NOTIFY_CONFIG ?? null;
  const name = path ?? 'config/default.json';
  let problems: string[];
  try {
    const base = readJson(defaultConfigPath());
    problems = schemaProblems(path === null ? base : mergeRaw(base, readJson(path)));
  } catch (err) {
    problems = [`${name}: ${(err as Error).message}`];
  }
  if (problems.length === 0) {
    try {
      loadConfig({ configFile: path, env });
    } catch (err) {
      problems.push(toErrorData(err).message.replace(/^config: /, ''));
    }
  }
  for (const p of problems) out(p);
  out(problems.length === 0 ? `${name}: valid` : `${name}: ${problems.length} problem${problems.length === 1 ? '' : 's'}`);
  return problems.length === 0 ? 0 : EX_CONFIG;
}
