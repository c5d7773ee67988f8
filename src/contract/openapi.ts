import type { TSchema } from '@sinclair/typebox';
import { ROUTES, contractSchemas, type Answer, type ContractLimits, type Port, type Route } from './routes.js';

/** The version the documents carry (the package's). */
export const API_VERSION = '0.1.0';

type Json = Record<string, unknown>;

/** A schema as JSON: TypeBox keeps its bookkeeping in symbol keys, which JSON drops. */
const plain = (s: TSchema): Json => JSON.parse(JSON.stringify(s)) as Json;
const ref = (name: string): Json => ({ $ref: `#/components/schemas/${name}` });

function answerObject(a: Answer): Json {
  if (a.text !== undefined) return { description: a.description, content: { [a.text]: { schema: { type: 'string' } } } };
  if (a.schema === undefined) return { description: a.description };
  const schema = typeof a.schema === 'string' ? ref(a.schema) : { oneOf: (a.schema as readonly string[]).map(ref) };
  return { description: a.description, content: { 'application/json': { schema } } };
}

function operation(r: Route): Json {
  const parameters: Json[] = [];
  for (const m of r.path.matchAll(/\{(\w+)\}/g)) {
    parameters.push({ name: m[1], in: 'path', required: true, schema: m[1] === 'index' ? { type: 'integer', minimum: 0 } : { type: 'string' } });
  }
  for (const [name, q] of Object.entries(r.query ?? {})) parameters.push({ name, in: 'query', required: false, description: q.description, schema: plain(q.schema) });
  const responses: Json = {};
  for (const [status, a] of Object.entries(r.answers)) responses[status] = answerObject(a);
  if (!r.open) {
    responses['401'] ??= answerObject({ description: 'a token is configured and this request has none, or a wrong one', schema: 'Error' });
    // Both ports refuse, without tokens, what a web page could make a browser send them (src/core/browser-guard.ts).
    responses['403'] ??= answerObject({ description: 'a browser request from another site, or for a host that is not loopback (no token set)', schema: 'Error' });
  }
  responses.default = answerObject({ description: 'any other refusal (NOT_FOUND, METHOD_NOT_ALLOWED, INTERNAL, …), with its code', schema: 'Error' });
  const op: Json = { operationId: operationId(r), summary: r.summary, responses };
  if (parameters.length > 0) op.parameters = parameters;
  if (r.body !== undefined) op.requestBody = { required: r.method === 'post' && r.port === 'ingress', content: { 'application/json': { schema: ref(r.body) } } };
  // The token is needed only when one is configured: anonymous access is the other alternative.
  op.security = r.open ? [] : [{ bearer: [] }, {}];
  return op;
}

/** `post /admin/merchants/{id}/rotate-secret` → `postAdminMerchantsIdRotateSecret`: stable names for generated clients. */
function operationId(r: Route): string {
  const words = r.path.split(/[^A-Za-z0-9]+/).filter(Boolean);
  return r.method + words.map((w) => w[0]!.toUpperCase() + w.slice(1)).join('');
}

/** The schemas a port's routes name, and the ones those refer to. */
function usedSchemas(routes: readonly Route[], all: Record<string, TSchema>): Json {
  const names = new Set<string>(['Error']);
  for (const r of routes) {
    if (r.body) names.add(r.body);
    for (const a of Object.values(r.answers)) for (const n of a.schema === undefined ? [] : typeof a.schema === 'string' ? [a.schema] : a.schema) names.add(n);
  }
  if (names.has('NotificationBatch')) names.add('Notification');
  return Object.fromEntries([...names].sort().map((n) => [n, plain(all[n]!)]));
}

/**
 * The OpenAPI 3.1 document of one port, generated from the route table and
 * the schemas. `c` is the configuration's limits: the documents in docs/
 * are built with the defaults, and each port serves the one of its own
 * configuration.
 */
export function openApiDocument(port: Port, c: ContractLimits): Json {
  const routes = ROUTES.filter((r) => r.port === port);
  const paths: Record<string, Json> = {};
  for (const r of routes) (paths[r.path] ??= {})[r.method] = operation(r);
  return {
    openapi: '3.1.0',
    info: {
      title: port === 'ingress' ? 'notifyd ingress API' : 'notifyd admin API',
      version: API_VERSION,
      description:
        port === 'ingress'
          ? 'Producers publish payment notifications here; notifyd delivers them to merchants with a tiered retry schedule. Every refusal is `{"error": {"code", "message", "field"?}}` with a stable `code`.'
          : 'Operators control the notifyd master here: status, tiers, parked notifications, origins, merchants, reload.',
      license: { name: 'MIT', identifier: 'MIT' },
    },
    servers: [{ url: port === 'ingress' ? 'http://127.0.0.1:8080' : 'http://127.0.0.1:9464', description: 'the default bind' }],
    paths,
    components: {
      schemas: usedSchemas(routes, contractSchemas(c)),
      securitySchemes: {
        bearer: {
          type: 'http',
          scheme: 'bearer',
          description: port === 'ingress' ? 'a producer token (ingress.tokens); required when any is configured' : 'admin.token; required when it is configured',
        },
      },
    },
  };
}

/** Serialised documents, built once per configuration: the ports answer `/openapi.json` from here. */
const cache = new Map<string, string>();

/** `openApiDocument` as JSON text, cached per port and limits. */
export function openApiText(port: Port, c: ContractLimits): string {
  const key = `${port}/${c.limits.idMaxLength}/${c.limits.urlMaxLength}/${c.limits.maxHeaders}/${c.maxBatch}`;
  let text = cache.get(key);
  if (text === undefined) {
    text = `${JSON.stringify(openApiDocument(port, c), null, 2)}\n`;
    cache.set(key, text);
  }
  return text;
}
