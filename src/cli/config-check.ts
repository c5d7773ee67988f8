/**
 * `notifyd config check [--config FILE]`: every problem of a configuration,
 * not only the first. The file (over config/default.json) is checked against
 * the configuration's JSON Schema, every problem listed; when the schema
 * passes, the loader itself runs (default, file, then NOTIFY_* variables,
 * as `start` loads them) for what a schema cannot check (schedules, cron
 * expressions, keys, rules between keys). Exit 0 when valid, 78 when not.
 */
import { readFileSync } from 'node:fs';
import { ajvAllErrors, errorPath, type Validator } from '../contract/ajv.js';
import { ConfigSchema, DURATION_PATTERN, INT_TEXT_PATTERN } from '../contract/config-schema.js';
import { EX_CONFIG, defaultConfigPath, loadConfig, mergeRaw } from '../core/config.js';
import { toErrorData } from '../core/errors.js';

let validator: Validator | null = null;

/** A configuration's problems against the schema, one `key: message` line each, every one. */
export function schemaProblems(raw: unknown): string[] {
  validator ??= ajvAllErrors().compile(ConfigSchema);
  if (validator(raw)) return [];
  const out = new Set<string>();
  for (const e of validator.errors ?? []) {
    const key = errorPath(e).join('.') || '(file)';
    if (e.keyword === 'additionalProperties') out.add(`${key}: unknown key`);
    else if (e.keyword === 'pattern' && e.params.pattern === DURATION_PATTERN) out.add(`${key}: must be a duration such as 500ms, 15s, 3m, 1h, 1d`);
    else if (e.keyword === 'pattern' && e.params.pattern === INT_TEXT_PATTERN) out.add(`${key}: must be an integer`);
    else if (e.keyword === 'enum') out.add(`${key}: must be one of ${(e.params.allowedValues as unknown[]).map((x) => JSON.stringify(x)).join(', ')}`);
    else out.add(`${key}: ${e.message ?? 'is invalid'}`);
  }
  return [...out];
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
