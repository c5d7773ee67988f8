/**
 * The JSON Schema of a merchant as the admin API takes it (create and
 * patch), a plain object: the merchant module validates with it in every
 * process that reads the registry, where importing TypeBox would cost
 * about 14 MB each (response-schemas.ts wraps it for the documents).
 */
import { MERCHANT_ID_PATTERN, type JsonSchema } from './notification-schema.js';

const orNull = (s: JsonSchema): JsonSchema => ({ anyOf: [s, { type: 'null' }] });

export const MerchantInputSchema: JsonSchema = {
  type: 'object',
  properties: {
    id: { type: 'string', pattern: MERCHANT_ID_PATTERN, description: 'required on create; never changed' },
    name: { type: 'string', minLength: 1, maxLength: 200, description: 'required on create' },
    signing: { type: 'string', enum: ['standard', 'rsa2', 'none'] },
    allowedOrigins: { type: 'array', items: { type: 'string' }, minItems: 1, maxItems: 100, description: 'required on create: origins such as https://shop.example' },
    maxConcurrency: orNull({ type: 'integer', minimum: 1, maximum: 10_000 }),
    maxAttempts: orNull({ type: 'integer', minimum: 1, description: 'at most the number of tiers' }),
    success: orNull({ type: 'object', properties: {}, additionalProperties: true, description: "as a notification's success" }),
  },
  additionalProperties: false,
};
