// The API contract: the OpenAPI documents in docs/ are what the build
// writes from the schemas (not stale), an independent validator
// (@apidevtools/swagger-parser) accepts them, and every schema they hold
// compiles with ajv in strict mode.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import SwaggerParser from '@apidevtools/swagger-parser';
import { Ajv } from 'ajv';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { ROUTES, contractSchemas } from '../../src/contract/routes.js';
import { contractDocs, defaultContractLimits, repoRoot } from '../../src/contract/write-docs.js';

const root = repoRoot();

describe('OpenAPI documents', () => {
  const docs = contractDocs(root);

  it('docs/ holds what the build writes (run npm run build after changing a schema or a route)', () => {
    for (const [file, text] of Object.entries(docs)) assert.equal(readFileSync(join(root, file), 'utf8'), text, file);
  });

  for (const file of Object.keys(docs).filter((f) => f.includes('openapi'))) {
    it(`${file} is a valid OpenAPI 3.1 document (swagger-parser)`, async () => {
      const doc = JSON.parse(docs[file]!) as { openapi: string; paths: Record<string, unknown> };
      const api = (await SwaggerParser.validate(structuredClone(doc) as never)) as { openapi: string; paths: Record<string, unknown> };
      assert.equal(api.openapi, '3.1.0');
      assert.ok(Object.keys(api.paths).length >= 5);
    });
  }

  it('documents every route of the table, on its port', () => {
    for (const r of ROUTES) {
      const doc = JSON.parse(docs[`docs/openapi-${r.port}.json`]!) as { paths: Record<string, Record<string, { responses: Record<string, unknown> }>> };
      const op = doc.paths[r.path]?.[r.method];
      assert.ok(op, `${r.method} ${r.path}`);
      for (const status of Object.keys(r.answers)) assert.ok(op.responses[status], `${r.method} ${r.path} ${status}`);
    }
  });

  it('docs/config.schema.json is a JSON Schema 2020-12 that config/default.json satisfies', () => {
    const schema = JSON.parse(docs['docs/config.schema.json']!) as { $schema: string };
    assert.equal(schema.$schema, 'https://json-schema.org/draft/2020-12/schema');
    // Strict, so an unknown keyword is caught; notifyd's one vendor keyword (`x-error`, a message) is declared.
    const validate = new Ajv2020({ strict: true, allowUnionTypes: true }).addKeyword({ keyword: 'x-error', schemaType: ['string', 'object'] }).compile(schema);
    assert.ok(validate(JSON.parse(readFileSync(join(root, 'config', 'default.json'), 'utf8'))), JSON.stringify(validate.errors));
    assert.equal(validate({ ingress: { prot: 8080 } }), false, 'a typo is refused');
  });

  it('every schema compiles in strict ajv', () => {
    const ajv = new Ajv({ strict: true, allowUnionTypes: true, formats: { uri: true, 'media-type': true } });
    // notifyd's one vendor keyword (the message for a value that fails a rule): a strict validator must be told of it.
    ajv.addKeyword({ keyword: 'x-error', schemaType: ['string', 'object'] });
    const schemas = contractSchemas(defaultContractLimits(root));
    for (const [name, s] of Object.entries(schemas)) ajv.addSchema(JSON.parse(JSON.stringify(s)) as object, `#/components/schemas/${name}`);
    for (const name of Object.keys(schemas)) assert.equal(typeof ajv.getSchema(`#/components/schemas/${name}`), 'function', name);
  });
});
