/**
 * Writes the contract documents into docs/ at build time (`npm run build`):
 * the OpenAPI documents of both ports, from config/default.json's limits,
 * and the configuration's JSON Schema
 * (not the environment's, so the files are the same on every machine).
 * A unit test checks that the committed files are what this writes.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ConfigSchema } from './config-schema.js';
import { openApiText } from './openapi.js';
import type { ContractLimits } from './routes.js';

/** The repository root, from src/contract/ or dist/src/contract/. */
export function repoRoot(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  return resolve(here, here.includes(`${join('dist', 'src')}`) ? '../../..' : '../..');
}

/** The limits of config/default.json. */
export function defaultContractLimits(root = repoRoot()): ContractLimits {
  const d = JSON.parse(readFileSync(join(root, 'config', 'default.json'), 'utf8')) as { limits: ContractLimits['limits']; ingress: { maxBatch: number } };
  return { limits: d.limits, maxBatch: d.ingress.maxBatch };
}

/** The files and their content. */
export function contractDocs(root = repoRoot()): Record<string, string> {
  const c = defaultContractLimits(root);
  return {
    'docs/openapi-ingress.json': openApiText('ingress', c),
    'docs/openapi-admin.json': openApiText('admin', c),
    'docs/config.schema.json': `${JSON.stringify({ $schema: 'https://json-schema.org/draft/2020-12/schema', ...(JSON.parse(JSON.stringify(ConfigSchema)) as object) }, null, 2)}\n`,
  };
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const root = repoRoot();
  for (const [file, text] of Object.entries(contractDocs(root))) writeFileSync(join(root, file), text);
}
